"""The canonical chat request as a Bedrock Converse request (the model-neutral API every Bedrock model takes)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any

from gateway.upstream import UpstreamHTTPError
from gateway.wire import toolkit

IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}


def refused(message: str) -> UpstreamHTTPError:
    """A request Bedrock cannot take as sent: a client fault, so the caller sees a 400 naming it."""
    return UpstreamHTTPError(f"Amazon Bedrock cannot accept this request: {message}", status=400)


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    return [
        str(part.get("text") or part.get("refusal") or "")
        for part in content or ()
        if isinstance(part, dict) and part.get("type") in ("text", "refusal")
    ]


def _image(part: dict[str, Any]) -> dict[str, Any]:
    """Converse takes image bytes, not URLs: only data: URLs can be forwarded."""
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise refused("an image_url part has no url")
    if not url.startswith("data:"):
        raise refused(
            "image URLs are not supported by Bedrock's Converse API; send the image inline as a "
            "base64 data: URL (data:image/png;base64,...)"
        )
    header, _, data = url[5:].partition(",")
    mime, *params = header.split(";")
    kind, _, subtype = mime.strip().lower().partition("/")
    fmt = IMAGE_FORMATS.get(subtype) if kind == "image" else None
    if fmt is None:
        raise refused(f"image type {mime or 'unknown'!r} is not supported (png, jpeg, gif and webp are)")
    if "base64" not in params:
        raise refused("image data: URLs must be base64-encoded")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise refused("an image data: URL is not valid base64") from exc
    if not raw:
        raise refused("an image data: URL is empty")
    return {"image": {"format": fmt, "source": {"bytes": raw}}}


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                blocks.append({"text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part))
        else:
            raise refused(f"content parts of type {kind!r} are not supported")
    return blocks


def _arguments(raw: Any) -> Any:
    """Converse wants the tool input as a JSON value; OpenAI history carries it as a JSON string."""
    try:
        return toolkit.tool_input(raw)
    except ValueError as exc:
        raise refused("the arguments of an assistant tool call are not valid JSON") from exc


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"text": t} for t in _texts(message.get("content")) if t]
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        blocks.append(
            {
                "toolUse": {
                    "toolUseId": call.get("id"),
                    "name": function.get("name"),
                    "input": _arguments(function.get("arguments")),
                }
            }
        )
    return blocks


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI tool message is a Converse toolResult block inside a user turn."""
    content = message.get("content")
    if isinstance(content, dict | list) and not _is_parts(content):
        result: list[dict[str, Any]] = [{"json": content}]  # structured output some clients send
    else:
        result = [{"text": t} for t in _texts(content)]
    return {"toolResult": {"toolUseId": message.get("tool_call_id"), "content": result}}


def _is_parts(content: Any) -> bool:
    return isinstance(content, list) and all(isinstance(p, dict) and "type" in p for p in content)


def _conversation(raw: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System blocks, and turns that alternate user/assistant as Converse requires."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in raw:
        role = message.get("role")
        if role in ("system", "developer"):
            system += [{"text": t} for t in _texts(message.get("content")) if t]
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"))
        elif role == "assistant":
            blocks = _assistant_blocks(message)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message)]
        else:
            raise refused(f"messages with role {role!r} are not supported")
        toolkit.add_turn(turns, role, blocks)  # Converse refuses empty turns and wants them to alternate
    return system, turns


def _inference(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit is not None:
        config["maxTokens"] = int(limit)
    if body.get("temperature") is not None:
        # OpenAI allows 0-2, Converse 0-1: clamp rather than refuse, since a refusal is a client
        # fault that would stop the fallback to providers that accept the value.
        config["temperature"] = min(float(body["temperature"]), 1.0)
    if body.get("top_p") is not None:
        config["topP"] = float(body["top_p"])
    stops = toolkit.stop_sequences(body.get("stop"))
    if stops:
        config["stopSequences"] = stops
    return config


def _tool_config(body: dict[str, Any], turns: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Converse has no tool_choice "none": the tools are left out, unless the history holds
    toolUse/toolResult blocks, which Converse refuses without a toolConfig; then the tools stay
    and the model chooses (as with "auto")."""
    specs = []
    for tool in body.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict):
            continue
        spec: dict[str, Any] = {
            "name": function.get("name"),
            "inputSchema": {"json": function.get("parameters") or {"type": "object", "properties": {}}},
        }
        if function.get("description"):
            spec["description"] = function["description"]
        specs.append({"toolSpec": spec})
    if not specs:
        return None
    choice = body.get("tool_choice")
    if choice == "none":
        history = any("toolUse" in b or "toolResult" in b for turn in turns for b in turn["content"])
        return {"tools": specs} if history else None
    config: dict[str, Any] = {"tools": specs}
    if choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if not name:
            raise refused("tool_choice names no function")
        config["toolChoice"] = {"tool": {"name": name}}
    return config


def converse_request(body: dict[str, Any]) -> dict[str, Any]:
    """The Converse (and ConverseStream) parameters for an OpenAI chat completions body."""
    system, turns = _conversation(body.get("messages") or ())
    request: dict[str, Any] = {"modelId": body["model"], "messages": turns}
    if system:
        request["system"] = system
    if inference := _inference(body):
        request["inferenceConfig"] = inference
    if tools := _tool_config(body, turns):
        request["toolConfig"] = tools
    extra = body.get("additionalModelRequestFields")
    if isinstance(extra, dict) and extra:
        request["additionalModelRequestFields"] = extra
    return request
