"""Fixtures for linkage-service tests: a service on SQLite (or PostgreSQL) with a fake engine."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from linkage_service import _store as store
from linkage_service._service import LinkageService

from ._factories import FP, SCHEMA, Agency, FakeEngine, agency, register


@pytest.fixture
def rng() -> random.Random:
    return random.Random(20261101)


@pytest.fixture
def school() -> Agency:
    return agency("school", 1)


@pytest.fixture
def police() -> Agency:
    a = agency("police", 2)
    a.types = ("police",)
    return a


@pytest.fixture
def make_service(
    tmp_path: Path, school: Agency, police: Agency
) -> Iterator[Callable[..., LinkageService]]:
    """Factory: a started service over a fresh database with school and police registered."""
    engines = []

    def make(url: str | None = None, factory: Any = FakeEngine, **kw: Any) -> LinkageService:
        sql = store.open_engine(url or f"sqlite:///{tmp_path / 'linkage.db'}")
        engines.append(sql)
        register(sql, school)
        register(sql, police)
        svc = LinkageService(sql, {FP: SCHEMA}, factory, staging_dir=tmp_path, **kw)
        svc.start()
        return svc

    yield make
    for e in engines:
        e.dispose()


def ingest(svc: LinkageService, body: bytes, agency_id: str = "school", chunk: int = 997) -> Any:
    """Feed ``body`` in chunks of ``chunk`` bytes and apply it; the run summary."""
    receiver = svc.receiver(agency_id)
    try:
        for i in range(0, len(body), chunk):
            receiver.feed(body[i : i + chunk])
        return svc.apply(receiver.finish())
    finally:
        receiver.close()
