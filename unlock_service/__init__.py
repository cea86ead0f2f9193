"""The unlock service: policy-controlled release of identities to cleared professionals.

A professional authenticates (a short-lived EdDSA JWT bound to their own
Ed25519 key, plus a signature over each request), names a family and a
purpose; the policy decides; the decision is appended to the audit log before
anything happens; only on a grant are the family's sealed blobs fetched from
the linkage service, opened with the service's X25519 key, and returned
sealed to the professional with the decision's audit receipt.

Where things live: settings and key files ``_config``, tokens and request
signatures ``_auth``, the policy ``_policy``, the flow ``_service``,
attestation checks, key custody and sealing ``_release``, the linkage client
``_linkage``, administration ``_admin``, storage ``_store``, the HTTP app
``_api``, the professional's client ``_client``, rows as wire models ``_views``, the CLI
``_cli``; the wire models and reason sentences are in ``protocols``. Errors
derive from :class:`UnlockError` (hierarchy in ``_errors``).
"""

from ._admin import (
    add_professional,
    rotate_professional_key,
    rotate_sealing_key,
    set_active,
    set_clearance,
)
from ._api import create_app
from ._auth import Claims, TokenIssuer, TokenVerifier, jwk_thumbprint, sign_request
from ._client import (
    UnlockClient,
    describe_release,
    generate_professional_key,
    load_professional_key,
    open_release,
    open_release_body,
)
from ._config import Settings, load_settings
from ._errors import (
    AuditUnavailable,
    AuthError,
    ConfigError,
    Conflict,
    Forbidden,
    LinkageError,
    NotFound,
    Refused,
    ReleaseError,
    StorageError,
    UnlockError,
)
from ._linkage import LinkageClient
from ._policy import Facts, Outcome, Policy, decide, load_policy
from ._release import SealKeyring, verify_attestation
from ._service import Pending, Release, UnlockService
from ._subject import open_subject_identities, write_subject_access

__all__ = [
    "AuditUnavailable",
    "AuthError",
    "Claims",
    "ConfigError",
    "Conflict",
    "Facts",
    "Forbidden",
    "LinkageClient",
    "LinkageError",
    "NotFound",
    "Outcome",
    "Pending",
    "Policy",
    "Refused",
    "Release",
    "ReleaseError",
    "SealKeyring",
    "Settings",
    "StorageError",
    "TokenIssuer",
    "TokenVerifier",
    "UnlockClient",
    "UnlockError",
    "UnlockService",
    "add_professional",
    "create_app",
    "decide",
    "describe_release",
    "generate_professional_key",
    "jwk_thumbprint",
    "load_policy",
    "load_professional_key",
    "load_settings",
    "open_release",
    "open_release_body",
    "open_subject_identities",
    "rotate_professional_key",
    "rotate_sealing_key",
    "set_active",
    "set_clearance",
    "sign_request",
    "verify_attestation",
    "write_subject_access",
]
