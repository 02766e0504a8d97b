"""ConverseStream events as canonical chunks."""

from __future__ import annotations

import uuid
from typing import Any

from botocore.exceptions import EventStreamError

from gateway.wire import toolkit
from gateway.wire.converse.answer import usage


class StreamTranslator(toolkit.Chunks):
    """ConverseStream events in, chat.completion.chunk dicts out.

    Each toolUse content block becomes one OpenAI tool call with its own stable `index`; its
    id and name come first, then the input fragments exactly as Bedrock sent them.
    """

    def __init__(self, model: str) -> None:
        super().__init__(model, f"chatcmpl-{uuid.uuid4().hex}")
        self.finished = False

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        out = [] if _exception(event) else self.start()  # messageStart, or whatever comes first if a model skips it
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            tool = (start.get("start") or {}).get("toolUse")
            if tool:
                out.append(self.tool_call(start["contentBlockIndex"], tool["toolUseId"], tool["name"]))
        elif "contentBlockDelta" in event:
            block = event["contentBlockDelta"]
            delta = block.get("delta") or {}
            if delta.get("text"):
                out.append(self.chunk({"content": delta["text"]}))
            fragment = (delta.get("toolUse") or {}).get("input")
            out += self.arguments(block.get("contentBlockIndex", -1), fragment or "")
        elif "contentBlockStop" in event:
            out += self.tool_stop(event["contentBlockStop"].get("contentBlockIndex", -1))
        elif "messageStop" in event:
            self.finished = True
            out.append(self.chunk({}, toolkit.finish_reason(event["messageStop"].get("stopReason"))))
        elif "metadata" in event:
            out.append(self.usage(usage(event["metadata"].get("usage"))))
        elif name := _exception(event):
            message = (event[name] or {}).get("message", "")
            raise EventStreamError({"Error": {"Code": name, "Message": message}}, "ConverseStream")
        return out


def _exception(event: dict[str, Any]) -> str | None:
    """An exception delivered as an event dict (botocore itself raises EventStreamError instead)."""
    return next((k for k in event if k.endswith("Exception")), None)
