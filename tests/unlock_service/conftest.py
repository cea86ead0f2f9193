"""Fixtures: a whole unlock service in-process (SQLite or PostgreSQL), a fake linkage
service behind ``httpx.MockTransport``, a controllable clock, and factories for
professionals, families and signed clients."""

from __future__ import annotations

import base64
import datetime as dt
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from anyio.from_thread import start_blocking_portal
from fastapi import FastAPI
from nacl.signing import SigningKey

from audit_log import NoteSigner
from tests._inprocess import PortalTransport
from unlock_service import TokenIssuer, UnlockClient, UnlockService
from unlock_service import _admin as admin
from unlock_service._api import build_service, create_app
from unlock_service._config import Settings, write_secret
from unlock_service._release import rotate_seal_key

from ._factories import IDENTITIES, POLICY, T0, FakeLinkage, Family, b64, ed25519_seed_key, hexid


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: dt.datetime = T0) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def timestamp(self) -> float:
        return self.now.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@dataclass
class Pro:
    """A registered professional and their key."""

    professional_id: str
    role: str
    clearance: int
    key: SigningKey


@dataclass
class Env:
    """One running unlock service and everything a test needs around it."""

    settings: Settings
    linkage: FakeLinkage
    clock: Clock
    http: httpx.Client
    app: FastAPI
    issuer: TokenIssuer
    rng: random.Random
    tmp: Path
    admin: Pro | None = None
    pros: list[Pro] = field(default_factory=list)

    @property
    def service(self) -> UnlockService:
        service: UnlockService = self.app.state.service
        return service

    def token(self, pro: Pro, lifetime: int = 300, key: bytes | None = None) -> str:
        return self.issuer.issue(
            pro.professional_id,
            key or bytes(pro.key.verify_key),
            lifetime=lifetime,
            now=self.clock.timestamp(),
        )

    def client(
        self, pro: Pro, token: str | None = None, key: SigningKey | None = None
    ) -> UnlockClient:
        """A signed client for ``pro`` (a fresh token per request unless one is given)."""
        return UnlockClient(
            "http://testserver",
            key or pro.key,
            token if token is not None else (lambda: self.token(pro)),
            http=self.http,
            clock=self.clock.timestamp,
        )

    def add_pro(self, role: str = "social_worker", clearance: int = 5) -> Pro:
        key = SigningKey(self.rng.randbytes(32))
        pro = admin.add_professional(
            self.service.engine,
            self.service.audit,
            self.service.policy,
            actor_id=None if self.admin is None else self.admin.professional_id,
            role=role,
            team="north-early-help",
            clearance=clearance,
            public_key=bytes(key.verify_key),
            professional_id=hexid("pro", self.rng),
            now=self.clock(),
        )
        made = Pro(pro.professional_id, role, clearance, key)
        self.pros.append(made)
        return made

    def add_family(
        self,
        members: int = 2,
        *,
        clearance: int = 3,
        below_threshold: bool = False,
        agencies: list[str] | None = None,
        identities: list[int] | None = None,
        **attest: Any,
    ) -> str:
        """A family of ``members`` records (``agencies``: each record's agency,
        ``identities``: each record's index into IDENTITIES; ``persons=`` groups
        the records into people in the attestation)."""
        family_id = hexid("fam", self.rng)
        seal_pub = current_seal_public(self.settings.seal_key_dir)
        agency_of = agencies or ["school" if i % 2 == 0 else "police" for i in range(members)]
        refs = [(agency_of[i], hexid("r", self.rng, 32)[2:]) for i in range(members)]
        which = identities or list(range(members))
        blobs = []
        from protocols import SealedBlob

        from ._factories import seal_identity

        kid = self.settings.seal_key_dir.joinpath("CURRENT").read_text().strip()
        for i, (agency, ref) in enumerate(refs):
            blobs.append(
                SealedBlob(
                    agency_id=agency,
                    record_ref=ref,
                    extract_id="e" * 32,
                    seal_key_id=kid,
                    sealed_identity=seal_identity(
                        seal_pub, agency, ref, IDENTITIES[which[i] % len(IDENTITIES)]
                    ),
                )
            )
        signed = None
        if not below_threshold:
            attest.setdefault("assessed", self.clock() - dt.timedelta(days=1))
            signed = self.linkage.attest(family_id, refs, clearance=clearance, **attest)
        self.linkage.families[family_id] = Family(family_id, signed, blobs)
        return family_id


def current_seal_public(directory: Path) -> bytes:
    """The raw public key of the current sealing key."""
    import json

    kid = (directory / "CURRENT").read_text().strip()
    data = json.loads((directory / kid / "seal.pub").read_text())
    return base64.b64decode(data["public_key"])


def write_config(
    tmp: Path,
    rng: random.Random,
    db_url: str,
    audit_url: str,
    policy: str = POLICY,
    **extra: Any,
) -> tuple[Settings, FakeLinkage, TokenIssuer]:
    """Key files, a policy and settings in ``tmp``."""
    linkage = FakeLinkage(SigningKey(rng.randbytes(32)), rng)
    issuer_key, issuer_pub = ed25519_seed_key(rng)
    (tmp / "policy.toml").write_text(policy)
    (tmp / "linkage.pub").write_text(b64(bytes(linkage.key.verify_key)))
    (tmp / "issuer.pub").write_text(b64(issuer_pub))
    write_secret(tmp / "linkage.token", linkage.token)
    write_secret(tmp / "audit.key", NoteSigner.generate("unlock.test/audit").skey)
    rotate_seal_key(tmp / "seal-keys")
    settings = Settings(
        database_url=db_url,
        policy_file=tmp / "policy.toml",
        seal_key_dir=tmp / "seal-keys",
        audit_database_url=audit_url,
        audit_key_file=tmp / "audit.key",
        linkage_url="http://linkage.test",
        linkage_token_file=tmp / "linkage.token",
        linkage_public_key_file=tmp / "linkage.pub",
        issuer_public_key_file=tmp / "issuer.pub",
        checkpoint_interval=60,
        **extra,
    )
    return (
        settings,
        linkage,
        TokenIssuer(issuer_key, settings.token_issuer, settings.token_audience),
    )


@pytest.fixture
def rng() -> random.Random:
    return random.Random(20261122)


@pytest.fixture
def make_env(tmp_path: Path, rng: random.Random) -> Iterator[Callable[..., Env]]:
    """Factory: a started unlock service over fresh databases, with an administrator."""
    stack: list[Any] = []
    portal_cm = start_blocking_portal()
    portal = portal_cm.__enter__()

    def make(
        db_url: str | None = None,
        audit_url: str | None = None,
        policy: str = POLICY,
        **extra: Any,
    ) -> Env:
        tmp = tmp_path / f"env{len(stack)}"
        tmp.mkdir()
        settings, linkage, issuer = write_config(
            tmp,
            rng,
            db_url or f"sqlite:///{tmp / 'unlock.db'}",
            audit_url or f"sqlite:///{tmp / 'audit.db'}",
            policy,
            **extra,
        )
        clock = Clock()

        def factory(s: Settings) -> UnlockService:
            return build_service(s, linkage_transport=linkage.transport(), clock=clock)

        app = create_app(settings, service_factory=factory)
        lifespan = portal.wrap_async_context_manager(app.router.lifespan_context(app))
        lifespan.__enter__()
        stack.append(lifespan)
        http = httpx.Client(transport=PortalTransport(app, portal), base_url="http://testserver")
        stack.append(http)
        env = Env(settings, linkage, clock, http, app, issuer, rng, tmp)
        env.admin = env.add_pro("admin", 9)
        return env

    try:
        yield make
    finally:
        for item in reversed(stack):
            if isinstance(item, httpx.Client):
                item.close()
            else:
                item.__exit__(None, None, None)
        portal_cm.__exit__(None, None, None)


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    """One service on SQLite."""
    return make_env()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(unlock URL, audit URL) on each backend, both empty."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'u.db'}", f"sqlite:///{tmp_path / 'a.db'}"
    base: str = request.getfixturevalue("empty_postgres_url")
    return base, base
