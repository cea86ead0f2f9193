"""Settings of the web service: where the other services are, its own database,
and how sign-in sessions behave.

The web service holds no key and no token of its own: it calls the linkage
service and the audit log with the signed-in user's credential (sealed in the
account table under a key derived from the user's password, opened only for
the session) and relays requests the professional's browser signed to the
unlock service. Settings come from a TOML/JSON file and ``WEB_SERVICE_*``
environment variables; nothing is read at import time.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from service_common import load_service_settings

from ._errors import ConfigError

__all__ = ["ENV_PREFIX", "Settings", "load_settings"]

ENV_PREFIX = "WEB_SERVICE_"


class Settings(BaseModel):
    """Settings of one web service instance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = "sqlite:///web.sqlite"
    linkage_url: str = Field(pattern=r"^https?://")
    unlock_url: str = Field(pattern=r"^https?://")
    # The audit log's read API (the unlock service mounts it at /audit).
    audit_url: str | None = Field(default=None, pattern=r"^https?://")
    # Verifier keys (C2SP note vkeys) the IG pages check checkpoints against.
    audit_log_vkey_file: Path | None = None
    witness_vkey_file: Path | None = None
    backend_timeout: float = Field(default=30.0, gt=0)
    # A CA bundle for the services' TLS certificates (None: the system's).
    ca_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Cookies are Secure by default; browsers treat http://localhost and
    # 127.0.0.1 as secure, so the local run keeps this on too.
    cookie_secure: bool = True
    session_idle_minutes: int = Field(default=15, ge=1, le=24 * 60)
    session_max_hours: int = Field(default=10, ge=1, le=24)
    max_failed_sign_ins: int = Field(default=5, ge=1)
    lockout_minutes: int = Field(default=15, ge=1)
    max_body_bytes: int = Field(default=1 << 20, gt=0)

    @property
    def audit_base(self) -> str:
        """The audit log's base URL (the unlock service's /audit by default)."""
        return (self.audit_url or self.unlock_url.rstrip("/") + "/audit").rstrip("/")


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from a TOML/JSON file (optional) overridden by environment variables."""
    return load_service_settings(Settings, ENV_PREFIX, path, environ, ConfigError)
