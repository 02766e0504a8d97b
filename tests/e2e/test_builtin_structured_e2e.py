"""The built-in model's structured output end to end: the openai SDK's `parse` helpers, `response_format`
(json_schema, json_object) and forced tool calls against the real gateway and `gateway-echo`, whole and
streamed, with exact token counts (the sampler itself: tests/unit/test_builtin_structured.py).
"""

from __future__ import annotations

import json

import httpx
import openai

from gateway import tokens
from tests.support.kit import user
from tests.support.openapi import check_stream, validate_chat_completion
from tests.support.schemas import HAND_WRITTEN, Event, Tree, Weather, assert_valid


def test_parse_returns_the_pydantic_model_whole(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(model="gateway-echo", messages=user("an event"), response_format=Event)
    message = completion.choices[0].message
    assert isinstance(message.parsed, Event)
    assert completion.choices[0].finish_reason == "stop"
    assert message.content is not None
    assert completion.usage is not None and completion.usage.completion_tokens == tokens.count(message.content)


def test_parse_through_the_beta_client_and_a_stream(client: openai.OpenAI) -> None:
    completion = client.beta.chat.completions.parse(model="gateway-echo", messages=user("hi"), response_format=Weather)
    assert isinstance(completion.choices[0].message.parsed, Weather)

    with client.chat.completions.stream(model="gateway-echo", messages=user("a tree"), response_format=Tree) as stream:
        final = stream.get_final_completion()
    parsed = final.choices[0].message.parsed
    assert isinstance(parsed, Tree)
    assert final.usage is not None
    assert final.usage.completion_tokens == tokens.count(final.choices[0].message.content or "")


def test_json_schema_and_json_object_over_raw_http(http: httpx.Client) -> None:
    schema = HAND_WRITTEN["nested required"]
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": False}}
    body = {"model": "gateway-echo", "messages": user("who"), "response_format": response_format}
    whole = http.post("/chat/completions", json=body).json()
    validate_chat_completion(whole)
    assert_valid(json.loads(whole["choices"][0]["message"]["content"]), schema)

    streamed = http.post("/chat/completions", json={**body, "stream": True})
    chunks = check_stream(streamed.text, "gateway-echo")
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert content == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"] == tokens.count(content)

    obj = http.post("/chat/completions", json={**body, "response_format": {"type": "json_object"}}).json()
    assert json.loads(obj["choices"][0]["message"]["content"]) == {"text": "who"}


def test_a_forced_tool_call_matches_the_tool_s_schema(client: openai.OpenAI) -> None:
    tool = openai.pydantic_function_tool(Weather, name="get_weather")
    completion = client.chat.completions.parse(
        model="gateway-echo",
        messages=user("weather in Paris"),
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    (call,) = completion.choices[0].message.tool_calls or ()
    assert call.function.name == "get_weather"
    assert isinstance(call.function.parsed_arguments, Weather)
    assert_valid(json.loads(call.function.arguments), tool["function"]["parameters"])


def test_a_required_tool_streams_arguments_valid_against_its_schema(client: openai.OpenAI) -> None:
    schema = HAND_WRITTEN["numbers"]
    tools = [
        {"type": "function", "function": {"name": "first", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "measure", "parameters": schema}},
    ]
    choice = {"type": "function", "function": {"name": "measure"}}
    stream = client.chat.completions.create(
        model="gateway-echo", messages=user("measure"), tools=tools, tool_choice=choice, stream=True
    )
    arguments, names, finish = "", set(), None
    for chunk in stream:
        for c in chunk.choices:
            for call in c.delta.tool_calls or ():
                arguments += (call.function.arguments or "") if call.function else ""
                names.update([call.function.name] if call.function and call.function.name else [])
            finish = c.finish_reason or finish
    assert names == {"measure"} and finish == "tool_calls"
    assert_valid(json.loads(arguments), schema)


def test_tool_choice_auto_still_answers_text(client: openai.OpenAI) -> None:
    tools = [openai.pydantic_function_tool(Weather)]
    completion = client.chat.completions.create(
        model="gateway-echo", messages=user("hello"), tools=tools, tool_choice="auto"
    )
    assert completion.choices[0].message.content == "You said: hello"
    assert not completion.choices[0].message.tool_calls
