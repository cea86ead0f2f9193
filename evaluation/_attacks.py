"""Attacks on the person filters, as an honest-but-curious linkage operator would run them.

The attacker holds every extract (each record's person filter ``clk``, its
blocking keys and its clear age, sex and district, and the extract date) and a
public name-frequency list, and knows the linkage schema (it is shared by every
agency and not secret) but not the linkage secret. Four attacks:

- **frequency alignment** (:func:`frequency_alignment`): the most frequent
  values of each keyed token column (blocking keys) are aligned rank for rank
  with the most frequent plaintext values the same key would have in the
  public list;
- **pattern mining** (:func:`mine_atoms`): keyless search for *atoms*, the bit
  sets every record that shares a feature value shares (Christen et al. 2017,
  2018). Seeds are pairs of bits whose co-occurrence is far above chance; a
  seed grows one bit at a time (the bit whose share among the records holding
  every chosen bit most exceeds its share overall) until the records left all
  hold a common set of bits; what every one of them holds is the atom. Bits
  explained by found atoms are cleared and the search runs again for rarer
  values. Complementary bit pairs (``balance`` hardening) are paired back
  first; a salted schema is mined in the groups its salt splits records into,
  as far as the clear attributes show them (sex; age for the birth year);
- **labelling**: blind, each atom by its frequency rank among atoms of its
  kind against the public list's ranks (:func:`label_blind`), or from side
  knowledge, each atom taking the value its known members share
  (:func:`label_side_knowledge`);
- **similarity-graph matching** (:func:`graph_match`, after Vidanage et al.
  2020): the atoms form one similarity graph (Jaccard of their bit sets), the
  public names another (the attacker encodes them under the public schema with
  a key of its own: similarities do not depend on the key); nodes are matched
  by their features (size, frequency, sex and age of the people, and their
  neighbourhood in the graph).

:func:`score` says which records each attack re-identified, against the truth
the attacker never sees. Research code for ``bench/privacy_attacks.py`` and
tests; it reads no file and imports no service.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from protocols import Hardening, LinkageSchema, PersonFeature

from ._harness import Population

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

# Features an atom can stand for; "daymonth" is the sorted day/month pair.
FEATURES = ("given", "family", "year", "month", "day", "daymonth", "sex")
# Features that identify (sex and the birth year travel in the clear as sex and age).
IDENTIFYING = ("given", "family", "month", "day", "daymonth")
CLEAN_PURITY = 0.9


@dataclass
class AttackView:
    """What the attacker holds: one row per record."""

    bits: U8  # (n, L) 0/1 person filter bits as sent
    age: npt.NDArray[np.int16]  # clear age at the extract date, -1 when unknown
    sex: npt.NDArray[np.int8]  # 1 male, 2 female, 0 unknown
    district: npt.NDArray[np.str_]
    extract_date: dt.date
    blocking: dict[str, npt.NDArray[np.uint64]] = field(default_factory=dict)  # 0 = none

    def __len__(self) -> int:
        return int(self.bits.shape[0])


@dataclass
class Truth:
    """The true identity behind each row (scoring only; the attacker never reads it)."""

    person: list[str]
    given: list[str]  # canonical first given name, "" unknown
    family: list[tuple[str, ...]]  # normalised parts of current and former family names
    year: I64  # 0 unknown
    month: I64
    day: I64

    def value(self, feature: str, row: int) -> object:
        """The row's value of one feature (a family name is a tuple of parts)."""
        if feature == "given":
            return self.given[row]
        if feature == "family":
            return self.family[row]
        if feature == "daymonth":
            return _daymonth(int(self.day[row]), int(self.month[row]))
        if feature == "sex":
            return ""
        return int(getattr(self, feature)[row])


@dataclass(frozen=True)
class PublicPerson:
    """One person of the public list (a census-like register of names)."""

    given: str  # canonical first given name
    family: tuple[str, ...]
    sex: int  # 1 male, 2 female
    age: int


@dataclass
class PublicList:
    """The attacker's public frequency list, and where it came from."""

    source: str
    persons: list[PublicPerson]

    def given_counts(self, sex: int | None = None) -> Counter[str]:
        """Given-name frequencies (of one sex, or all)."""
        return Counter(p.given for p in self.persons if sex is None or p.sex == sex)

    def family_counts(self) -> Counter[str]:
        """Family-name part frequencies."""
        return Counter(part for p in self.persons for part in p.family)


@dataclass
class Atom:
    """A bit set that all its member records hold."""

    bits: I64  # filter positions
    members: I64  # row indexes


def _daymonth(day: int, month: int) -> str:
    if not day or not month:
        return ""
    a, b = sorted((day, month))
    return f"{a:02d}{b:02d}"


# ----------------------------------------------------------------------------- mining


def unbalance(bits: U8) -> tuple[U8, int]:
    """Drop one bit of each exactly complementary pair (what ``balance`` adds back).

    Returns the reduced bit matrix and the number of pairs found.
    """
    cols = np.packbits(bits.astype(bool), axis=0).T  # (L, ceil(n/8)) bytes per column
    n = bits.shape[0]
    pad = (-n) % 8
    mask = np.full(cols.shape[1], 0xFF, dtype=np.uint8)
    if pad:
        mask[-1] = (0xFF << pad) & 0xFF
    seen: dict[bytes, int] = {}
    drop: set[int] = set()
    for i in range(cols.shape[0]):
        key = cols[i].tobytes()
        inverse = (~cols[i] & mask).tobytes()
        if inverse in seen and seen[inverse] not in drop:
            drop.add(i)
            continue
        seen.setdefault(key, i)
    keep = [i for i in range(cols.shape[0]) if i not in drop]
    return np.ascontiguousarray(bits[:, keep]), len(drop)


def _phi(x: U8) -> npt.NDArray[np.float32]:
    """Pearson correlation of every pair of bit columns (0 on the diagonal and for constants)."""
    f = x.astype(np.float32)
    n = f.shape[0]
    p = f.mean(axis=0)
    cov = (f.T @ f) / n - np.outer(p, p)
    sd = np.sqrt(p * (1 - p))
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = cov / np.outer(sd, sd)
    out: npt.NDArray[np.float32] = np.nan_to_num(phi, nan=0.0, posinf=0.0, neginf=0.0).astype(
        np.float32
    )
    np.fill_diagonal(out, 0.0)
    return out


@dataclass(frozen=True)
class MiningConfig:
    """How hard the miner works."""

    min_support: int = 20  # fewest records an atom must cover
    min_bits: int = 16  # fewest bits an atom must have
    rounds: int = 3
    partners: int = 3  # seeds per bit: its most correlated partners
    max_steps: int = 16  # greedy growth steps per seed
    seconds: float = 240.0  # time limit for all rounds
    # share of an atom's members that must hold each of its bits (and of its bits
    # a member must hold); below 1 it finds patterns hardening only blurs
    closure: float = 0.97


def mine_atoms(bits: U8, config: MiningConfig = MiningConfig()) -> list[Atom]:
    """Atoms of one group of records (``bits``: (n, L) 0/1), keyless."""
    n, length = bits.shape
    atoms: list[Atom] = []
    if n < max(2 * config.min_support, 50):
        return atoms
    x = np.ascontiguousarray(bits.astype(np.uint8))
    cols = np.ascontiguousarray(x.T.astype(bool))
    residual = x.copy()
    by_bit: dict[int, list[int]] = defaultdict(list)
    deadline = time.process_time() + config.seconds
    for _ in range(config.rounds):
        phi = _phi(residual)
        p = residual.mean(axis=0).astype(np.float64)
        rcols = np.ascontiguousarray(residual.T.astype(bool))
        threshold = 4.5 / math.sqrt(n)
        seeds: list[tuple[float, int, int]] = []
        for b in range(length):
            for c in np.argsort(phi[b])[::-1][: config.partners].tolist():
                if phi[b, c] > threshold:
                    seeds.append((float(phi[b, c]), min(b, c), max(b, c)))
        seeds = sorted(set(seeds), reverse=True)
        found = 0
        for _, b, c in seeds:
            if time.process_time() > deadline:
                break
            if set(by_bit.get(b, ())) & set(by_bit.get(c, ())):
                continue  # an atom already explains this pair
            atom = _grow(x, cols, residual, rcols, p, b, c, config)
            if atom is None or _duplicate(atom, atoms, by_bit):
                continue
            index = len(atoms)
            atoms.append(atom)
            found += 1
            for bit in atom.bits.tolist():
                by_bit[bit].append(index)
            residual[np.ix_(atom.members, atom.bits)] = 0
        if not found or time.process_time() > deadline:
            break
    return atoms


def _grow(
    x: U8,
    cols: npt.NDArray[np.bool_],
    residual: U8,
    rcols: npt.NDArray[np.bool_],
    p: npt.NDArray[np.float64],
    b: int,
    c: int,
    config: MiningConfig,
) -> Atom | None:
    chosen = [b, c]
    rows = np.nonzero(rcols[b] & rcols[c])[0]
    safe_p = np.maximum(p, 1e-9)
    for _ in range(config.max_steps):
        if len(rows) < config.min_support:
            return None
        share = residual[rows].sum(axis=0, dtype=np.int64) / len(rows)
        share[chosen] = -1.0
        best = int(np.argmax(share / safe_p))
        if share[best] >= min(0.98, config.closure + 0.01) and len(chosen) >= 6:
            break
        chosen.append(best)
        rows = rows[rcols[best][rows]]
    if len(rows) < config.min_support:
        return None
    closure = config.closure
    bits = np.nonzero(x[rows].sum(axis=0, dtype=np.int64) >= closure * len(rows))[0]
    for _ in range(4):
        if len(bits) < config.min_bits:
            return None
        # a missing sex or a collision costs a bit or two
        slack = max(1, len(bits) // 20, int((1 - closure) * len(bits)))
        held = x[:, bits].sum(axis=1, dtype=np.int64)
        members = np.nonzero(held >= len(bits) - slack)[0]
        if len(members) < config.min_support:
            return None
        again = np.nonzero(x[members].sum(axis=0, dtype=np.int64) >= closure * len(members))[0]
        if np.array_equal(again, bits):
            break
        bits = again
    if len(bits) < config.min_bits:
        return None
    del cols
    return Atom(bits.astype(np.int64), members.astype(np.int64))


def _duplicate(atom: Atom, atoms: Sequence[Atom], by_bit: dict[int, list[int]]) -> bool:
    mine = set(atom.bits.tolist())
    near = {i for bit in mine for i in by_bit.get(bit, ())}
    for i in near:
        other = set(atoms[i].bits.tolist())
        if len(mine & other) >= 0.8 * len(mine | other):
            return True
    return False


def _groups(view: AttackView, schema: LinkageSchema) -> list[I64]:
    """Row groups the attacker mines apart: one per salt value it can see."""
    salt = schema.person_filter.salt
    n = len(view)
    if salt == "sex":
        return [np.nonzero(view.sex == s)[0].astype(np.int64) for s in (1, 2, 0)]
    if salt == "dob_year":
        # age at the extract date spans two birth years; each is its own salt, so a
        # group holds two sets of keys, and the miner finds each value's atom per year
        return [
            np.nonzero(view.age == a)[0].astype(np.int64) for a in sorted(set(view.age.tolist()))
        ]
    return [np.arange(n, dtype=np.int64)]


def mine(
    view: AttackView, schema: LinkageSchema, config: MiningConfig = MiningConfig()
) -> list[Atom]:
    """Every atom the attacker finds in the person filters, rows in ``view``'s numbering."""
    bits = view.bits
    if schema.person_filter.hardening is Hardening.BALANCE:
        bits, _ = unbalance(bits)
    groups = _groups(view, schema)
    salted = len(groups) > 1
    if not salted:
        # rarer values stand out within a group the clear attributes make: given
        # names within one sex; what is found there holds across the whole data
        groups += [np.nonzero(view.sex == s)[0].astype(np.int64) for s in (1, 2)]
    atoms: list[Atom] = []
    by_bit: dict[int, list[int]] = defaultdict(list)
    total = sum(len(g) for g in groups)
    for group in groups:
        share = len(group) / max(total, 1)
        cfg = MiningConfig(
            min_support=config.min_support,
            min_bits=config.min_bits,
            rounds=config.rounds,
            partners=config.partners,
            max_steps=config.max_steps,
            seconds=max(1.0, config.seconds * share),
            closure=config.closure,
        )
        whole = not salted and len(group) == len(view)
        for found in mine_atoms(bits[group], cfg):
            if salted or whole:
                atom = Atom(found.bits, group[found.members])
            else:
                slack = max(1, len(found.bits) // 20, int((1 - config.closure) * len(found.bits)))
                held = bits[:, found.bits].sum(axis=1, dtype=np.int64)
                atom = Atom(found.bits, np.nonzero(held >= len(found.bits) - slack)[0])
            if _duplicate(atom, atoms, by_bit):
                continue
            for bit in atom.bits.tolist():
                by_bit[bit].append(len(atoms))
            atoms.append(atom)
    return atoms


# ---------------------------------------------------------------------------- truth


@dataclass(frozen=True)
class AtomTruth:
    """What an atom really stands for (scoring only)."""

    feature: str
    value: object
    purity: float

    @property
    def clean(self) -> bool:
        """Nine in ten of its members share one value of one feature."""
        return self.purity >= CLEAN_PURITY


def _feature_counts(feature: str, rows: Iterable[int], truth: Truth) -> Counter[object]:
    counts: Counter[object] = Counter()
    for r in rows:
        v = truth.value(feature, r)
        if feature == "family":
            assert isinstance(v, tuple)
            counts.update(set(v))
        elif v not in ("", 0):
            counts[v] += 1
    return counts


def atom_truth(atom: Atom, truth: Truth) -> AtomTruth:
    """The feature and value an atom's members most share, and how purely."""
    rows = atom.members.tolist()
    best = AtomTruth("none", None, 0.0)
    for feature in FEATURES:
        if feature == "sex":
            continue
        counts = _feature_counts(feature, rows, truth)
        if not counts:
            continue
        value, k = counts.most_common(1)[0]
        purity = k / len(rows)
        # ties go to the rarer feature (a day beats a month; a name beats a date part)
        if purity > best.purity + 1e-9:
            best = AtomTruth(feature, value, purity)
    return best


def _matches(feature: str, value: object, truth: Truth, row: int) -> bool:
    v = truth.value(feature, row)
    if feature == "family":
        assert isinstance(v, tuple)
        return value in v
    return v == value and v not in ("", 0)


def singled_out(
    atoms: Sequence[Atom], truths: Sequence[AtomTruth], truth: Truth
) -> dict[str, float]:
    """Share of records singled out, per feature, by a clean atom that holds their value."""
    n = len(truth.person)
    hit: dict[str, npt.NDArray[np.bool_]] = {f: np.zeros(n, dtype=bool) for f in FEATURES}
    for atom, t in zip(atoms, truths, strict=True):
        if not t.clean or t.feature not in hit:
            continue
        for r in atom.members.tolist():
            if _matches(t.feature, t.value, truth, r):
                hit[t.feature][r] = True
    identifying = np.zeros(n, dtype=bool)
    for f in IDENTIFYING:
        identifying |= hit[f]
    return {
        "given": float(hit["given"].mean()),
        "family": float(hit["family"].mean()),
        "both names": float((hit["given"] & hit["family"]).mean()),
        "date part": float((hit["month"] | hit["day"] | hit["daymonth"]).mean()),
        "any": float(identifying.mean()),
    }


# -------------------------------------------------------------------------- labelling

Label = tuple[str, object]  # (feature, value)


@dataclass(frozen=True)
class AtomShape:
    """What the attacker sees of an atom: size, support, its members' sex and age."""

    bits: int
    support: float  # share of all records
    male: float  # share of members with a known sex who are male
    age_mode_share: float  # share of members in the two most common adjacent ages
    year: int  # birth year the age mode points to
    mean_age: float


def shape(atom: Atom, view: AttackView) -> AtomShape:
    """The attacker's view of one atom."""
    sex = view.sex[atom.members]
    known = sex[sex > 0]
    male = float((known == 1).mean()) if len(known) else 0.5
    ages = view.age[atom.members]
    ages = ages[ages >= 0]
    counts = Counter(ages.tolist())
    best_share, best_year = 0.0, 0
    for a in counts:
        share = (counts[a] + counts.get(a + 1, 0)) / max(len(ages), 1)
        if share > best_share:
            # age a and a+1 at the extract date share the birth year Y - a - 1
            best_share, best_year = share, view.extract_date.year - a - 1
            if counts[a] >= counts.get(a + 1, 0):
                best_year = view.extract_date.year - a
    mean_age = float(ages.mean()) if len(ages) else 0.0
    return AtomShape(
        len(atom.bits), len(atom.members) / len(view), male, best_share, best_year, mean_age
    )


def kind(s: AtomShape, schema: LinkageSchema) -> str:
    """The attacker's guess at what feature an atom stands for, from its shape.

    A birth-year atom holds people of one age; date parts set only the date field's
    bits (no bigrams), so their atoms are small; given names are held mostly by one
    sex; what is left is a family name.
    """
    date_bits = max(
        (
            f.bits_per_feature
            for f in schema.person_filter.fields
            if f.feature is PersonFeature.DATE_OF_BIRTH
        ),
        default=0,
    )
    if s.age_mode_share >= 0.8:
        return "year"
    if date_bits and s.bits <= 1.2 * date_bits and 0.25 < s.male < 0.75:
        return "date"
    if s.male >= 0.9 or s.male <= 0.1:
        return "given"
    return "family"


def _years_labelled(
    atoms: Sequence[Atom], view: AttackView, schema: LinkageSchema
) -> tuple[list[AtomShape], list[str], list[Label | None]]:
    """Each atom's shape and kind, and its labels with the birth-year atoms named by
    their shape's year (both labellers start from these)."""
    shapes = [shape(a, view) for a in atoms]
    kinds = [kind(s, schema) for s in shapes]
    labels: list[Label | None] = [None] * len(atoms)
    for i, k in enumerate(kinds):
        if k == "year":
            labels[i] = ("year", shapes[i].year)
    return shapes, kinds, labels


def label_blind(
    atoms: Sequence[Atom], view: AttackView, public: PublicList, schema: LinkageSchema
) -> list[Label | None]:
    """Label atoms by frequency rank against the public list (given names per sex)."""
    shapes, kinds, labels = _years_labelled(atoms, view, schema)
    pools: list[tuple[str, Callable[[int], bool], Counter[str]]] = [
        ("given", lambda i: kinds[i] == "given" and shapes[i].male >= 0.5, public.given_counts(1)),
        ("given", lambda i: kinds[i] == "given" and shapes[i].male < 0.5, public.given_counts(2)),
        ("family", lambda i: kinds[i] == "family", public.family_counts()),
    ]
    for feature, pick, counts in pools:
        chosen = sorted((i for i in range(len(atoms)) if pick(i)), key=lambda i: -shapes[i].support)
        ranked = [v for v, _ in counts.most_common()]
        taken: set[str] = set()
        for i, value in zip(chosen, ranked, strict=False):
            if value not in taken:
                labels[i] = (feature, value)
                taken.add(value)
    return labels


def label_side_knowledge(
    atoms: Sequence[Atom],
    view: AttackView,
    truth: Truth,
    known_share: float,
    schema: LinkageSchema,
    seed: int = 0,
) -> list[Label | None]:
    """Each atom takes the value its known members share (the attacker knows some people).

    ``known_share`` of the persons (with every record of theirs) are known to the
    attacker, drawn with ``seed``. An atom's feature is the one its known members
    agree on most (names before date parts when the shape says name); it needs at
    least one known member and three in four of them agreeing.
    """
    rng = np.random.default_rng(seed)
    persons = sorted(set(truth.person))
    k = round(known_share * len(persons))
    known = set(np.asarray(persons, dtype=object)[rng.permutation(len(persons))[:k]].tolist())
    known_row = np.array([p in known for p in truth.person], dtype=bool)
    labels: list[Label | None] = []
    for atom in atoms:
        rows = [r for r in atom.members.tolist() if known_row[r]]
        if not rows:
            labels.append(None)
            continue
        guess = kind(shape(atom, view), schema)
        order = {
            "given": ("given", "family", "day", "month", "daymonth", "year"),
            "family": ("family", "given", "day", "month", "daymonth", "year"),
            "year": ("year", "month", "day", "daymonth", "given", "family"),
            "date": ("day", "daymonth", "month", "year", "given", "family"),
        }[guess]
        best: tuple[float, int, Label] | None = None
        for rank, feature in enumerate(order):
            counts = _feature_counts(feature, rows, truth)
            if not counts:
                continue
            value, n = counts.most_common(1)[0]
            agree = n / len(rows)
            if agree >= 0.75 and (best is None or agree > best[0]):
                best = (agree, rank, (feature, value))
        labels.append(best[2] if best else None)
    return labels


# -------------------------------------------------------------------- graph matching


def _simulated_atoms(schema: LinkageSchema, names: Sequence[str], feature: str) -> list[set[int]]:
    """The bit sets the schema gives each name under a key of the attacker's own."""
    from agency_client._encoder import Encoder, NormalisedIdentity

    filt = schema.person_filter.model_copy(update={"hardening": Hardening.NONE, "salt": "none"})
    plain = schema.model_copy(update={"person_filter": filt})
    enc = Encoder(plain, os.urandom(32), compiled=False)
    out: list[set[int]] = []
    for name in names:
        if feature == "given":
            ident = NormalisedIdentity(given=name, given_canonical=(name,))
        else:
            ident = NormalisedIdentity(family=name, family_parts=(name,))
        mask = int.from_bytes(enc.encode(ident).clk, "little")
        out.append({i for i in range(mask.bit_length()) if mask >> i & 1})
    return out


def _graph_features(sets: Sequence[set[int]]) -> npt.NDArray[np.float64]:
    """Per node: its five highest Jaccard similarities and its degree at 0.3 and 0.5."""
    m = len(sets)
    sims = np.zeros((m, m))
    for i in range(m):
        for j in range(i + 1, m):
            u = len(sets[i] | sets[j])
            sims[i, j] = sims[j, i] = len(sets[i] & sets[j]) / u if u else 0.0
    top = -np.sort(-sims, axis=1)[:, :5] if m > 1 else np.zeros((m, 5))
    if top.shape[1] < 5:
        top = np.pad(top, ((0, 0), (0, 5 - top.shape[1])))
    deg = np.stack([(sims >= 0.3).sum(1), (sims >= 0.5).sum(1)], axis=1) / max(m, 1)
    return np.concatenate([top, deg], axis=1)


def graph_match(
    atoms: Sequence[Atom], view: AttackView, public: PublicList, schema: LinkageSchema
) -> list[Label | None]:
    """Match name atoms to public names by node features of two similarity graphs."""
    shapes, kinds, labels = _years_labelled(atoms, view, schema)
    for feature in ("given", "family"):
        chosen = [i for i, k in enumerate(kinds) if k == feature]
        if not chosen:
            continue
        counts = public.given_counts() if feature == "given" else public.family_counts()
        # as many public names as atoms, and a margin for names the data lacks
        names = [v for v, _ in counts.most_common(max(2 * len(chosen), 20))]
        total = sum(counts.values())
        male: dict[str, list[int]] = defaultdict(list)
        age: dict[str, list[int]] = defaultdict(list)
        for p in public.persons:
            for v in (p.given,) if feature == "given" else p.family:
                male[v].append(1 if p.sex == 1 else 0)
                age[v].append(p.age)
        plain_sets = _simulated_atoms(schema, names, feature)
        plain = np.column_stack(
            [
                [len(s) for s in plain_sets],
                [math.log(counts[v] / total) for v in names],
                [float(np.mean(male[v])) for v in names],
                [float(np.mean(age[v])) for v in names],
            ]
        )
        obs = np.column_stack(
            [
                [shapes[i].bits for i in chosen],
                [math.log(shapes[i].support) for i in chosen],
                [shapes[i].male for i in chosen],
                [shapes[i].mean_age for i in chosen],
            ]
        )
        obs_sets = [set(atoms[i].bits.tolist()) for i in chosen]
        plain = np.concatenate([plain, _graph_features(plain_sets)], axis=1)
        obs = np.concatenate([obs, _graph_features(obs_sets)], axis=1)
        # scale by the public side's spread; bits and frequency weigh most
        scale = plain.std(axis=0) + 1e-9
        weight = np.array([3.0, 2.0, 1.0, 1.0] + [0.5] * (plain.shape[1] - 4))
        d = (((obs[:, None, :] - plain[None, :, :]) / scale) ** 2 * weight).sum(axis=2)
        for a, b in _greedy_assignment(d):
            labels[chosen[a]] = (feature, names[b])
    return labels


def _greedy_assignment(cost: npt.NDArray[np.float64]) -> list[tuple[int, int]]:
    """Pairs (row, column), cheapest first, each row and column used once."""
    order = np.argsort(cost, axis=None)
    used_r: set[int] = set()
    used_c: set[int] = set()
    out: list[tuple[int, int]] = []
    rows, cols = cost.shape
    for flat in order.tolist():
        r, c = divmod(flat, cols)
        if r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        out.append((r, c))
        if len(used_r) == rows:
            break
    return out


# ---------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Reidentified:
    """Shares of all records whose values an attack got right."""

    given: float
    family: float
    birth_date: float
    year: float
    identity: float  # given, family and birth year right, unique with the district


def score(
    atoms: Sequence[Atom], labels: Sequence[Label | None], view: AttackView, truth: Truth
) -> Reidentified:
    """What each record's labelled atoms tell the attacker, checked against the truth.

    A record takes, per feature, the label of its largest labelled atom. Its birth
    year is that label, else the clear age (born in the year of the extract less
    the age, one earlier when a labelled birth month falls after the extract date).
    """
    n = len(view)
    guess: dict[str, list[object]] = {f: [None] * n for f in FEATURES}
    size: dict[str, list[int]] = {f: [0] * n for f in FEATURES}
    for atom, label in zip(atoms, labels, strict=True):
        if label is None:
            continue
        feature, value = label
        for r in atom.members.tolist():
            if len(atom.bits) > size[feature][r]:
                size[feature][r] = len(atom.bits)
                guess[feature][r] = value
    ed = view.extract_date
    given_ok = np.zeros(n, dtype=bool)
    family_ok = np.zeros(n, dtype=bool)
    year_ok = np.zeros(n, dtype=bool)
    date_ok = np.zeros(n, dtype=bool)
    keys: list[tuple[object, ...] | None] = [None] * n
    for r in range(n):
        g, fam = guess["given"][r], guess["family"][r]
        month, day = guess["month"][r], guess["day"][r]
        dm = guess["daymonth"][r]
        if isinstance(dm, str) and dm and (month is None or day is None):
            a, b = int(dm[:2]), int(dm[2:])
            if b > 12 or a == b:  # only one reading is a date
                day, month = (b, a) if b > 12 else (a, a)
        year = guess["year"][r]
        if year is None and view.age[r] >= 0:
            year = ed.year - int(view.age[r])
            if isinstance(month, int) and (month, day or 1) > (ed.month, ed.day):
                year -= 1
        given_ok[r] = g is not None and g == truth.given[r]
        family_ok[r] = fam is not None and fam in truth.family[r]
        year_ok[r] = year is not None and year == int(truth.year[r])
        date_ok[r] = bool(year_ok[r] and month == int(truth.month[r]) and day == int(truth.day[r]))
        if given_ok[r] and family_ok[r] and year_ok[r]:
            keys[r] = (g, fam, year, str(view.district[r]))
    # who a right guess points to: every true person holding that name, year and district
    holders: dict[tuple[object, ...], set[str]] = defaultdict(set)
    for r in range(n):
        for part in truth.family[r]:
            key = (truth.given[r], part, int(truth.year[r]), str(view.district[r]))
            holders[key].add(truth.person[r])
    identity = np.array([k is not None and len(holders[k]) == 1 for k in keys], dtype=bool)
    return Reidentified(
        float(given_ok.mean()),
        float(family_ok.mean()),
        float(date_ok.mean()),
        float(year_ok.mean()),
        float(identity.mean()),
    )


# ------------------------------------------------------------------ frequency alignment


@dataclass(frozen=True)
class Alignment:
    """Rank-for-rank alignment of one token column with the public list."""

    column: str
    top: int
    correct: int  # of the top tokens, how many were aligned to their true plaintext
    records: float  # share of all records holding a correctly aligned token
    head_ratio: float  # count of the most common token over the median count


def frequency_alignment(
    view: AttackView,
    truth: Truth,
    public: PublicList,
    composites: dict[str, Callable[[str, str, int, int, int], str | None]],
    top: int = 200,
) -> list[Alignment]:
    """Align each blocking-key column's most frequent tokens with the public list's."""
    out: list[Alignment] = []
    n = len(view)
    for name, make in composites.items():
        column = view.blocking.get(name)
        if column is None:
            continue
        tokens = Counter(t for t in column.tolist() if t)
        if not tokens:
            continue
        ref = view.extract_date.year
        plain: Counter[str] = Counter()
        for p in public.persons:
            # the public list has no birth dates: the attacker spreads each person over
            # the dates of the year its age points to, which is all it can do
            v = make(p.given, p.family[0] if p.family else "", ref - p.age, 0, 0)
            if v is not None:
                plain[v] += 1
        ranked_plain = [v for v, _ in plain.most_common(top)]
        ranked_tokens = [t for t, _ in tokens.most_common(top)]
        rows_of: dict[int, list[int]] = defaultdict(list)
        wanted = set(ranked_tokens)
        for r, t in enumerate(column.tolist()):
            if t in wanted:
                rows_of[t].append(r)
        correct, covered = 0, 0
        for t, v in zip(ranked_tokens, ranked_plain, strict=False):
            truths = Counter(
                make(
                    truth.given[r],
                    truth.family[r][0] if truth.family[r] else "",
                    int(truth.year[r]),
                    int(truth.month[r]),
                    int(truth.day[r]),
                )
                for r in rows_of[t]
            )
            if truths and truths.most_common(1)[0][0] == v:
                correct += 1
                covered += len(rows_of[t])
        counts = sorted(tokens.values())
        median = counts[len(counts) // 2]
        out.append(Alignment(name, len(ranked_tokens), correct, covered / n, counts[-1] / median))
    return out


def blocking_composites() -> dict[str, Callable[[str, str, int, int, int], str | None]]:
    """Plaintext of the blocking keys the attacker can rebuild from a name list.

    Only keys without a full date can be rebuilt from names and a birth year; the
    others (``family_dob``, ``given_dob``) need the day and month, which a name
    list does not give, so the attacker can only align those on their flat head.
    """
    from agency_client._normalise import soundex

    def names_year(given: str, family: str, year: int, month: int, day: int) -> str | None:
        if not given or not family or not year:
            return None
        return f"{soundex(given)}|{soundex(family)}|{year}"

    return {"names_year": names_year}


def view_of(population: Population, extract_date: dt.date) -> AttackView:
    """The attacker's view of an encoded population (``evaluation.load_population``)."""
    b = population.batch
    return AttackView(
        bits=to_bits(b.clk),
        age=b.age.astype(np.int16),
        sex=b.sex.astype(np.int8),
        district=b.district,
        extract_date=extract_date,
        blocking=dict(b.blocking),
    )


def truth_of(population: Population) -> Truth:
    """Each row's true identity, from the generator's ``truth/persons.csv``."""
    from agency_client._normalise import canonical_forename, family_name_parts, given_names

    path = population.workdir / "population" / "truth" / "persons.csv"
    people: dict[str, tuple[str, tuple[str, ...], dt.date | None]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            given = given_names(row["given_name"])
            parts = family_name_parts(row["family_name"]) + family_name_parts(
                row["former_family_name"]
            )
            dob = dt.date.fromisoformat(row["date_of_birth"]) if row["date_of_birth"] else None
            people[row["person_id"]] = (
                canonical_forename(given[0]) if given else "",
                tuple(dict.fromkeys(parts)),
                dob,
            )
    rows = [people[p] for p in population.truth_person]
    return Truth(
        person=list(population.truth_person),
        given=[g for g, _, _ in rows],
        family=[f for _, f, _ in rows],
        year=np.array([d.year if d else 0 for _, _, d in rows], dtype=np.int64),
        month=np.array([d.month if d else 0 for _, _, d in rows], dtype=np.int64),
        day=np.array([d.day if d else 0 for _, _, d in rows], dtype=np.int64),
    )


def public_from_council(households: int, seed: int) -> PublicList:
    """A census-like name list drawn by the independent council generator.

    ``evaluation/_council.py`` was written without reading the agency client's
    generator and has its own name lists and weights, so its frequencies are an
    outside source for an attack on the agency client's population, not a copy.
    """
    from agency_client._normalise import canonical_forename, family_name_parts, given_names

    from ._council import CouncilConfig, generate_council

    pop = generate_council(CouncilConfig(households=households, seed=seed))
    at = pop.config.extract_date
    persons: list[PublicPerson] = []
    for hh in pop.households:
        for p in hh.members:
            given = given_names(p.given)
            parts = family_name_parts(p.family) + family_name_parts(p.birth_family)
            age = at.year - p.dob.year - ((at.month, at.day) < (p.dob.month, p.dob.day))
            persons.append(
                PublicPerson(
                    canonical_forename(given[0]) if given else "",
                    tuple(dict.fromkeys(parts)),
                    1 if p.sex == "M" else 2,
                    age,
                )
            )
    source = (
        f"council generator (evaluation/_council.py), {households:,} households, "
        f"seed {seed}: {len(persons):,} persons"
    )
    return PublicList(source, persons)


def to_bits(packed: npt.NDArray[np.uint64]) -> U8:
    """Filters packed as the linkage service keeps them -> (n, L) 0/1 bits."""
    raw = np.ascontiguousarray(packed).view(np.uint8)
    return np.unpackbits(raw, axis=1, bitorder="little")


__all__ = [
    "Alignment",
    "Atom",
    "AtomShape",
    "AtomTruth",
    "AttackView",
    "MiningConfig",
    "PublicList",
    "PublicPerson",
    "Reidentified",
    "Truth",
    "atom_truth",
    "blocking_composites",
    "frequency_alignment",
    "graph_match",
    "kind",
    "label_blind",
    "label_side_knowledge",
    "mine",
    "mine_atoms",
    "score",
    "shape",
    "singled_out",
    "public_from_council",
    "to_bits",
    "truth_of",
    "unbalance",
    "view_of",
]
