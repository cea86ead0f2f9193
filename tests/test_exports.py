"""Keep ``__all__`` honest for ``protocols`` and ``agency_client``.

Every exported name exists; the list is sorted and has no duplicates; and every
public name the package's ``__init__`` takes from its own private modules is
exported (so a new public class cannot be imported into ``__init__`` and forgotten).
``audit_log`` has its own check in tests/audit_log/test_exports.py.
"""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import agency_client
import deploy
import evaluation
import linkage_service
import protocols
import service_common
import unlock_service

PACKAGES = [
    protocols,
    agency_client,
    linkage_service,
    service_common,
    deploy,
    unlock_service,
    evaluation,
]


def _isort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps: SCREAMING_CASE, then CamelCase, then the rest."""
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def _private_modules(package: types.ModuleType) -> list[types.ModuleType]:
    """Every ``_``-prefixed module of ``package`` and of its subpackages, imported."""
    return [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
        if info.name.rsplit(".", 1)[1].startswith("_")
        and not info.name.endswith("._migrations")
        and "._migrations." not in info.name
    ]


def _from_own_modules(package: types.ModuleType) -> set[str]:
    """Public names in the package namespace whose object comes from its own modules."""
    modules = _private_modules(package)
    found = set()
    for name, obj in vars(package).items():
        if name.startswith("_") or isinstance(obj, types.ModuleType):
            continue
        if any(getattr(m, name, None) is obj for m in modules):
            found.add(name)
    return found


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_every_exported_name_exists(package):
    for name in package.__all__:
        assert hasattr(package, name), f"{package.__name__}.{name}"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_all_is_sorted_without_duplicates_or_private_names(package):
    names = list(package.__all__)
    assert len(names) == len(set(names)), "duplicates in __all__"
    assert names == sorted(names, key=_isort_key)
    assert not [n for n in names if n.startswith("_")]


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_every_public_name_from_the_package_is_exported(package):
    missing = _from_own_modules(package) - set(package.__all__)
    assert not missing, f"{package.__name__}: public but not in __all__: {sorted(missing)}"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_exports_come_from_the_package_itself(package):
    # __all__ is this package's API, not a re-export of a dependency's
    assert set(package.__all__) <= _from_own_modules(package)


def test_the_check_sees_constants_classes_and_functions():
    # guard against the helper silently finding nothing
    found = _from_own_modules(protocols)
    assert {"EXTRACT_FORMAT", "LinkageSchema", "default_schema"} <= found
