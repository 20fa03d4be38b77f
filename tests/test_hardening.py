"""Issue 12's hardening cases that are not about SQL types or the dashboard (those have their own files)."""

from __future__ import annotations

import pytest

from tunelab.errors import UserError
from tunelab.recipe import parse_recipe


@pytest.mark.parametrize("name", ["../../../x", "a/b", "a\\b", ".hidden", "x/../../y", "tab\there"])
def test_dataset_names_cannot_leave_the_workspace(name: str) -> None:
    with pytest.raises(UserError, match=r"dataset\.name: .*must be a plain name"):
        parse_recipe({"dataset": {"path": "x.jsonl", "name": name}})


@pytest.mark.parametrize("name", ["demo-persona", "한국어_데이터", "v1.2"])
def test_plain_names_are_accepted(name: str) -> None:
    assert parse_recipe({"dataset": {"path": "x.jsonl", "name": name}}).dataset.name == name
