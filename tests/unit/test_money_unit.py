"""The money rules that need no server: what each content part, tool and cache lifetime may cost, and where
the body is refused before anything is reserved (issue 19's closed content model)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from gateway.catalog import Price, build
from gateway.chat import egress
from gateway.errors import GatewayError
from gateway.fields import MAX_DEPTH, too_deep
from gateway.routing.resolve import Candidate
from gateway.upstream import UpstreamHTTPError
from gateway.wire.anthropic import answer as anthropic_answer
from gateway.wire.anthropic import request_out
from gateway.wire.chat.request import validate

MILLION = Decimal(1_000_000)
HOUR = {"type": "ephemeral", "ttl": "1h"}
PRICED = {"input": "3", "output": "15", "cache_read": "0.30", "cache_write": "3.75", "cache_write_1h": "6"}
UNPRICED = {"input": "3", "output": "15", "cache_read": "0.30", "cache_write": "3.75"}
CATALOG = build(
    [
        {
            "providers": {"anthropic": {"protocol": "anthropic", "base_url": "http://127.0.0.1:9/v1"}},
            "models": [
                {"id": "hour", "pricing": PRICED, "offerings": [{"provider": "anthropic"}], "max_output_tokens": 100},
                {"id": "five", "pricing": UNPRICED, "offerings": [{"provider": "anthropic"}], "max_output_tokens": 100},
            ],
        }
    ]
)


def offer(model: str, body: dict[str, Any]) -> egress.Offer:
    m = CATALOG.models[model]
    candidate = Candidate(m, CATALOG.providers["anthropic"], m.offerings[0], adapter=None)  # type: ignore[arg-type]
    [made] = egress.offers(body, [candidate], 100, stream=False)
    return made


def cached_body(control: dict[str, Any]) -> dict[str, Any]:
    part = {"type": "text", "text": "a long system prompt", "cache_control": control}
    return {"model": "hour", "messages": [{"role": "system", "content": [part]}, {"role": "user", "content": "hi"}]}


def refusal(body: dict[str, Any]) -> GatewayError:
    with pytest.raises(GatewayError) as refused:
        validate(body)
    assert refused.value.status == 400
    return refused.value


# --- cache lifetimes ------------------------------------------------------------------------------


def test_one_hour_cache_writes_are_billed_and_reserved_at_their_own_price() -> None:
    price = Price.parse(PRICED)
    # 1,000 prompt tokens: 600 written, 400 of them for an hour; 10 out.
    assert (
        price.cost(1_000, 10, written=600, written_1h=400)
        == (Decimal(3) * 400 + Decimal("3.75") * 200 + Decimal(6) * 400 + Decimal(15) * 10) / MILLION
    )
    assert price.cost(100, 0, written=50, written_1h=500) == price.cost(100, 0, written=50, written_1h=50)
    assert price.most(1_000, 10) == (Decimal(6) * 1_000 + Decimal(15) * 10) / MILLION
    assert price.most(1_000, 10, long_cache=False) == (Decimal("3.75") * 1_000 + Decimal(15) * 10) / MILLION


def test_an_offering_that_prices_one_hour_writes_gets_them_and_its_reservation_covers_them() -> None:
    made = offer("hour", cached_body(HOUR))
    assert made.long_cache and b'"ttl":"1h"' in orjson.dumps(made.body)
    assert made.cost == (Decimal(6) * made.prompt + Decimal(15) * made.output) / MILLION
    short = offer("hour", cached_body({"type": "ephemeral"}))
    assert not short.long_cache and short.cost == (Decimal("3.75") * short.prompt + 15 * short.output) / MILLION


def test_an_offering_without_a_one_hour_price_is_sent_the_default_lifetime() -> None:
    body = cached_body(HOUR)
    made = offer("five", body)
    assert b'"ttl"' not in orjson.dumps(made.body) and not made.long_cache
    assert made.body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][0]["content"][0]["cache_control"] == HOUR  # the caller's body is not changed


def test_anthropic_s_usage_split_by_lifetime_reaches_the_bill() -> None:
    usage = anthropic_answer.usage(
        {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 300,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
        }
    )
    details = usage["prompt_tokens_details"]
    assert usage["prompt_tokens"] == 410 and details["cache_write_tokens"] == 300
    assert details["cache_write_1h_tokens"] == 200 and details["cached_tokens"] == 100


# --- a closed content model -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "part"),
    [
        ("user", {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}),
        ("user", {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}),
        ("user", {"type": "input_image", "image_url": "https://example.com/a.png"}),
        ("user", {"type": "web_search_tool_result", "content": []}),
        ("assistant", {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}),
        ("system", {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}),
        ("tool", {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}),
    ],
)
def test_a_content_part_its_role_cannot_send_is_a_400_naming_it(role: str, part: dict[str, Any]) -> None:
    message: dict[str, Any] = {"role": role, "content": [{"type": "text", "text": "see"}, part]}
    if role == "tool":
        message["tool_call_id"] = "call_1"
    error = refusal({"model": "m", "messages": [{"role": "user", "content": "hi"}, message]})
    assert error.param == "messages[1].content[1].type" and error.code == "unsupported_content"


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
        {"type": "web_search_preview"},
        {"type": "code_interpreter", "container": {"type": "auto"}},
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
    ],
)
def test_every_tool_but_a_function_or_custom_one_is_a_400_naming_it(tool: dict[str, Any]) -> None:
    function = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    error = refusal({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [function, tool]})
    assert error.param == "tools[1].type" and error.code == "unsupported_tool"


def test_a_file_stored_elsewhere_is_a_400() -> None:
    part = {"type": "file", "file": {"file_id": "file-abc"}}
    error = refusal({"model": "m", "messages": [{"role": "user", "content": [part]}]})
    assert error.param == "messages[0].content[0].file.file_id"


def test_the_anthropic_adapter_never_forwards_a_block_it_cannot_translate() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}
    with pytest.raises(UpstreamHTTPError) as refused:
        request_out.to_anthropic(body)
    assert refused.value.status == 400
    tools = [{"type": "web_search_20250305", "name": "web_search"}]
    assert "tools" not in request_out.to_anthropic(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools}
    )


# --- nesting --------------------------------------------------------------------------------------


def nested(levels: int) -> Any:
    value: Any = "deep"
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


def test_nesting_is_limited_where_the_body_is_parsed() -> None:
    assert not too_deep(nested(MAX_DEPTH)) and too_deep(nested(MAX_DEPTH + 1))
    assert not too_deep({"messages": [{"content": "[[[[{{{{" * 1000}]})  # brackets inside strings are text
    assert too_deep({"a": [1, {"b": nested(300)}]})


# --- the attacker's review ------------------------------------------------------------------------


def test_the_prompt_bound_is_measured_on_the_body_the_provider_is_sent() -> None:
    """Anthropic's adapter writes tool inputs out again: `1e15` becomes `1000000000000000.0`, 4 bytes become 18."""
    arguments = '{"a": [' + ",".join(["1e15"] * 2_000) + "]}"  # the caller's own text of the arguments
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    body = {
        "model": "five",
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ],
    }
    made = offer("five", body)
    sent = len(orjson.dumps(request_out.to_anthropic(made.body)))
    assert sent > 3 * len(arguments) and made.size >= sent  # the bound before the context length caps it


def test_tool_arguments_nested_too_deep_are_refused_not_a_500() -> None:
    arguments = '{"a": ' + "[" * 300 + "1" + "]" * 300 + "}"  # JSON text inside a string: the body check passes it
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [call]}]}
    with pytest.raises(UpstreamHTTPError) as refused:
        request_out.to_anthropic(body)
    assert refused.value.status == 400 and refused.value.client_fault


def test_without_a_lifetime_split_every_write_may_be_an_hour_long() -> None:
    """OpenRouter reports cache writes with no split: a body that may write one-hour entries is billed so."""
    from gateway.chat.call import Outcome

    usage = {"prompt_tokens": 1_000, "completion_tokens": 0, "prompt_tokens_details": {"cache_write_tokens": 600}}
    hourly = Outcome(model="m", price=Price.parse(PRICED), long_cache=True)
    hourly.take(usage, True)
    short = Outcome(model="m", price=Price.parse(PRICED))
    short.take(usage, True)
    assert hourly.cache_write_1h_tokens == 600 and short.cache_write_1h_tokens == 0
    assert hourly.price_of(1_000, 0) == (Decimal(3) * 400 + Decimal(6) * 600) / MILLION
    split = {**usage, "prompt_tokens_details": {"cache_write_tokens": 600, "cache_write_1h_tokens": 100}}
    hourly.take(split, True)
    assert hourly.cache_write_1h_tokens == 100  # the provider's own split wins


def test_no_breakpoint_no_cache_write_price_and_anthropic_answers_once_whatever_n() -> None:
    plain = offer("hour", {"model": "hour", "messages": [{"role": "user", "content": "hi"}], "n": 3})
    assert not plain.writes and plain.choices == 1 and plain.output == 100
    assert plain.cost == (Decimal(3) * plain.prompt + Decimal(15) * plain.output) / MILLION
    marked = offer("hour", cached_body({"type": "ephemeral"}))
    assert marked.writes and marked.cost == (Decimal("3.75") * marked.prompt + Decimal(15) * marked.output) / MILLION


def test_an_answer_lost_after_the_request_went_out_may_be_billed_one_never_sent_is_not() -> None:
    """A provider that read the request and hung up may have generated it; one that was never reached cannot."""
    import asyncio
    import socket

    from gateway.providers import http
    from gateway.upstream import UpstreamConnectError, UpstreamLost

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async def run() -> tuple[BaseException, BaseException]:
        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            nobody = closed.getsockname()[1]
        failures = []
        for url in (f"http://127.0.0.1:{port}/v1/chat/completions", f"http://127.0.0.1:{nobody}/v1/chat/completions"):
            try:
                await http.post_json(url, {"model": "m"}, {}, "p")
            except Exception as exc:
                failures.append(exc)
        server.close()
        return failures[0], failures[1]

    lost, unreached = asyncio.run(run())
    assert isinstance(lost, UpstreamLost) and lost.maybe_billed
    assert isinstance(unreached, UpstreamConnectError) and not unreached.maybe_billed


def test_a_timeout_says_which_limit_ran_out_and_only_one_after_sending_may_be_billed() -> None:
    from gateway.chat.call import client_error
    from gateway.config import settings
    from gateway.upstream import UpstreamTimeout

    connecting, answering = UpstreamTimeout("p timed out", sent=False), UpstreamTimeout("p timed out")
    assert not connecting.maybe_billed and answering.maybe_billed
    cfg = settings()
    assert client_error(connecting).message.endswith(
        f"could not be reached within {cfg.upstream_connect_timeout:g} seconds."
    )
    assert client_error(answering).message.endswith(f"did not answer within {cfg.upstream_timeout:g} seconds.")
    assert client_error(connecting).status == client_error(answering).status == 504
