"""What Claude Code sends now, through the Messages ingress (no servers): system messages among the turns,
its betas, `context_management` and `output_config` (shapes from the real CLI, 2.1.337, run offline)."""

from __future__ import annotations

from typing import Any

from gateway.wire import toolkit
from gateway.wire.anthropic import request_in, request_out
from gateway.wire.chat.request import validate

CACHED = {"type": "ephemeral"}
ENVIRONMENT = {"type": "text", "text": "# Environment\ncwd: /tmp", "cache_control": CACHED}
BETAS = (
    "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,"
    "mid-conversation-tool-changes-2026-07-01,thinking-token-count-2026-05-13,advanced-tool-use-2025-11-20,"
    "effort-2025-11-24,context-1m-2025-08-07"
)


def first_turn() -> dict[str, Any]:
    """Claude Code's first request for a model it does not know (trimmed): its environment is a system turn."""
    return {
        "model": "agent-sonnet",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.337"},
            {"type": "text", "text": "You are a Claude agent.", "cache_control": CACHED},
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "create hello.txt containing hi"}]},
            {
                "role": "system",
                "content": [ENVIRONMENT],
            },
        ],
        "tools": [{"name": "Write", "description": "Write a file", "input_schema": {"type": "object"}}],
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "metadata": {"user_id": '{"device_id": "d", "session_id": "s"}'},
    }


def test_a_system_turn_is_kept_where_it_was_said() -> None:
    canonical = request_in.to_canonical(first_turn(), beta=BETAS)
    validate(canonical)  # the canonical request is a valid chat request
    assert [m["role"] for m in canonical["messages"]] == ["system", "user", "system"]
    environment = canonical["messages"][2]
    assert environment["between_turns"] and environment["content"][0]["cache_control"] == CACHED


def test_an_anthropic_provider_gets_it_as_a_system_turn_with_its_beta_and_the_betas_that_mean_something() -> None:
    canonical = request_in.to_canonical(first_turn(), beta=BETAS)
    sent = request_out.to_anthropic(canonical)
    assert [t["role"] for t in sent["messages"]] == ["user", "system"]
    assert sent["messages"][1]["content"] == [ENVIRONMENT]
    assert [b["text"][:11] for b in sent["system"]] == ["x-anthropic", "You are a C"]
    assert sent["context_management"]["edits"][0]["type"] == "clear_thinking_20251015"
    assert sent["output_config"] == {"effort": "high"} and "anthropic_beta" not in sent
    forwarded = canonical["anthropic_beta"]
    assert "mid-conversation-tool-changes-2026-07-01" in forwarded and "effort-2025-11-24" in forwarded
    # Dropped: a 1M window bills differently; advanced tool use is tool search, a server tool.
    assert "context-1m-2025-08-07" not in forwarded and "advanced-tool-use-2025-11-20" not in forwarded


def test_the_beta_a_system_turn_needs_goes_with_it_even_if_the_caller_left_it_out() -> None:
    canonical = request_in.to_canonical(first_turn(), beta=None)
    assert canonical["anthropic_beta"] == [toolkit.BETWEEN_TURNS_BETA]
    plain = first_turn()
    plain["messages"] = plain["messages"][:1]
    assert "anthropic_beta" not in request_in.to_canonical(plain, beta="some-future-beta-2027-01-01")


def test_every_other_provider_gets_a_plain_system_message_in_place() -> None:
    canonical = request_in.to_canonical(first_turn(), beta=BETAS)
    sent = toolkit.portable(canonical)
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "system"]
    assert "between_turns" not in sent["messages"][2] and "cache_control" not in sent["messages"][2]["content"][0]
    assert not {"anthropic_beta", "context_management", "output_config", "thinking"} & sent.keys()


def test_errors_in_a_system_turn_name_the_callers_field() -> None:
    body = first_turn()
    body["messages"][1]["content"] = [{"type": "image", "source": {"type": "base64", "media_type": "image/png"}}]
    try:
        request_in.to_canonical(body)
    except Exception as exc:
        assert getattr(exc, "param", None) == "messages.1.content.0"
    else:
        raise AssertionError("an image in a system turn was accepted")
