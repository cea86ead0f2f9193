"""The agency client: encode an agency's records into a signed, tokenised extract.

Runs inside the agency's own building. Plaintext identities go in; out come
keyed Bloom filters, keyed tokens and blocking keys, coarse attributes,
indicators, and identities sealed so that only the unlock service can open them.

Where things live: normalisation ``_normalise``, the encoder ``_encoder``,
one CSV row ``_rows``, extract files ``_extract``, keys ``_keys``, the
mapping file ``_mapping`` and its transforms ``_transforms``, the dry run
``_check``, the CLI ``_cli``, the synthetic population ``_synthetic``, leak
scanning ``_privacy``, pushing an extract to the linkage service ``_push``.
The sealed-identity format (sealing, opening, the sealing key files) is shared
with the unlock service: ``protocols._seal``.
"""

from protocols import SealPublicKey

from ._check import CheckReport, check_csv
from ._encoder import Encoder, Encoding, NormalisedIdentity, derive_key, dice
from ._errors import (
    AgencyClientError,
    ConfigError,
    ExtractError,
    InputError,
    KeyFileError,
    PushError,
)
from ._extract import EncodeSummary, ExtractInfo, encode_csv, iter_records, verify_extract
from ._keys import (
    AgencyKey,
    AgencyPublicKey,
    generate_agency_key,
    generate_seal_keypair,
    generate_secret,
    load_agency_key,
    load_agency_public_key,
    load_seal_private_key,
    load_seal_public_key,
    load_secret,
)
from ._mapping import AgencyMapping, load_mapping
from ._privacy import Needles, Scanner, identity_needles, scan_extract, scan_text
from ._push import push_extract
from ._rows import BadRowPolicy, record_ref
from ._schema_file import load_schema, write_schema
from ._subject import IDENTITY_FIELDS, load_identity, subject_query

__all__ = [
    "IDENTITY_FIELDS",
    "AgencyClientError",
    "AgencyKey",
    "AgencyMapping",
    "AgencyPublicKey",
    "BadRowPolicy",
    "CheckReport",
    "ConfigError",
    "EncodeSummary",
    "Encoder",
    "Encoding",
    "ExtractError",
    "ExtractInfo",
    "InputError",
    "KeyFileError",
    "Needles",
    "NormalisedIdentity",
    "PushError",
    "Scanner",
    "SealPublicKey",
    "check_csv",
    "derive_key",
    "dice",
    "encode_csv",
    "generate_agency_key",
    "generate_seal_keypair",
    "generate_secret",
    "identity_needles",
    "iter_records",
    "load_agency_key",
    "load_agency_public_key",
    "load_identity",
    "load_mapping",
    "load_schema",
    "load_seal_private_key",
    "load_seal_public_key",
    "load_secret",
    "push_extract",
    "record_ref",
    "scan_extract",
    "scan_text",
    "subject_query",
    "verify_extract",
    "write_schema",
]
