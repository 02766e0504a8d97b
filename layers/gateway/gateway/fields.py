"""Reading the caller's JSON fields, with errors that name them as the caller wrote them.

Every wire format checks its own requests with these (isinstance tests, no models, no copies),
so a 400 always says which parameter was wrong and how, in the words OpenAI's API uses.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import GatewayError, invalid_request


def type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def show(value: Any) -> str:
    """A value for an error message: short, and safe for any size (str() of a huge int raises)."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40]) + "..."
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return str(value) if value.bit_length() <= 64 else "a very large integer"
    if isinstance(value, float):
        return repr(value)
    return type_name(value)


def wrong_type(param: str, expected: str, value: Any) -> GatewayError:
    return invalid_request(f"Invalid type for '{param}': expected {expected}, got {type_name(value)}.", param)


def missing(param: str) -> GatewayError:
    return invalid_request(f"Missing required parameter: '{param}'.", param)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def field(obj: dict[str, Any], key: str, kind: type, expected: str, prefix: str = "", required: bool = False) -> Any:
    """obj[key] when it is of `kind`; None when absent or null (a 400 if required); else a 400.

    For str, list, dict and bool only: numbers go through `integer` and `number`.
    """
    value = obj.get(key)
    if value is None:
        if required:
            raise missing(prefix + key)
        return None
    if not isinstance(value, kind):
        raise wrong_type(prefix + key, expected, value)
    return value


def strings(obj: dict[str, Any], key: str, prefix: str = "", non_empty: bool = False) -> list[str] | None:
    """An optional array of strings; each bad element is named (`models[1]`)."""
    values = field(obj, key, list, "an array of strings", prefix)
    for i, value in enumerate(values or ()):
        if not isinstance(value, str):
            raise wrong_type(f"{prefix}{key}[{i}]", "a string", value)
        if non_empty and not value.strip():
            raise invalid_request(
                f"Invalid value for '{prefix}{key}[{i}]': expected a non-empty string.", f"{prefix}{key}[{i}]"
            )
    return values


def integer(obj: dict[str, Any], key: str, low: int, high: int, prefix: str = "") -> int | None:
    """An optional integer within [low, high]; an integral float (70.0) is stored back as the int it is."""
    value = obj.get(key)
    if value is None:
        return None
    param = prefix + key
    if isinstance(value, float) and value.is_integer():
        value = int(value)
        obj[key] = value  # the upstream receives 70, as the caller meant
    elif not isinstance(value, int) or isinstance(value, bool):
        raise invalid_request(f"Invalid type for '{param}': expected an integer, got {show(value)}.", param)
    if not low <= value <= high:
        if low == 1 and value < 1:
            raise invalid_request(f"'{param}' must be a positive integer; got {show(value)}.", param)
        raise invalid_request(f"'{param}' must be between {low} and {high}; got {show(value)}.", param)
    return value


def number(obj: dict[str, Any], key: str, low: float, high: float, prefix: str = "") -> None:
    value = obj.get(key)
    if value is None:
        return
    param = prefix + key
    if not is_number(value):
        raise wrong_type(param, "a number", value)
    if not low <= value <= high:  # NaN fails this too
        bounds = f"at least {low:g}" if high == float("inf") else f"between {low:g} and {high:g}"
        raise invalid_request(f"'{param}' must be {bounds}; got {show(value)}.", param)


def string(obj: dict[str, Any], key: str, prefix: str = "", required: bool = False) -> str | None:
    return field(obj, key, str, "a string", prefix, required)


def one_of(value: str, allowed: tuple[str, ...], param: str) -> None:
    if value not in allowed:
        supported = "', '".join(allowed)
        raise invalid_request(
            f"Invalid value for '{param}': {show(value)}. Supported values are: '{supported}'.", param
        )


# JSON nested deeper than this is refused where it is parsed. orjson parses 1,024 levels but writes
# only 254, and the gateway nests a caller's values a few levels deeper when it translates them, so
# a limit far below both means nothing accepted can fail to serialise later, after an upstream served.
MAX_DEPTH = 64


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether arrays and objects nest more than `limit` levels (walking containers only, never strings)."""
    level: list[Any] = [value]
    for _ in range(limit):
        inner: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                inner.extend(v for v in item.values() if isinstance(v, dict | list))
            elif isinstance(item, list):
                inner.extend(v for v in item if isinstance(v, dict | list))
        if not inner:
            return False
        level = inner
    return True
