"""POST /v1/responses end to end: the openai SDK's `responses` client against the real gateway, the gateway
against the built-in model and the fake OpenAI upstream (every catalog model answers, through the one chat path).

Every body is parsed into the SDK's own `Response` and every event into its `ResponseStreamEvent` type with
strict validation, so a missing or mistyped field fails; streams are also checked for their order (created,
in_progress, each item added before its deltas and done, completed last) and numbering.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any, get_args

import httpx
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter

from tests.support.fake_upstream import CACHED_TOKENS, PROMPT_TOKENS, REASONING, TOOL_ARGUMENTS, FakeUpstream
from tests.support.kit import balance, month_counters, named_events, wait_settled

FAKE_OK_PRICE = (Decimal("0.50"), Decimal("1.50"))  # the catalog's fake-ok price, USD per million tokens
STREAM_EVENT = TypeAdapter(ResponseStreamEvent)
EVENT_TYPES = {
    get_args(cls.model_fields["type"].annotation)[0]: cls for cls in get_args(get_args(ResponseStreamEvent)[0])
}
TEXT_EVENTS = {  # delta event -> (done event, the done event's text field, the item's parts, their index's name)
    "response.output_text.delta": ("response.output_text.done", "text", "content", "content_index"),
    "response.refusal.delta": ("response.refusal.done", "refusal", "content", "content_index"),
    "response.reasoning_summary_text.delta": (
        "response.reasoning_summary_text.done",
        "text",
        "summary",
        "summary_index",
    ),
}
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
MakeKey = Callable[..., tuple[str, Any]]


class Weather(BaseModel):
    city: str
    degrees: int
    sunny: bool


# --- checks ------------------------------------------------------------------------------------


def check_response(body: dict[str, Any], status: str = "completed") -> Response:
    """A Response body as the SDK's strict type reads it, and as OpenAI sends it."""
    response = Response.model_validate(body, strict=True)
    assert body["object"] == "response" and body["id"].startswith("resp_")
    assert body["status"] == status, body
    assert body["store"] is False and body["previous_response_id"] is None and body["background"] is False
    assert (body["error"] is None) == (status != "failed")
    assert (body["incomplete_details"] is None) == (status != "incomplete")
    assert (body["completed_at"] is not None) == (status == "completed")
    ids = [item["id"] for item in body["output"]]
    assert len(set(ids)) == len(ids), "output item ids repeat"
    for item in body["output"]:
        assert item["status"] in ("completed", "incomplete")
    usage = body["usage"]
    if status != "failed":
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    return response


def create_raw(client: openai.OpenAI, **params: Any) -> tuple[dict[str, Any], httpx.Headers]:
    """A whole response through the SDK, checked; (JSON body, headers)."""
    raw = client.responses.with_raw_response.create(**params)
    body = raw.http_response.json()
    check_response(body, body["status"])
    return body, httpx.Headers(dict(raw.headers))


def events_of(text: str) -> list[dict[str, Any]]:
    """The SSE events of a Responses stream: `event:` names its `type`, each event is strictly of its SDK type,
    and `sequence_number` counts from 0 without a gap."""
    events = [event for _, event in named_events(text)]
    for event in events:
        EVENT_TYPES[event["type"]].model_validate(event, strict=True)  # a readable error for this type
        STREAM_EVENT.validate_python(event, strict=True)  # and the union the SDK parses with
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def check_events(events: list[dict[str, Any]], final_status: str = "completed") -> dict[str, Any]:
    """The lifecycle and item events of a finished stream agree with each other; the final Response."""
    types = [e["type"] for e in events]
    assert types[:2] == ["response.created", "response.in_progress"], types
    end = {"completed": "response.completed", "incomplete": "response.incomplete"}[final_status]
    assert types[-1] == end and types.count(end) == 1, types
    first, final = events[0]["response"], events[-1]["response"]
    assert first["status"] == "in_progress" and first["output"] == [] and first["usage"] is None
    assert events[1]["response"]["id"] == first["id"] == final["id"]
    check_response(final, final_status)

    added = {e["output_index"]: (i, e["item"]) for i, e in enumerate(events) if e["type"].endswith("item.added")}
    done = {e["output_index"]: (i, e["item"]) for i, e in enumerate(events) if e["type"].endswith("item.done")}
    assert sorted(added) == sorted(done) == list(range(len(final["output"])))
    assert [done[i][1] for i in range(len(done))] == final["output"]
    for index, (position, item) in added.items():
        assert item["id"] == done[index][1]["id"] and item["status"] == "in_progress"
        assert position < done[index][0]
        for i, event in enumerate(events):  # everything about an item comes between its added and done
            if event.get("item_id") == item["id"]:
                assert position < i < done[index][0], event
                assert event["output_index"] == index

    texts: dict[tuple[str, int], str] = {}
    arguments: dict[str, str] = {}
    for event in events:
        if event["type"] in TEXT_EVENTS:
            key = (event["item_id"], event[TEXT_EVENTS[event["type"]][3]])
            texts[key] = texts.get(key, "") + event["delta"]
        elif event["type"] == "response.function_call_arguments.delta":
            arguments[event["item_id"]] = arguments.get(event["item_id"], "") + event["delta"]
    items = {item["id"]: item for item in final["output"]}
    for event in events:
        for done_type, field, parts, index in TEXT_EVENTS.values():
            if event["type"] == done_type:
                text = event[field]
                assert texts.get((event["item_id"], event[index]), "") == text
                assert items[event["item_id"]][parts][event[index]][field] == text
        if event["type"] == "response.function_call_arguments.done":
            assert arguments.get(event["item_id"], "") == event["arguments"] == items[event["item_id"]]["arguments"]
    return final


def stream_raw(http: httpx.Client, **body: Any) -> httpx.Response:
    response = http.post("/responses", json={**body, "stream": True})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-request-id"]
    return response


def cost(prompt: int, completion: int) -> Decimal:
    return (FAKE_OK_PRICE[0] * prompt + FAKE_OK_PRICE[1] * completion) / Decimal(1_000_000)


# --- whole answers -------------------------------------------------------------------------------


def test_a_string_input_answers_whole(client: openai.OpenAI) -> None:
    body, headers = create_raw(client, model="gateway-echo", input="Hello there")
    assert body["model"] == "gateway-echo"
    (message,) = body["output"]
    assert message["type"] == "message" and message["role"] == "assistant" and message["id"].startswith("msg_")
    assert message["content"] == [
        {"type": "output_text", "text": "You said: Hello there", "annotations": [], "logprobs": []}
    ]
    assert body["usage"]["input_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
    assert body["usage"]["output_tokens_details"] == {"reasoning_tokens": 0}
    assert body["usage"]["cost"] == 0  # a free model
    assert headers["x-gateway-cost"] == "0" and headers["x-gateway-model"] == "gateway-echo"
    assert headers["x-request-id"] and headers["content-type"].startswith("application/json")
    # What the SDK makes of it, and the defaults a Response repeats.
    response = client.responses.create(model="echo", input="Hello there")
    assert response.output_text == "You said: Hello there"
    assert (response.tool_choice, response.tools, response.parallel_tool_calls) == ("auto", [], True)
    assert response.text is not None and response.text.format is not None and response.text.format.type == "text"
    assert response.instructions is None and response.truncation == "disabled"


def test_items_and_parameters_become_the_canonical_chat_request(
    client: openai.OpenAI, fake: FakeUpstream, marker: str
) -> None:
    """Instructions first, developer as system, parts, a turn's text and parallel calls in one assistant message,
    outputs as tool messages (their images after them), reasoning items dropped; every parameter under its chat
    name, Responses-only ones and a client's own kept back."""
    image = "data:image/png;base64,iVBORw0KGgo="
    calls = [("call_1", '{"city":"Paris"}'), ("call_2", '{"city":"Rome"}')]
    body, _ = create_raw(
        client,
        model="fake-ok",
        instructions="Answer in English.",
        input=[
            {"role": "developer", "content": "Be brief."},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": f"weather? {marker}"},
                    {"type": "input_image", "image_url": image, "detail": "low"},
                ],
            },
            {"type": "reasoning", "id": "rs_earlier", "summary": []},
            {"type": "item_reference", "id": "rs_stored"},  # as the AI SDK sends earlier reasoning: dropped alike
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_earlier",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Let me check.", "annotations": []}],
            },
            *({"type": "function_call", "call_id": c, "name": "get_weather", "arguments": a} for c, a in calls),
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": "call_2",
                "output": [{"type": "input_text", "text": "rainy"}, {"type": "input_image", "image_url": image}],
            },
            {"role": "user", "content": "thanks"},
        ],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        max_output_tokens=300,
        temperature=0.3,
        top_p=0.9,
        reasoning={"effort": "low", "summary": "auto"},
        text={"format": {"type": "json_schema", "name": "weather", "schema": Weather.model_json_schema()}},
        user="user-1",
        prompt_cache_key="session-1",
        metadata={"ticket": "42"},
        store=True,
        include=["reasoning.encrypted_content"],
        truncation="auto",
        extra_body={"client_metadata": {"thread_id": "t-1"}},  # a client's own field (Codex CLI sends this one)
    )
    sent = fake.one(marker).body
    assert sent["messages"] == [
        {"role": "system", "content": "Answer in English."},
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": f"weather? {marker}"},
                {"type": "image_url", "image_url": {"url": image, "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {"id": c, "type": "function", "function": {"name": "get_weather", "arguments": a}} for c, a in calls
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "rainy"},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": image}}],
        },  # chat takes media from users
        {"role": "user", "content": "thanks"},
    ]
    function = {k: v for k, v in WEATHER_TOOL.items() if k != "type"}
    assert sent["tools"] == [{"type": "function", "function": function}]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "weather", "schema": Weather.model_json_schema()},
    }
    expected = {
        "model": "ok",
        "parallel_tool_calls": False,
        "max_tokens": 300,  # max_output_tokens, in the field the fake provider obeys (its output_limit_field)
        "temperature": 0.3,
        "top_p": 0.9,
        "reasoning_effort": "low",
        "user": "user-1",
        "prompt_cache_key": "session-1",
    }
    assert {k: sent.get(k) for k in expected} == expected
    kept_back_fields = ("input", "instructions", "text", "reasoning", "store", "include", "truncation", "metadata")
    for kept_back in (*kept_back_fields, "client_metadata"):
        assert kept_back not in sent, kept_back  # Responses-only, or (metadata, store) charged unless allowed

    assert body["output"][0]["content"][0]["text"] == "Echo: thanks"
    assert body["usage"]["input_tokens"] == PROMPT_TOKENS  # the upstream's count
    # The request as the Response repeats it.
    assert body["instructions"] == "Answer in English."
    assert body["tools"] == [WEATHER_TOOL] and body["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert (body["max_output_tokens"], body["temperature"], body["top_p"]) == (300, 0.3, 0.9)
    assert body["parallel_tool_calls"] is False and body["metadata"] == {"ticket": "42"}
    assert body["reasoning"] == {"effort": "low", "summary": "auto"} and body["truncation"] == "auto"
    assert body["text"]["format"]["name"] == "weather" and body["store"] is False


def test_cached_prompt_tokens_are_reported_in_the_responses_shape(client: openai.OpenAI) -> None:
    body, _ = create_raw(client, model="fake-cached", input="cache me")
    details = body["usage"]["input_tokens_details"]
    assert details == {"cached_tokens": CACHED_TOKENS, "cache_write_tokens": 0}


def test_reasoning_becomes_a_reasoning_item(client: openai.OpenAI) -> None:
    body, _ = create_raw(client, model="fake-reasoning", input="think")
    reasoning, message = body["output"]
    assert reasoning["type"] == "reasoning" and reasoning["id"].startswith("rs_")
    assert reasoning["summary"] == [{"type": "summary_text", "text": "".join(REASONING)}]  # what clients show
    assert message["content"][0]["text"] == "Echo: think"
    assert body["usage"]["output_tokens_details"] == {"reasoning_tokens": len(REASONING)}


def test_max_output_tokens_reached_is_incomplete(client: openai.OpenAI) -> None:
    body, _ = create_raw(client, model="gateway-echo", input="one two three four five", max_output_tokens=2)
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    (message,) = body["output"]
    assert message["status"] == "incomplete" and message["content"][0]["text"] == "You said"
    assert body["usage"]["output_tokens"] == 2 and body["max_output_tokens"] == 2


# --- tools ---------------------------------------------------------------------------------------


def test_a_function_call_and_its_output_round_trip(client: openai.OpenAI, fake: FakeUpstream, marker: str) -> None:
    body, _ = create_raw(client, model="fake-tools", input=f"weather in Paris? {marker}", tools=[WEATHER_TOOL])
    (call,) = body["output"]
    assert call["type"] == "function_call" and call["id"].startswith("fc_") and call["status"] == "completed"
    assert (call["call_id"], call["name"], call["arguments"]) == ("call_fake_1", "get_weather", "".join(TOOL_ARGUMENTS))

    # The next turn sends the call back with its output, as an agent does (nothing is stored between them).
    follow_up = [
        {"role": "user", "content": f"weather in Paris? {marker}"},
        {k: call[k] for k in ("type", "id", "call_id", "name", "arguments", "status")},
        {"type": "function_call_output", "call_id": call["call_id"], "output": '{"degrees": 21}'},
    ]
    response = client.responses.create(model="fake-ok", input=follow_up, tools=[WEATHER_TOOL])  # type: ignore[arg-type]
    assert response.output_text == f"Echo: weather in Paris? {marker}"
    sent = fake.wait_for(marker, 2)[-1].body
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_fake_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_fake_1", "content": '{"degrees": 21}'},
    ]


def test_a_namespace_s_functions_are_offered_and_their_calls_name_it(
    client: openai.OpenAI, fake: FakeUpstream, marker: str
) -> None:
    """Codex CLI groups tools in namespaces: their functions are offered flat, and a call carries its namespace."""
    namespace = {"type": "namespace", "name": "weather_tools", "description": "Weather.", "tools": [WEATHER_TOOL]}
    body, _ = create_raw(client, model="fake-tools", input=f"weather? {marker}", tools=[namespace])
    (call,) = body["output"]
    assert (call["name"], call["namespace"]) == ("get_weather", "weather_tools")
    assert [t["function"]["name"] for t in fake.one(marker).body["tools"]] == ["get_weather"]
    assert body["tools"] == [namespace]


def test_the_built_in_model_calls_a_forced_tool_with_schema_valid_arguments(client: openai.OpenAI) -> None:
    tool = {**WEATHER_TOOL, "name": "lookup"}
    body, _ = create_raw(
        client,
        model="gateway-echo",
        input="find Paris",
        tools=[tool],
        tool_choice={"type": "function", "name": "lookup"},
    )
    (call,) = body["output"]
    assert call["type"] == "function_call" and call["name"] == "lookup"
    assert set(json.loads(call["arguments"])) == {"city"}
    # allowed_tools narrows the list the model sees; "required" makes it call one of them.
    choice = {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "lookup"}]}
    body, _ = create_raw(client, model="gateway-echo", input="x", tools=[WEATHER_TOOL, tool], tool_choice=choice)
    assert [item["name"] for item in body["output"]] == ["lookup"]


# --- structured output -----------------------------------------------------------------------------


def test_parse_with_a_pydantic_model(client: openai.OpenAI) -> None:
    parsed = client.responses.parse(model="gateway-echo", input="weather in Paris", text_format=Weather)
    assert isinstance(parsed.output_parsed, Weather)
    body, _ = create_raw(
        client,
        model="gateway-echo",
        input="anything",
        text={"format": {"type": "json_object"}},
    )
    assert isinstance(json.loads(body["output"][0]["content"][0]["text"]), dict)

    with client.responses.stream(model="gateway-echo", input="weather in Rome", text_format=Weather) as stream:
        final = stream.get_final_response()
    assert isinstance(final.output_parsed, Weather)


# --- streams -------------------------------------------------------------------------------------


def test_a_stream_sends_the_documented_events(http: httpx.Client, fake: FakeUpstream, marker: str) -> None:
    response = stream_raw(http, model="fake-ok", input=f"stream me {marker}", instructions="Be brief.")
    events = events_of(response.text)
    final = check_events(events)
    types = [e["type"] for e in events]
    assert types[2:5] == ["response.output_item.added", "response.content_part.added", "response.output_text.delta"]
    assert types[-5:-1] == [
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    (message,) = final["output"]
    assert message["content"][0]["text"] == f"Echo: stream me {marker}"
    assert final["usage"]["input_tokens"] == PROMPT_TOKENS and final["instructions"] == "Be brief."
    assert (
        "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == f"Echo: stream me {marker}"
    )
    assert "x-gateway-cost" not in response.headers  # unknown when the stream starts: in usage.cost at its end
    assert isinstance(final["usage"]["cost"], float)  # zero here: the module's key has free requests
    assert fake.one(marker).body["stream"] is True


def test_the_sdk_streams_and_its_helper_assembles(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="gateway-echo", input="Hi there", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert events[-1].response.output_text == "You said: Hi there"

    with client.responses.stream(model="gateway-echo", input="Hi again") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "You said: Hi again"
    assert final.usage is not None and final.usage.output_tokens == len(deltas)


def test_a_streamed_function_call(http: httpx.Client, client: openai.OpenAI) -> None:
    events = events_of(stream_raw(http, model="fake-tools", input="weather?", tools=[WEATHER_TOOL]).text)
    final = check_events(events)
    (call,) = final["output"]
    assert (call["call_id"], call["name"], call["arguments"]) == ("call_fake_1", "get_weather", "".join(TOOL_ARGUMENTS))
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert deltas == list(TOOL_ARGUMENTS)
    added = next(e for e in events if e["type"] == "response.output_item.added")["item"]
    assert (added["name"], added["arguments"]) == ("get_weather", "")

    with client.responses.stream(model="fake-tools", input="weather?", tools=[WEATHER_TOOL]) as stream:  # type: ignore[list-item]
        response = stream.get_final_response()
    (item,) = response.output
    assert item.type == "function_call" and json.loads(item.arguments) == {"city": "Paris"}


def test_a_streamed_reasoning_item_comes_before_the_message(http: httpx.Client) -> None:
    events = events_of(stream_raw(http, model="fake-reasoning", input="think").text)
    final = check_events(events)
    reasoning, message = final["output"]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "".join(REASONING)}]
    assert [e["delta"] for e in events if e["type"] == "response.reasoning_summary_text.delta"] == list(REASONING)
    types = [e["type"] for e in events]
    assert types.index("response.reasoning_summary_part.done") < types.index("response.content_part.added")
    assert message["content"][0]["text"] == "Echo: think"
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] == len(REASONING)


def test_a_streamed_answer_cut_by_max_output_tokens_is_incomplete(http: httpx.Client) -> None:
    response = stream_raw(http, model="gateway-echo", input="one two three four", max_output_tokens=3)
    final = check_events(events_of(response.text), "incomplete")
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["status"] == "incomplete"


@pytest.mark.parametrize(("model", "code"), [("fake-error-mid", "upstream_error"), ("fake-stall", "upstream_timeout")])
def test_a_failure_mid_stream_fails_the_response(
    http: httpx.Client, client: openai.OpenAI, model: str, code: str
) -> None:
    events = events_of(stream_raw(http, model=model, input="one two three four").text)
    failed, error = events[-2:]
    assert failed["type"] == "response.failed" and error["type"] == "error"
    check_response(failed["response"], "failed")
    assert failed["response"]["error"]["code"] == "server_error" and failed["response"]["error"]["message"]
    (message,) = failed["response"]["output"]  # what was said before the failure, not closed
    assert message["status"] == "incomplete" and message["content"][0]["text"]
    assert not [e for e in events if e["type"] == "response.output_item.done"]
    # The documented flat fields, and the nested object OpenAI sends (which the SDKs raise).
    assert error["code"] == code and error["message"] and error["param"] is None
    assert error["error"] == {"type": error["error"]["type"], "code": code, "message": error["message"], "param": None}

    received = []
    with pytest.raises(openai.APIError) as raised:
        for event in client.responses.create(model=model, input="one two three four", stream=True):
            received.append(event.type)
    assert "response.output_text.delta" in received
    assert not isinstance(raised.value, openai.APIStatusError) and raised.value.code == code
    with pytest.raises(openai.APIError), client.responses.stream(model=model, input="one two") as stream:
        stream.get_final_response()


def test_a_failure_before_the_first_byte_is_a_json_error(http: httpx.Client) -> None:
    response = http.post("/responses", json={"model": "fake-error-500", "input": "x", "stream": True})
    assert response.status_code == 502 and response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "upstream_error"


def test_a_client_hang_up_closes_the_upstream_and_settles(
    anon_http: httpx.Client, make_key: MakeKey, fake: FakeUpstream, marker: str
) -> None:
    key, record = make_key(name="responses hang-up", free_requests=0)
    body = {"model": "fake-long", "input": f"talk a lot {marker}", "stream": True}
    with anon_http.stream("POST", "/responses", json=body, headers={"authorization": f"Bearer {key}"}) as response:
        assert response.status_code == 200
        for seen, _ in enumerate(line for line in response.iter_lines() if line.startswith("data: ")):
            if seen == 5:
                break
    assert fake.one(marker).wait_ended(3) == "disconnected", "the gateway kept reading from the upstream"
    wait_settled(record, 1)  # the abandoned stream is settled
    assert month_counters(record.key_id)["cost"] > 0  # what was delivered is billed
    assert balance(record, settled=True) == Decimal(1000) - month_counters(record.key_id)["cost"]


# --- errors --------------------------------------------------------------------------------------


def test_a_missing_or_wrong_key_is_a_401(anon_http: httpx.Client, client_for: Callable[[str], openai.OpenAI]) -> None:
    response = anon_http.post("/responses", json={"model": "gateway-echo", "input": "hi"})
    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "authentication_error"
    assert response.headers["x-request-id"] and response.headers["x-should-retry"] == "false"
    with pytest.raises(openai.AuthenticationError):
        client_for("sk-" + "0" * 48).responses.create(model="gateway-echo", input="hi")


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"model": "gateway-echo"}, "input", "Missing required parameter"),
        ({"input": "hi"}, "model", "Missing required parameter"),
        ({"model": "gateway-echo", "input": 42}, "input", "a string or an array"),
        ({"model": "gateway-echo", "input": []}, "input", "at least one"),
        (
            {"model": "gateway-echo", "input": [{"type": "function_call_output", "output": "x"}]},
            "input[0].call_id",
            "Missing required parameter",
        ),
        ({"model": "gateway-echo", "input": [{"role": "critic", "content": "x"}]}, "input[0].role", "'critic'"),
        (
            {"model": "gateway-echo", "input": [{"role": "user", "content": [{"type": "input_video"}]}]},
            "input[0].content[0].type",
            "'input_video'",
        ),
        ({"model": "gateway-echo", "input": [{"type": "web_search_call"}]}, "input[0].type", "'web_search_call'"),
        ({"model": "gateway-echo", "input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]", "stores none"),
        (
            {"model": "gateway-echo", "input": "hi", "tools": [{"type": "file_search"}]},
            "tools[0].type",
            "'file_search'",
        ),
        (
            {"model": "gateway-echo", "input": "hi", "tools": [{"type": "file_search"}]},
            "tools[0].type",
            "'file_search'",
        ),
        ({"model": "gateway-echo", "input": "hi", "tools": [{"type": "function"}]}, "tools[0].name", "Missing"),
        (
            {
                "model": "gateway-echo",
                "input": "hi",
                "tools": [{"type": "namespace", "name": "n", "description": "", "tools": [{"type": "file_search"}]}],
            },
            "tools[0].tools[0].type",
            "'file_search'",
        ),
        (
            {
                "model": "gateway-echo",
                "input": "hi",
                "tools": [{"type": "namespace", "name": "n", "description": "", "tools": [{"type": "custom"}]}],
            },
            "tools[0].tools[0].name",
            "Missing",
        ),
        (
            {"model": "gateway-echo", "input": "hi", "tools": [WEATHER_TOOL, WEATHER_TOOL]},
            "tools[1].name",
            "two tools are named 'get_weather'",
        ),
        ({"model": "gateway-echo", "input": "hi", "tool_choice": "always"}, "tool_choice", "'always'"),
        ({"model": "gateway-echo", "input": "hi", "text": {"format": {"type": "yaml"}}}, "text.format.type", "'yaml'"),
        (
            {"model": "gateway-echo", "input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}},
            "text.format.schema",
            "Missing",
        ),
        ({"model": "gateway-echo", "input": "hi", "max_output_tokens": 0}, "max_output_tokens", "'max_output_tokens'"),
        ({"model": "gateway-echo", "input": "hi", "temperature": 3}, "temperature", "between 0 and 2"),
        ({"model": "gateway-echo", "input": "hi", "reasoning": {"effort": 1}}, "reasoning.effort", "a string"),
        ({"model": "gateway-echo", "input": "hi", "previous_response_id": "resp_1"}, "previous_response_id", "stores"),
        ({"model": "gateway-echo", "input": "hi", "conversation": "conv_1"}, "conversation", "stores"),
        ({"model": "gateway-echo", "input": "hi", "background": True}, "background", "background"),
        ({"model": "gateway-echo", "input": "hi", "store": "yes"}, "store", "a boolean"),
        (
            {
                "model": "fake-drip",  # text only
                "instructions": "Describe.",
                "input": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "this"},
                            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
                        ],
                    }
                ],
            },
            "input[0].content[1]",  # messages[1].content[1] in the canonical request
            "'input[0].content[1]'",
        ),
    ],
)
def test_a_malformed_request_is_a_400_naming_the_responses_field(
    http: httpx.Client, body: dict[str, Any], param: str, words: str
) -> None:
    response = http.post("/responses", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    assert words in error["message"], error
    assert response.headers["x-should-retry"] == "false"


def test_the_hosted_web_search_codex_offers_is_dropped_not_refused(
    client: openai.OpenAI, fake: FakeUpstream, marker: str
) -> None:
    tools: Any = [{"type": "web_search"}, {**WEATHER_TOOL}]
    answer = client.responses.create(model="fake-ok", input=marker, tools=tools)
    assert answer.status == "completed"
    sent = fake.one(marker).body
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather"]  # the function tool only


def test_the_sdk_raises_a_bad_request_and_a_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="gateway-echo", input="hi", tools=[{"type": "code_interpreter"}])
    assert raised.value.param == "tools[0].type"  # type: ignore[attr-defined]
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model="no-such-model", input="hi")
    assert missing.value.code == "model_not_found"


def test_no_credit_is_a_402_and_nothing_reaches_the_upstream(
    make_key: MakeKey, client_for: Callable[[str], openai.OpenAI], fake: FakeUpstream, marker: str
) -> None:
    key, _ = make_key(name="responses broke", monthly_credit=Decimal(0), free_requests=0)
    with pytest.raises(openai.APIStatusError) as raised:
        client_for(key).responses.create(model="fake-ok", input=marker)
    assert type(raised.value) is openai.APIStatusError and raised.value.status_code == 402
    assert raised.value.code == "insufficient_quota"
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert fake.find(marker) == [], "a refused request reached the upstream"


# --- billing -------------------------------------------------------------------------------------


def test_each_response_is_billed_once_at_its_reported_cost(
    make_key: MakeKey, client_for: Callable[[str], openai.OpenAI]
) -> None:
    key, record = make_key(name="responses billing", free_requests=0)
    client = client_for(key)
    body, headers = create_raw(client, model="fake-ok", input="bill me")
    usage = body["usage"]
    expected = cost(usage["input_tokens"], usage["output_tokens"])
    assert Decimal(headers["x-gateway-cost"]) == Decimal(str(usage["cost"])) == expected
    assert balance(record, settled=True) == Decimal(1000) - expected  # settled before the response completed
    counters = month_counters(record.key_id)
    assert (counters["requests"], counters["prompt_tokens"]) == (1, PROMPT_TOKENS)
    assert counters["cost"] == expected

    with client.responses.stream(model="fake-ok", input="stream bill") as stream:
        final = stream.get_final_response()
    assert final.usage is not None
    streamed = cost(final.usage.input_tokens, final.usage.output_tokens)
    assert Decimal(str(final.usage.cost)) == streamed  # type: ignore[attr-defined]
    assert month_counters(record.key_id)["requests"] == 2
    assert balance(record, settled=True) == Decimal(1000) - expected - streamed
    assert month_counters(record.key_id)["cost"] == expected + streamed
