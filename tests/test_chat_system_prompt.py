"""train.sft.system_prompt: one text with "{label}", or one text per label (persona steering), the same in
training (conversation) and in evaluation (prompt_messages)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tunelab.modeling.chat import conversation, prompt_messages, system_text
from tunelab.train.config import SFTSettings

PER_LABEL = {"egen": "You are warm.", "teto": "You are blunt."}


def test_a_text_has_its_label_replaced_and_a_mapping_picks_the_labels_own_text() -> None:
    assert system_text("persona: {label}", "teto") == "persona: teto"
    assert system_text(PER_LABEL, "egen") == "You are warm."
    assert system_text(PER_LABEL, "teto") == "You are blunt."
    assert system_text(PER_LABEL, "other") is None and system_text(PER_LABEL, None) is None
    assert system_text(None, "teto") is None


def test_training_and_evaluation_render_the_same_per_label_system_turn() -> None:
    row = {"prompt": "My bike got stolen.", "response": "Report it.", "label": "teto"}
    turns = conversation(row, "sft", PER_LABEL)
    assert turns[0] == {"role": "system", "content": "You are blunt."}
    assert prompt_messages(row, "sft", PER_LABEL) == turns[:2]
    # a label the mapping does not name: no system turn at all (not an empty one)
    assert conversation(dict(row, label="x"), "sft", PER_LABEL)[0]["role"] == "user"
    # a row's own system turn wins
    chat = {"messages": [{"role": "system", "content": "mine"}, {"role": "user", "content": "hi"},
                         {"role": "assistant", "content": "yo"}], "label": "egen"}  # fmt: skip
    assert [t["content"] for t in conversation(chat, "chat", PER_LABEL)][0] == "mine"


def test_the_recipe_field_takes_a_text_or_a_mapping_and_refuses_other_shapes() -> None:
    assert SFTSettings(system_prompt=PER_LABEL).system_prompt == PER_LABEL
    assert SFTSettings(system_prompt="persona: {label}").system_prompt == "persona: {label}"
    with pytest.raises(ValidationError):
        SFTSettings(system_prompt=["You are warm."])
