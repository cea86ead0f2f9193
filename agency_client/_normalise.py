"""Normalisation of identity values before they are encoded into keyed Bloom filters.

This module owns the rules that make two agencies' records of the same person
produce the same features: folding text to ``[a-z0-9 ]``, given and family
names (titles, placeholders, hyphens, particles, forename variants), dates in
an agency's declared format, sex codes, UK postcodes (or any country's, for a
schema with ``postcode_format = "any"``), address lines and house numbers, the
checked identifiers (NHS number, National Insurance number, Unique Pupil
Number) and agencies' own identifiers (compacted, unchecked).

Every function is pure and deterministic: no I/O, no clock except the
two-digit-year pivot in :func:`parse_date`, no configuration. Import builds
only constant tables. This module must never log, print, store or send the
values it is given; the only place a value may appear is the message of a
:class:`NormaliseError` raised to the caller, who decides what to do with it.

Errors: :class:`NormaliseError` (a :class:`ValueError` and an
:class:`~agency_client._errors.AgencyClientError`) names the offending value
and what was expected; its subclass :class:`NoSuchDay` is a date in the
expected format that names no day of the calendar (31/02/2013).
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from agency_client._errors import AgencyClientError

__all__ = [
    "FORENAME_VARIANTS",
    "NoSuchDay",
    "NormaliseError",
    "Postcode",
    "address_line",
    "canonical_forename",
    "family_name",
    "family_name_parts",
    "fold",
    "given_names",
    "house_number",
    "local_identifier",
    "nhs_number",
    "ni_number",
    "parse_date",
    "postcode",
    "postcode_any",
    "sex",
    "soundex",
    "upn",
]


class NormaliseError(AgencyClientError, ValueError):
    """A value cannot be normalised; the message names the value and what was expected."""


class NoSuchDay(NormaliseError):
    """A date written in the expected format that is no day of the calendar (31/02/2013)."""


# Caches are sized for a million-record extract: names, dates and postcodes repeat
# heavily, so a bounded cache turns most calls into a dict lookup.
_CACHE = 1 << 16

# ---------------------------------------------------------------------------
# fold
# ---------------------------------------------------------------------------

# Apostrophes are deleted, not spaced, so O'Brien and OBrien agree. U+00B4 and
# U+02BC must go before NFKD, which would turn the acute accent into a space.
_APOSTROPHES = "'`\u00b4\u2018\u2019\u201b\u02bc\u02bb\u02b9\u2032\uff07"

# Letters that NFKD does not decompose into a base letter plus marks.
_SPECIAL_LETTERS: dict[int, str | None] = {
    **{ord(c): None for c in _APOSTROPHES},
    ord("ß"): "ss",
    ord("ẞ"): "ss",
    ord("ø"): "o",
    ord("Ø"): "o",
    ord("æ"): "ae",
    ord("Æ"): "ae",
    ord("œ"): "oe",
    ord("Œ"): "oe",
    ord("ł"): "l",
    ord("Ł"): "l",
    ord("đ"): "d",
    ord("Đ"): "d",
    ord("ð"): "d",
    ord("Ð"): "d",
    ord("þ"): "th",
    ord("Þ"): "th",
    ord("ı"): "i",
    ord("ħ"): "h",
    ord("Ħ"): "h",
    ord("ŧ"): "t",
    ord("Ŧ"): "t",
    ord("ĸ"): "k",
    ord("ŉ"): "n",
}

# One byte table does lower-casing and punctuation-to-space in a single pass.
_ASCII_TABLE = bytes(
    (c + 32 if 65 <= c <= 90 else c) if chr(c).isascii() and chr(c).isalnum() else 32
    for c in range(256)
)
_ASCII_DELETE = b"'`"


@lru_cache(maxsize=_CACHE)
def _fold_unicode(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.translate(_SPECIAL_LETTERS))
    text = "".join(c for c in text if not unicodedata.combining(c)).translate(_SPECIAL_LETTERS)
    # Letters outside Latin (Cyrillic, Arabic, ...) cannot be expressed in [a-z0-9]; they
    # become separators rather than silently gluing neighbouring words together.
    return text.encode("ascii", "replace").translate(_ASCII_TABLE, _ASCII_DELETE).decode("ascii")


def fold(text: str) -> str:
    """Fold text to lower-case ASCII letters and digits separated by single spaces."""
    if text.isascii():
        text = text.encode("ascii").translate(_ASCII_TABLE, _ASCII_DELETE).decode("ascii")
    else:
        text = _fold_unicode(text)
    return " ".join(text.split())


# ---------------------------------------------------------------------------
# placeholders shared by names, dates, sex and identifiers
# ---------------------------------------------------------------------------

# Folded values that agencies type when they do not know the real one. They must
# never become features: two strangers both "Unknown" would otherwise match.
_PLACEHOLDERS = frozenset(
    {
        "",
        "unknown",
        "unk",
        "unkn",
        "not known",
        "notknown",
        "nk",
        "n k",
        "n a",
        "na",
        "not applicable",
        "not stated",
        "not given",
        "not recorded",
        "not provided",
        "no name",
        "noname",
        "unnamed",
        "null",
        "none",
        "nil",
        "tbc",
        "tba",
        "tbd",
        "test",
        "anon",
        "anonymous",
        "blank",
        "missing",
        "refused",
        "withheld",
        "unknown unknown",
        "zz",
        "zzz",
    }
)
_PLACEHOLDERS_COMPACT = frozenset(p.replace(" ", "") for p in _PLACEHOLDERS)
_ALL_X = re.compile(r"x+")
# A given name that starts with one of these is a placeholder for a not-yet-named child
# ("Baby", "Baby Boy", "Baby of Jane Smith", "Twin 1").
_UNNAMED_HEADS = frozenset({"baby", "infant", "unborn", "newborn", "twin"})


def _is_placeholder(folded: str) -> bool:
    return folded in _PLACEHOLDERS or _ALL_X.fullmatch(folded) is not None


# ---------------------------------------------------------------------------
# given names
# ---------------------------------------------------------------------------

_TITLES = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "mss",
        "miss",
        "mx",
        "master",
        "mstr",
        "dr",
        "doctor",
        "prof",
        "professor",
        "rev",
        "revd",
        "reverend",
        "fr",
        "father",
        "sr",
        "sister",
        "sir",
        "dame",
        "lady",
        "lord",
        "capt",
        "captain",
        "sgt",
        "cllr",
        "hon",
        "rabbi",
        "imam",
        "sheikh",
    }
)
# Generational suffixes are not names; stripped only from the end of a longer name.
_SUFFIXES = frozenset({"jr", "jnr", "junior", "snr", "senior", "ii", "iii", "iv"})
# Hyphenated given names are one name: Mary-Jane and Maryjane must agree.
_HYPHENS = re.compile(r"\s*[-\u2010\u2011\u2012\u2013\u2014\u2212\ufe63\uff0d]+\s*")


@lru_cache(maxsize=_CACHE)
def _given_names(raw: str) -> tuple[str, ...]:
    words = [w for w in fold(_HYPHENS.sub("", raw)).split() if not w.isdigit()]
    start = 0
    while start < len(words) and words[start] in _TITLES:
        start += 1
    del words[:start]
    while len(words) > 1 and words[-1] in _SUFFIXES:
        words.pop()
    if not words or words[0] in _UNNAMED_HEADS or _is_placeholder(" ".join(words)):
        return ()
    return tuple(words)


def given_names(raw: str | None) -> tuple[str, ...]:
    """Folded given-name words without titles or placeholders; initials kept, hyphens joined."""
    if raw is None:
        return ()
    return _given_names(raw)


# ---------------------------------------------------------------------------
# forename variants
# ---------------------------------------------------------------------------

# Canonical form -> variants and diminutives. Built from common usage in England and
# Wales (ONS baby-name lists for spellings; standard nickname tables for diminutives).
# Deliberately absent: nicknames shared by a male and a female name (chris, alex, sam,
# jo, charlie, frankie, nicky, pat, ronnie, georgie, max, mel, les, toni, jess(e)...),
# because mapping them to either name would link the wrong sibling. Each variant
# belongs to exactly one group (a test enforces it).
_FORENAME_GROUPS: dict[str, tuple[str, ...]] = {
    # male
    "william": ("bill", "billy", "will", "willy", "willie", "liam", "wills", "wil"),
    "robert": ("bob", "bobby", "rob", "robbie", "robby", "rab", "rabbie"),
    "james": ("jim", "jimmy", "jimmie", "jamie", "jimi"),
    "john": ("jon", "johnny", "johnnie", "jack", "jock"),
    "jonathan": ("jonathon", "johnathan", "johnathon", "jonny", "jonnie", "jonathen"),
    "richard": ("rick", "ricky", "rich", "richie", "dick", "dicky", "rickie"),
    "michael": ("mike", "mick", "mickey", "micky", "mikey", "micheal", "michal", "mikael"),
    "thomas": ("tom", "tommy", "tommie", "thom", "tomas", "tomasz"),
    "edward": ("ed", "eddie", "eddy", "ted", "teddy", "ned", "edd"),
    "anthony": ("tony", "antony", "ant", "anthoney"),
    "christopher": ("kristopher", "christoper", "cristopher", "krzysztof"),
    "nicholas": ("nick", "nik", "nicolas", "nickolas", "nikolas", "nicholaus"),
    "daniel": ("dan", "danny", "dannie", "danial", "daniyal"),
    "matthew": ("matt", "mat", "matty", "mathew", "matthews", "mateusz"),
    "andrew": ("andy", "drew", "andrzej", "andrei", "andrej"),
    "david": ("dave", "davy", "davey", "davie", "dai", "dafydd", "dawid"),
    "joseph": ("joe", "joey", "josef", "jozef"),
    "benjamin": ("ben", "benny", "benji", "benjy", "benjamen"),
    "samuel": ("samual", "samuele"),
    "alexander": ("alec", "alick", "xander", "zander", "alexandre", "aleksander"),
    "alistair": ("alastair", "alasdair", "allister", "alister", "alistar"),
    "charles": ("chas", "chaz", "chuck", "karol"),
    "henry": ("harry", "hal", "hank", "henri", "henryk"),
    "frederick": ("fred", "freddie", "freddy", "frederic", "fredrick", "fredric"),
    "alfred": ("alf", "alfie", "alfy"),
    "arthur": ("art", "artie", "artur"),
    "edmund": ("edmond",),
    "gerald": ("jerald", "gerrald"),
    "gregory": ("greg", "gregg", "grzegorz"),
    "geoffrey": ("geoff", "jeff", "jeffrey", "jeffery", "jeffry", "geoffery"),
    "kenneth": ("ken", "kenny", "kennith"),
    "lawrence": ("laurence", "larry", "lawrie", "laurance"),
    "leonard": ("len", "lenny", "lennie"),
    "patrick": ("paddy", "padraig", "patric"),
    "peter": ("pete", "piotr", "pieter"),
    "philip": ("phil", "phillip", "pip", "philipp", "filip", "phillips"),
    "raymond": ("ray", "raymund"),
    "ronald": ("ron",),
    "donald": ("don", "donnie", "donny"),
    "stephen": ("steven", "steve", "stevie", "stephan", "stefan", "stevan", "stephon"),
    "timothy": ("tim", "timmy"),
    "walter": ("walt", "wally"),
    "stanley": ("stan",),
    "terence": ("terry", "terrance", "terrence"),
    "douglas": ("doug", "dougie", "duggie"),
    "nathaniel": ("nathanial", "nathanael"),
    "zachary": ("zach", "zack", "zak", "zac", "zachery", "zackary", "zakary"),
    "jacob": ("jake", "jakob", "jakub"),
    "joshua": ("josh", "joshuah"),
    "oliver": ("ollie", "olly", "oli", "olivier"),
    "callum": ("calum", "kallum", "callam"),
    "cameron": ("kameron", "camron"),
    "connor": ("conor", "conner", "konnor", "connar"),
    "aidan": ("aiden", "ayden", "aydan", "aden", "aedan"),
    "jayden": ("jaden", "jaiden", "jaydon", "jaydan", "jaydn"),
    "kieran": ("kieron", "kyran", "ciaran", "keiran", "kieren", "ciaron"),
    "louis": ("louie",),
    "muhammad": (
        "mohammed",
        "mohammad",
        "mohamed",
        "muhammed",
        "mohamad",
        "mohammod",
        "mohamud",
        "muhamed",
        "muhamad",
        "mohmed",
        "mohd",
        "mahomed",
        "mohammud",
    ),
    "ahmed": ("ahmad", "ahmet", "ahmid"),
    "mustafa": ("mustapha", "mostafa", "mustafaa"),
    "hussain": ("hussein", "husain", "hossain", "husein", "hussien"),
    "hassan": ("hasan",),
    "ibrahim": ("ebrahim", "ibraheem", "ibrahem"),
    "yusuf": ("yousef", "yusef", "yousuf", "youssef", "yousif"),
    "abdul": ("abdool", "abdoul"),
    "omar": ("umar", "omer"),
    "usman": ("osman", "uthman", "othman", "usmaan"),
    "ismail": ("ismael", "esmail", "ismial"),
    "sulaiman": ("suleiman", "suleman", "sulayman", "sulaman"),
    "imran": ("imraan",),
    "tariq": ("tarik", "tarek", "tareq"),
    "zain": ("zayn", "zayne", "zaine"),
    "sean": ("shaun", "shawn", "shaune", "seann"),
    "lee": ("leigh",),
    "dominic": ("dom", "dominick", "dominik", "dominique"),
    "vincent": ("vince", "vinny", "vinnie"),
    "maurice": ("morris",),
    "neil": ("neal", "niall", "neill", "niel", "neale"),
    "graham": ("graeme", "grahame"),
    "derek": ("derrick", "deryck", "derick"),
    "gary": ("garry", "gaz"),
    "carl": ("karl",),
    "colin": ("collin",),
    "darren": ("darran", "daren", "darrin"),
    "kevin": ("kev",),
    "trevor": ("trev",),
    "martin": ("marty", "martyn", "marcin"),
    "mark": ("marc", "marek"),
    "isaac": ("issac", "isaak", "izaak", "izak", "isaack"),
    "reuben": ("ruben", "rueben"),
    "tobias": ("toby", "tobie", "tobi"),
    "theodore": ("theo",),
    "sebastian": ("seb", "bastian", "sebastien"),
    "archibald": ("archie", "archy"),
    "reginald": ("reg", "reggie"),
    "bernard": ("bernie",),
    "hugh": ("hughie", "huw"),
    "jeremy": ("jez", "jeremey"),
    "oscar": ("ossie", "oskar"),
    "finley": ("finlay", "findlay", "finlee"),
    "riley": ("reilly", "ryley", "rylee"),
    "elliott": ("elliot", "eliot", "eliott"),
    "rhys": ("reece", "reese", "rees", "rhyse"),
    "ewan": ("euan", "ewen"),
    "owen": ("owain",),
    "dylan": ("dillon", "dilan", "dylon"),
    "llewellyn": ("llewelyn", "llywelyn", "lewellyn"),
    "ian": ("iain",),
    "jamal": ("jamaal", "jamall"),
    "emmanuel": ("emanuel", "manny"),
    "alan": ("allan", "allen", "alun", "allun"),
    "brian": ("bryan", "brien"),
    "stuart": ("stewart", "stu"),
    "victor": ("vic", "wiktor"),
    "paul": ("pawel", "paulo"),
    "lucas": ("lukas", "lukasz"),
    "jordan": ("jordon",),
    # female
    "margaret": ("peggy", "maggie", "meg", "marge", "margie", "madge", "maggy", "mags"),
    "catherine": (
        "kate",
        "katie",
        "kath",
        "cath",
        "katherine",
        "kathryn",
        "katharine",
        "catharine",
        "cathryn",
        "kathrine",
        "kathy",
        "cathy",
        "katy",
        "katey",
        "kat",
        "kitty",
        "catrin",
        "katarzyna",
    ),
    "elizabeth": (
        "beth",
        "liz",
        "lizzie",
        "lizzy",
        "betty",
        "eliza",
        "liza",
        "elisabeth",
        "bess",
        "bessie",
        "betsy",
        "libby",
        "elżbieta",
    ),
    "jennifer": ("jen", "jenny", "jenni", "jennie", "jenifer"),
    "rebecca": ("becky", "becca", "bex", "rebekah", "rebeca", "becki", "rebbecca"),
    "victoria": ("vicky", "vicki", "vikki", "tori", "vickie", "wiktoria"),
    "susan": ("sue", "susie", "suzy", "suzie", "suzan"),
    "susannah": ("susanna", "suzanna", "suzannah"),
    "patricia": ("trish", "tricia", "patsy", "pattie", "patti", "trisha"),
    "deborah": ("debbie", "deb", "debra", "debby", "debora"),
    "jacqueline": ("jacquline", "jaqueline", "jacquelyn", "jacky"),
    "christine": ("kristine", "christene"),
    "abigail": ("abbie", "abby", "abi", "abbey", "abbi", "abigale"),
    "natalie": ("nathalie", "natalee", "nattalie", "natalya"),
    "nicola": ("nikki", "nicki", "nichola", "nicolla"),
    "amanda": ("mandy",),
    "gillian": ("gill", "jill", "jillian", "gilly"),
    "josephine": ("josie",),
    "joanne": ("joann", "joeanne"),
    "kimberley": ("kim", "kimberly", "kimberlee"),
    "stephanie": ("steph", "steff", "stephany", "stefanie", "stephenie"),
    "jessica": ("jess", "jessie", "jessika", "jesica"),
    "hannah": ("hanna", "hana"),
    "sarah": ("sara", "sarrah"),
    "zoe": ("zoey", "zoie"),
    "aisha": ("ayesha", "aysha", "ayisha", "aishah", "aisah"),
    "fatima": ("fatimah", "fatema", "fathima"),
    "maryam": ("mariam", "meryem", "maryum"),
    "khadija": ("khadijah", "khadeja", "khadeeja"),
    "zainab": ("zaynab", "zeinab"),
    "amina": ("aminah", "ameena"),
    "noor": ("nur", "nour"),
    "yasmin": ("yasmine", "yasmeen", "yasmina"),
    "jasmine": ("jasmin", "jazmine", "jazmin", "jasmyn"),
    "chloe": ("cloe", "chloey"),
    "sophia": ("sofia",),
    "sophie": ("sofie", "sophy"),
    "emily": ("emilie",),
    "isabel": ("isabelle", "isobel", "izzy", "izzie", "isobelle", "ysabel", "izabel"),
    "eleanor": ("elinor", "eleanore", "elenor", "eleanora", "nell"),
    "caroline": ("carolyn", "carrie", "karoline"),
    "charlotte": ("lottie", "lotty"),
    "michelle": ("michele", "michell"),
    "anne": ("ann", "annie"),
    "dorothy": ("dot", "dottie", "dolly"),
    "eileen": ("aileen",),
    "theresa": ("teresa", "tess", "terri", "terese", "therese"),
    "tracy": ("tracey", "tracie"),
    "lindsay": ("lindsey", "linsey", "lyndsey", "lyndsay", "linzi"),
    "kelly": ("kelley", "kellie"),
    "hayley": ("haley", "hailey", "haylee", "hailee", "haleigh"),
    "kayleigh": ("kayley", "kaylee", "kaleigh", "kailey", "kaley"),
    "lucy": ("lucie", "luci"),
    "megan": ("meghan", "meagan", "megane"),
    "lauren": ("lauryn",),
    "grace": ("gracie",),
    "olivia": ("livvy", "liv"),
    "amy": ("aimee", "amie", "aimie"),
    "rachel": ("rachael", "rach"),
    "caitlin": ("kaitlyn", "katelyn", "caitlyn", "kaitlin", "caitlynn"),
    "siobhan": ("shivaun", "shevaun"),
    "niamh": ("neve", "neave", "nieve"),
    "bronwen": ("bronwyn",),
    "rhiannon": ("rhianon", "riannon"),
    "harriet": ("hattie", "harriett"),
    "matilda": ("tilly", "tillie", "tilda"),
    "florence": ("flo", "florrie", "flossie"),
    "jane": ("jayne", "janey", "jaine"),
    "janet": ("janette", "jannet"),
    "judith": ("judy", "judi"),
    "pamela": ("pam", "pammy"),
    "valerie": ("val",),
    "beverley": ("bev", "beverly"),
    "barbara": ("barb", "babs", "barbra"),
    "cynthia": ("cindy",),
    "leanne": ("lianne", "leann", "leeanne", "leeann"),
    "danielle": ("dani", "daniele"),
    "gabrielle": ("gabby", "gabbie", "gaby"),
    "rose": ("rosie",),
    "annabel": ("annabelle", "anabel", "annabell"),
    "madeleine": ("madeline", "madelaine", "maddie", "maddy", "madelyn"),
    "phoebe": ("pheobe", "phebe"),
    "lily": ("lilly", "lillie", "lili"),
    "scarlett": ("scarlet",),
    "imogen": ("imogene", "immy"),
    "eloise": ("elouise",),
    "freya": ("freja", "freyja"),
    "millie": ("milly",),
    "esme": ("esmee",),
    "zara": ("zarah",),
    "layla": ("leila", "laila", "leyla", "laylah", "lailah"),
    "courtney": ("kourtney",),
    "chelsea": ("chelsey", "chelsie"),
    "stacey": ("stacy", "staci", "stacie"),
    "kirsty": ("kirstie", "kirsti"),
    "jodie": ("jody", "jodi"),
    "kerry": ("kerri", "kerrie", "keri"),
    "sharon": ("sharron", "sharyn"),
    "karen": ("caren", "karan"),
    "lorraine": ("loraine", "lorrain"),
    "marilyn": ("marilynn", "marylin"),
    "siena": ("sienna",),
    "aaliyah": ("aliyah", "aaliya", "aliya"),
    "alison": ("allison", "alyson", "allyson"),
    "tanya": ("tania", "tanja"),
    "sonia": ("sonya", "sonja"),
    "tegan": ("teagan", "teigan", "tiegan"),
    "keeley": ("keely", "keelie"),
    "jade": ("jayde",),
    "charlene": ("sharlene",),
    "marion": ("marian",),
    "philippa": ("pippa", "phillipa", "philipa"),
    "mary": ("mair", "mairi", "maire"),
}


def _invert(groups: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    table: dict[str, str] = {}
    for canonical, variants in groups.items():
        table[canonical] = canonical
        for variant in variants:
            # fold() keeps the table honest for entries such as "elżbieta".
            table[fold(variant)] = canonical
    return table


FORENAME_VARIANTS: dict[str, str] = _invert(_FORENAME_GROUPS)
"""Folded forename -> canonical forename; names absent from the table are their own canonical."""


def canonical_forename(name: str) -> str:
    """Canonical form of one folded forename; unknown names map to themselves."""
    return FORENAME_VARIANTS.get(name, name)


# ---------------------------------------------------------------------------
# family names
# ---------------------------------------------------------------------------

# Particles that belong to the next word: "van der Berg" is one surname, not three.
_PARTICLES = frozenset(
    {
        "mc",
        "mac",
        "o",
        "st",
        "de",
        "da",
        "di",
        "du",
        "del",
        "della",
        "der",
        "den",
        "des",
        "dos",
        "das",
        "do",
        "la",
        "le",
        "lo",
        "van",
        "von",
        "ter",
        "ten",
        "al",
        "el",
        "bin",
        "ibn",
        "ben",
        "bint",
        "abu",
        "ap",
        "fitz",
        "ni",
        "nic",
        "ui",
    }
)
# "St John" and "Saint John" are the same surname.
_FAMILY_WORD_MAP = {"saint": "st", "ste": "st"}


@lru_cache(maxsize=_CACHE)
def _family_name_parts(raw: str) -> tuple[str, ...]:
    folded = fold(raw)
    words = [_FAMILY_WORD_MAP.get(w, w) for w in folded.split() if not w.isdigit()]
    compact = "".join(words)
    if compact in _PLACEHOLDERS_COMPACT or _ALL_X.fullmatch(compact):
        return ()
    parts: list[str] = []
    prefix = ""
    for word in words:
        if word in _PARTICLES:
            prefix += word
        else:
            parts.append(prefix + word)
            prefix = ""
    if prefix:
        # A trailing or lone particle ("Le", "Do") is itself a surname.
        parts.append(prefix)
    return tuple(parts)


def family_name_parts(raw: str | None) -> tuple[str, ...]:
    """Folded parts of a double-barrelled family name, particles attached to the next part."""
    if raw is None:
        return ()
    return _family_name_parts(raw)


def family_name(raw: str | None) -> str | None:
    """Whole folded family name without spaces or hyphens; None for missing or placeholder."""
    parts = family_name_parts(raw)
    return "".join(parts) if parts else None


# ---------------------------------------------------------------------------
# dates
# ---------------------------------------------------------------------------

_MONTHS: dict[str, int] = {}
for _i, _name in enumerate(
    (
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ),
    start=1,
):
    _MONTHS[_name] = _i
    _MONTHS[_name[:3]] = _i
_MONTHS["sept"] = 9
del _i, _name

_DATE_DIRECTIVES = {
    "d": r"(?P<d>\d{1,2})",
    "m": r"(?P<m>\d{1,2})",
    "Y": r"(?P<Y>\d{4})",
    "y": r"(?P<y>\d{2})",
    "b": r"(?P<b>[A-Za-z]{3,9})",
    "B": r"(?P<b>[A-Za-z]{3,9})",
}
# Extracts often carry a midnight time from a datetime column: "01/02/2001 00:00",
# "2001-02-01T00:00:00.000Z". It is dropped, never interpreted.
_TIME_TAIL = (
    r"(?:(?:\s+|T)\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[AaPp]\.?[Mm]\.?)?"
    r"\s*(?:Z|[+-]\d{2}:?\d{2})?)?"
)
_TIME_TAIL_RE = re.compile(_TIME_TAIL + r"\s*$")
_TIME_DIRECTIVES = frozenset("HIMSfpzZTcXx")
_ALL_ZERO_DATE = re.compile(r"[0\W_]+")


@lru_cache(maxsize=64)
def _date_pattern(fmt: str) -> re.Pattern[str] | None:
    """Regex for a date-only strptime format, or None when strptime must do the work."""
    out: list[str] = []
    seen: set[str] = set()
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == "%":
            if i + 1 >= len(fmt):
                return None
            d = fmt[i + 1]
            i += 2
            if d == "%":
                out.append("%")
                continue
            key = "b" if d in "bB" else d
            if d not in _DATE_DIRECTIVES or key in seen:
                return None
            seen.add(key)
            out.append(_DATE_DIRECTIVES[d])
            continue
        out.append(r"\s+" if c.isspace() else re.escape(c))
        i += 1
    if not ({"d", "Y"} <= seen or {"d", "y"} <= seen) or not ({"m"} <= seen or {"b"} <= seen):
        return None
    return re.compile(r"\s*" + "".join(out) + _TIME_TAIL + r"\s*", re.IGNORECASE)


def _pivot(yy: int, month: int, day: int, today: datetime.date) -> datetime.date:
    # The latest century that does not put the date in the future: born "15" is 2015
    # until 2015 has not happened yet, then 1915.
    century = today.year - today.year % 100
    candidate = datetime.date(century + yy, month, day)
    if candidate > today:
        candidate = datetime.date(century - 100 + yy, month, day)
    return candidate


def _parse_date(raw: str, fmt: str, today: datetime.date) -> datetime.date:
    pattern = _date_pattern(fmt)
    if pattern is None:
        text = raw.strip()
        if not any(f"%{d}" in fmt for d in _TIME_DIRECTIVES):
            text = _TIME_TAIL_RE.sub("", text)
        try:
            parsed = datetime.datetime.strptime(text, fmt).date()
        except ValueError as exc:
            # strptime matched the format but the day does not exist (31/02)
            if str(exc) == "day is out of range for month":
                raise NoSuchDay(f"date {raw!r} is not a real date") from exc
            raise
        if "%y" in fmt:
            parsed = _pivot(parsed.year % 100, parsed.month, parsed.day, today)
        return parsed
    match = pattern.fullmatch(raw)
    if match is None:
        raise ValueError("no match")
    groups = match.groupdict()
    day = int(groups["d"])
    if groups.get("m") is not None:
        month = int(groups["m"])
    else:
        month = _MONTHS[groups["b"].lower()]
    try:
        if groups.get("Y") is not None:
            return datetime.date(int(groups["Y"]), month, day)
        return _pivot(int(groups["y"]), month, day, today)
    except ValueError as exc:  # the format's shape, but day 31 of February or month 13
        raise NoSuchDay(f"date {raw!r} is not a real date") from exc


# Keyed by today's date as well, so a two-digit-year answer cached before midnight is
# not reused after it. Dates of birth repeat a lot across a million records.
@lru_cache(maxsize=_CACHE)
def _parse_date_cached(raw: str, fmt: str, today: datetime.date) -> datetime.date | None:
    try:
        return _parse_date(raw, fmt, today)
    except (ValueError, KeyError) as exc:
        # Placeholders are checked only after a failed parse: real dates are the common case.
        text = raw.strip()
        if not text or _ALL_ZERO_DATE.fullmatch(text) or _is_placeholder(fold(text)):
            return None
        if isinstance(exc, NoSuchDay):
            raise
        raise NormaliseError(f"date {raw!r} does not match the expected format {fmt!r}") from exc


def parse_date(
    raw: str | None, fmt: str, *, today: datetime.date | None = None
) -> datetime.date | None:
    """Date parsed with the agency's strptime format; None for blank or placeholder.

    ``today`` (default: the clock's) places two-digit years; a caller parsing many
    dates at once may read the clock once and pass it.
    """
    if raw is None:
        return None
    return _parse_date_cached(raw, fmt, today or datetime.date.today())


# ---------------------------------------------------------------------------
# sex
# ---------------------------------------------------------------------------

_SEX_CODES: dict[str, Literal["M", "F"] | None] = {
    "M": "M",
    "MALE": "M",
    "MAN": "M",
    "BOY": "M",
    "1": "M",  # ISO/IEC 5218 and NHS Data Dictionary PERSON GENDER CODE
    "F": "F",
    "FEMALE": "F",
    "WOMAN": "F",
    "GIRL": "F",
    "2": "F",
    "": None,
    "U": None,
    "UNKNOWN": None,
    "NOT KNOWN": None,
    "NK": None,
    "X": None,
    "I": None,  # indeterminate
    "INDETERMINATE": None,
    "0": None,  # ISO/IEC 5218 "not known"
    "9": None,  # ISO/IEC 5218 "not applicable" / NHS "not specified"
    "N": None,
    "NS": None,
    "NOT SPECIFIED": None,
    "NOT STATED": None,
    "N/A": None,
    "NULL": None,
    "NONE": None,
    "-": None,
}
_SEX_TARGETS: dict[str, Literal["M", "F"] | None] = {"M": "M", "F": "F", "": None, "U": None}


def sex(raw: str | None, extra: Mapping[str, str] | None = None) -> Literal["M", "F"] | None:
    """Sex code as M, F or None (unknown); agency codes in ``extra`` take precedence."""
    if raw is None:
        return None
    key = " ".join(raw.split()).upper()
    if extra:
        target = extra.get(key)
        if target is None:
            # Keys are documented as upper case, but a mapping file written by hand may not be.
            for code, value in extra.items():
                if code.strip().upper() == key:
                    target = value
                    break
        if target is not None:
            norm = target.strip().upper()
            if norm not in _SEX_TARGETS:
                raise NormaliseError(
                    f"sex code {raw!r} is mapped to {target!r}; expected a mapping to M or F"
                )
            return _SEX_TARGETS[norm]
    if key in _SEX_CODES:
        return _SEX_CODES[key]
    raise NormaliseError(
        f"sex code {raw!r} is not recognised; expected M/male/1, F/female/2, U/unknown/0/9 "
        "or a code declared in the agency mapping"
    )


# ---------------------------------------------------------------------------
# postcodes
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Postcode:
    """A valid UK postcode split at the levels used for blocking."""

    unit: str
    outward: str
    sector: str


# Royal Mail / ONS postcode format rules, per position.
_OUTWARD = re.compile(
    r"[A-PR-UWYZ](?:[0-9][0-9]?|[0-9][A-HJKPSTUW]|[A-HK-Y][0-9][0-9]?|[A-HK-Y][0-9][ABEHMNPRVWXY])"
)
_INWARD = re.compile(r"[0-9][ABD-HJLNP-UW-Z]{2}")
_NON_ALNUM = re.compile(r"[^A-Z0-9]+")
# Position-determined OCR/typing fixes: the inward code starts with a digit and the
# outward code with a letter. Other positions can be either, so are left alone;
# inward letter positions never use O or I, so 0->O / 1->I there could not help.
_INWARD_DIGIT_FIX = str.maketrans({"O": "0", "I": "1"})
_OUTWARD_FIRST_FIX = str.maketrans({"0": "O", "1": "I"})
# Not geographic: no fixed abode, NHS pseudo-postcodes (ZZ99 ...), forces post.
_NON_GEOGRAPHIC = re.compile(r"NFA|NOFIXEDABODE|ZZ99[0-9A-Z]{3}|BFPO[0-9]*")


@lru_cache(maxsize=_CACHE)
def _postcode(raw: str) -> Postcode | None:
    compact = _NON_ALNUM.sub("", raw.upper())
    if not compact or _is_placeholder(compact.lower()) or _NON_GEOGRAPHIC.fullmatch(compact):
        return None
    if compact == "GIR0AA":
        return Postcode(unit="GIR 0AA", outward="GIR", sector="GIR 0")
    if 5 <= len(compact) <= 7:
        outward = compact[0].translate(_OUTWARD_FIRST_FIX) + compact[1:-3]
        inward = compact[-3].translate(_INWARD_DIGIT_FIX) + compact[-2:]
        if _OUTWARD.fullmatch(outward) and _INWARD.fullmatch(inward):
            return Postcode(
                unit=f"{outward} {inward}", outward=outward, sector=f"{outward} {inward[0]}"
            )
    raise NormaliseError(
        f"postcode {raw!r} is not a valid UK postcode; expected e.g. 'SW1A 1AA' "
        "(A9 9AA, A99 9AA, A9A 9AA, AA9 9AA, AA99 9AA or AA9A 9AA)"
    )


def postcode(raw: str | None) -> Postcode | None:
    """Validated UK postcode in normal form; None for blank or non-geographic codes."""
    if raw is None:
        return None
    return _postcode(raw)


_ANY_POSTCODE = re.compile(r"[A-Z0-9]{3,10}")


@lru_cache(maxsize=_CACHE)
def _postcode_any(raw: str) -> Postcode | None:
    compact = "".join(raw.upper().split())
    if not compact or _is_placeholder(compact.lower()) or _NON_GEOGRAPHIC.fullmatch(compact):
        return None
    if not _ANY_POSTCODE.fullmatch(compact):
        raise NormaliseError(
            f"postcode {raw!r} is not 3 to 10 letters and digits (spaces are ignored)"
        )
    # No district: the outward code in clear is a UK notion (PostcodeDistrict).
    return Postcode(unit=compact, outward="", sector=compact[:-1])


def postcode_any(raw: str | None) -> Postcode | None:
    """Any country's postcode: upper case without spaces, 3-10 letters and digits.

    Its sector is the code without its last character; it has no district
    (``outward`` is ""). None for blank or placeholder values.
    """
    if raw is None:
        return None
    return _postcode_any(raw)


# ---------------------------------------------------------------------------
# addresses
# ---------------------------------------------------------------------------

_ADDRESS_WORDS = {
    "rd": "road",
    "st": "street",
    "str": "street",
    "ave": "avenue",
    "av": "avenue",
    "avn": "avenue",
    "ln": "lane",
    "cl": "close",
    "clo": "close",
    "cres": "crescent",
    "cresc": "crescent",
    "cr": "crescent",
    "ct": "court",
    "crt": "court",
    "dr": "drive",
    "drv": "drive",
    "gdns": "gardens",
    "gdn": "garden",
    "gr": "grove",
    "gro": "grove",
    "grv": "grove",
    "pl": "place",
    "sq": "square",
    "terr": "terrace",
    "ter": "terrace",
    "tce": "terrace",
    "wy": "way",
    "wk": "walk",
    "pde": "parade",
    "pk": "park",
    "mt": "mount",
    "hse": "house",
    "ho": "house",
    "bldg": "building",
    "bldgs": "buildings",
    "cotts": "cottages",
    "est": "estate",
    "hts": "heights",
    "grn": "green",
    "yd": "yard",
    "lwr": "lower",
    "upr": "upper",
    "upp": "upper",
    "gt": "great",
    "nth": "north",
    "sth": "south",
    "flt": "flat",
    "apt": "flat",
    "apartment": "flat",
    "appt": "flat",
}
_STREET_TYPES = frozenset(v for v in _ADDRESS_WORDS.values() if v not in {"flat", "house"}) | {
    "street",
    "mews",
    "row",
    "hill",
}
_FLOOR_WORDS = frozenset({"ground", "first", "second", "third", "top", "basement", "floor"})
_UNIT_WORDS = _FLOOR_WORDS | {"flat", "unit", "room"}  # a part after the street that is kept
_HOUSE_NO = re.compile(r"[0-9]+[a-z]?")
_FLAT_ID = re.compile(r"[0-9]+[a-z]?|[a-z]")
# "2/10 High Street" is flat 2 at number 10 (English convention).
_SLASH_FLAT = re.compile(r"(?<![\w/])([0-9]+[A-Za-z]?)\s*/\s*([0-9]+[A-Za-z]?)(?![\w/])")


def _address_words(words: list[str]) -> list[str]:
    out: list[str] = []
    n = len(words)
    for i, word in enumerate(words):
        nxt = words[i + 1] if i + 1 < n else None
        if word == "st":
            prev = out[-1] if out else None
            # "St Johns Road": a saint's name starts the street, right after the number.
            saint = (
                nxt is not None
                and nxt not in _STREET_TYPES
                and (prev is None or _HOUSE_NO.fullmatch(prev) is not None)
            )
            out.append("saint" if saint else "street")
        elif word == "no" and nxt is not None and _HOUSE_NO.fullmatch(nxt):
            continue  # "No. 10"
        elif (
            len(word) == 1
            and word.isalpha()
            and out
            and out[-1].isdigit()
            and not (len(out) >= 2 and out[-2] == "flat")
        ):
            out[-1] += word  # "10 A High Street" -> "10a"
        else:
            word = _ADDRESS_WORDS.get(word, word)
            if word == "flat" and out and out[-1] == "flat":
                continue
            out.append(word)
    # "10 High Street Flat 2" -> "flat 2 10 high street"; a "ground floor flat" stays put.
    for j in range(1, len(out) - 1):
        if out[j] == "flat" and _FLAT_ID.fullmatch(out[j + 1]) and out[j - 1] not in _FLOOR_WORDS:
            out = ["flat", out[j + 1], *out[:j], *out[j + 2 :]]
            break
    return out


def address_line(lines: Sequence[str | None]) -> str | None:
    """The street address: lines joined, folded, abbreviations expanded, flats 'flat N M ...'.

    Whatever follows the first part (line or comma-separated piece) that names a
    street type is left out: one agency writes "12 Rose St, Ashby" and another
    "12 Rose Street", and the town (which the postcode stands for anyway) must
    not make one address two.
    """
    present = [line for line in lines if line and not line.isspace()]
    if not present:
        return None
    return _address_line(", ".join(present))


# Members of one household share an address, so repeats are common.
@lru_cache(maxsize=_CACHE)
def _address_line(joined: str) -> str | None:
    if "/" in joined:
        joined = _SLASH_FLAT.sub(r" flat \1 \2 ", joined)
    folded_whole = fold(joined)
    if _is_placeholder(folded_whole) or folded_whole in {"nfa", "no fixed abode"}:
        return None
    parts = [_address_words(fold(part).split()) for part in joined.split(",")]
    # the street ends with the last part naming a street type or a house number
    # ("Oak Court, 5 Elm Drive": the building, then the street); a later part is
    # locality or town, unless it names a unit ("10 High Street, Flat 2")
    last = max(
        (
            k
            for k, ws in enumerate(parts)
            if any(w in _STREET_TYPES for w in ws[1:]) or any(_HOUSE_NO.fullmatch(w) for w in ws)
        ),
        default=len(parts) - 1,
    )
    words = [w for ws in parts[: last + 1] for w in ws]
    words += [w for ws in parts[last + 1 :] if ws and ws[0] in _UNIT_WORDS for w in ws]
    return " ".join(_address_words(words)) or None


def house_number(address: str | None) -> str | None:
    """House number with suffix ('10a'), as 'flat/number' ('2/10') when a flat leads the line."""
    if not address:
        return None
    return _house_number(address)


# Called once per record on the normalised address; household members share it.
@lru_cache(maxsize=_CACHE)
def _house_number(address: str) -> str | None:
    words = fold(address).split()
    flat: str | None = None
    start = 0
    if len(words) >= 2 and words[0] == "flat" and _FLAT_ID.fullmatch(words[1]):
        flat = words[1]
        start = 2
    number = next((w for w in words[start:] if _HOUSE_NO.fullmatch(w)), None)
    if flat is None:
        return number
    # A flat with no street number ("flat 2 rose court") keeps the slash so it cannot
    # collide with house number 2.
    return f"{flat}/{number or ''}"


# ---------------------------------------------------------------------------
# identifiers
# ---------------------------------------------------------------------------

_ID_SEPARATORS = re.compile(r"[\s\-]+")


def _compact_id(raw: str) -> str:
    # str.replace is several times faster than a regex for the usual space/dash separators.
    text = raw.replace(" ", "").replace("-", "")
    if not text.isalnum():
        text = _ID_SEPARATORS.sub("", text)
    return text


_NOT_ID = re.compile(r"[\W_]+")
_ALL_ZERO = re.compile(r"0+")


def local_identifier(raw: str | None) -> str | None:
    """An agency's own identifier: spaces and punctuation removed, upper case; None if blank.

    Unchecked (there is no check digit to test), so placeholders ("unknown",
    "N/A") and all-zero values are refused as missing: two strangers must not
    share a token.
    """
    if raw is None:
        return None
    compact = _NOT_ID.sub("", raw.upper())  # upper first: it may make combining marks
    if not compact or _ALL_ZERO.fullmatch(compact) or _is_placeholder(fold(raw)):
        return None
    return compact


def nhs_number(raw: str | None) -> str | None:
    """Ten-digit NHS number with a valid modulus-11 check digit; None for blank/placeholder."""
    if raw is None:
        return None
    digits = _compact_id(raw)
    if not digits or _is_placeholder(digits.lower()):
        return None
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        raise NormaliseError(f"NHS number {raw!r} is not 10 digits")
    if digits == digits[0] * 10:
        # 0000000000 and 1111111111 pass modulus 11 but are "unknown" fillers; as features
        # they would link strangers.
        return None
    d = digits.encode("ascii")
    # Weights 10..2 over the first nine digits (NHS Data Dictionary); the 48s are ord("0").
    total = (
        (10 * d[0] + 9 * d[1] + 8 * d[2] + 7 * d[3] + 6 * d[4] + 5 * d[5] + 4 * d[6] + 3 * d[7])
        + 2 * d[8]
        - 48 * 54
    )
    check = 11 - total % 11
    if check == 11:
        check = 0
    if check == 10 or check != int(digits[9]):
        raise NormaliseError(f"NHS number {raw!r} fails the modulus-11 check digit")
    return digits


_NINO = re.compile(r"([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z])([0-9]{6})([A-D]?)")
_NINO_TEMPORARY = re.compile(r"TN[0-9]{6}[A-Z]?")
_NINO_NEVER_ISSUED = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def ni_number(raw: str | None) -> str | None:
    """National Insurance number as two letters and six digits; None for blank or temporary."""
    if raw is None:
        return None
    text = _compact_id(raw).upper()
    if not text or _is_placeholder(text.lower()) or _NINO_TEMPORARY.fullmatch(text):
        return None
    match = _NINO.fullmatch(text)
    if match is None or match.group(1) in _NINO_NEVER_ISSUED:
        raise NormaliseError(
            f"National Insurance number {raw!r} is not valid; expected two permitted prefix "
            "letters, six digits and an optional suffix A-D, e.g. 'AB 12 34 56 C'"
        )
    # The suffix is dropped: HMRC never issues one stem with two suffixes, and many
    # systems omit it, so keeping it would split one person into two.
    return match.group(1) + match.group(2)


_UPN_ALPHABET = "ABCDEFGHJKLMNPQRTUVWXYZ"  # DfE check letters: no I, O, S
_UPN_VALUES = {c: i for i, c in enumerate(_UPN_ALPHABET)} | {str(d): d for d in range(10)}
_UPN = re.compile(rf"[{_UPN_ALPHABET}][0-9]{{11}}[0-9{_UPN_ALPHABET}]")
_UPN_UNKNOWN = re.compile(r"UN[1-5]")  # DfE codes for "UPN not known"


def upn(raw: str | None) -> str | None:
    """Unique Pupil Number with a valid DfE check letter; None for blank or UN1-UN5."""
    if raw is None:
        return None
    text = _compact_id(raw).upper()
    if not text or _is_placeholder(text.lower()) or _UPN_UNKNOWN.fullmatch(text):
        return None
    if _UPN.fullmatch(text) is None:
        raise NormaliseError(
            f"UPN {raw!r} is not valid; expected a check letter, 11 digits and a final "
            "digit or letter (13 characters)"
        )
    # DfE: weights 2..13 over characters 2..13, sum mod 23 indexes the check letters.
    total = 0
    for i in range(12):  # a plain loop: compiled, it is several times faster than map()
        total += (i + 2) * _UPN_VALUES[text[i + 1]]
    if _UPN_ALPHABET[total % 23] != text[0]:
        raise NormaliseError(f"UPN {raw!r} has the wrong check letter")
    return text


# ---------------------------------------------------------------------------
# soundex
# ---------------------------------------------------------------------------

_SOUNDEX_CODES = {
    **dict.fromkeys("bfpv", "1"),
    **dict.fromkeys("cgjkqsxz", "2"),
    **dict.fromkeys("dt", "3"),
    "l": "4",
    **dict.fromkeys("mn", "5"),
    "r": "6",
    **dict.fromkeys("aeiouy", ""),
}


def soundex(word: str) -> str:
    """American Soundex code of a folded word; empty string when it has no letters."""
    return _soundex(word)


@lru_cache(maxsize=_CACHE)
def _soundex(word: str) -> str:
    letters = [c for c in word if "a" <= c <= "z"]
    if not letters:
        return ""
    code = letters[0].upper()
    last = _SOUNDEX_CODES.get(letters[0], "")
    for c in letters[1:]:
        if c in "hw":
            continue  # h and w do not separate letters with the same code
        digit = _SOUNDEX_CODES[c]
        if digit and digit != last:
            code += digit
            if len(code) == 4:
                return code
        last = digit
    return code.ljust(4, "0")
