"""The linkage service: matches people and households on encodings, never on names.

Holds Bloom-filter encodings, keyed tokens, coarse attributes, indicators and
sealed identity blobs (which it cannot open). It never holds the linkage secret,
a plaintext identifier, or the unlock service's private key.

Where things live: the **matcher** is ``_engine.py`` (candidate generation in
``_blocking.py``, pair scoring in ``_scoring.py``, person clustering in
``_cluster.py``, households and families in ``_households.py``) over the
compiled Dice kernel ``_kernel.py`` (C in ``_dice.c``; numpy reference in
``_kernel_ref.py``). The service shell: storage ``_store.py``, streamed ingest
``_ingest.py``, applying an extract ``_service.py``, HTTP ``_api.py``, CLI
``_cli.py``, settings and tokens ``_config.py``. Quality measurement against
synthetic ground truth: ``_evaluate.py`` (tests and benchmarks only).
"""

from ._api import create_app
from ._batch import RecordBatch, pack_filters
from ._config import Settings, load_settings
from ._engine import Delta, EngineConfig, LinkageEngine
from ._errors import (
    AuthError,
    ConfigError,
    EngineError,
    IngestError,
    LinkageError,
    NotFound,
    ReplayError,
    SchemaError,
    SignatureError,
    StorageError,
    TooLarge,
)
from ._service import LinkageService

__all__ = [
    "AuthError",
    "ConfigError",
    "Delta",
    "EngineConfig",
    "EngineError",
    "IngestError",
    "LinkageEngine",
    "LinkageError",
    "LinkageService",
    "NotFound",
    "RecordBatch",
    "ReplayError",
    "SchemaError",
    "Settings",
    "SignatureError",
    "StorageError",
    "TooLarge",
    "create_app",
    "load_settings",
    "pack_filters",
]
