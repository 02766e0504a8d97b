"""The response validator itself: it must accept what the document allows and reject what it does not,
so an end-to-end check can never pass silently."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.builds import CI
from tests.support.openapi import (
    DONE,
    SHARED_SPEC,
    SPEC_PATH,
    VENDORED_SPEC,
    check_stream,
    check_stream_error,
    denullable,
    document,
    validate_chat_completion,
    validate_error,
    validate_model,
    validate_models_list,
    validate_stream,
)

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "m"}


def sse(*events: Any) -> str:
    return "".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events)


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {**HEAD, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


USAGE = {**HEAD, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
GOOD_STREAM = sse(chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"}), chunk({}, "stop"), USAGE, DONE)
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}
ERROR = {"error": {"message": "bad", "type": "invalid_request_error", "param": "model", "code": None}}


def test_the_document_is_where_design_says() -> None:
    assert SPEC_PATH.is_file(), SPEC_PATH
    assert document()["openapi"].startswith("3.1")


def test_the_copy_in_tests_data_is_the_shared_document() -> None:
    """A clone away from shared/ validates against tests/data/'s copy: it must be the same document."""
    if not SHARED_SPEC.is_file():
        assert not CI, f"CI places {SHARED_SPEC} beside the clone"
        pytest.skip("no shared/ beside this clone: the copy is what there is")
    assert VENDORED_SPEC.read_bytes() == SHARED_SPEC.read_bytes(), "copy shared/openai/ into tests/data/ again"


def test_nullable_becomes_any_of_null() -> None:
    converted = denullable({"type": "string", "enum": ["a"], "nullable": True, "properties": {"nullable": {}}})
    assert converted == {"anyOf": [{"type": "string", "enum": ["a"], "properties": {"nullable": {}}}, {"type": "null"}]}

    def flags(node: Any) -> int:
        if isinstance(node, list):
            return sum(flags(n) for n in node)
        if isinstance(node, dict):
            own = isinstance(node.get("nullable"), bool)
            return own + sum(flags(v) for v in node.values())
        return 0

    raw = json.loads(SPEC_PATH.read_text())
    assert flags(raw) > 0, "the document no longer uses nullable: this translation can go"
    assert flags(document()) == 0


def test_valid_payloads_pass() -> None:
    validate_chat_completion(COMPLETION)
    validate_error(ERROR)
    validate_error(ERROR, status=404)
    validate_error(ERROR, status=404, path="/models/{model}")
    validate_models_list({"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "x"}]})
    validate_model({"id": "m", "object": "model", "created": 0, "owned_by": "x", "context_length": 1})
    assert validate_stream(GOOD_STREAM)[-1] == DONE
    check_stream(GOOD_STREAM, "m")


def test_nullable_fields_of_a_chunk_accept_null() -> None:
    """finish_reason, logprobs and usage are `nullable: true` in the document."""
    choice = {"index": 0, "delta": {"content": "x"}, "logprobs": None, "finish_reason": None}
    validate_stream(sse({**HEAD, "choices": [choice], "usage": None}, DONE))


@pytest.mark.parametrize(
    ("label", "payload"),
    [
        ("chunk without id", {k: v for k, v in chunk({"content": "x"}).items() if k != "id"}),
        ("chunk with the wrong object", chunk({"content": "x"}) | {"object": "chat.completion"}),
        ("chunk with an unknown finish_reason", chunk({}, "end_turn")),
        ("choice without finish_reason", {**HEAD, "choices": [{"index": 0, "delta": {}}]}),
        ("usage without total_tokens", {**HEAD, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}),
        ("created as a string", chunk({}) | {"created": "now"}),
    ],
)
def test_bad_chunks_are_rejected(label: str, payload: dict[str, Any]) -> None:
    with pytest.raises(AssertionError, match="does not match"):
        validate_stream(sse(payload, DONE))


def test_an_event_that_is_not_json_is_rejected() -> None:
    with pytest.raises(AssertionError, match="neither"):
        validate_stream(sse("{not json", DONE))


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "bad", "type": "invalid_request_error", "code": None}},  # no param
        {"error": {"message": "bad", "param": None, "code": None}},  # no type
        {"error": {"message": 1, "type": "x", "param": None, "code": None}},
        {"error": "bad"},
        {"message": "bad"},
    ],
)
def test_bad_errors_are_rejected(body: dict[str, Any]) -> None:
    with pytest.raises(AssertionError, match="does not match"):
        validate_error(body)


def test_bad_completions_and_models_are_rejected() -> None:
    choice = COMPLETION["choices"][0]
    with pytest.raises(AssertionError):
        validate_chat_completion({**COMPLETION, "choices": [{**choice, "finish_reason": None}]})
    with pytest.raises(AssertionError):
        validate_chat_completion({k: v for k, v in COMPLETION.items() if k != "created"})
    with pytest.raises(AssertionError):
        validate_chat_completion({**COMPLETION, "choices": [{k: v for k, v in choice.items() if k != "logprobs"}]})
    with pytest.raises(AssertionError):
        validate_models_list({"object": "list", "data": [{"id": "m", "object": "model", "created": 0}]})
    with pytest.raises(AssertionError):
        validate_model({"id": "m", "object": "models", "created": 0, "owned_by": "x"})


def test_an_undeclared_status_is_rejected() -> None:
    with pytest.raises(AssertionError, match="does not declare"):
        validate_error(ERROR, status=418)


@pytest.mark.parametrize(
    ("label", "raw"),
    [
        ("no [DONE]", sse(chunk({"role": "assistant"}), chunk({}, "stop"), USAGE)),
        ("no role first", sse(chunk({"content": "a"}), chunk({}, "stop"), USAGE, DONE)),
        ("no finish_reason", sse(chunk({"role": "assistant"}), chunk({"content": "a"}), USAGE, DONE)),
        ("no usage chunk", sse(chunk({"role": "assistant"}), chunk({}, "stop"), DONE)),
        ("another id", sse(chunk({"role": "assistant"}), chunk({}, "stop") | {"id": "other"}, USAGE, DONE)),
        ("error event", sse(chunk({"role": "assistant"}), {**HEAD, "choices": [], **ERROR})),
    ],
)
def test_stream_rules_are_enforced(label: str, raw: str) -> None:
    with pytest.raises(AssertionError):
        check_stream(raw, "m")


def test_a_failed_stream_must_end_with_an_error_event() -> None:
    failed = sse(chunk({"role": "assistant", "content": ""}), ERROR)
    assert check_stream_error(failed, "m")["message"] == "bad"
    with pytest.raises(AssertionError):  # a chunk-shaped error is read as an ordinary chunk by the AI SDK
        check_stream_error(sse(chunk({"role": "assistant", "content": ""}), {**HEAD, "choices": [], **ERROR}), "m")
    with pytest.raises(AssertionError):
        check_stream_error(GOOD_STREAM, "m")
    with pytest.raises(AssertionError):
        check_stream_error(sse(chunk({"role": "assistant", "content": ""}), chunk({"content": "a"})), "m")
