"""Validating gateway responses against shared/openai/chat-and-models.openapi.json.

The document is OpenAPI 3.1 but still carries OpenAPI 3.0's `nullable: true` in places (a
stream chunk's `finish_reason`, `logprobs` and `usage`). JSON Schema 2020-12 ignores that
keyword, so a schema with `nullable: true` is rewritten as `anyOf: [schema, {"type": "null"}]`
before validating. References (`#/components/schemas/...`) resolve through a `referencing`
registry that holds the whole document.

Schemas are found the way a client would find them, from the operation's responses, rather
than by name: e.g. a stream event's JSON is checked against the `contentSchema` that the
`text/event-stream` response declares.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

REPO_ROOT = Path(__file__).resolve().parents[2]
# The project's copy of the schema lives beside the repository (shared/openai/), where CI puts it; a
# clone anywhere else validates against the copy in tests/data/, which a test keeps equal to it.
SHARED_SPEC = REPO_ROOT.parent / "shared" / "openai" / "chat-and-models.openapi.json"
VENDORED_SPEC = REPO_ROOT / "tests" / "data" / "chat-and-models.openapi.json"
SPEC_PATH = SHARED_SPEC if SHARED_SPEC.is_file() else VENDORED_SPEC
SPEC_URI = "urn:openai:chat-and-models.openapi.json"
DONE = "[DONE]"


def denullable(node: Any) -> Any:
    """`{..., "nullable": true}` becomes `{"anyOf": [{...}, {"type": "null"}]}`, at every depth."""
    if isinstance(node, list):
        return [denullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    nullable = node.get("nullable")
    converted = {
        key: denullable(value) for key, value in node.items() if not (key == "nullable" and isinstance(value, bool))
    }
    if nullable is True:
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


@cache
def document() -> dict[str, Any]:
    return denullable(json.loads(SPEC_PATH.read_text()))


@cache
def _registry() -> Registry:
    resource = Resource.from_contents(document(), default_specification=DRAFT202012)
    return Registry().with_resource(SPEC_URI, resource)


def _pointer(schema: dict[str, Any]) -> str:
    """A `$ref` written against the document root, as a full URI into the registry."""
    ref = schema["$ref"]
    assert ref.startswith("#/"), ref
    return SPEC_URI + ref


@cache
def _validator(pointer: str) -> Draft202012Validator:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": pointer}
    return Draft202012Validator(schema, registry=_registry())


def _response_schema(path: str, status: int | str, media: str) -> dict[str, Any]:
    operation = document()["paths"][path]
    (method,) = [m for m in operation if m in ("get", "post")]
    response = operation[method]["responses"][str(status)]
    if "$ref" in response:  # a shared response such as TooManyRequests
        name = response["$ref"].rsplit("/", 1)[-1]
        response = document()["components"]["responses"][name]
    return response["content"][media]["schema"]


def _check(schema: dict[str, Any], instance: Any) -> None:
    validator = _validator(_pointer(schema))
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        details = "\n".join(
            f"  at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}" for e in errors[:10]
        )
        raise AssertionError(f"response does not match {schema['$ref']}:\n{details}")


def validate_chat_completion(body: Any) -> None:
    _check(_response_schema("/chat/completions", 200, "application/json"), body)


def validate_models_list(body: Any) -> None:
    _check(_response_schema("/models", 200, "application/json"), body)


def validate_model(body: Any) -> None:
    _check(_response_schema("/models/{model}", 200, "application/json"), body)


def validate_unified_error(body: Any, status: int) -> None:
    """The unified API's error (shared/seeds/002): the message a string, the status a number."""
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
    assert body.get("code") == status, body
    assert set(body) <= {"error", "code", "param", "retry_after"}, body
    assert isinstance(body.get("retry_after", 0), int) and isinstance(body.get("param", ""), str), body


def validate_error(body: Any, status: int | None = None, path: str = "/chat/completions") -> None:
    """An ErrorResponse; with `status`, also that the document declares that status for `path`."""
    if status is None:
        schema = {"$ref": "#/components/schemas/ErrorResponse"}
    else:
        declared = document()["paths"][path]
        method = next(m for m in declared if m in ("get", "post"))
        assert str(status) in declared[method]["responses"], f"{path} does not declare HTTP {status}"
        schema = _response_schema(path, status, "application/json")
    _check(schema, body)


def parse_sse(raw: str) -> list[str]:
    """The `data` of each event of a text/event-stream body (multi-line data joined with newlines)."""
    events: list[str] = []
    data: list[str] | None = None
    for line in raw.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line == "":
            if data is not None:
                events.append("\n".join(data))
            data = None
            continue
        if line.startswith(":"):
            continue  # a comment, e.g. a keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data = [*(data or []), value]
    if data is not None:
        events.append("\n".join(data))  # an event the stream ended before terminating
    return events


def validate_stream(raw: str) -> list[dict[str, Any] | str]:
    """Check every event of a streamed chat completion; returns the parsed events ("[DONE]" as is).

    Each event must match the `text/event-stream` schema of the document; when its data is not
    `[DONE]`, the data must be JSON matching the `contentSchema` that schema declares.
    """
    stream_schema = _response_schema("/chat/completions", 200, "text/event-stream")
    data_schema = stream_schema["properties"]["data"]
    content_schema = data_schema["else"]["contentSchema"]
    form = Draft202012Validator(denullable(stream_schema))
    parsed: list[dict[str, Any] | str] = []
    events = parse_sse(raw)
    assert events, "the stream holds no events"
    for i, data in enumerate(events):
        problems = [e.message for e in form.iter_errors({"data": data})]
        assert not problems, f"event {i} is not a valid event: {problems}"
        if data == data_schema["if"]["const"]:
            parsed.append(DONE)
            continue
        try:
            payload = json.loads(data)
        except ValueError as exc:
            raise AssertionError(f"event {i} is neither [DONE] nor JSON: {data[:200]!r}") from exc
        try:
            if isinstance(payload, dict) and "error" in payload and "choices" not in payload:
                validate_error(payload)  # a failure after the first byte: OpenAI's own error event
            else:
                _check(content_schema, payload)
        except AssertionError as exc:
            raise AssertionError(f"event {i} ({data[:200]}): {exc}") from None
        parsed.append(payload)
    return parsed


FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter", "function_call")


def check_stream(raw: str, model: str, include_usage: bool = True) -> list[dict[str, Any]]:
    """A complete, successful stream: schema-valid, and following DESIGN.md's stream rules.

    Every chunk carries the same id, object, created and model; the first delta carries the
    role; the last chunk with choices has a real finish_reason (and no earlier one does); then,
    unless `include_usage` is false, one usage chunk with `choices: []`; then `data: [DONE]`.
    Returns the chunks (without [DONE]).
    """
    events = validate_stream(raw)
    assert events[-1] == DONE, f"the stream does not end with [DONE]: {events[-1]!r}"
    assert events.count(DONE) == 1, "[DONE] is sent more than once"
    chunks = [e for e in events if isinstance(e, dict)]
    assert chunks, "the stream holds no chunks"
    for chunk in chunks:
        assert "error" not in chunk, f"a successful stream carries an error: {chunk}"
        assert chunk["object"] == "chat.completion.chunk"
        assert (chunk["id"], chunk["created"], chunk["model"]) == (
            chunks[0]["id"],
            chunks[0]["created"],
            model,
        ), f"chunk differs in id, created or model from the first: {chunk}"
    with_choices = [c for c in chunks if c["choices"]]
    assert with_choices, "no chunk carries a choice"
    assert with_choices[0]["choices"][0]["delta"].get("role") == "assistant", "the first delta has no role"
    *middle, last = with_choices
    assert last["choices"][-1]["finish_reason"] in FINISH_REASONS, f"no finish_reason at the end: {last}"
    for chunk in middle:
        assert all(c["finish_reason"] is None for c in chunk["choices"]), f"early finish_reason: {chunk}"
    tail = chunks[chunks.index(last) + 1 :]
    if include_usage:
        assert len(tail) == 1, f"expected exactly one usage chunk after the last choice, got {tail}"
        usage = tail[0]
        assert usage["choices"] == [] and isinstance(usage.get("usage"), dict), usage
        u = usage["usage"]
        assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], u
    else:
        assert tail == [], f"include_usage is false, yet chunks follow the last choice: {tail}"
        assert all(not c.get("usage") for c in chunks), "include_usage is false, yet usage was sent"
    return chunks


def check_stream_error(raw: str, model: str) -> dict[str, Any]:
    """A stream that failed after its first byte: it ends with an error event, never a clean [DONE].

    Returns the error object (validated as an ErrorResponse's `error`).
    """
    events = validate_stream(raw)
    assert DONE not in events, "a failed stream must not end with a clean [DONE]"
    *chunks, last = [e for e in events if isinstance(e, dict)]
    assert last.keys() == {"error"}, f"the stream does not end with a plain error event: {last}"
    assert chunks[0]["choices"] and chunks[0]["choices"][0]["delta"].get("role") == "assistant"
    for chunk in chunks:
        assert (chunk["id"], chunk["created"], chunk["model"]) == (chunks[0]["id"], chunks[0]["created"], model)
    assert all("error" not in c for c in chunks), "an error event before the last one"
    validate_error(last)
    return last["error"]
