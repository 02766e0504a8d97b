"""Counting output where a provider reports none (gateway/chat/shape.py): all of it, and never a crash."""

from __future__ import annotations

from gateway import tokens
from gateway.chat import shape


def test_reasoning_deltas_count_as_the_output_they_are_billed_as() -> None:
    thought, said = "The user wants an echo of it.", "Echo."
    for field in shape.REASONING_FIELDS:
        assert shape.completion_tokens({field: thought, "content": said}) == tokens.count(thought) + tokens.count(said)


def test_malformed_deltas_count_what_they_can_and_never_raise() -> None:
    for junk in (True, "calls", [1, None, "x"], [{"function": "f"}], [{"function": {"arguments": {"a": 1}}}]):
        assert shape.completion_tokens({"content": "ok", "tool_calls": junk}) >= 1
    assert shape.completion_tokens({"reasoning": 42, "content": None}) == 0
