"""A second synthetic council population, written apart from the agency client's generator.

The matcher was tuned on ``agency_client._synthetic``; a score measured on the
data it was tuned on says little. This module draws an independent population
of a fictional English county ("Wessex Vale": eight towns, postcode area WX,
every postcode district shared by hundreds of households) with its own name
lists, household model and error habits, and writes seven agency extracts the
way those systems export them. It was written without reading
``agency_client/_synthetic.py`` or ``_synthetic_names.py`` and shares no code
or list with them.

Households: couples and lone parents with children 0-18 (step-children with
another surname, children with a hyphenated surname), couples without
children, people living alone, shared houses of unrelated adults, three
generations; some expecting a baby; twins; about 8% moved within the county
during the year (agencies that were not told keep the old address). Each
household has a latent level of need (0-3) that drives its indicators.

Agencies and their habits (default, ``plain=False``):

- ``school`` (education): pupils 4-18; "Surname, Forename" in ONE column; DOB
  ``2010-04-03``; UPN; attendance %, fixed-term exclusions, permanent
  exclusion, post-16 learner; a parent contact (name and phone) on each row.
- ``childrens_services`` (social care): "FORENAME SURNAME" upper case in one
  column; DOB ``dd/mm/yy``; address "street, town" in one cell; NHS number
  spaced ``943 476 5919``; CIN and CP flags; the council's person id, shared
  with early help.
- ``early_help``: separate name columns but given and family names swapped in
  about 3% of rows; nicknames (Bill, Liz, Mo, Kasia) in about a quarter of the
  rows of people who have one; sex as 1/2/9.
- ``police`` (police incidents): street line only, no town, the kind of
  street often shortened ("Mill Rd"); postcode often blank; DOB
  ``03-Apr-2010`` (older rows ``03/04/2010``); OCR-like substitutions (0/O,
  1/l, rn/m) in about 2% of names; ASB, DV, call-outs, offences.
- ``dwp`` (benefits): NI number; NO sex column; title; address in three
  upper-case lines with the town in the last non-blank one, street kinds
  often shortened; postcode without its space; out-of-work benefits.
- ``housing``: one row per adult of a tenancy (no children), "Mrs Sarah Khan"
  in one column and sex only as the title, DOB ``dd.mm.yyyy``, address
  "street, town" in one cell,
  postcode blank in about 8% of rows; rent arrears, homelessness applications.
- ``health``: NHS number inside an "Identifiers" cell (``NHS:9434765919;EMIS:...``),
  middle and previous surnames, day and month of birth transposed in about 2%
  of rows; mental health, alcohol and drug months, long-term conditions,
  pregnancy.

Everywhere: typos, missing fields, married women under their maiden name in
some systems, one person registered twice under two ids, the same person twice
under ONE id (about 0.5% of people), about 0.5% of rows duplicated outright.

``plain=True`` writes the same records (the same people, values and errors)
in simple separate columns with one date format per file, so that the
mapping files need none of the newer transforms (``[[derive]]``,
``date_formats``, ``[identity.identifiers]``). The habit-ful mapping files use
those transforms and need a mapping parser that has them.

The ground truth is kept apart from the extracts: :class:`CouncilPopulation`
holds it in memory and :func:`write_council` writes it under ``truth/``.
Everything is drawn from one ``random.Random(seed)``: the same seed gives the
same bytes. Never imported by any service.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from protocols import IndicatorType

__all__ = [
    "AGENCY_IDS",
    "AgencyExtract",
    "CouncilConfig",
    "CouncilPopulation",
    "TrueHousehold",
    "TruePerson",
    "generate_council",
    "write_council",
]

Sex = Literal["M", "F"]

# --- names (our own lists; weights are rough relative frequencies) ---------------------

_W = tuple[tuple[str, int], ...]


def _weighted(text: str) -> _W:
    """``"Oliver 30, George 25"`` -> ((name, weight), ...)."""
    out: list[tuple[str, int]] = []
    for item in text.split(","):
        name, _, weight = item.strip().rpartition(" ")
        out.append((name, int(weight)))
    return tuple(out)


_FORENAMES: dict[str, dict[Sex, _W]] = {
    "british": {
        "M": _weighted(
            "Oliver 30, George 25, Harry 25, Jack 25, Noah 22, Leo 20, Charlie 20, Jacob 18, "
            "Thomas 18, James 20, William 18, Alfie 15, Joshua 14, Freddie 14, Archie 14, "
            "Daniel 14, Samuel 12, Joseph 12, Ethan 12, Lucas 10, Mason 10, Dylan 8, Callum 8, "
            "Connor 8, Ryan 10, Lewis 8, Kyle 6, Jordan 6, David 20, Paul 16, Mark 16, "
            "Andrew 15, Michael 18, Stephen 12, Richard 12, Robert 12, Christopher 14, "
            "Matthew 14, Anthony 10, Peter 10, Gary 8, Darren 8, Wayne 6, Lee 8, Craig 6, "
            "Dean 6, Stuart 6, Kevin 8, Jonathan 8, Benjamin 10, Alexander 10, Edward 8, "
            "Nathan 8, Adam 10, Scott 6, Reece 4, Tyler 5, Kai 4"
        ),
        "F": _weighted(
            "Olivia 28, Amelia 25, Isla 20, Ava 20, Mia 18, Ivy 12, Lily 18, Isabella 14, "
            "Sophia 14, Grace 14, Freya 14, Poppy 12, Emily 18, Ella 14, Evie 12, "
            "Charlotte 16, Jessica 14, Chloe 14, Ruby 12, Sophie 14, Hannah 14, Lauren 12, "
            "Megan 12, Katie 10, Amy 12, Sarah 18, Emma 16, Rebecca 14, Laura 14, Nicola 10, "
            "Claire 12, Michelle 10, Lisa 10, Kelly 8, Joanne 8, Karen 8, Donna 6, "
            "Samantha 10, Victoria 10, Elizabeth 12, Catherine 8, Rachel 10, Natalie 8, "
            "Gemma 8, Stacey 6, Kirsty 6, Leanne 6, Jade 8, Danielle 8, Charlene 4, "
            "Margaret 4, Susan 5, Deborah 4, Abigail 6, Jennifer 6, Tia 4"
        ),
    },
    "south_asian": {
        "M": _weighted(
            "Mohammed 20, Muhammad 14, Ali 8, Ahmed 8, Hassan 6, Imran 6, Bilal 5, Zain 6, "
            "Ayaan 5, Ibrahim 6, Yusuf 6, Omar 6, Arjun 5, Rohan 4, Sanjay 3, Rajesh 3, "
            "Amit 3, Gurpreet 3, Jaspreet 2, Kamran 3, Tariq 3, Asif 3, Faisal 3, Adnan 3, "
            "Hamza 5, Zakariya 3, Ishaan 3"
        ),
        "F": _weighted(
            "Fatima 10, Aisha 8, Maryam 8, Zainab 7, Amina 6, Khadija 5, Noor 5, Ayesha 6, "
            "Sana 4, Nadia 4, Shazia 3, Farah 4, Priya 5, Anjali 3, Pooja 3, Sunita 2, "
            "Parveen 3, Rubina 2, Nasreen 2, Simran 4, Manpreet 3, Harleen 2, Hafsa 3, "
            "Iqra 3, Zara 5"
        ),
    },
    "polish": {
        "M": _weighted(
            "Jakub 8, Kacper 6, Szymon 5, Filip 5, Mateusz 6, Bartosz 5, Piotr 7, Tomasz 7, "
            "Krzysztof 6, Paweł 6, Marcin 6, Michał 6, Łukasz 5, Wojciech 4, Adam 4, Jan 4, "
            "Dawid 4, Kamil 4"
        ),
        "F": _weighted(
            "Zuzanna 6, Julia 6, Maja 5, Zofia 5, Hanna 4, Lena 5, Alicja 4, Natalia 5, "
            "Oliwia 4, Agnieszka 6, Katarzyna 7, Magdalena 6, Anna 7, Joanna 5, Monika 5, "
            "Ewa 4, Małgorzata 5, Aleksandra 5, Karolina 4, Justyna 4"
        ),
    },
    "irish": {
        "M": _weighted(
            "Sean 8, Ciaran 6, Declan 5, Padraig 3, Conor 7, Eoin 4, Niall 5, Aidan 5, "
            "Cian 4, Darragh 3, Liam 6, Patrick 7, Michael 6, Kieran 5, Ronan 4"
        ),
        "F": _weighted(
            "Siobhan 6, Niamh 7, Aoife 6, Ciara 6, Roisin 4, Orla 5, Grainne 3, Sinead 5, "
            "Aisling 4, Caoimhe 3, Mairead 3, Bridget 3, Maeve 4, Saoirse 4"
        ),
    },
    "west_african": {
        "M": _weighted(
            "Oluwaseun 4, Chukwuemeka 3, Adebayo 4, Kwame 5, Kofi 5, Emeka 4, Tunde 3, "
            "Babatunde 3, Chidi 3, Obinna 3, Ifeanyi 3, Olumide 3, Segun 3, Femi 4, Yaw 3, "
            "Kwabena 3, Ayodele 3, Samuel 5, Daniel 5, David 5, Emmanuel 5"
        ),
        "F": _weighted(
            "Adaeze 3, Chiamaka 3, Ngozi 4, Folasade 3, Funmilayo 3, Abena 4, Akosua 3, "
            "Ama 3, Yetunde 3, Bukola 3, Temitope 3, Chioma 4, Ifeoma 3, Nkechi 3, "
            "Blessing 5, Precious 4, Grace 4, Esther 4, Deborah 3, Comfort 3"
        ),
    },
}

_SURNAMES: dict[str, _W] = {
    "british": _weighted(
        "Smith 40, Jones 30, Williams 25, Taylor 25, Brown 25, Davies 20, Evans 18, "
        "Wilson 18, Thomas 16, Johnson 16, Roberts 15, Robinson 14, Thompson 14, Wright 14, "
        "Walker 14, White 13, Edwards 12, Hughes 12, Green 12, Hall 12, Lewis 11, Harris 11, "
        "Clarke 11, Jackson 10, Wood 10, Turner 10, Martin 10, Cooper 10, Hill 10, Ward 9, "
        "Morris 9, Moore 9, Clark 9, Lee 9, King 9, Baker 9, Harrison 8, Morgan 8, Allen 8, "
        "James 8, Scott 8, Phillips 8, Watson 8, Davis 8, Parker 7, Price 7, Bennett 7, "
        "Young 7, Griffiths 7, Mitchell 7, Cook 7, Carter 7, Richardson 7, Bailey 6, "
        "Collins 6, Bell 6, Shaw 6, Miller 6, Cox 6, Richards 5, Marshall 5, Simpson 5, "
        "Ellis 5, Adams 5, Wilkinson 5, Foster 5, Chapman 5, Mason 5, Webb 5, Rogers 5, "
        "Pearson 4, Fletcher 4, Barnes 4, Hunt 4, Holmes 4, Mills 4, Owen 4, Knight 4, "
        "Lloyd 4, Butler 4, Russell 4, Barker 4, Fisher 4, Stevens 4, Jenkins 4, Dixon 4, "
        "Fowler 3, Hardcastle 2, Ashworth 2, Pickering 2, Whitfield 2, Greenwood 2, "
        "Sutcliffe 2, Entwistle 1, Braithwaite 1"
    ),
    "south_asian": _weighted(
        "Khan 20, Patel 20, Hussain 15, Ahmed 15, Ali 14, Shah 10, Mahmood 8, Iqbal 8, "
        "Akhtar 8, Rahman 7, Singh 10, Sharma 6, Chaudhry 6, Malik 6, Aziz 5, Rashid 5, "
        "Anwar 5, Hossain 4, Miah 5, Uddin 4, Gill 4, Sandhu 4, Sidhu 3, Mistry 3, Parmar 3"
    ),
    "polish": _weighted(
        "Nowak 10, Wiśniewski 6, Wójcik 6, Kowalczyk 6, Kamiński 5, Lewandowski 6, "
        "Zieliński 5, Szymański 5, Woźniak 5, Dąbrowski 4, Kozłowski 4, Jankowski 4, "
        "Mazur 4, Kwiatkowski 4, Krawczyk 4, Piotrowski 4, Grabowski 3, Pawłowski 3, "
        "Michalski 3, Nowicki 3, Kowalski 8"
    ),
    "irish": _weighted(
        "Murphy 10, Kelly 9, O'Brien 8, O'Sullivan 7, Walsh 7, Byrne 6, Ryan 6, "
        "O'Connor 7, O'Neill 6, Doyle 5, McCarthy 6, Gallagher 5, Doherty 5, Kennedy 5, "
        "Lynch 4, Murray 4, Quinn 4, McLaughlin 4, Carroll 3, Connolly 4, Daly 3, "
        "Brennan 3, Fitzgerald 4, Maguire 3, McDonagh 3"
    ),
    "west_african": _weighted(
        "Okafor 5, Adeyemi 5, Okonkwo 4, Mensah 6, Boateng 5, Asante 4, Owusu 5, "
        "Adebayo 4, Oyelaran 2, Nwosu 3, Eze 4, Obi 3, Balogun 3, Ogunleye 3, Adeleke 3, "
        "Oduya 2, Appiah 4, Osei 4, Danso 3, Akinola 3, Olawale 3, Chukwu 3, Ibekwe 2"
    ),
}

_ORIGINS: _W = (
    ("british", 66),
    ("south_asian", 12),
    ("polish", 7),
    ("irish", 7),
    ("west_african", 8),
)

# formal name -> the short forms people go by (our own list)
_NICKNAMES: dict[str, tuple[str, ...]] = {
    "William": ("Bill", "Will", "Billy"),
    "Elizabeth": ("Liz", "Beth", "Lizzie"),
    "Mohammed": ("Mo",),
    "Muhammad": ("Mo",),
    "Robert": ("Bob", "Rob"),
    "Richard": ("Rich", "Dick"),
    "Margaret": ("Maggie", "Peggy"),
    "Catherine": ("Kate", "Cathy"),
    "Jennifer": ("Jenny",),
    "Michael": ("Mike", "Mick"),
    "Christopher": ("Chris",),
    "Anthony": ("Tony",),
    "Thomas": ("Tom", "Tommy"),
    "James": ("Jim", "Jamie"),
    "Daniel": ("Dan", "Danny"),
    "Samuel": ("Sam",),
    "Joseph": ("Joe",),
    "Alexander": ("Alex",),
    "Benjamin": ("Ben",),
    "Matthew": ("Matt",),
    "Stephen": ("Steve",),
    "Andrew": ("Andy",),
    "Edward": ("Ed", "Ted"),
    "Jonathan": ("Jon",),
    "Nicola": ("Nicky",),
    "Rebecca": ("Becky",),
    "Samantha": ("Sam",),
    "Victoria": ("Vicky",),
    "Jessica": ("Jess",),
    "Deborah": ("Debbie",),
    "Susan": ("Sue",),
    "Abigail": ("Abbie",),
    "Oliver": ("Ollie",),
    "Patrick": ("Paddy",),
    "Frederick": ("Fred",),
    "Katarzyna": ("Kasia",),
    "Małgorzata": ("Gosia",),
    "Agnieszka": ("Aga",),
    "Aleksandra": ("Ola",),
    "Tomasz": ("Tomek",),
    "Krzysztof": ("Krzys",),
    "Oluwaseun": ("Seun",),
    "Babatunde": ("Tunde",),
    "Chukwuemeka": ("Emeka",),
}

_TOWNS: tuple[tuple[str, tuple[str, ...], int], ...] = (
    # town, its postcode districts, relative size
    ("Wexham", ("WX1", "WX2", "WX3", "WX4"), 30),
    ("Northbridge", ("WX5", "WX6"), 16),
    ("Hollowford", ("WX7",), 10),
    ("Castlemere", ("WX8", "WX9"), 14),
    ("Sedgecombe", ("WX10",), 8),
    ("Little Aldwick", ("WX11",), 5),
    ("Fenbury", ("WX12",), 9),
    ("Brackendale", ("WX13",), 8),
)

_STREET_WORDS = (
    "Mill Church Station Victoria Albert Park Queens Kings Manor Orchard Meadow Chapel "
    "Grange Willow Elm Oak Beech Ash Cedar Holly Rowan Hawthorn Cross Bridge Castle Abbey "
    "Priory Market Spring Well Hillside Brook Fern Heather Lark Kestrel Falcon Sandy Stone "
    "Vicarage Rectory Mount Tudor Windsor Clarence Cromwell Nelson Wellington Gladstone "
    "Shakespeare Milton Wordsworth Byron Tennyson Foxglove Bluebell Primrose Thornfield "
    "Netherby Ravensworth Cobden Peel Lister Ruskin"
).split()
_STREET_KINDS = (
    "Road Street Lane Avenue Close Drive Way Crescent Gardens Grove Terrace Court Place View Rise"
).split()
# how clerks shorten the kind of street (the agency client's normaliser expands them)
_STREET_SHORT = {
    "Road": "Rd",
    "Street": "St",
    "Lane": "Ln",
    "Avenue": "Ave",
    "Close": "Cl",
    "Drive": "Dr",
    "Crescent": "Cres",
    "Gardens": "Gdns",
    "Terrace": "Terr",
    "Court": "Ct",
    "Place": "Pl",
}
_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # the letters Royal Mail uses in inward codes
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UPN_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"
_NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
_NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"
_NINO_NEVER = ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ")
_KEYBOARD = "qwertyuiopasdfghjklzxcvbnm"

AGENCY_IDS = ("school", "childrens_services", "early_help", "police", "dwp", "housing", "health")
_EXTRACT_TYPES = {
    "school": "education",
    "childrens_services": "social_care",
    "early_help": "early_help",
    "police": "police_incidents",
    "dwp": "benefits",
    "housing": "housing",
    "health": "health",
}


# --- the true world --------------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    """A dwelling in the county."""

    number: str
    street: str
    town: str
    postcode: str

    @property
    def line1(self) -> str:
        return f"{self.number} {self.street}"


@dataclass
class TruePerson:
    """A person as they really are at the extract date."""

    person_id: str
    household_id: str
    given: str
    middle: str
    family: str  # current family name
    birth_family: str  # family name at birth ("" when it never changed)
    sex: Sex
    dob: dt.date
    origin: str
    nhs: str
    nino: str  # adults and 16-17s
    upn: str  # pupils
    council_id: str  # the council's person id (social care and early help share it)
    expectant: bool = False
    in_education: bool = False  # 16-18 in school or college


@dataclass
class TrueHousehold:
    """The people living at one address at the extract date."""

    household_id: str
    kind: str
    address: Address
    previous: Address | None  # the address before a move during the year
    need: int  # latent level of need, 0-3
    members: list[TruePerson] = field(default_factory=list)

    def is_family(self, extract_date: dt.date) -> bool:
        """A dependent child (0-15, or 16-18 in education) or an expectant parent."""
        for p in self.members:
            age = _age(p.dob, extract_date)
            if p.expectant or age <= 15 or (age <= 18 and p.in_education):
                return True
        return False


@dataclass(frozen=True)
class AgencyExtract:
    """One agency's CSV (header and rows) and its mapping file."""

    agency_id: str
    extract_type: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    mapping_toml: str

    def csv_text(self) -> str:
        """The CSV file as the agency would export it."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow(self.header)
        writer.writerows(self.rows)
        return buf.getvalue()


@dataclass(frozen=True)
class CouncilConfig:
    """What to generate. ``plain`` writes simple separate columns (see the module docstring)."""

    households: int = 3000
    seed: int = 20261203
    extract_date: dt.date = dt.date(2026, 10, 31)
    plain: bool = False


@dataclass
class CouncilPopulation:
    """A generated council: the true households and people, the extracts, the truth per row."""

    config: CouncilConfig
    households: list[TrueHousehold]
    extracts: dict[str, AgencyExtract]
    # (agency id, system id) -> (true person id, true household id); several rows may
    # share one system id, always of one person
    truth: dict[tuple[str, str], tuple[str, str]]

    def persons(self) -> list[TruePerson]:
        """Every true person, household by household."""
        return [p for h in self.households for p in h.members]

    def families(self) -> dict[str, bool]:
        """True household id -> whether it is a family at the extract date."""
        return {h.household_id: h.is_family(self.config.extract_date) for h in self.households}


def _age(dob: dt.date, at: dt.date) -> int:
    return at.year - dob.year - ((at.month, at.day) < (dob.month, dob.day))


def _pick(rng: random.Random, weighted: _W) -> str:
    return rng.choices([n for n, _ in weighted], weights=[w for _, w in weighted])[0]


def _feminine(surname: str) -> str:
    """Polish surnames in -ski/-cki/-dzki take -ska/-cka/-dzka for women."""
    if surname.endswith("ki"):
        return surname[:-1] + "a"
    return surname


def _masculine(surname: str) -> str:
    if surname.endswith(("ska", "cka", "dzka")):
        return surname[:-1] + "i"
    return surname


def _gendered(surname: str, sex: Sex) -> str:
    return _feminine(surname) if sex == "F" else _masculine(surname)


class _World:
    """Draws the true households and people."""

    def __init__(self, config: CouncilConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        self.today = config.extract_date
        self.people = 0
        self.used_nhs: set[str] = set()
        self.used_nino: set[str] = set()
        self.streets = self._streets()
        self.taken: set[tuple[str, str]] = set()

    # -- places
    def _streets(self) -> list[tuple[str, str, str, int]]:
        """(street, town, postcode sector, weight) for every street in the county."""
        rng = self.rng
        names = [f"{w} {k}" for w in _STREET_WORDS for k in _STREET_KINDS]
        rng.shuffle(names)
        per_town = max(6, self.config.households // 60)
        out: list[tuple[str, str, str, int]] = []
        i = 0
        for town, districts, size in _TOWNS:
            for _ in range(max(3, per_town * size // 12)):
                district = rng.choice(districts)
                sector = f"{district} {rng.randint(1, 9)}"
                out.append((names[i % len(names)], town, sector, rng.randint(1, 4)))
                i += 1
        return out

    def address(self) -> Address:
        rng = self.rng
        while True:
            street, town, sector, _ = rng.choices(
                self.streets, weights=[s[3] for s in self.streets]
            )[0]
            n = rng.randint(1, 160)
            number = str(n) + (rng.choice("AB") if rng.random() < 0.05 else "")
            if (street + town, number) in self.taken:
                continue
            self.taken.add((street + town, number))
            # neighbouring houses share a unit postcode (about fifteen to a unit)
            unit_rng = random.Random(f"{street}|{town}|{n // 15}")
            unit = "".join(unit_rng.choice(_INWARD_LETTERS) for _ in range(2))
            return Address(number, street, town, f"{sector}{unit}")

    # -- identifiers
    def nhs_number(self) -> str:
        while True:
            digits = [self.rng.randint(0, 9) for _ in range(9)]
            digits[0] = self.rng.randint(4, 9)
            check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
            if check == 11:
                check = 0
            if check == 10:
                continue
            value = "".join(map(str, digits)) + str(check)
            if value not in self.used_nhs:
                self.used_nhs.add(value)
                return value

    def ni_number(self) -> str:
        while True:
            prefix = self.rng.choice(_NINO_FIRST) + self.rng.choice(_NINO_SECOND)
            if prefix in _NINO_NEVER:
                continue
            value = prefix + f"{self.rng.randint(0, 999_999):06d}" + self.rng.choice("ABCD")
            if value[:8] not in self.used_nino:
                self.used_nino.add(value[:8])
                return value

    def upn(self) -> str:
        body = f"{self.rng.choice((872, 873, 874)):03d}{self.rng.randint(0, 9999):04d}"
        body += f"{self.rng.randint(10, 26):02d}{self.rng.randint(0, 999):03d}"
        total = sum((i + 2) * int(c) for i, c in enumerate(body))
        return _UPN_LETTERS[total % 23] + body

    # -- people
    def dob(self, low: int, high: int) -> dt.date:
        """A date of birth for someone aged ``low`` to ``high`` at the extract date."""
        start = self.today.replace(year=self.today.year - high - 1) + dt.timedelta(days=1)
        end = self.today.replace(year=self.today.year - low)
        return start + dt.timedelta(days=self.rng.randint(0, (end - start).days))

    def person(
        self,
        hid: str,
        origin: str,
        sex: Sex,
        family: str,
        dob: dt.date,
        birth_family: str = "",
        taken: Sequence[str] = (),
    ) -> TruePerson:
        """A new person; ``taken`` are forenames already used in the household."""
        rng = self.rng
        self.people += 1
        given = _pick(rng, _FORENAMES[origin][sex])
        for _ in range(20):
            if given not in taken:
                break
            given = _pick(rng, _FORENAMES[origin][sex])
        middle = ""
        if rng.random() < 0.45:
            middle_origin = origin if rng.random() < 0.8 else "british"
            middle = _pick(rng, _FORENAMES[middle_origin][sex])
            if middle == given:
                middle = ""
        age = _age(dob, self.today)
        return TruePerson(
            person_id=f"CP{self.people:06d}",
            household_id=hid,
            given=given,
            middle=middle,
            family=family,
            birth_family=birth_family if birth_family != family else "",
            sex=sex,
            dob=dob,
            origin=origin,
            nhs=self.nhs_number(),
            nino=self.ni_number() if age >= 16 else "",
            upn=self.upn() if 4 <= age <= 18 else "",
            council_id=f"LL{rng.randint(1_000_000, 9_999_999)}",
            in_education=16 <= age <= 18 and rng.random() < 0.78,
        )

    def surname(self, origin: str, sex: Sex) -> str:
        return _gendered(_pick(self.rng, _SURNAMES[origin]), sex)

    def household(self, index: int) -> TrueHousehold:
        rng = self.rng
        hid = f"CH{index:05d}"
        kind = _pick(
            rng,
            (
                ("couple_children", 33),
                ("lone_parent", 22),
                ("couple", 15),
                ("single", 16),
                ("shared", 4),
                ("three_generations", 4),
                ("adult_children", 6),
            ),
        )
        family_kinds = ("couple_children", "lone_parent", "three_generations")
        need_weights = (55, 25, 13, 7) if kind in family_kinds else (80, 15, 5, 0)
        need = rng.choices(range(4), weights=need_weights)[0]
        address = self.address()
        previous = self.address() if rng.random() < 0.08 else None
        h = TrueHousehold(hid, kind, address, previous, need)
        origin = _pick(rng, _ORIGINS)
        if kind in ("single", "shared"):
            for _ in range(1 if kind == "single" else rng.randint(2, 4)):
                o = origin if kind == "single" else _pick(rng, _ORIGINS)
                sex: Sex = rng.choice(("M", "F"))
                dob = self.dob(18, 80) if kind == "single" else self.dob(19, 45)
                h.members.append(self.person(hid, o, sex, self.surname(o, sex), dob))
            return h
        # the adults of a couple or a lone parent
        mother_dob = self.dob(19, 52)
        mother_birth = self.surname(origin, "F")
        adults: list[TruePerson] = []
        children_family = ""
        if kind == "lone_parent":
            # mostly mothers; her children often carry their absent father's surname
            sex_lp: Sex = "F" if rng.random() < 0.88 else "M"
            dob = mother_dob if sex_lp == "F" else self.dob(22, 55)
            name = self.surname(origin, sex_lp)
            married_before = sex_lp == "F" and rng.random() < 0.3
            birth = self.surname(origin, "F") if married_before else ""
            adults.append(self.person(hid, origin, sex_lp, name, dob, birth))
            children_family = name if rng.random() < 0.55 else self.surname(origin, "M")
        else:
            partner_origin = origin if rng.random() < 0.85 else _pick(rng, _ORIGINS)
            father_name = self.surname(partner_origin, "M")
            father_dob = mother_dob + dt.timedelta(days=rng.randint(-1500, 3000))
            father_dob = min(father_dob, self.today.replace(year=self.today.year - 19))
            married = rng.random() < 0.65
            mother_name = _gendered(father_name, "F") if married else mother_birth
            adults.append(self.person(hid, origin, "F", mother_name, mother_dob, mother_birth))
            taken = [adults[0].given]
            adults.append(
                self.person(hid, partner_origin, "M", father_name, father_dob, taken=taken)
            )
            if married or rng.random() < 0.6:
                children_family = father_name
            elif rng.random() < 0.5:
                children_family = f"{_masculine(mother_birth)}-{father_name}"
            else:
                children_family = _masculine(mother_birth)
        h.members.extend(adults)
        mother = adults[0]
        if kind in ("couple_children", "lone_parent", "three_generations"):
            n = rng.choices((1, 2, 3, 4, 5), weights=(35, 38, 18, 6, 3))[0]
            mother_age = _age(mother.dob, self.today)
            born: list[dt.date] = []
            for _ in range(n):
                oldest = min(18, mother_age - 17)
                if oldest < 0:
                    break
                # siblings other than twins are born at least ten months apart
                for _ in range(30):
                    dob = self.dob(0, oldest)
                    if all(abs((dob - b).days) >= 300 for b in born):
                        break
                else:
                    break
                born.append(dob)
                twins = rng.random() < 0.025
                for _ in range(2 if twins else 1):
                    sex_c: Sex = rng.choice(("M", "F"))
                    fam = _gendered(children_family, sex_c)
                    if kind == "lone_parent" and rng.random() < 0.12:
                        fam = _gendered(mother.family, sex_c)  # a half-sibling
                    taken = [m.given for m in h.members]
                    h.members.append(self.person(hid, origin, sex_c, fam, dob, taken=taken))
        if kind == "adult_children":
            for _ in range(rng.randint(1, 2)):
                sex_a: Sex = rng.choice(("M", "F"))
                dob = self.dob(19, max(19, min(30, _age(mother.dob, self.today) - 19)))
                fam = _gendered(adults[-1].family if len(adults) > 1 else mother.family, sex_a)
                taken = [m.given for m in h.members]
                h.members.append(self.person(hid, origin, sex_a, fam, dob, taken=taken))
        if kind == "three_generations":
            sex_g: Sex = rng.choice(("M", "F"))
            base = _age(mother.dob, self.today)
            dob = self.dob(min(base + 18, 90), min(base + 35, 95))
            fam = _gendered(mother.birth_family or mother.family, sex_g)
            taken = [m.given for m in h.members]
            h.members.append(self.person(hid, origin, sex_g, fam, dob, taken=taken))
        # an expectant mother
        if 18 <= _age(mother.dob, self.today) <= 43 and rng.random() < 0.05:
            mother.expectant = True
        return h


# --- what agencies record --------------------------------------------------------------


@dataclass
class _Record:
    """One person as one agency holds them, errors included, before formatting."""

    person: TruePerson
    system_id: str
    given: str
    middle: str
    family: str
    former: str
    dob: dt.date | None
    sex: str  # "M", "F" or ""
    address: Address
    postcode: str
    nhs: str = ""
    nino: str = ""
    upn: str = ""
    council_id: str = ""
    values: dict[str, str] = field(default_factory=dict)  # indicator columns
    extra: dict[str, str] = field(default_factory=dict)  # other columns


def _typo(rng: random.Random, text: str) -> str:
    """One keying slip: a letter dropped, doubled, swapped with its neighbour or replaced."""
    if len(text) < 3:
        return text
    i = rng.randint(1, len(text) - 2)
    kind = rng.randint(0, 3)
    if kind == 0:
        return text[:i] + text[i + 1 :]
    if kind == 1:
        return text[:i] + text[i] + text[i:]
    if kind == 2:
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    repl = rng.choice(_KEYBOARD)
    return text[:i] + (repl.upper() if text[i].isupper() else repl) + text[i + 1 :]


def _ocr(rng: random.Random, text: str) -> str:
    """A scanning slip: O/0, l/1, I/1, m/rn, S/5, B/8."""
    swaps = [("rn", "m"), ("m", "rn"), ("O", "0"), ("o", "0"), ("l", "1"), ("I", "1")]
    swaps += [("S", "5"), ("B", "8"), ("e", "c")]
    present = [s for s in swaps if s[0] in text]
    if not present:
        return text
    old, new = rng.choice(present)
    return text.replace(old, new, 1)


def _date_typo(rng: random.Random, dob: dt.date) -> dt.date:
    """A one-digit slip in a date: a neighbouring day, month or year."""
    for _ in range(10):
        kind = rng.randint(0, 2)
        try:
            if kind == 0:
                return dob.replace(day=dob.day + rng.choice((-1, 1, 10, -10)))
            if kind == 1:
                return dob.replace(month=dob.month + rng.choice((-1, 1)))
            return dob.replace(year=dob.year + rng.choice((-1, 1, -10)))
        except ValueError:
            continue
    return dob


class _Agencies:
    """Decides who each agency holds and what it records about them."""

    def __init__(self, config: CouncilConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        self.today = config.extract_date
        self.counter: dict[str, int] = {}

    def date_in_year(self, dob: dt.date) -> dt.date:
        """An event date in the year before the extract date, not before ``dob``."""
        start = max(dob, self.today - dt.timedelta(days=360))
        return start + dt.timedelta(days=self.rng.randint(0, (self.today - start).days))

    def next_id(self, agency: str) -> int:
        self.counter[agency] = self.counter.get(agency, 0) + 1
        return self.counter[agency]

    def record(
        self,
        agency: str,
        p: TruePerson,
        h: TrueHousehold,
        system_id: str,
        *,
        nickname_rate: float = 0.03,
        stale_rate: float = 0.4,
        maiden_rate: float = 0.1,
        missing_dob: float = 0.01,
        missing_postcode: float = 0.03,
        abbreviate_rate: float = 0.05,
    ) -> _Record:
        """The person as ``agency`` holds them, with the agency's usual slips."""
        rng = self.rng
        given = p.given
        short = _NICKNAMES.get(given)
        if short and rng.random() < nickname_rate:
            given = rng.choice(short)
        family = p.family
        former = p.birth_family
        if p.birth_family and rng.random() < maiden_rate:
            family, former = p.birth_family, ""  # the agency never heard of the marriage
        if rng.random() < 0.02:
            given = _typo(rng, given)
        if rng.random() < 0.02:
            family = _typo(rng, family)
        dob: dt.date | None = p.dob
        if rng.random() < 0.012:
            dob = _date_typo(rng, p.dob)
        if rng.random() < missing_dob:
            dob = None
        address = h.address
        if h.previous is not None and rng.random() < stale_rate:
            address = h.previous
        kind = address.street.rsplit(" ", 1)[-1]
        if kind in _STREET_SHORT and rng.random() < abbreviate_rate:
            street = address.street[: -len(kind)] + _STREET_SHORT[kind]
            address = dataclasses.replace(address, street=street)
        postcode = "" if rng.random() < missing_postcode else address.postcode
        if postcode and rng.random() < 0.01:
            # the last two letters swapped (still a valid postcode) or a keying slip
            swapped = postcode[:-2] + postcode[-1] + postcode[-2]
            postcode = swapped if rng.random() < 0.6 else _typo(rng, postcode)
        sex = "" if rng.random() < 0.01 else p.sex
        return _Record(
            person=p,
            system_id=system_id,
            given=given,
            middle=p.middle,
            family=family,
            former=former,
            dob=dob,
            sex=sex,
            address=address,
            postcode=postcode,
        )

    # -- each agency's population and indicators
    def school(self, households: Sequence[TrueHousehold]) -> list[_Record]:
        rng, out = self.rng, []
        for h in households:
            parents = [m for m in h.members if _age(m.dob, self.today) >= 19]
            for p in h.members:
                age = _age(p.dob, self.today)
                if not (4 <= age <= 15 or (16 <= age <= 18 and p.in_education)):
                    continue
                if rng.random() > 0.96:
                    continue
                r = self.record("school", p, h, f"{self.next_id('school') + 4000:06d}")
                r.upn = p.upn if rng.random() > 0.02 else ""
                low = h.need >= 1 and rng.random() < 0.17 * h.need
                pct = rng.uniform(62, 89.9) if low else min(100.0, rng.gauss(95.5, 2.5))
                r.values["attendance"] = f"{max(pct, 40):.1f}" if age >= 5 else ""
                r.values["term_end"] = "24/07/2026" if rng.random() < 0.5 else "22/05/2026"
                excl = age >= 8 and rng.random() < 0.06 * h.need
                r.values["fte"] = str(rng.randint(1, 4) if excl else 0)
                perm = age >= 11 and rng.random() < 0.012 * h.need
                r.values["perm"] = "Y" if perm else "N"
                r.values["post16"] = "Y" if age >= 16 else "N"
                contact = rng.choice(parents) if parents else None
                if contact is not None:
                    title = "Mr" if contact.sex == "M" else rng.choice(("Mrs", "Ms", "Miss"))
                    r.extra["contact"] = f"{title} {contact.given} {contact.family}"
                    r.extra["relationship"] = "Father" if contact.sex == "M" else "Mother"
                    r.extra["phone"] = f"07{rng.randint(100_000_000, 999_999_999)}"
                out.append(r)
        return out

    def childrens_services(self, households: Sequence[TrueHousehold]) -> list[_Record]:
        rng, out = self.rng, []
        for h in households:
            chance = (0.01, 0.06, 0.45, 0.7)[h.need]
            children = [m for m in h.members if _age(m.dob, self.today) <= 17]
            if not children or rng.random() > chance:
                continue
            plan = h.need >= 2 and rng.random() < 0.3 * (h.need - 1)
            for p in children:
                r = self.record(
                    "childrens_services",
                    p,
                    h,
                    str(1_200_000 + self.next_id("csc") * 7),
                    nickname_rate=0.02,
                    stale_rate=0.2,
                )
                r.nhs = p.nhs if rng.random() < 0.6 else ""
                r.council_id = p.council_id
                r.values["cin"] = "Y" if not plan else "N"
                r.values["cp"] = "Y" if plan else "N"
                r.values["referral"] = self.date_in_year(p.dob).strftime("%d/%m/%Y")
                r.extra["role"] = "Child"
                out.append(r)
            carer = next((m for m in h.members if _age(m.dob, self.today) >= 18), None)
            if carer is not None and rng.random() < 0.5:
                r = self.record(
                    "childrens_services",
                    carer,
                    h,
                    str(1_200_000 + self.next_id("csc") * 7),
                    nickname_rate=0.02,
                    stale_rate=0.2,
                )
                r.council_id = carer.council_id
                r.values.update(cin="N", cp="N", referral="")
                r.extra["role"] = "Parent/Carer"
                out.append(r)
        return out

    def early_help(self, households: Sequence[TrueHousehold]) -> list[_Record]:
        rng, out = self.rng, []
        for h in households:
            if h.need == 0 or rng.random() > 0.3 + 0.15 * h.need:
                continue
            if not h.is_family(self.today):
                continue
            start = self.date_in_year(max(m.dob for m in h.members))
            sick = h.need >= 2
            for p in h.members:
                age = _age(p.dob, self.today)
                r = self.record(
                    "early_help",
                    p,
                    h,
                    f"EH{self.next_id('eh'):06d}",
                    nickname_rate=0.25,
                    stale_rate=0.3,
                    missing_dob=0.02,
                )
                r.council_id = p.council_id
                if rng.random() < 0.03:
                    r.given, r.family = r.family, r.given
                r.values["eha"] = "Y" if age <= 17 else "N"
                r.values["start"] = start.strftime("%d/%m/%Y")
                r.values["carer"] = "Y" if sick and 8 <= age <= 17 and rng.random() < 0.12 else "N"
                risk = h.need >= 2 and 11 <= age <= 17 and rng.random() < 0.15
                r.values["cse"] = "Y" if risk else "N"
                neet = 16 <= age <= 18 and not p.in_education
                r.values["neet"] = str(rng.randint(2, 12)) if neet else ""
                out.append(r)
        return out

    def police(self, households: Sequence[TrueHousehold]) -> list[_Record]:
        rng, out = self.rng, []
        for h in households:
            t = h.need
            dv = rng.random() < 0.1 * t and any(_age(m.dob, self.today) >= 18 for m in h.members)
            for p in h.members:
                age = _age(p.dob, self.today)
                if age < 10:
                    continue
                adult = age >= 18
                asb_fa = rng.random() < 0.04 * t
                asb_nfa = rng.random() < 0.05 * t + 0.01
                offence = rng.random() < (0.03 * t + 0.005)
                in_dv = dv and adult and rng.random() < 0.8
                victim_only = rng.random() < 0.02
                if not (asb_fa or asb_nfa or offence or in_dv or victim_only):
                    continue
                r = self.record(
                    "police",
                    p,
                    h,
                    f"NOM{self.next_id('police') * 13 + 50_000}",
                    nickname_rate=0.12,
                    stale_rate=0.5,
                    maiden_rate=0.2,
                    missing_dob=0.02,
                    missing_postcode=0.35,
                    abbreviate_rate=0.4,
                )
                for attr in ("given", "family"):
                    if rng.random() < 0.02:
                        setattr(r, attr, _ocr(rng, getattr(r, attr)))
                r.values["asb_fa"] = str(rng.randint(1, 4)) if asb_fa else "0"
                r.values["asb_nfa"] = str(rng.randint(1, 5)) if asb_nfa else "0"
                r.values["dv"] = str(rng.randint(1, 4)) if in_dv else "0"
                calls = rng.randint(1, 6) if in_dv or victim_only else 0
                r.values["callouts"] = str(calls)
                r.values["offences"] = str(rng.randint(1, 3)) if offence and adult else "0"
                youth = offence and not adult
                r.values["youth_offences"] = str(rng.randint(1, 3)) if youth else "0"
                r.values["last"] = self.date_in_year(p.dob).strftime("%d-%b-%Y")
                out.append(r)
        return out

    def dwp(self, households: Sequence[TrueHousehold]) -> list[_Record]:
        rng, out = self.rng, []
        for h in households:
            for p in h.members:
                if _age(p.dob, self.today) < 18 or rng.random() > 0.14 + 0.2 * h.need:
                    continue
                r = self.record(
                    "dwp",
                    p,
                    h,
                    f"CL{rng.randint(10_000_000, 99_999_999)}",
                    nickname_rate=0.0,
                    stale_rate=0.25,
                    maiden_rate=0.05,
                    abbreviate_rate=0.3,
                )
                r.nino = p.nino if rng.random() > 0.01 else ""
                r.sex = ""
                out_of_work = rng.random() < 0.55 + 0.12 * h.need
                r.values["oow"] = "Y" if out_of_work else "N"
                r.values["benefit"] = (
                    rng.choice(("UC", "ESA", "JSA", "IS")) if out_of_work else "UC"
                )
                r.values["award"] = self.date_in_year(p.dob).strftime("%d/%m/%Y")
                title = "MR" if p.sex == "M" else rng.choice(("MRS", "MS", "MISS"))
                r.extra["title"] = title
                out.append(r)
        return out

    def housing(self, households: Sequence[TrueHousehold]) -> list[_Record]:
        rng, out = self.rng, []
        for h in households:
            if rng.random() > 0.18 + 0.15 * h.need:
                continue
            tenancy = f"T{self.next_id('tenancy') * 3 + 10_000:06d}"
            arrears = rng.random() < 0.15 + 0.15 * h.need
            amount = f"£{rng.uniform(80, 3200):,.2f}" if arrears else "£0.00"
            homeless = rng.random() < 0.03 * h.need
            balance = (self.today - dt.timedelta(days=rng.randint(0, 40))).strftime("%d/%m/%Y")
            seq = 0
            for p in h.members:
                if _age(p.dob, self.today) < 18:
                    continue
                seq += 1
                r = self.record(
                    "housing",
                    p,
                    h,
                    f"{tenancy}/{seq}",
                    nickname_rate=0.05,
                    stale_rate=0.1,
                    missing_postcode=0.08,
                )
                r.values["arrears"] = amount
                r.values["balance"] = balance
                r.values["homeless"] = str(rng.randint(1, 2)) if homeless else "0"
                r.extra["tenancy"] = tenancy
                # the title is the housing system's only record of sex
                title = {"M": "Mr", "F": rng.choice(("Mrs", "Ms", "Miss")), "": ""}[r.sex]
                r.extra["title"] = title
                out.append(r)
        return out

    def health(self, households: Sequence[TrueHousehold]) -> list[_Record]:
        rng, out = self.rng, []
        for h in households:
            for p in h.members:
                if rng.random() > 0.92:
                    continue
                age = _age(p.dob, self.today)
                r = self.record(
                    "health",
                    p,
                    h,
                    f"P{self.next_id('health') * 11 + 300_000}",
                    nickname_rate=0.02,
                    stale_rate=0.45,
                    maiden_rate=0.05,
                )
                r.nhs = p.nhs if rng.random() > 0.03 else ""
                if r.dob is not None and r.dob.day <= 12 and r.dob.day != r.dob.month:
                    if rng.random() < 0.02:
                        r.dob = dt.date(r.dob.year, r.dob.day, r.dob.month)  # keyed US-style
                grown = age >= 13
                mh = grown and rng.random() < 0.06 + 0.07 * h.need
                r.values["mh"] = str(rng.randint(1, 12)) if mh else "0"
                alcohol = age >= 16 and rng.random() < 0.03 * h.need
                r.values["alcohol"] = str(rng.randint(1, 12)) if alcohol else "0"
                drugs = age >= 16 and rng.random() < 0.03 * h.need
                r.values["drugs"] = str(rng.randint(1, 12)) if drugs else "0"
                r.values["ltc"] = "Y" if rng.random() < 0.04 + 0.003 * age else "N"
                r.values["pregnant"] = "Y" if p.expectant else "N"
                r.values["recorded"] = self.date_in_year(p.dob).strftime("%d/%m/%Y")
                out.append(r)
        return out

    def register_twice(self, agency: str, records: list[_Record], rate: float) -> None:
        """Some people registered again under a new id, with a slip in the second entry."""
        rng = self.rng
        for r in list(records):
            if rng.random() < rate:
                again = dataclasses.replace(r, values=dict(r.values), extra=dict(r.extra))
                again.system_id = r.system_id + "R"
                if rng.random() < 0.5:
                    again.given = _typo(rng, again.given)
                records.append(again)

    def same_id_twice(self, records: list[_Record], rate: float = 0.005) -> None:
        """The same person twice under one id: once as they are, once with an old address."""
        rng = self.rng
        for r in list(records):
            if rng.random() < rate:
                again = dataclasses.replace(r, values=dict(r.values), extra=dict(r.extra))
                if rng.random() < 0.5:
                    again.given = _NICKNAMES.get(r.given, (r.given,))[0]
                again.postcode = ""
                records.append(again)


# --- formatting: each agency's file, habits or plain -----------------------------------


def _fmt(d: dt.date | None, style: str) -> str:
    if d is None:
        return ""
    if style == "iso":
        return d.isoformat()
    if style == "dmy":
        return d.strftime("%d/%m/%Y")
    if style == "dmyy":
        return d.strftime("%d/%m/%y")
    if style == "dmony":
        return f"{d.day:02d}-{_MONTHS[d.month - 1]}-{d.year}"
    if style == "dots":
        return d.strftime("%d.%m.%Y")
    raise ValueError(style)


def _dob(r: _Record, style: str) -> str:
    return _fmt(r.dob, style)


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class _Indicator:
    key: str  # the _Record.values key
    column: str
    type: IndicatorType
    kind: str
    date_key: str | None = None
    date_column: str | None = None
    date_format: str = "%d/%m/%Y"


_INDICATORS: dict[str, tuple[_Indicator, ...]] = {
    "school": (
        _Indicator(
            "attendance",
            "Attendance %",
            IndicatorType.ATTENDANCE_PCT,
            "number",
            "term_end",
            "Term End",
        ),
        _Indicator(
            "fte", "FTE Count", IndicatorType.FIXED_TERM_EXCLUSIONS, "count", "term_end", "Term End"
        ),
        _Indicator("perm", "Permanent Exclusion", IndicatorType.PERMANENT_EXCLUSION, "flag"),
        _Indicator("post16", "Post-16 Learner", IndicatorType.IN_EDUCATION_OR_TRAINING, "flag"),
    ),
    "childrens_services": (
        _Indicator("cin", "CIN", IndicatorType.CHILD_IN_NEED, "flag", "referral", "Referral Date"),
        _Indicator(
            "cp",
            "CP Plan",
            IndicatorType.CHILD_PROTECTION_PLAN,
            "flag",
            "referral",
            "Referral Date",
        ),
    ),
    "early_help": (
        _Indicator(
            "eha", "EHA", IndicatorType.EARLY_HELP_ASSESSMENT, "flag", "start", "Assessment Start"
        ),
        _Indicator(
            "carer", "Young Carer", IndicatorType.YOUNG_CARER, "flag", "start", "Assessment Start"
        ),
        _Indicator(
            "cse",
            "Exploitation Risk",
            IndicatorType.EXPLOITATION_RISK,
            "flag",
            "start",
            "Assessment Start",
        ),
        _Indicator("neet", "Months NEET", IndicatorType.MONTHS_NEET, "count"),
    ),
    "police": (
        _Indicator(
            "asb_fa",
            "ASB FA",
            IndicatorType.ASB_FURTHER_ACTION,
            "count",
            "last",
            "Last Incident",
            "%d-%b-%Y",
        ),
        _Indicator(
            "asb_nfa",
            "ASB NFA",
            IndicatorType.ASB_NO_FURTHER_ACTION,
            "count",
            "last",
            "Last Incident",
            "%d-%b-%Y",
        ),
        _Indicator(
            "dv",
            "DV Incidents",
            IndicatorType.DV_INCIDENTS,
            "count",
            "last",
            "Last Incident",
            "%d-%b-%Y",
        ),
        _Indicator(
            "callouts",
            "Call Outs",
            IndicatorType.POLICE_CALLOUTS,
            "count",
            "last",
            "Last Incident",
            "%d-%b-%Y",
        ),
        _Indicator(
            "offences",
            "Offences",
            IndicatorType.ADULT_OFFENDING,
            "count",
            "last",
            "Last Incident",
            "%d-%b-%Y",
        ),
        _Indicator(
            "youth_offences",
            "Youth Offences",
            IndicatorType.YOUTH_OFFENDING,
            "count",
            "last",
            "Last Incident",
            "%d-%b-%Y",
        ),
    ),
    "dwp": (
        _Indicator(
            "oow", "OUT_OF_WORK", IndicatorType.OUT_OF_WORK_BENEFITS, "flag", "award", "AWARD_DATE"
        ),
    ),
    "housing": (
        _Indicator(
            "arrears",
            "Arrears",
            IndicatorType.RENT_ARREARS_GBP,
            "number",
            "balance",
            "Balance Date",
        ),
        _Indicator(
            "homeless",
            "Homeless Apps",
            IndicatorType.HOMELESSNESS_APPLICATIONS,
            "count",
            "balance",
            "Balance Date",
        ),
    ),
    "health": (
        _Indicator(
            "mh", "MH Months", IndicatorType.MONTHS_MENTAL_HEALTH, "count", "recorded", "Recorded"
        ),
        _Indicator(
            "alcohol",
            "Alcohol Months",
            IndicatorType.MONTHS_ALCOHOL_MISUSE,
            "count",
            "recorded",
            "Recorded",
        ),
        _Indicator(
            "drugs",
            "Drug Months",
            IndicatorType.MONTHS_DRUG_MISUSE,
            "count",
            "recorded",
            "Recorded",
        ),
        _Indicator("ltc", "LTC", IndicatorType.PHYSICAL_HEALTH, "flag", "recorded", "Recorded"),
        _Indicator(
            "pregnant", "Pregnant", IndicatorType.EXPECTANT_PARENT, "flag", "recorded", "Recorded"
        ),
    ),
}


def _indicator_columns(agency: str) -> tuple[list[str], Callable[[_Record], list[str]]]:
    """The indicator and indicator-date columns of ``agency``, and a row's cells for them."""
    specs = _INDICATORS[agency]
    names: list[str] = []
    keys: list[str] = []
    for s in specs:
        names.append(s.column)
        keys.append(s.key)
        if s.date_column is not None and s.date_column not in names:
            assert s.date_key is not None
            names.append(s.date_column)
            keys.append(s.date_key)
    return names, lambda r: [r.values.get(k, "") for k in keys]


def _indicator_toml(agency: str) -> str:
    out: list[str] = []
    for s in _INDICATORS[agency]:
        out += [
            "",
            "[[indicators]]",
            f"column = {_toml_str(s.column)}",
            f'type = "{s.type.value}"',
            f'kind = "{s.kind}"',
        ]
        if s.date_column is not None:
            out += [f"date_column = {_toml_str(s.date_column)}", f'date_format = "{s.date_format}"']
    return "\n".join(out) + "\n"


def _head(agency: str) -> str:
    return (
        f'[agency]\nid = "{agency}"\nextract_type = "{_EXTRACT_TYPES[agency]}"\n\n'
        '[csv]\ndelimiter = ","\nencoding = "utf-8-sig"\n'
    )


def _plain(agency: str, records: Sequence[_Record]) -> AgencyExtract:
    """Simple separate columns, day/month/year dates: today's mapping syntax only.

    It carries what the agency's own file carries, no more: middle names only
    where the agency keeps them, a previous surname only in health, no town
    for the police, no sex for DWP.
    """
    has = {
        "middle": agency in ("school", "police", "health"),
        "former_family": agency == "health",
        "sex": agency != "dwp",
        "town": agency != "police",
        "nhs": agency in ("childrens_services", "health"),
        "nino": agency == "dwp",
        "upn": agency == "school",
    }
    columns = ["id", "given", "middle", "family", "former_family", "dob", "sex", "street"]
    columns += ["town", "postcode", "nhs", "nino", "upn"]
    header = [c for c in columns if has.get(c, True)]
    ind_names, ind_cells = _indicator_columns(agency)
    rows: list[tuple[str, ...]] = []
    for r in records:
        cells = {
            "id": r.system_id,
            "given": r.given,
            "middle": r.middle,
            "family": r.family,
            "former_family": r.former,
            "dob": _dob(r, "dmy"),
            "sex": r.sex,
            "street": r.address.line1,
            "town": r.address.town,
            "postcode": r.postcode,
            "nhs": r.nhs,
            "nino": r.nino,
            "upn": r.upn,
        }
        rows.append(tuple([cells[c] for c in header] + ind_cells(r)))
    given = ["given", "middle"] if has["middle"] else ["given"]
    lines = ["street", "town"] if has["town"] else ["street"]
    identity = [
        "[identity]",
        'system_id = "id"',
        f"given_names = {json.dumps(given)}",
        'family_name = "family"',
        'date_of_birth = "dob"',
        'date_format = "%d/%m/%Y"',
        f"address_lines = {json.dumps(lines)}",
        'postcode = "postcode"',
    ]
    keys = {
        "former_family": "former_family_names",
        "sex": "sex",
        "nhs": "nhs_number",
        "nino": "ni_number",
        "upn": "upn",
    }
    identity += [f'{key} = "{column}"' for column, key in keys.items() if has[column]]
    toml = _head(agency) + "\n" + "\n".join(identity) + "\n" + _indicator_toml(agency)
    return AgencyExtract(
        agency, _EXTRACT_TYPES[agency], tuple(header + ind_names), tuple(rows), toml
    )


def _derive_name(name: str, column: str, style: str, part: str) -> str:
    return (
        f'\n[[derive]]\nname = "{name}"\nfrom = {_toml_str(column)}\n'
        f'split_name = "{style}"\npart = "{part}"\n'
    )


def _derive_address(name: str, column: str, part: str) -> str:
    return (
        f'\n[[derive]]\nname = "{name}"\nfrom = {_toml_str(column)}\n'
        f'split_address = "{part}"\nseparator = ","\n'
    )


def _habits(agency: str, records: Sequence[_Record], rng: random.Random) -> AgencyExtract:
    """The agency's own columns, formats and habits (the mapping needs the new transforms)."""
    ind_names, ind_cells = _indicator_columns(agency)
    rows: list[tuple[str, ...]] = []
    if agency == "school":
        header = [
            "Adno",
            "UPN",
            "Pupil Name",
            "DOB",
            "Gender",
            "Address Line 1",
            "Address Line 2",
            "Post Code",
            *ind_names,
            "Contact Name",
            "Contact Relationship",
            "Contact Phone",
        ]
        for r in records:
            rows.append(
                (
                    r.system_id,
                    r.upn,
                    f"{r.family}, {' '.join(filter(None, [r.given, r.middle]))}",
                    _dob(r, "iso"),
                    r.sex,
                    r.address.line1,
                    r.address.town,
                    r.postcode,
                    *ind_cells(r),
                    r.extra.get("contact", ""),
                    r.extra.get("relationship", ""),
                    r.extra.get("phone", ""),
                )
            )
        identity = (
            '[identity]\nsystem_id = "Adno"\ngiven_names = ["pupil_given"]\n'
            'family_name = "pupil_family"\ndate_of_birth = "DOB"\ndate_format = "%Y-%m-%d"\n'
            'sex = "Gender"\naddress_lines = ["Address Line 1", "Address Line 2"]\n'
            'postcode = "Post Code"\nupn = "UPN"\n'
        )
        derives = _derive_name("pupil_given", "Pupil Name", "family_comma_given", "given")
        derives += _derive_name("pupil_family", "Pupil Name", "family_comma_given", "family")
    elif agency == "childrens_services":
        header = [
            "PersonID",
            "LA Person ID",
            "Full Name",
            "DOB",
            "Gender",
            "Address",
            "Post Code",
            "NHS Number",
            "Role",
            *ind_names,
        ]
        sexes = {"M": "Male", "F": "Female", "": "Not Known"}
        for r in records:
            rows.append(
                (
                    r.system_id,
                    r.council_id,
                    f"{r.given} {r.family}".upper(),
                    _dob(r, "dmyy"),
                    sexes[r.sex],
                    f"{r.address.line1}, {r.address.town}",
                    r.postcode,
                    f"{r.nhs[:3]} {r.nhs[3:6]} {r.nhs[6:]}" if r.nhs else "",
                    r.extra.get("role", ""),
                    *ind_cells(r),
                )
            )
        identity = (
            '[identity]\nsystem_id = "PersonID"\ngiven_names = ["cs_given"]\n'
            'family_name = "cs_family"\ndate_of_birth = "DOB"\ndate_format = "%d/%m/%y"\n'
            'sex = "Gender"\naddress_lines = ["cs_street", "cs_town"]\npostcode = "Post Code"\n'
            'nhs_number = "NHS Number"\n\n[identity.identifiers]\n'
            'local_person_id = "LA Person ID"\n'
        )
        derives = _derive_name("cs_given", "Full Name", "given_family", "given")
        derives += _derive_name("cs_family", "Full Name", "given_family", "family")
        derives += _derive_address("cs_street", "Address", "line1")
        derives += _derive_address("cs_town", "Address", "last")
    elif agency == "early_help":
        header = [
            "Client No",
            "Mosaic ID",
            "First Name",
            "Last Name",
            "D.O.B.",
            "Sex",
            "Address Line 1",
            "Town",
            "Postcode",
            *ind_names,
        ]
        codes = {"M": "1", "F": "2", "": "9"}
        for r in records:
            rows.append(
                (
                    r.system_id,
                    r.council_id,
                    r.given,
                    r.family,
                    _dob(r, "dmy"),
                    codes[r.sex],
                    r.address.line1,
                    r.address.town,
                    r.postcode,
                    *ind_cells(r),
                )
            )
        identity = (
            '[identity]\nsystem_id = "Client No"\ngiven_names = ["First Name"]\n'
            'family_name = "Last Name"\ndate_of_birth = "D.O.B."\ndate_format = "%d/%m/%Y"\n'
            'sex = "Sex"\nsex_values = { "1" = "M", "2" = "F" }\n'
            'address_lines = ["Address Line 1", "Town"]\npostcode = "Postcode"\n\n'
            '[identity.identifiers]\nlocal_person_id = "Mosaic ID"\n'
        )
        derives = ""
    elif agency == "police":
        header = [
            "Nominal Ref",
            "Surname",
            "Forenames",
            "DOB",
            "Sex",
            "Street",
            "Postcode",
            *ind_names,
        ]
        for r in records:
            style = "dmy" if rng.random() < 0.07 else "dmony"  # rows keyed before the upgrade
            rows.append(
                (
                    r.system_id,
                    r.family.upper(),
                    " ".join(filter(None, [r.given, r.middle])),
                    _dob(r, style),
                    r.sex or "U",
                    r.address.line1,
                    r.postcode,
                    *ind_cells(r),
                )
            )
        identity = (
            '[identity]\nsystem_id = "Nominal Ref"\ngiven_names = ["Forenames"]\n'
            'family_name = "Surname"\ndate_of_birth = "DOB"\n'
            'date_formats = ["%d-%b-%Y", "%d/%m/%Y"]\nsex = "Sex"\n'
            'address_lines = ["Street"]\npostcode = "Postcode"\n'
        )
        derives = ""
    elif agency == "dwp":
        header = [
            "CLAIMANT_REF",
            "NINO",
            "TITLE",
            "FORENAME",
            "SURNAME",
            "DOB",
            "ADDR_1",
            "ADDR_2",
            "ADDR_3",
            "POSTCODE",
            "BENEFIT",
            *ind_names,
        ]
        for r in records:
            town_line = ["", r.address.town] if rng.random() < 0.7 else [r.address.town, ""]
            rows.append(
                (
                    r.system_id,
                    r.nino,
                    r.extra.get("title", ""),
                    r.given.upper(),
                    r.family.upper(),
                    _dob(r, "dmy"),
                    r.address.line1.upper(),
                    *(x.upper() for x in town_line),
                    r.postcode.replace(" ", ""),
                    r.values.get("benefit", ""),
                    *ind_cells(r),
                )
            )
        identity = (
            '[identity]\nsystem_id = "CLAIMANT_REF"\ngiven_names = ["FORENAME"]\n'
            'family_name = "SURNAME"\ndate_of_birth = "DOB"\ndate_format = "%d/%m/%Y"\n'
            'address_lines = ["ADDR_1", "ADDR_2", "ADDR_3"]\npostcode = "POSTCODE"\n'
            'ni_number = "NINO"\n'
        )
        derives = ""
    elif agency == "housing":
        header = [
            "Tenant Ref",
            "Tenancy Ref",
            "Title",
            "Tenant",
            "Date of Birth",
            "Property",
            "Postcode",
            *ind_names,
        ]
        for r in records:
            rows.append(
                (
                    r.system_id,
                    r.extra.get("tenancy", ""),
                    r.extra.get("title", ""),
                    f"{r.extra.get('title', '')} {r.given} {r.family}".strip(),
                    _dob(r, "dots"),
                    f"{r.address.line1}, {r.address.town}",
                    r.postcode,
                    *ind_cells(r),
                )
            )
        identity = (
            '[identity]\nsystem_id = "Tenant Ref"\ngiven_names = ["tenant_given"]\n'
            'family_name = "tenant_family"\ndate_of_birth = "Date of Birth"\n'
            'date_format = "%d.%m.%Y"\nsex = "sex_from_title"\n'
            'address_lines = ["property_street", "property_town"]\npostcode = "Postcode"\n'
        )
        derives = _derive_name("tenant_given", "Tenant", "given_family", "given")
        derives += _derive_name("tenant_family", "Tenant", "given_family", "family")
        derives += _derive_address("property_street", "Property", "line1")
        derives += _derive_address("property_town", "Property", "last")
        derives += (
            '\n[[derive]]\nname = "sex_from_title"\nfrom = "Title"\n'
            'map = { "Mr" = "M", "Mrs" = "F", "Ms" = "F", "Miss" = "F" }\ndefault = ""\n'
        )
    elif agency == "health":
        header = [
            "Patient ID",
            "Identifiers",
            "Forename",
            "Middle Names",
            "Surname",
            "Previous Surname",
            "DOB",
            "Sex",
            "Addr1",
            "Addr2",
            "Addr3",
            "Postcode",
            *ind_names,
        ]
        sexes = {"M": "Male", "F": "Female", "": "Unknown"}
        for r in records:
            ids = f"NHS:{r.nhs};" if r.nhs else ""
            ids += f"EMIS:{rng.randint(100_000, 9_999_999)}"
            rows.append(
                (
                    r.system_id,
                    ids,
                    r.given,
                    r.middle,
                    r.family,
                    r.former,
                    _dob(r, "dmy"),
                    sexes[r.sex],
                    r.address.line1,
                    "",
                    r.address.town,
                    r.postcode,
                    *ind_cells(r),
                )
            )
        identity = (
            '[identity]\nsystem_id = "Patient ID"\ngiven_names = ["Forename", "Middle Names"]\n'
            'family_name = "Surname"\nformer_family_names = "Previous Surname"\n'
            'date_of_birth = "DOB"\ndate_format = "%d/%m/%Y"\nsex = "Sex"\n'
            'address_lines = ["Addr1", "Addr2", "Addr3"]\npostcode = "Postcode"\n'
            'nhs_number = "nhs_from_ids"\n'
        )
        derives = '\n[[derive]]\nname = "nhs_from_ids"\nfrom = "Identifiers"\n'
        derives += "regex = 'NHS:\\s*(\\d{10})'\n"
    else:
        raise ValueError(f"unknown agency {agency!r}")
    toml = _head(agency) + "\n" + identity + derives + _indicator_toml(agency)
    return AgencyExtract(agency, _EXTRACT_TYPES[agency], tuple(header), tuple(rows), toml)


# --- the whole council ----------------------------------------------------------------


def generate_council(config: CouncilConfig = CouncilConfig()) -> CouncilPopulation:
    """Draw a council's households and its seven agency extracts, with the truth per row."""
    if config.households < 1:
        raise ValueError("households must be at least 1")
    rng = random.Random(config.seed)
    world = _World(config, rng)
    households = [world.household(i + 1) for i in range(config.households)]
    agencies = _Agencies(config, rng)
    draws: dict[str, Callable[[Sequence[TrueHousehold]], list[_Record]]] = {
        "school": agencies.school,
        "childrens_services": agencies.childrens_services,
        "early_help": agencies.early_help,
        "police": agencies.police,
        "dwp": agencies.dwp,
        "housing": agencies.housing,
        "health": agencies.health,
    }
    extracts: dict[str, AgencyExtract] = {}
    truth: dict[tuple[str, str], tuple[str, str]] = {}
    for agency in AGENCY_IDS:
        records = draws[agency](households)
        if agency in ("health", "police", "school"):
            agencies.register_twice(agency, records, 0.01)
        agencies.same_id_twice(records)
        rng.shuffle(records)
        for r in records:
            truth[(agency, r.system_id)] = (r.person.person_id, r.person.household_id)
        # formatting draws from its own stream, so both variants hold the same records
        formatting = random.Random(f"{config.seed}:{agency}:format")
        extract = _plain(agency, records) if config.plain else _habits(agency, records, formatting)
        rows = list(extract.rows)
        for i in range(len(rows) - 1, -1, -1):
            if rng.random() < 0.005:
                rows.insert(i + 1, rows[i])  # exported twice
        extracts[agency] = AgencyExtract(
            agency, extract.extract_type, extract.header, tuple(rows), extract.mapping_toml
        )
    return CouncilPopulation(config, households, extracts, truth)


def write_council(population: CouncilPopulation, out: Path) -> Path:
    """Write ``<agency>.csv`` and ``<agency>.mapping.toml`` per agency, and ``truth/``.

    The truth files (``records.csv``, ``persons.csv``, ``households.csv``) are
    in their own directory so that nothing reading an extract sees them.
    """
    out.mkdir(parents=True, exist_ok=True)
    for agency, extract in population.extracts.items():
        (out / f"{agency}.csv").write_text(extract.csv_text(), encoding="utf-8")
        (out / f"{agency}.mapping.toml").write_text(extract.mapping_toml, encoding="utf-8")
    truth = out / "truth"
    truth.mkdir(exist_ok=True)
    with (truth / "records.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["agency", "system_id", "person_id", "household_id"])
        for (agency, sid), (pid, hid) in population.truth.items():
            w.writerow([agency, sid, pid, hid])
    at = population.config.extract_date
    with (truth / "persons.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "person_id",
                "household_id",
                "given",
                "middle",
                "family",
                "birth_family",
                "sex",
                "dob",
                "age",
                "nhs",
                "nino",
                "upn",
                "expectant",
                "in_education",
            ]
        )
        for p in population.persons():
            w.writerow(
                [
                    p.person_id,
                    p.household_id,
                    p.given,
                    p.middle,
                    p.family,
                    p.birth_family,
                    p.sex,
                    p.dob.isoformat(),
                    _age(p.dob, at),
                    p.nhs,
                    p.nino,
                    p.upn,
                    "Y" if p.expectant else "N",
                    "Y" if p.in_education else "N",
                ]
            )
    with (truth / "households.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "household_id",
                "kind",
                "members",
                "address",
                "town",
                "postcode",
                "previous_postcode",
                "need",
                "is_family",
            ]
        )
        for h in population.households:
            w.writerow(
                [
                    h.household_id,
                    h.kind,
                    len(h.members),
                    h.address.line1,
                    h.address.town,
                    h.address.postcode,
                    h.previous.postcode if h.previous else "",
                    h.need,
                    "Y" if h.is_family(at) else "N",
                ]
            )
    return out
