"""The canonical stream as a Response's typed events, numbered in order."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from gateway.wire.chat import shape
from gateway.wire.responses.answer import (
    CALL_TEXT,
    _call_item,
    _message_item,
    _name,
    _output_text,
    _reasoning_item,
    _response,
    _status,
    _suffix,
    usage,
)

if TYPE_CHECKING:
    from gateway.wire.responses.request import Translation


@dataclass(frozen=True, slots=True)
class _Kind:
    """How one kind of text part streams (a message's content part, a reasoning item's summary part): its events,
    the events' name for its position, and the field holding its text."""

    index: str
    added: str
    delta: str
    done: str
    part_done: str
    field: str


KINDS = {
    "output_text": _Kind(
        "content_index",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "text",
    ),
    "refusal": _Kind(
        "content_index",
        "response.content_part.added",
        "response.refusal.delta",
        "response.refusal.done",
        "response.content_part.done",
        "refusal",
    ),
    "summary_text": _Kind(
        "summary_index",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "text",
    ),
}
LOGPROBS = {"output_text": {"logprobs": []}}
# The events of a call's text as it streams: `.delta` and `.done`.
CALL_EVENTS = {
    "function_call": "response.function_call_arguments",
    "custom_tool_call": "response.custom_tool_call_input",
}  # text events carry logprobs, never requested here


class Renderer:
    """The typed events of one streamed Response, from the canonical items (through wire/stream.py's driver).

    Output items open as their first delta arrives: a reasoning item, a message (its text and
    refusal parts), and a function call per chat tool call. A message or reasoning item closes when
    another item starts; function calls close at the end, since providers may interleave them.
    """

    def __init__(self, translation: Translation) -> None:
        self.translation = translation
        self.sequence = 0
        self.suffix = ""
        self.model = ""
        self.output: list[dict[str, Any]] = []
        self.index: dict[str, int] = {}  # item id -> output index
        self.open: dict[str, Any] | None = None  # the message or reasoning item receiving deltas
        self.calls: dict[int, dict[str, Any]] = {}  # chat tool call index -> function_call item
        self.closed: set[str] = set()
        self.finish_reason: str | None = None

    def event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def response(self, status: str, **fields: Any) -> dict[str, Any]:
        output = self.output if status != "in_progress" else []
        return _response(self.translation, self.suffix, self.model, status, output, fields.pop("usage", None), **fields)

    def start(self, head: dict[str, Any] | None) -> Iterator[bytes]:
        self.suffix = _suffix(head.get("id") if head else None)
        self.model = str(head.get("model") if head else self.translation.body.get("model"))
        yield self.event("response.created", response=self.response("in_progress"))
        yield self.event("response.in_progress", response=self.response("in_progress"))

    # items

    def _add(self, item: dict[str, Any]) -> Iterator[bytes]:
        self.index[item["id"]] = len(self.output)
        self.output.append(item)
        snapshot = {**item, **{name: [] for name in ("content", "summary") if name in item}}
        yield self.event("response.output_item.added", output_index=self.index[item["id"]], item=snapshot)

    def _where(self, item: dict[str, Any]) -> dict[str, Any]:
        return {"item_id": item["id"], "output_index": self.index[item["id"]]}

    @staticmethod
    def _parts(item: dict[str, Any]) -> list[dict[str, Any]]:
        return item["summary"] if item["type"] == "reasoning" else item["content"]

    def _close_part(self, item: dict[str, Any]) -> Iterator[bytes]:
        parts = self._parts(item)
        part = parts[-1]
        kind = KINDS[part["type"]]
        where = {**self._where(item), kind.index: len(parts) - 1}
        yield self.event(kind.done, **where, **{kind.field: part[kind.field]}, **LOGPROBS.get(part["type"], {}))
        yield self.event(kind.part_done, **where, part=part)

    def _close(self, item: dict[str, Any], status: str) -> Iterator[bytes]:
        if item["id"] in self.closed:
            return
        self.closed.add(item["id"])
        if item is self.open:
            self.open = None
            if self._parts(item):
                yield from self._close_part(item)
        if item["type"] in CALL_EVENTS:
            text = CALL_TEXT[item["type"]]
            yield self.event(CALL_EVENTS[item["type"]] + ".done", **self._where(item), **{text: item[text]})
        item["status"] = status
        yield self.event("response.output_item.done", output_index=self.index[item["id"]], item=item)

    def _text(self, kind: str, text: str) -> Iterator[bytes]:
        """A delta of message text, refusal or reasoning: into the open item's last part, or a new one."""
        item_type = "reasoning" if kind == "summary_text" else "message"
        item = self.open
        if item is None or item["type"] != item_type:
            if item is not None:
                yield from self._close(item, "completed")
            item_id = f"{'rs' if item_type == 'reasoning' else 'msg'}_{self.suffix}_{len(self.output)}"
            if item_type == "reasoning":
                item = _reasoning_item(item_id, None, "in_progress")
            else:
                item = _message_item(item_id, "in_progress")
            yield from self._add(item)
            self.open = item
        spec, parts = KINDS[kind], self._parts(item)
        if not parts or parts[-1]["type"] != kind:
            if parts:
                yield from self._close_part(item)
            part = _output_text("") if kind == "output_text" else {"type": kind, spec.field: ""}
            parts.append(part)
            yield self.event(spec.added, **self._where(item), **{spec.index: len(parts) - 1}, part=part)
        parts[-1][spec.field] += text
        where = {**self._where(item), spec.index: len(parts) - 1}
        yield self.event(spec.delta, **where, delta=text, **LOGPROBS.get(kind, {}))

    def _call(self, call: Any) -> Iterator[bytes]:
        """A function call's or a custom tool call's item, and its text as it comes (arguments or input)."""
        if not isinstance(call, dict):
            return
        custom = isinstance(call.get("custom"), dict)
        inner = call["custom"] if custom else call["function"] if isinstance(call.get("function"), dict) else {}
        index = call["index"] if isinstance(call.get("index"), int) else 0
        item = self.calls.get(index)
        if item is None:
            if self.open is not None:
                yield from self._close(self.open, "completed")
            call_id = call.get("id") if isinstance(call.get("id"), str) else f"call_{uuid.uuid4().hex}"
            prefix = "ctc" if custom else "fc"
            item = _call_item(f"{prefix}_{self.suffix}_{len(self.output)}", call_id, "in_progress", custom)
            _name(item, inner["name"] if isinstance(inner.get("name"), str) else "", self.translation)
            self.calls[index] = item
            yield from self._add(item)
        elif not item["name"] and isinstance(inner.get("name"), str):
            _name(item, inner["name"], self.translation)
        text = inner.get("input" if custom else "arguments")
        if isinstance(text, str) and text:
            item[CALL_TEXT[item["type"]]] += text
            yield self.event(CALL_EVENTS[item["type"]] + ".delta", **self._where(item), delta=text)

    def delta(self, chunk: dict[str, Any]) -> Iterator[bytes]:
        choice = next((c for c in chunk["choices"] if c.get("index", 0) == 0), None)
        if choice is None:
            return
        delta = choice.get("delta") or {}
        reasoning = shape.reasoning(delta)
        if reasoning:
            yield from self._text("summary_text", reasoning)
        for kind, name in (("output_text", "content"), ("refusal", "refusal")):
            value = delta.get(name)
            if isinstance(value, str) and value:
                yield from self._text(kind, value)
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            yield from self._call(call)
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]

    def finish(self, chunk: dict[str, Any]) -> Iterator[bytes]:
        status, incomplete = _status(self.finish_reason)
        if not self.output:  # nothing was said: an empty message, as a whole answer has
            item = _message_item(f"msg_{self.suffix}_0", "in_progress")
            yield from self._add(item)
            self.open = item
            item["content"].append(_output_text(""))
            yield self.event("response.content_part.added", **self._where(item), content_index=0, part=_output_text(""))
        last = self.output[-1]
        for item in [i for i in self.output if i["id"] not in self.closed]:
            yield from self._close(item, "incomplete" if incomplete and item is last else "completed")
        kind = "response.incomplete" if incomplete else "response.completed"
        yield self.event(kind, response=self.response(status, usage=usage(chunk.get("usage")), incomplete=incomplete))

    def fail(self, error: dict[str, Any]) -> Iterator[bytes]:
        """`response.failed`, then an `error` event in both shapes clients read: the documented flat
        fields, and the nested `error` object OpenAI really sends, which makes the SDKs raise.

        Open items are not closed: an agent runs a function call when its item is done, and a cut
        call must not run.
        """
        error = error if isinstance(error, dict) else {}
        message = str(error.get("message") or "The upstream provider failed mid-stream.")
        code = error.get("code") if isinstance(error.get("code"), str) else "upstream_error"
        for item in self.output:
            if item["id"] not in self.closed:
                item["status"] = "incomplete"
        failure = {"code": "server_error", "message": message}  # the SDK's ResponseError allows only its own codes
        yield self.event("response.failed", response=self.response("failed", error=failure))
        nested = {"type": error.get("type") or "server_error", "code": code, "message": message, "param": None}
        yield self.event("error", code=code, message=message, param=None, error=nested)
