"""Documents valid against a JSON Schema, drawn from a text: what the built-in model answers structured output with.

A forced tool call's arguments and a `json_schema` answer must validate against the caller's
schema, so structured-output clients (openai `parse`, LangChain `with_structured_output`, AI SDK
tools) work offline. Deterministic: the same schema and text give the same document.
"""

from __future__ import annotations

import json
import math
from typing import Any

# Values for the string formats clients generate most (pydantic: datetime, date, EmailStr, HttpUrl, UUID).
FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "duration": "P1D",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
# Once a $ref repeats on a path (a recursive schema) or this many were followed, only required properties,
# minItems items and the branches likeliest to end (null first) are taken; past MAX_DEPTH, nothing is.
FULL_DEPTH = 6
MAX_DEPTH = 12


class _Sampler:
    """Builds one document valid against a JSON Schema, deterministically: the built-in model's structured output.

    Small by design: types, properties and required, enum and const, common string formats,
    lengths, numeric bounds, array sizes, anyOf/oneOf/allOf, and $ref into the same document.
    Recursion through $ref is cut by preferring `null` and skipping optional properties deeper down.
    """

    def __init__(self, root: Any, text: str) -> None:
        self.root = root
        self.text = text

    def value(self, schema: Any, refs: tuple[str, ...] = (), variant: int = 0) -> Any:
        """A document valid against `schema`, reached through `refs`; `variant`: its index in an array."""
        if len(refs) > MAX_DEPTH:
            return None
        if schema is True or schema == {} or not isinstance(schema, dict):
            return self._string({}, variant)  # anything goes (or nothing does: `false`)
        ref = schema.get("$ref")
        if isinstance(ref, str):
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            return self.value(self._merge(self._resolve(ref), rest), (*refs, ref), variant)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[variant % len(enum)]
        for word in ("anyOf", "oneOf"):
            branches = schema.get(word)
            if isinstance(branches, list) and branches:
                rest = {k: v for k, v in schema.items() if k != word}
                return self.value(self._merge(rest, self._branch(branches, _full(refs))), refs, variant)
        parts = schema.get("allOf")
        if isinstance(parts, list) and parts:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in parts:
                if isinstance(part, dict) and isinstance(part.get("$ref"), str):
                    refs = (*refs, part["$ref"])
                    part = self._resolve(part["$ref"])
                merged = self._merge(merged, part)
            return self.value(merged, refs, variant)
        kind = self._type(schema, _full(refs))
        if kind == "object":
            return self._object(schema, refs, variant)
        if kind == "array":
            return self._array(schema, refs, variant)
        if kind in ("integer", "number"):
            return self._number(schema, kind == "integer", variant)
        if kind == "boolean":
            return variant % 2 == 0
        if kind == "null":
            return None
        return self._string(schema, variant)

    def _resolve(self, ref: str) -> Any:
        """A local reference ("#", "#/$defs/Name", any JSON pointer into the root); others mean any value."""
        if not ref.startswith("#"):
            return {}
        node = self.root
        for token in [t for t in ref[1:].split("/") if t]:
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                return {}
        return node

    @staticmethod
    def _merge(base: Any, extra: Any) -> Any:
        """Two schemas as one (allOf, a branch with its siblings): properties and required combined."""
        if not isinstance(extra, dict):
            return base if isinstance(base, dict) and base else extra
        if not isinstance(base, dict):
            return extra
        merged = {**base, **extra}
        for word in ("properties", "$defs", "definitions"):
            if isinstance(base.get(word), dict) and isinstance(extra.get(word), dict):
                merged[word] = {**base[word], **extra[word]}
        if isinstance(base.get("required"), list) and isinstance(extra.get("required"), list):
            merged["required"] = [*base["required"], *extra["required"]]
        return merged

    def _branch(self, branches: list[Any], full: bool) -> Any:
        """The first branch; in a recursion, the one most likely to end it (null, then one without $ref)."""
        if full:
            return branches[0]
        for test in (lambda b: self._type(b, full) == "null", lambda b: "$ref" not in b):
            found = next((b for b in branches if isinstance(b, dict) and test(b)), None)
            if found is not None:
                return found
        return branches[0]

    @staticmethod
    def _type(schema: dict[str, Any], full: bool) -> str | None:
        kind = schema.get("type")
        if isinstance(kind, list):
            names = [k for k in kind if isinstance(k, str)]
            if not full and "null" in names:
                return "null"
            kind = next((k for k in names if k != "null"), names[0] if names else None)
        if isinstance(kind, str):
            return kind
        if any(k in schema for k in ("properties", "required", "additionalProperties")):
            return "object"
        if any(k in schema for k in ("items", "prefixItems", "minItems")):
            return "array"
        if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
            return "number"
        return None

    def _object(self, schema: dict[str, Any], refs: tuple[str, ...], variant: int) -> dict[str, Any]:
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = [r for r in schema.get("required") or () if isinstance(r, str)]
        extra = schema.get("additionalProperties", True)
        names = [*properties, *(r for r in required if r not in properties)] if _full(refs) else required
        if not properties and not required and extra is not False:
            names = ["text"]  # a free-form object: what the model was asked, as before
        out: dict[str, Any] = {}
        for name in dict.fromkeys(names):
            sub = properties.get(name, extra if isinstance(extra, dict) else {})
            out[name] = self.value(sub, refs, variant)
        return out

    def _array(self, schema: dict[str, Any], refs: tuple[str, ...], variant: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        items = schema.get("items", {})
        if isinstance(items, list):  # draft 4's tuples
            prefix, items = items, schema.get("additionalItems", {})
        prefix = prefix if isinstance(prefix, list) else []
        low = _int(schema.get("minItems"), 0)
        count = max(low, len(prefix), 1) if _full(refs) else low
        high = _int(schema.get("maxItems"), None)
        if high is not None:
            count = min(count, high)
        if items is False:
            count = min(count, len(prefix))
        step = 1 if schema.get("uniqueItems") is True else 0  # distinct items where they must be
        return [self.value(prefix[i] if i < len(prefix) else items, refs, variant + i * step) for i in range(count)]

    @staticmethod
    def _number(schema: dict[str, Any], integer: bool, variant: int) -> int | float:
        """`variant` (0 mostly) if the bounds allow it, else the nearest bound, else their middle."""
        low, low_open = _bound(schema, "minimum", "exclusiveMinimum", max)
        high, high_open = _bound(schema, "maximum", "exclusiveMaximum", min)

        def inside(v: float) -> bool:
            above = low is None or v > low or (v == low and not low_open)
            return above and (high is None or v < high or (v == high and not high_open))

        candidates: list[float] = [variant]
        candidates += [low, low + 1] if low is not None else []
        candidates += [high, high - 1] if high is not None else []
        candidates += [(low + high) / 2] if low is not None and high is not None else []
        step = schema.get("multipleOf")
        step = step if _is_number(step) and step > 0 else (1 if integer else None)
        if step is not None:
            candidates = [m for c in candidates for m in (math.ceil(c / step) * step, math.floor(c / step) * step)]
        value = next((c for c in candidates if inside(c)), candidates[0])
        return int(value) if integer or float(value).is_integer() else value

    def _string(self, schema: dict[str, Any], variant: int) -> str:
        fmt = schema.get("format")
        text = FORMATS.get(fmt) if isinstance(fmt, str) else None
        if text is None:
            text = f"{self.text} {variant}" if variant else self.text
        low, high = _int(schema.get("minLength"), 0), _int(schema.get("maxLength"), None)
        if len(text) < low:
            text += "x" * (low - len(text))
        return text[:high] if high is not None else text


def _full(refs: tuple[str, ...]) -> bool:
    """Whether a document reached through `refs` is built in full: no recursion, not too deep."""
    return len(refs) < FULL_DEPTH and len(set(refs)) == len(refs)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int(value: Any, default: int | None) -> int | None:
    return max(int(value), 0) if _is_number(value) else default


def _bound(schema: dict[str, Any], inclusive: str, exclusive: str, tighter: Any) -> tuple[float | None, bool]:
    """The tighter of a bound and its exclusive form (a number, or draft 4's boolean): (value, exclusive)."""
    found = []
    if _is_number(schema.get(inclusive)):
        found.append((schema[inclusive], schema.get(exclusive) is True))
    if _is_number(schema.get(exclusive)):
        found.append((schema[exclusive], True))
    if not found:
        return None, False
    return tighter(found, key=lambda b: (b[0], b[1] == (tighter is max)))


def sample(schema: Any, text: str) -> Any:
    """A document valid against `schema` (for the schemas clients send), built from the caller's `text`."""
    try:
        value = _Sampler(schema, text).value(schema)
        dumps(value)  # JSON has no NaN or infinity
        return value
    except (RecursionError, TypeError, ValueError, OverflowError):  # a schema too odd to follow
        return {"text": text}


def dumps(value: Any) -> str:
    """JSON text of a sampled document (it never holds NaN or infinity: they would raise here)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
