"""The linkage service: matches people and households on encodings, never on names.

Holds Bloom-filter encodings, keyed tokens, coarse attributes, indicators and
sealed identity blobs (which it cannot open). It never holds the linkage secret,
a plaintext identifier, or the unlock service's private key.

Where things live: the **matcher** is ``_engine.py`` (candidate generation in
``_blocking.py``, pair scoring in ``_scoring.py``, person clustering in
``_cluster.py``, households and families in ``_households.py``) over the
compiled Dice kernel ``_kernel.py`` (C in ``_dice.c``; numpy reference in
``_kernel_ref.py``). The service shell: storage ``_store.py``, streamed ingest
``_ingest.py``, applying an extract ``_service.py``, the review queue ordered
by impact on families ``_review.py``, HTTP ``_api.py`` (one router per
resource in ``_routes/``, answering the read views of ``protocols``), CLI
``_cli.py``, settings and tokens ``_config.py``. Quality measurement against
synthetic ground truth lives outside the service, in the ``evaluation`` package.

The **programme engine** is its own subpackage, ``programme/``: the **ruleset**
``programme/_ruleset.py`` (shipped files in ``programme/rulesets/``), the risk
model, assessment cycles and attestations, payment by results and the returns;
its SQL is only in ``programme/_store*.py`` (tables and shared reads in
``programme/_store.py``).
"""

from ._api import create_app
from ._batch import RecordBatch, pack_filters
from ._config import Settings, load_settings
from ._engine import Delta, EngineConfig, LinkageEngine
from ._errors import (
    AuthError,
    ConfigError,
    ConflictError,
    EngineError,
    FieldError,
    IngestError,
    LinkageError,
    NotFound,
    ReplayError,
    RulesetError,
    SchemaError,
    SignatureError,
    StorageError,
    TooLarge,
)
from ._service import LinkageService
from .programme._assessment import CycleResult, run_cycle, set_status
from .programme._claims import create_claims, evaluate_outcomes
from .programme._programme import Assessment, FamilyInput, MemberInput, assess_family
from .programme._riskmodel import RiskModel, default_model, load_model
from .programme._ruleset import Ruleset, default_ruleset, load_ruleset

__all__ = [
    "Assessment",
    "AuthError",
    "ConfigError",
    "ConflictError",
    "CycleResult",
    "Delta",
    "EngineConfig",
    "EngineError",
    "FamilyInput",
    "FieldError",
    "IngestError",
    "LinkageEngine",
    "LinkageError",
    "LinkageService",
    "MemberInput",
    "NotFound",
    "RecordBatch",
    "ReplayError",
    "RiskModel",
    "Ruleset",
    "RulesetError",
    "SchemaError",
    "Settings",
    "SignatureError",
    "StorageError",
    "TooLarge",
    "assess_family",
    "create_app",
    "create_claims",
    "default_model",
    "default_ruleset",
    "evaluate_outcomes",
    "load_model",
    "load_ruleset",
    "load_settings",
    "pack_filters",
    "run_cycle",
    "set_status",
]
