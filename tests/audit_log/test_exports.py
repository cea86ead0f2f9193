"""Keep audit_log.__all__ honest: every exported name exists and is public API."""

from __future__ import annotations

import audit_log


def test_all_names_resolve() -> None:
    for name in audit_log.__all__:
        assert hasattr(audit_log, name), name


def test_all_has_no_duplicates_or_private_names() -> None:
    assert len(audit_log.__all__) == len(set(audit_log.__all__))
    assert not [n for n in audit_log.__all__ if n.startswith("_")]
