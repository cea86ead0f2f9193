"""A programme year's scripted changes and checks, shared by the year test and benchmark.

Between quarterly refreshes the agencies' synthetic CSVs change as a council's
data would: a person leaves every extract and comes back, a household member
moves out, a baby is born, an attached family's problems stop. The helpers here
rewrite CSV record lines (bytes, in each agency's own encoding and layout; see
``agency_client._synthetic.SPECS``) for :func:`evaluation._harness.push_refresh`
or for the ``agency-client encode`` command, and measure what the year must
keep: unchanged families keep their ids, and nobody is claimed for twice.

Test and benchmark tooling only: it reads the generator's plaintext CSVs and
the linkage database side by side, which no service does.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from collections.abc import Collection, Hashable, Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from agency_client._synthetic import SPECS
from linkage_service import _store as store
from linkage_service.programme import _store as pstore

MOVED_ADDRESS = "Flat 9 Quarry House"


def _parse(agency: str, line: bytes) -> list[str]:
    spec = SPECS[agency]
    text = line.decode(spec.encoding.replace("-sig", ""), errors="replace")
    return next(csv.reader([text], delimiter=spec.delimiter))


def _unparse(agency: str, row: list[str]) -> bytes:
    spec = SPECS[agency]
    out = io.StringIO()
    csv.writer(out, delimiter=spec.delimiter, lineterminator="\r\n").writerow(row)
    return out.getvalue().encode(spec.encoding.replace("-sig", ""), errors="replace")


def system_id(agency: str, line: bytes) -> str:
    """The agency's own id of the record a CSV line holds."""
    spec = SPECS[agency]
    return _parse(agency, line)[spec.header.index(spec.identity["system_id"])]


def cleared(agency: str, line: bytes, as_at: dt.date) -> bytes:
    """The line with every problem indicator gone: counts 0, flags blank, attendance 97%.

    Attendance is dated ``as_at`` (a current term's figure); other dates are kept.
    """
    spec = SPECS[agency]
    row = _parse(agency, line)
    for ind in spec.indicators:
        i = spec.header.index(ind.column)
        if ind.kind == "count":
            row[i] = "0"
        elif ind.kind == "flag":
            row[i] = ""
        else:  # the one number: attendance, good and current
            row[i] = "97.0"
            row[spec.header.index(ind.date_column)] = as_at.strftime(spec.date_format)
    return _unparse(agency, row)


def moved(agency: str, line: bytes) -> bytes:
    """The line with the person at a new address (first address line replaced)."""
    spec = SPECS[agency]
    row = _parse(agency, line)
    lines = spec.identity["address_lines"]
    first = lines[0] if isinstance(lines, list) else lines
    i = spec.header.index(first)
    row[i] = MOVED_ADDRESS  # one free-text column or the first of several: a new address
    return _unparse(agency, row)


def moved_to(agency: str, line: bytes, donor: bytes) -> bytes:
    """The line with the person at the donor record's address (address lines and postcode)."""
    spec = SPECS[agency]
    row, other = _parse(agency, line), _parse(agency, donor)
    cols = spec.identity["address_lines"]
    for col in [*(cols if isinstance(cols, list) else [cols]), spec.identity["postcode"]]:
        i = spec.header.index(col)
        row[i] = other[i]
    return _unparse(agency, row)


def newborn(agency: str, parent_line: bytes, new_id: str, given: str, born: dt.date) -> bytes:
    """A new record for a baby at the parent's address: the parent's line, renamed and re-dated.

    Every indicator is cleared and any national identifier blanked (a newborn has none yet).
    """
    spec = SPECS[agency]
    row = _parse(agency, cleared(agency, parent_line, born))
    ident = spec.identity
    row[spec.header.index(ident["system_id"])] = new_id
    given_cols = ident["given_names"]
    for n, col in enumerate(given_cols if isinstance(given_cols, list) else [given_cols]):
        row[spec.header.index(col)] = given if n == 0 else ""
    row[spec.header.index(ident["date_of_birth"])] = born.strftime(ident["date_format"])
    for key in ("nhs_number", "ni_number", "upn"):
        if key in ident:
            row[spec.header.index(ident[key])] = ""
    return _unparse(agency, row)


# --- what the year must keep --------------------------------------------------------

Contents = dict[str, frozenset[frozenset[tuple[str, str]]]]


def person_contents(engine: Engine) -> dict[str, frozenset[tuple[str, str]]]:
    """Person id -> the (agency, ref) of its active records."""
    r, rp = store.records, store.record_person
    refs: dict[str, set[tuple[str, str]]] = {}
    q = (
        sa.select(rp.c.person_id, r.c.agency_id, r.c.record_ref)
        .join(r, r.c.id == rp.c.record_id)
        .where(r.c.active == sa.true())
    )
    with engine.connect() as conn:
        for pid, agency, ref in conn.execute(q):
            refs.setdefault(str(pid), set()).add((str(agency), str(ref)))
    return {k: frozenset(v) for k, v in refs.items()}


def family_contents(engine: Engine) -> Contents:
    """Family id -> its current persons, each as the set of its active records' (agency, ref)."""
    ph, p = store.person_household, store.persons
    refs = person_contents(engine)
    members: dict[str, set[frozenset[tuple[str, str]]]] = {}
    q = (
        sa.select(ph.c.person_id, ph.c.household_id)
        .join(p, p.c.id == ph.c.person_id)
        .where(p.c.retired_run.is_(None))
    )
    with engine.connect() as conn:
        for pid, hid in conn.execute(q):
            if str(pid) in refs:
                members.setdefault(store.family_id_of(str(hid)), set()).add(refs[str(pid)])
    return {k: frozenset(v) for k, v in members.items()}


def by_records(contents: Contents, family_ids: Iterable[str]) -> list[str]:
    """``family_ids`` in an order that does not depend on the random ids: by each family's
    first record (agency, ref), so a run on the same population picks the same families;
    ids ``contents`` lacks go last, by id."""

    def key(fid: str) -> tuple[int, tuple[str, str]]:
        people = contents.get(fid)
        return (0, min(min(person) for person in people)) if people else (1, ("", fid))

    return sorted(family_ids, key=key)


def kept_ids(
    before: Mapping[str, Hashable], after: Mapping[str, Hashable]
) -> tuple[int, int, list[str]]:
    """(ids whose content is unchanged that kept their id, contents unchanged, ids lost).

    For families (:func:`family_contents`) or persons (:func:`person_contents`).
    """
    contents = set(after.values())
    same = [k for k, v in before.items() if v in contents]
    lost = [k for k in same if after.get(k) != before[k]]
    return len(same) - len(lost), len(same), lost


def attached_people(engine: Engine, family_ids: Iterable[str]) -> dict[str, set[str]]:
    """Each attached family -> the person ids attached with it (as recorded at attachment)."""
    a = pstore.attached_persons
    with engine.connect() as conn:
        rows = conn.execute(sa.select(a.c.family_id, a.c.person_id)).all()
    wanted = set(family_ids)
    out: dict[str, set[str]] = {f: set() for f in wanted}
    for fid, pid in rows:
        if str(fid) in wanted:
            out[str(fid)].add(str(pid))
    return out


def holders(engine: Engine, people: Mapping[str, set[str]]) -> dict[str, str]:
    """Each attached family -> the family id most of its attached people are held under now.

    Attachments belong to the people, so a family whose id was retired by a merge
    or split is followed to the family that now holds its people.
    """
    a = pstore.attached_persons
    with engine.connect() as conn:
        now = {str(p): str(f) for p, f in conn.execute(sa.select(a.c.person_id, a.c.family_id))}
    out = {}
    for fid, who in people.items():
        held = Counter(now[p] for p in who if p in now)
        out[fid] = held.most_common(1)[0][0] if held else fid
    return out


def statuses(engine: Engine) -> dict[str, str]:
    """Every family id in the families table -> its programme status."""
    f = pstore.families
    with engine.connect() as conn:
        return {str(a): str(b) for a, b in conn.execute(sa.select(f.c.family_id, f.c.status))}


def problems_found_later(engine: Engine, family_id: str) -> dict[str, int]:
    """Problems of an attached family first met after its baseline -> the cycle found
    (nothing for a family not attached, or not held)."""
    from linkage_service._errors import ConflictError, NotFound
    from linkage_service.programme._claims import family_outcomes

    try:
        out = family_outcomes(engine, family_id)
    except (ConflictError, NotFound):
        return {}
    return {
        p: v.identified_cycle
        for p, v in out.problems.items()
        if v.identified_cycle > out.baseline_cycle
    }


def refs_of(contents: Contents, family_id: str) -> set[tuple[str, str]]:
    """Every (agency, ref) of a family's people."""
    return {ref for person in contents.get(family_id, ()) for ref in person}


def duplicate_claims(engine: Engine) -> dict[str, int]:
    """Claims made twice for the same people, by kind; every count must be 0.

    Checked independently of the constraints that should prevent them. Taking
    each kind's claims in the order they were made, a claim is a duplicate when
    it was made for nobody (no people recorded: its family held no one), when it
    shares a person with an earlier claim of the kind, or when its family and an
    earlier claim's are one family now (each resolved to its current ids) and
    re-linking had retired either id before this claim was made. Two families
    claimed while they were separate, which a later re-link merged, are not a
    duplicate: each was a family when claimed. Per person: more than one claim of
    a kind in a phase, or more than one attachment.
    """
    c, cp, ap = pstore.claims, pstore.claimed_persons, pstore.attached_persons
    h, r = store.households, store.runs
    out = {"attachment": 0, "result": 0, "persons": 0, "attached_persons": 0}
    with engine.connect() as conn:
        people: dict[int, set[str]] = {}
        for cid, pid in conn.execute(sa.select(cp.c.claim_id, cp.c.person_id)):
            people.setdefault(int(cid), set()).add(str(pid))
        retired_at = {
            store.family_id_of(str(hid)): int(at)
            for hid, at in conn.execute(
                sa.select(h.c.id, sa.func.coalesce(r.c.finished_at, r.c.started_at))
                .join(r, r.c.id == h.c.retired_run)
                .where(h.c.retired_run.is_not(None))
            )
        }
        never = 1 << 62
        held: set[tuple[str, str]] = set()  # (kind, person) of the claims so far
        now_of: dict[tuple[str, str], list[str]] = {}  # (kind, current id) -> claimed families
        q = sa.select(c.c.id, c.c.family_id, c.c.kind, c.c.created_at).order_by(
            c.c.created_at, c.c.id
        )
        for cid, fid, kind, made in conn.execute(q):
            fid, kind, made = str(fid), str(kind), int(made)
            who = people.get(int(cid), set())
            lineage = store.successors(conn, fid)
            current = lineage[1] if lineage else []
            earlier = [now_of.get((kind, x), []) for x in current]
            dup = (
                not who
                or any((kind, p) in held for p in who)
                or any(
                    min(retired_at.get(other, never), retired_at.get(fid, never)) < made
                    for claims in earlier
                    for other in claims
                )
            )
            out[kind] = out.get(kind, 0) + dup
            held.update((kind, p) for p in who)
            for x in current:
                now_of.setdefault((kind, x), []).append(fid)
        out["persons"] = _repeats(
            conn, sa.select(cp.c.phase, cp.c.kind, cp.c.person_id), "claimed_persons"
        )
        out["attached_persons"] = _repeats(
            conn, sa.select(ap.c.phase, ap.c.person_id), "attached_persons"
        )
    return out


def _repeats(conn: Any, q: Any, _what: str) -> int:
    seen: set[tuple[Any, ...]] = set()
    repeats = 0
    for row in conn.execute(q):
        key = tuple(row)
        repeats += key in seen
        seen.add(key)
    return repeats


def lines_of(agency: str, lines: Iterable[bytes], ids: Collection[str]) -> list[bytes]:
    """The lines of ``agency`` whose system id is one of ``ids``."""
    return [x for x in lines if system_id(agency, x) in ids]


class YearScript:
    """Which records change at which refresh (quarter 1, 2, ...); records by (agency, system id).

    ``leave``: records out of the extracts for quarters ``[gone, back)``;
    ``clear``: records whose problems stop from a quarter on; ``move``: records
    whose person moves out from a quarter on; ``born``: new records (the parent's
    record, the baby's id and given name, birth date) from a quarter on.
    """

    def __init__(self) -> None:
        self.leave: dict[tuple[str, str], tuple[int, int]] = {}
        self.clear: dict[tuple[str, str], int] = {}
        self.move: dict[tuple[str, str], int] = {}
        self.born: list[tuple[str, str, str, str, dt.date, int]] = []
        self.join: dict[tuple[str, str], tuple[str, int]] = {}  # -> (donor system id, quarter)

    def lines(self, agency: str, lines: list[bytes], quarter: int, as_at: dt.date) -> list[bytes]:
        """The CSV record lines ``agency`` sends at ``quarter`` (dated ``as_at``)."""
        out: list[bytes] = []
        parents: dict[str, bytes] = {}
        wanted = {parent for a, parent, _, _, _, q in self.born if a == agency and q <= quarter}
        wanted |= {d for (a, _), (d, q) in self.join.items() if a == agency and q <= quarter}
        for line in lines:
            sid = system_id(agency, line)
            key = (agency, sid)
            if sid in wanted:
                parents[sid] = line
            gone = self.leave.get(key)
            if gone is not None and gone[0] <= quarter < gone[1]:
                continue
            if self.clear.get(key, quarter + 1) <= quarter:
                line = cleared(agency, line, as_at)
            if self.move.get(key, quarter + 1) <= quarter:
                line = moved(agency, line)
            out.append(line)
        out = [
            moved_to(agency, x, parents[self.join[(agency, system_id(agency, x))][0]])
            if self.join.get((agency, system_id(agency, x)), ("", quarter + 1))[1] <= quarter
            else x
            for x in out
        ]
        for a, parent, new_id, given, born, q in self.born:
            if a == agency and q <= quarter and parent in parents:
                out.append(newborn(agency, parents[parent], new_id, given, born))
        return out


def sids_by_ref(
    csv_paths: dict[str, Any], ref_keys: dict[str, bytes]
) -> dict[tuple[str, str], str]:
    """(agency, record ref) -> the agency's system id, for every line of each agency's CSV."""
    from agency_client import record_ref

    out: dict[tuple[str, str], str] = {}
    for agency, path in csv_paths.items():
        _, *lines = path.read_bytes().splitlines()
        for line in lines:
            sid = system_id(agency, line)
            out[(agency, record_ref(ref_keys[agency], agency, sid))] = sid
    return out


def due_quarter(ruleset: Any, attached_on: dt.date, dates: list[dt.date]) -> int | None:
    """The first cycle (index into ``dates``) at which every ``months_since_attachment`` rule
    can hold for a family attached on ``attached_on``: when its result is due if its
    problems stopped before then and no ``sustained_months`` rule applies to it."""
    from linkage_service.programme._ruleset import add_months

    months = max(
        (c.months_since_attachment for o in ruleset.outcomes.values() for c in o.all_of),
        default=0,
    )
    due = add_months(attached_on, months) - dt.timedelta(days=ruleset.calendar.gap_tolerance_days)
    return next((i for i, d in enumerate(dates) if d >= due), None)


def plain_problems(ruleset: Any) -> set[str]:
    """Problems whose outcome needs only time since attachment and the measure at 0 or below
    a bound: no "fall" from a baseline (which may be missing) and no sustained run."""
    return {
        p
        for p, o in ruleset.outcomes.items()
        if all(c.compare != "fall_pct" and not c.sustained_months for c in o.all_of)
    }
