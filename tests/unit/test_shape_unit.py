"""Counting output where a provider reports none (gateway/wire/chat/shape.py): all of it, and never a crash."""

from __future__ import annotations

from gateway.wire.chat import shape


def test_reasoning_deltas_count_as_the_output_they_are_billed_as() -> None:
    thought, said = "The user wants an echo of it.", "Echo."
    for field in shape.REASONING_FIELDS:
        assert shape.completion_tokens({field: thought, "content": said}) == len(thought) + len(said)


def test_a_cut_streams_output_is_bounded_by_its_bytes_however_dense_its_text() -> None:
    """CJK Extension B characters are four UTF-8 bytes, and as many tokens for a byte-level BPE: the bound holds."""
    dense = "".join(chr(0x20000 + i) for i in range(100))
    call = {"function": {"name": "f", "arguments": '{"a": "' + dense + '"}'}}
    assert shape.completion_tokens({"content": dense}) == 400 >= 4 * len(dense)
    assert shape.completion_tokens({"tool_calls": [call]}) == 1 + 9 + 400
    assert shape.completion_tokens({"content": [{"type": "text", "text": dense}, {"type": "image_url"}]}) == 400


def test_malformed_deltas_count_what_they_can_and_never_raise() -> None:
    for junk in (True, "calls", [1, None, "x"], [{"function": "f"}], [{"function": {"arguments": {"a": 1}}}]):
        assert shape.completion_tokens({"content": "ok", "tool_calls": junk}) >= 1
    assert shape.completion_tokens({"reasoning": 42, "content": None}) == 0
