"""Measuring linkage quality against a synthetic population's ground truth.

Used by tests and benchmarks only: it generates plaintext synthetic data,
encodes it with the agency client exactly as an agency would, and keeps the
truth labels beside the encodings so predicted persons and households can be
scored. No service imports this package (a test checks it): the linkage
service has no truth and never sees plaintext, synthetic or real.

Quality is pairwise: two records are a *person pair* when they belong to the same
person, a *household pair* when their people share a household. Precision,
recall and F1 are over those pairs, counted from the contingency table of
predicted and true labels (no pair enumeration).
"""

from __future__ import annotations

import argparse
import base64
import csv
import ctypes
import datetime as dt
import hashlib
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.engine import Engine

from linkage_service._batch import (
    LOCAL_TOKEN_PREFIX,
    SEX_CODES,
    RecordBatch,
    TokenColumns,
    decode_token,
    district_column,
    pack_filters,
)
from protocols import LinkageSchema, age_span

if TYPE_CHECKING:
    from linkage_service._engine import EngineConfig

EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class PairScores:
    """Pairwise precision, recall and F1 with their counts."""

    precision: float
    recall: float
    f1: float
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int

    def __str__(self) -> str:
        return (
            f"precision {self.precision:.4f} recall {self.recall:.4f} F1 {self.f1:.4f} "
            f"({self.correct_pairs:,} of {self.true_pairs:,} true pairs; "
            f"{self.predicted_pairs:,} predicted)"
        )


def _pairs(counts: npt.NDArray[np.int64]) -> int:
    return int((counts * (counts - 1) // 2).sum())


def pair_scores(predicted: Sequence[object], truth: Sequence[object]) -> PairScores:
    """Pairwise scores of a predicted clustering against the true one (same row order)."""
    if len(predicted) != len(truth):
        raise ValueError("predicted and truth labels differ in length")
    _, p = np.unique(np.asarray(predicted, dtype=object).astype(str), return_inverse=True)
    _, t = np.unique(np.asarray(truth, dtype=object).astype(str), return_inverse=True)
    joint = p.astype(np.int64) * (int(t.max(initial=0)) + 1) + t
    _, both = np.unique(joint, return_counts=True)
    _, pc = np.unique(p, return_counts=True)
    _, tc = np.unique(t, return_counts=True)
    correct, predicted_n, true_n = _pairs(both), _pairs(pc), _pairs(tc)
    precision = correct / predicted_n if predicted_n else 1.0
    recall = correct / true_n if true_n else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PairScores(precision, recall, f1, true_n, predicted_n, correct)


def completeness(
    candidate_a: npt.NDArray[np.int64], candidate_b: npt.NDArray[np.int64], truth: Sequence[object]
) -> float:
    """Share of true person pairs (by row) that appear among the candidate pairs."""
    t = np.asarray(truth, dtype=object).astype(str)
    found = {
        (min(a, b), max(a, b))
        for a, b in zip(candidate_a.tolist(), candidate_b.tolist(), strict=True)
        if t[a] == t[b]
    }
    _, counts = np.unique(t, return_counts=True)
    total = _pairs(counts.astype(np.int64))
    return len(found) / total if total else 1.0


@dataclass
class Population:
    """An encoded synthetic population with its truth, ready for the engine."""

    batch: RecordBatch
    truth_person: list[str]  # per row
    truth_household: list[str]  # per row
    agencies: tuple[str, ...]
    extract_paths: dict[str, Path]
    workdir: Path
    truth_by_ref: dict[tuple[str, str], tuple[str, str]]  # (agency, ref) -> (person, household)
    schema: LinkageSchema  # what the extracts were encoded with

    def households_truth(self) -> dict[str, dict[str, str]]:
        """The generator's ``truth/households.csv``, by household id."""
        path = self.workdir / "population" / "truth" / "households.csv"
        with path.open(newline="") as fh:
            return {row["household_id"]: row for row in csv.DictReader(fh)}


def batch_from_lines(
    lines: Iterable[bytes], agency_index: int, first_id: int
) -> tuple[RecordBatch, list[str]]:
    """A RecordBatch from the record lines of one extract (header and trailer excluded).

    Returns the batch and the record refs, row for row.
    """
    refs: list[str] = []
    clks: list[bytes] = []
    addrs: list[bytes | None] = []
    ages: list[int] = []
    sexes: list[int] = []
    districts: list[str | None] = []
    dependent: list[bool] = []
    expectant: list[bool] = []
    exact, blocking = TokenColumns(), TokenColumns()
    n = 0
    for raw in lines:
        rec = json.loads(raw)
        refs.append(rec["record_ref"])
        clks.append(decode_token(rec["clk"]))
        a = rec.get("address_clk")
        addrs.append(decode_token(a) if a else None)
        # the service's age column: whole years, or the floor of the band from 25
        span = age_span(rec.get("age"), rec.get("age_band"))
        ages.append(-1 if span is None else span[0])
        sexes.append(SEX_CODES.get(rec.get("sex") or "", 0))
        districts.append(rec.get("postcode_district"))
        types = {i["type"] for i in rec.get("indicators", ())}
        dependent.append("in_education_or_training" in types)
        expectant.append("expectant_parent" in types)
        for table, key in ((exact, "exact_tokens"), (blocking, "blocking_keys")):
            values = rec.get(key)
            if values:
                table.put(n, {name: decode_token(v) for name, v in values.items()})
        local = rec.get("local_tokens")
        if local:  # the service batches a scheme's own identifiers as "id:<type>"
            exact.put(n, {LOCAL_TOKEN_PREFIX + k: decode_token(v) for k, v in local.items()})
        n += 1
    clk, _ = pack_filters(clks, len(clks[0]) if clks else 128)
    del clks
    nbytes = next((len(a) for a in addrs if a), 128)
    address, has_address = pack_filters(addrs, nbytes)
    del addrs
    batch = RecordBatch(
        ids=np.arange(first_id, first_id + n, dtype=np.int64),
        agency=np.full(n, agency_index, dtype=np.int16),
        clk=clk,
        address_clk=address,
        has_address=has_address,
        age=np.asarray(ages, dtype=np.int16),
        sex=np.asarray(sexes, dtype=np.int8),
        district=district_column(districts),
        extract_day=np.zeros(n, dtype=np.int32),
        dependent_flag=np.asarray(dependent, dtype=np.bool_),
        expectant_flag=np.asarray(expectant, dtype=np.bool_),
        exact=exact.build(n),
        blocking=blocking.build(n),
    )
    return batch, refs


def _record_lines(fh: Iterable[bytes]) -> Iterator[bytes]:
    """The record lines of an open extract, streamed: header and trailer left out."""
    lines = iter(fh)
    next(lines, None)
    pending = next(lines, None)
    for line in lines:
        assert pending is not None
        yield pending
        pending = line


def concat(batches: Sequence[RecordBatch]) -> RecordBatch:
    """One batch from several (columns concatenated; token tables aligned, 0 where absent)."""

    def codes(table: str) -> dict[str, npt.NDArray[np.uint64]]:
        names = sorted({k for b in batches for k in getattr(b, table)})
        return {
            k: np.concatenate(
                [getattr(b, table).get(k, np.zeros(len(b), np.uint64)) for b in batches]
            ).astype(np.uint64, copy=False)
            for k in names
        }

    return RecordBatch(
        ids=np.concatenate([b.ids for b in batches]),
        agency=np.concatenate([b.agency for b in batches]),
        clk=np.concatenate([b.clk for b in batches]),
        address_clk=np.concatenate([b.address_clk for b in batches]),
        has_address=np.concatenate([b.has_address for b in batches]),
        age=np.concatenate([b.age for b in batches]),
        sex=np.concatenate([b.sex for b in batches]),
        district=np.concatenate([b.district for b in batches]).astype("U4"),
        extract_day=np.concatenate([b.extract_day for b in batches]),
        dependent_flag=np.concatenate([b.dependent_flag for b in batches]),
        expectant_flag=np.concatenate([b.expectant_flag for b in batches]),
        exact=codes("exact"),
        blocking=codes("blocking"),
    )


@dataclass
class SchemeKeys:
    """A fresh key ceremony for an evaluation: the linkage secret and the unlock seal key."""

    directory: Path
    secret: bytes
    seal: Any  # the unlock service's public sealing key (nacl PublicKey)
    # seeds the agencies' record-ref keys too (see make), or None: fresh ones
    seed: int | None = None

    @classmethod
    def make(cls, directory: Path, secret_seed: int | None = None) -> SchemeKeys:
        """Generate a linkage secret and an unlock key pair under ``directory``.

        The linkage secret decides every filter bit, so linkage results vary a
        little from secret to secret; a test that asserts a quality figure passes
        ``secret_seed`` to make its secret, and so its result, the same every run.
        The seed also fixes each agency's record-ref key (:meth:`encode`), so the
        record refs, and whatever is ordered by them, repeat too.
        """
        from agency_client import (
            generate_seal_keypair,
            generate_secret,
            load_seal_public_key,
            load_secret,
        )
        from agency_client._keys import MIN_SECRET_BYTES, SECRET_FORMAT, write_private

        if secret_seed is None:
            generate_secret(directory / "secret")
        else:
            seeded = hashlib.shake_256(f"evaluation secret {secret_seed}".encode())
            secret = seeded.digest(MIN_SECRET_BYTES)
            write_private(
                directory / "secret",
                {"format": SECRET_FORMAT, "secret": base64.b64encode(secret).decode()},
            )
        generate_seal_keypair(directory / "unlock")
        return cls(
            directory,
            load_secret(directory / "secret"),
            load_seal_public_key(directory / "unlock" / "seal.pub"),
            secret_seed,
        )

    def encode(
        self,
        agency: str,
        source: Path,
        mapping: Path,
        schema: LinkageSchema,
        out: Path,
        extract_date: dt.date,
        *,
        workers: int = 1,
        problems: Path | None = None,
    ) -> tuple[Any, Any]:
        """Encode one agency's CSV with a new agency key: (encode summary, agency key)."""
        from agency_client import (
            BadRowPolicy,
            encode_csv,
            generate_agency_key,
            load_agency_key,
            load_mapping,
        )

        generate_agency_key(agency, self.directory / agency)
        if self.seed is not None:  # evaluation only: refs that repeat from run to run
            from agency_client._keys import write_private

            path = self.directory / agency / "agency.key"
            data = json.loads(path.read_text())
            seeded = hashlib.shake_256(f"evaluation record refs {self.seed} {agency}".encode())
            data["record_ref_key"] = base64.b64encode(seeded.digest(32)).decode()
            path.unlink()
            write_private(path, data)
        key = load_agency_key(self.directory / agency / "agency.key")
        summary = encode_csv(
            source,
            load_mapping(mapping),
            schema,
            self.secret,
            key,
            self.seal,
            out,
            extract_date=extract_date,
            policy=BadRowPolicy.DROP_FIELD,
            workers=workers,
            problems_path=problems,
        )
        return summary, key


def fixed_order(extract: Path, key: Any, seed: int) -> None:
    """Put an extract's records in an order fixed by ``seed`` and their content; sign again.

    The agency client writes every extract in a fresh random order, and the
    engine breaks some ties (two places as good for a person, say) by the order
    records arrived in: a quality figure then moves a little from run to run
    (by one family in 1,190 at 2,000 households). With a fixed secret
    (``secret_seed``) the encodings are the same every run, so ordering the
    lines by a seeded hash of their encodings (not the record ref, which only
    the agency's ref key decides, nor the sealed blob, which is random) makes the
    figure repeat. The order is still unrelated to the CSV's. Evaluation only:
    ``key`` is the agency's signing key, which re-signs the reordered records.
    """
    from protocols import ExtractHeader, ExtractTrailer, signed_message

    lines = extract.read_bytes().splitlines(keepends=True)
    head, body = lines[0], lines[1:-1]

    def rank(line: bytes) -> bytes:
        rec = json.loads(line)
        rec.pop("record_ref"), rec.pop("sealed_identity")
        content = json.dumps(rec, sort_keys=True).encode()
        return hashlib.blake2b(content, key=f"order {seed}".encode(), digest_size=16).digest()

    body.sort(key=rank)
    digest = hashlib.sha256(b"".join(body)).hexdigest()
    header = ExtractHeader.model_validate_json(head)
    signature = key.signing_key.sign(signed_message(header, len(body), digest)).signature
    trailer = ExtractTrailer(
        record_count=len(body),
        records_sha256=digest,
        signature=base64.b64encode(signature).decode("ascii"),
    )
    extract.write_bytes(b"".join([head, *body, trailer.model_dump_json().encode() + b"\n"]))


def load_population(
    households: int,
    seed: int = 20261121,
    workdir: Path | None = None,
    workers: int = 1,
    *,
    schema: LinkageSchema | None = None,
    secret_seed: int | None = None,
    truth: bool = True,
    surnames: str = "lists",
) -> Population:
    """Generate, encode (as each agency would) and load a population with its truth.

    ``secret_seed`` fixes the linkage secret (see :meth:`SchemeKeys.make`) and
    the order of each extract's records (:func:`fixed_order`): the same figures
    every run. ``truth=False`` leaves the truth out (its fields empty): at ten
    million records its labels take more memory than the encodings.
    ``surnames`` is :class:`PopulationConfig`'s: ``"long-tail"`` draws British
    surnames by their published frequencies rather than from the fixed list.
    """
    from agency_client import load_agency_key, record_ref
    from agency_client._synthetic import PopulationConfig, generate_population
    from protocols import default_schema

    work = workdir or Path(tempfile.mkdtemp(prefix="linkage-eval-"))
    config = PopulationConfig(households=households, seed=seed, surnames=surnames)
    marker = work / "population-done.json"
    schema = schema or default_schema()
    wanted: dict[str, object] = {"households": households, "seed": seed}
    if secret_seed is not None:
        wanted["secret_seed"] = secret_seed
    if surnames != "lists":
        wanted["surnames"] = surnames
    # a cache is for one schema: the default's too, which changes between versions
    wanted["schema"] = schema.fingerprint()
    reuse = marker.exists() and json.loads(marker.read_text()) == wanted
    keys = work / "keys"
    if reuse:
        from agency_client._synthetic import AGENCIES

        pop_dir = work / "population"
        agencies = AGENCIES
        truth_dir = pop_dir / "truth"
    else:
        if workdir is not None and marker.parent.exists() and any(marker.parent.iterdir()):
            # a cache from an interrupted or different run: start it again
            shutil.rmtree(marker.parent)
        pop = generate_population(config, work / "population")
        agencies, truth_dir = pop.agencies, pop.truth_dir
        ceremony = SchemeKeys.make(keys, secret_seed)
    labels: dict[str, dict[str, tuple[str, str]]] = {}  # agency -> system id -> labels
    with (truth_dir / "records.csv").open(newline="") as fh:
        for row in csv.DictReader(fh) if truth else ():
            labels.setdefault(row["agency"], {})[row["system_id"]] = (
                row["person_id"],
                row["household_id"],
            )

    batches: list[RecordBatch] = []
    truth_person: list[str] = []
    truth_household: list[str] = []
    paths: dict[str, Path] = {}
    truth_by_ref: dict[tuple[str, str], tuple[str, str]] = {}
    next_id = 1
    day = (config.extract_date - EPOCH).days
    for index, agency in enumerate(agencies):
        out = work / "extracts" / f"{agency}.jsonl"
        if not reuse:
            ceremony.encode(
                agency,
                work / "population" / f"{agency}.csv",
                work / "population" / f"{agency}.mapping.toml",
                schema,
                out,
                config.extract_date,
                workers=workers,
            )
        key = load_agency_key(keys / agency / "agency.key")
        if not reuse and secret_seed is not None:
            fixed_order(out, key, secret_seed)
        paths[agency] = out
        by_ref = {
            record_ref(key.record_ref_key, agency, sid): t
            for sid, t in labels.get(agency, {}).items()
        }
        with out.open("rb") as fh:
            batch, refs = batch_from_lines(_record_lines(fh), index, next_id)
        batch.extract_day[:] = day
        next_id += len(batch)
        batches.append(batch)
        for ref in refs if truth else ():
            person, household = by_ref[ref]
            truth_by_ref[(agency, ref)] = (person, household)
            truth_person.append(person)
            truth_household.append(household)
    if not reuse:
        marker.write_text(json.dumps(wanted))
    population = Population(
        concat(batches), truth_person, truth_household, agencies, paths, work, truth_by_ref, schema
    )
    del batches
    release_free_memory()
    return population


def population_dir(cache: Path, records: int, seed: int, surnames: str = "lists") -> Path:
    """Where the benches cache the population of about ``records`` records (see
    :func:`load_population`), one directory for each surname source."""
    name = f"linkage-{records}-{seed}"
    return cache / (name if surnames == "lists" else f"{name}-{surnames}")


def add_scale_options(parser: argparse.ArgumentParser) -> None:
    """``--lsh-bits`` and ``--surnames``, as the scale benches take them."""
    from agency_client._synthetic_names import SURNAME_SOURCES

    parser.add_argument(
        "--lsh-bits",
        type=int,
        default=None,
        help="bits per person LSH band (EngineConfig.lsh_bits; default: the shipped one)",
    )
    parser.add_argument(
        "--surnames",
        choices=SURNAME_SOURCES,
        default="lists",
        help="long-tail: British surnames by published frequency (PopulationConfig.surnames)",
    )


def scale_engine_config(args: argparse.Namespace) -> EngineConfig:
    """The engine configuration ``--lsh-bits`` asks for; says so when it is not the default."""
    from linkage_service._engine import EngineConfig

    if args.lsh_bits is None:
        return EngineConfig()
    print(f"lsh_bits: {args.lsh_bits}")
    return EngineConfig(lsh_bits=args.lsh_bits)


def release_free_memory() -> None:
    """Give the C heap's free pages back to the system, where the C library can (glibc).

    Parsing an extract leaves freed memory in the process's heap (a quarter of a
    GB a million records): resident, though nothing holds it. A benchmark that
    reports memory calls this so that its figures are what is held.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc: nothing to do
        return
    trim(0)


def ingest_population(
    population: Population, database_url: str, engine_factory: Any = None
) -> Engine:
    """Register the population's agencies and apply their extracts through the service.

    The database ends up as a running service's would after each agency pushed
    its extract: records, persons, households and links. Returns its engine.
    ``engine_factory``: the service's (its default when None).
    """
    import tomllib

    from agency_client import load_agency_public_key
    from linkage_service import _store as store
    from linkage_service._service import LinkageService

    sql = store.open_engine(database_url)
    keys = population.workdir / "keys"
    for agency in population.agencies:
        pub = load_agency_public_key(keys / agency / "agency.pub")
        mapping_file = population.workdir / "population" / f"{agency}.mapping.toml"
        extract_type = tomllib.loads(mapping_file.read_text())["agency"]["extract_type"]
        store.add_agency(sql, agency, pub.public_key, pub.key_id, [extract_type])
    schema = population.schema
    if engine_factory is None:
        service = LinkageService(sql, {schema.fingerprint(): schema})
    else:
        service = LinkageService(sql, {schema.fingerprint(): schema}, engine_factory)
    service.start()
    for agency in population.agencies:
        receiver = service.receiver(agency)
        try:
            with population.extract_paths[agency].open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    receiver.feed(chunk)
            service.apply(receiver.finish())
        finally:
            receiver.close()
    return sql


def encode_again(
    population: Population,
    agency: str,
    extract_date: dt.date,
    out: Path,
    source: Path | None = None,
    workers: int = 1,
) -> Path:
    """``agency`` encodes ``source`` (its CSV by default) at ``extract_date`` into ``out``.

    With the scheme's secret, the unlock service's seal key and the key the agency
    has (its record refs stay the same): a refresh of its extract. Returns ``out``.
    """
    from agency_client import (
        BadRowPolicy,
        encode_csv,
        load_agency_key,
        load_mapping,
        load_seal_public_key,
        load_secret,
    )

    keys = population.workdir / "keys"
    encode_csv(
        source or population.workdir / "population" / f"{agency}.csv",
        load_mapping(population.workdir / "population" / f"{agency}.mapping.toml"),
        population.schema,
        load_secret(keys / "secret"),
        load_agency_key(keys / agency / "agency.key"),
        load_seal_public_key(keys / "unlock" / "seal.pub"),
        out,
        extract_date=extract_date,
        policy=BadRowPolicy.DROP_FIELD,
        workers=workers,
    )
    return out


def push_refresh(
    population: Population,
    service: Any,
    extract_date: dt.date,
    *,
    keep: Callable[[str, bytes], bool] | None = None,
    rewrite: Callable[[str, list[bytes]], list[bytes]] | None = None,
) -> dict[str, Path]:
    """Every agency encodes its CSV again at ``extract_date`` and pushes it to ``service``.

    The same people and addresses a quarter on, say: what a refresh looks like to
    the linkage service (new extracts, records changed because their dates are).
    ``keep(agency, line)`` drops CSV lines from a refresh (a record leaving an
    extract); the header is always kept. ``rewrite(agency, lines)`` then gives the
    record lines to encode instead (changed, dropped or added: see
    :func:`scripted_csv`). Each agency signs with the key it has. Returns the
    extracts written.
    """
    out: dict[str, Path] = {}
    stamp = extract_date.isoformat()
    for agency in population.agencies:
        source = population.workdir / "population" / f"{agency}.csv"
        if keep is not None or rewrite is not None:
            # bytes: each agency writes its own encoding
            header, *lines = source.read_bytes().splitlines(keepends=True)
            if keep is not None:
                lines = [x for x in lines if keep(agency, x)]
            if rewrite is not None:
                lines = rewrite(agency, lines)
            source = population.workdir / "extracts" / f"{agency}.{stamp}.csv"
            source.write_bytes(header + b"".join(lines))
        path = population.workdir / "extracts" / f"{agency}.{stamp}.jsonl"
        encode_again(population, agency, extract_date, path, source)
        receiver = service.receiver(agency)
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    receiver.feed(chunk)
            service.apply(receiver.finish())
        finally:
            receiver.close()
        out[agency] = path
    return out


def household_overlap(population: Population, engine: Engine) -> Counter[tuple[str, str]]:
    """(true household, assessed household id) -> how many active records they share."""
    import sqlalchemy as sa

    from linkage_service import _store as store

    q = (
        sa.select(
            store.records.c.agency_id,
            store.records.c.record_ref,
            store.person_household.c.household_id,
        )
        .join(store.record_person, store.record_person.c.record_id == store.records.c.id)
        .join(
            store.person_household,
            store.person_household.c.person_id == store.record_person.c.person_id,
        )
        .where(store.records.c.active)
    )
    overlap: Counter[tuple[str, str]] = Counter()
    with engine.connect() as conn:
        for agency, ref, hid in conn.execute(q):
            t = population.truth_by_ref.get((str(agency), str(ref)))
            if t is not None:
                overlap[(t[1], str(hid))] += 1
    return overlap


def eligibility_agreement(population: Population, engine: Engine, cycle_id: int) -> dict[str, Any]:
    """How often the cycle's eligibility agrees with the generator's truth, per true family.

    Each true household is matched to the assessed family holding most of its
    records; a true family with no assessed family counts as "not eligible".
    Returns counts, the agreement rate and the disagreeing households.
    """
    import sqlalchemy as sa

    from linkage_service.programme import _store as pstore

    truth = population.households_truth()
    with engine.connect() as conn:
        snaps = {
            str(f): bool(e)
            for f, e in conn.execute(
                sa.select(pstore.snapshots.c.household_id, pstore.snapshots.c.eligible).where(
                    pstore.snapshots.c.cycle_id == cycle_id
                )
            )
        }
    votes: dict[str, Counter[str]] = {}
    for (true_hid, hid), n in household_overlap(population, engine).items():
        votes.setdefault(true_hid, Counter())[hid] += n
    agree = disagree = 0
    wrong: list[dict[str, Any]] = []
    for hid, row in truth.items():
        if row["is_family"] != "Y":
            continue
        expected = row["tf_eligible"] == "Y"
        found = votes.get(hid)
        predicted = found is not None and snaps.get(found.most_common(1)[0][0], False)
        if predicted == expected:
            agree += 1
        else:
            disagree += 1
            wrong.append({"household": hid, "expected": expected, "problems": row["problems"]})
    total = agree + disagree
    return {
        "families": total,
        "agree": agree,
        "rate": agree / total if total else 1.0,
        "disagreements": wrong,
    }
