"""Every reason code the unlock service can answer with has a plain-language sentence.

The codes are collected from the source: every upper-case string constant in
``unlock_service`` (reason arguments, policy outcomes, default reasons) except
the names and constants listed below, plus the flag codes built with an
f-string. A new code without a sentence fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import unlock_service
from protocols import REASON_TEXT, reason_text
from unlock_service._errors import UnlockError

CODE = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$")
# Upper-case strings in the source that are not reason codes.
NOT_REASONS = {
    "POST", "DELETE", "OKP", "CURRENT", "NORMAL",  # HTTP methods, JWK kty, key file, pragma
    "OPT_OUT", "RESTRICTED",  # flag kinds (their reasons are *_ADDED / *_REMOVED)
    "INVALID_PURPOSE",  # stands in for a malformed purpose code
    "SEAL_KEY_NAME", "VERSION_TABLE", "UNLOCK_SERVICE_", "FAMILY_",  # names, prefixes
}  # fmt: skip
# Built with f-strings from the flag kinds.
FLAG_REASONS = {f"{flag}_{change}" for flag in ("OPT_OUT", "RESTRICTED") for change in
                ("ADDED", "REMOVED")}  # fmt: skip


def _exported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    names.add(target.id)
    return names


def used_codes() -> set[str]:
    """Reason codes in the unlock service's source."""
    root = Path(unlock_service.__file__).parent
    found: set[str] = set()
    for path in sorted(root.glob("*.py")):
        tree = ast.parse(path.read_text())
        names = _exported(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if CODE.match(node.value) and len(node.value) > 3 and node.value not in names:
                    found.add(node.value)
    return found - NOT_REASONS | FLAG_REASONS


def _subclasses(cls: type) -> list[type]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_subclasses(sub))
    return out


def test_the_collector_finds_the_codes_it_should():
    codes = used_codes()
    assert len(codes) > 80
    assert {"GRANTED", "APPROVAL_REQUIRED", "SELF_APPROVAL", "TOKEN_EXPIRED", "GRANT_USED"} <= (
        codes
    )


def test_every_reason_code_has_a_sentence():
    missing = sorted(code for code in used_codes() if code not in REASON_TEXT)
    assert missing == []


def test_every_error_class_default_reason_has_a_sentence():
    import unlock_service._linkage  # noqa: F401  (its error subclasses)

    for cls in _subclasses(UnlockError):
        assert cls.default_reason in REASON_TEXT, cls.__name__


def test_the_sentences_are_sentences():
    for code, text in REASON_TEXT.items():
        assert CODE.match(code), code
        assert text[0].isupper() and text.endswith("."), code
        assert 20 <= len(text) <= 400, code
        assert code not in text and "_" not in text, code  # no codes inside the prose


def test_an_unknown_code_still_gets_a_sentence_naming_it():
    assert "NEW_CODE" in reason_text("NEW_CODE")
    assert reason_text("GRANTED") == REASON_TEXT["GRANTED"]


def test_the_table_holds_no_code_the_service_no_longer_uses():
    assert sorted(set(REASON_TEXT) - used_codes()) == []
