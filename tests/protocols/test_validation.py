"""Validation error text: field paths and the joined summary."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from protocols import describe_errors, field_path


class Inner(BaseModel):
    age: int


class Outer(BaseModel):
    name: str
    items: list[Inner]


def test_field_path():
    assert field_path(("items", 0, "age")) == "items.0.age"
    assert field_path((), "(top)") == "(top)"
    assert field_path(()) == ""


def test_describe_errors_names_every_field():
    with pytest.raises(ValidationError) as info:
        Outer.model_validate({"items": [{"age": "x"}]})
    text = describe_errors(info.value, "(top)")
    assert text.startswith("name: Field required; items.0.age: ")
    with pytest.raises(ValidationError) as info:
        Inner.model_validate("not a dict")
    assert describe_errors(info.value, "(top)").startswith("(top): ")
