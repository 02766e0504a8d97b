"""What goes upstream to each candidate, and the most that upstream can bill for it.

The body sent is the caller's, less the gateway's own fields and less the fields that change
what a provider charges or stores (unless the operator allows them for that provider in the
catalog), with one output limit that every limit field agrees on. The bound is sound, not an
estimate: the upstream tokenizers we route to (byte-level BPE, SentencePiece with byte
fallback) never make more tokens of a text than it has UTF-8 bytes, so the bytes of the JSON
sent bound everything in it (messages, tools, tool_choice, response_format, names, ids);
a chat template adds at most the catalog's allowance per request and per message or tool; a
media part costs at most its model's per-part figure; and nothing a model bills exceeds its
context window. Output is bounded by the limit the gateway itself sends.

A body that came in through another protocol may carry that protocol's own features for the
providers that speak it (NATIVE names the protocol: the Messages ingress sets "anthropic"); every
other provider is sent the body without them, and its bound is that of the body it is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import orjson

from gateway.catalog import Allowance, Price
from gateway.chat import custom_tools
from gateway.errors import invalid_request
from gateway.routing.resolve import Candidate
from gateway.upstream import UpstreamError
from gateway.wire.chat.request import NATIVE

# Fields that change what a provider charges (a tier, stored or searched content, audio, predicted
# output, OpenRouter's plugins) or keeps: dropped unless the provider's `allow_fields` names them.
CHARGED_FIELDS = frozenset(
    {
        "service_tier",
        "store",
        "metadata",
        "plugins",
        "web_search_options",
        "prediction",
        "audio",
        "modalities",
        "transforms",
        "route",
        "prompt_cache_retention",  # a longer cache lifetime, which OpenAI bills as a dearer write
    }
)
# The top-level fields a provider is sent: OpenAI's chat completion parameters, the sampling knobs of the
# OpenAI-compatible servers (which change nothing billed), and Anthropic's own, which only the Messages
# ingress sets. Any other field is dropped unless the provider's `allow_fields` names it: a server's own
# extension can change what it bills (llama.cpp's `n_predict` overrides the output limit, vLLM's
# `chat_template` the prompt) beyond what the reservation bounds.
KNOWN_FIELDS = frozenset(
    {
        "model", "messages", "max_completion_tokens", "max_tokens", "temperature", "top_p", "n", "stop",
        "stream", "stream_options", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
        "top_logprobs", "seed", "user", "safety_identifier", "tools", "tool_choice", "parallel_tool_calls",
        "functions", "function_call", "response_format", "reasoning_effort", "verbosity", "prompt_cache_key",
        "top_k", "min_p", "repetition_penalty", "reasoning", "usage", "thinking", "context_management",
        "output_config", "anthropic_beta",
    }
    | CHARGED_FIELDS
)  # fmt: skip
BASE_TIERS = frozenset({"auto", "default"})  # billed at the offering's own price
LIMIT_FIELDS = ("max_completion_tokens", "max_tokens")
MEDIA = {"image_url": "image", "input_audio": "audio", "file": "file"}  # content part type -> modality
# Bytes a token, to estimate a prompt for the rate windows: BPE tokenizers make one token of about three to
# four bytes of English, code or JSON; three leans high. Money never uses it (a token a byte is the bound).
BYTES_PER_TOKEN = 3
N_PROTOCOLS = ("openai", "builtin")  # the protocols that answer `n` choices
BREAKPOINT_PROTOCOLS = ("anthropic", "bedrock")  # the protocols that write a cache entry only where asked
LONG_CACHE = b'"ttl":"1h"'  # a one-hour cache breakpoint, as orjson writes it (a text that says so only over-reserves)


@dataclass(frozen=True, slots=True)
class Part:
    param: str
    kind: str
    size: int  # bytes it takes in the JSON sent, which its per-part bound replaces


def media(body: dict[str, Any]) -> list[Part]:
    """The media content parts of the request; their bytes say nothing of what they cost."""
    found = []
    for i, message in enumerate(body.get("messages") or ()):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            kind = MEDIA.get(part.get("type"))
            if kind:
                found.append(Part(f"messages[{i}].content[{j}]", kind, len(orjson.dumps(part))))
    return found


def tier(body: dict[str, Any], candidate: Candidate) -> str | None:
    """The service tier sent to this candidate: only one the operator allows and has priced."""
    value = body.get("service_tier")
    if not isinstance(value, str) or "service_tier" not in candidate.provider.allow_fields:
        return None
    return value if value in BASE_TIERS or value in candidate.offering.tiers else None


def native(body: dict[str, Any], candidate: Candidate) -> dict[str, Any]:
    """The body as this candidate takes it: an ingress protocol's own features only if it speaks that protocol."""
    protocol = body.get(NATIVE)
    if protocol is None or protocol == candidate.provider.protocol:
        return body
    from gateway.wire import toolkit  # only bodies from the Messages ingress come this way

    return toolkit.portable(body)


def upstream_body(
    body: dict[str, Any], candidate: Candidate, limit: int, stream: bool
) -> tuple[dict[str, Any], frozenset[str]]:
    """The body this candidate is sent, and the custom tools it gets as function tools (chat/custom_tools.py)."""
    body = native(body, candidate)
    customs: frozenset[str] = frozenset()
    if not candidate.provider.custom_tools:
        body, customs = custom_tools.as_functions(body)
    allowed = candidate.provider.allow_fields
    field = candidate.provider.output_limit_field
    sent: dict[str, Any] = {}
    for k, v in body.items():  # in the caller's order, which some upstreams' caches key on
        if k in LIMIT_FIELDS:  # one limit, in the field this provider obeys, where the caller put one
            sent[field] = limit
        elif k in allowed or (k in KNOWN_FIELDS and k not in CHARGED_FIELDS):
            sent[k] = v
    sent[field] = limit
    if "service_tier" in sent and tier(body, candidate) is None:
        del sent["service_tier"]
    sent["model"] = candidate.offering.upstream_model
    if stream:  # usage on every stream, so that every stream can be billed
        sent["stream"] = True
        sent["stream_options"] = {**(sent.get("stream_options") or {}), "include_usage": True}
    else:
        sent.pop("stream", None)
        sent.pop("stream_options", None)
    return sent, customs


@dataclass(frozen=True, slots=True)
class Offer:
    """One candidate with the body it is sent, the price it bills at, and the most it can bill."""

    candidate: Candidate
    body: dict[str, Any]
    price: Price
    prompt: int  # tokens, bound
    output: int  # tokens, bound, all choices together
    choices: int = 1
    size: int = 0  # the prompt's bound before the context length caps it
    long_cache: bool = False  # the body may write one-hour cache entries, billed at their own price
    writes: bool = True  # the body may write cache entries at all (it holds a breakpoint)
    estimate: int = 0  # the prompt's tokens as a tokenizer would likely count them: what rate windows count
    customs: frozenset[str] = frozenset()  # custom tools it was sent as function tools, whose calls come back
    text: int = 0  # the bytes of the body sent, but its media parts: what the estimate is made from

    @property
    def tokens(self) -> int:
        """What the key's and the provider's token windows count at admission (settlement corrects it to usage):
        an estimate of the prompt, not its bound, and the whole output limit."""
        return self.estimate + self.output

    @property
    def cost(self) -> Decimal:
        return self.price.most(self.prompt, self.output, self.long_cache, self.writes)

    def limited(self, limit: int) -> Offer:
        """This offer with at most `limit` output tokens a choice, without building and measuring its body again.

        The limit is the one number of the body that changes (the one field the provider obeys), so
        the body's bytes, and the prompt's bound with them, move by its digits alone.
        """
        field, model = self.candidate.provider.output_limit_field, self.candidate.model
        out = min(limit, model.max_output_tokens)
        moved = len(str(out)) - len(str(self.body[field]))
        size, text = self.size + moved, self.text + moved
        body = {**self.body, field: out}
        return replace(
            self,
            body=body,
            prompt=min(size, model.context_length),
            output=out * self.choices,
            size=size,
            estimate=_estimate(text, size - text, model.context_length),
            text=text,
        )


def _estimate(text: int, fixed: int, context_length: int) -> int:
    return min(-(-text // BYTES_PER_TOKEN) + fixed, context_length)


def _short_lived(value: Any) -> Any:
    """A copy of messages or tools whose cache breakpoints keep the provider's default lifetime."""
    if isinstance(value, list):
        return [_short_lived(v) for v in value]
    if not isinstance(value, dict):
        return value
    copy = {k: _short_lived(v) for k, v in value.items()}
    control = value.get("cache_control")
    if isinstance(control, dict) and "ttl" in control:
        copy["cache_control"] = {k: v for k, v in control.items() if k != "ttl"}
    return copy


def _wire_size(sent: dict[str, Any], candidate: Candidate) -> int:
    """The bytes of the request as the provider's own protocol writes it (0 where that is the body sent):
    translating may lengthen what the caller wrote (a number written out in full, a schema filled in)."""
    protocol = candidate.provider.protocol
    if protocol == "anthropic":
        from gateway.wire.anthropic.request_out import to_anthropic as translate
    elif protocol == "bedrock":
        from gateway.wire.converse.request import converse_request as translate
    else:
        return 0
    try:
        return len(orjson.dumps(translate(sent), default=lambda raw: ""))  # Converse's images are raw bytes
    except (UpstreamError, ValueError, TypeError):
        return 0  # refused when it is sent, before anything is billed


def _prompt_size(sent: dict[str, Any], measured: int, parts: list[Part], candidate: Candidate) -> tuple[int, int]:
    """The prompt's bound before the context-length cap (the bytes sent but its media parts, the allowances and
    the media's bounds), and those bytes alone: the estimate counts them at BYTES_PER_TOKEN."""
    model = candidate.model
    allowance: Allowance = model.prompt_allowance or candidate.provider.prompt_allowance
    turns = len(sent.get("messages") or ()) + len(sent.get("tools") or ())
    fixed = allowance.request + allowance.message * turns + sum(model.part_bound(p.kind) for p in parts)
    text = measured - sum(p.size for p in parts)
    return text + fixed, text


def offers(body: dict[str, Any], found: list[Candidate], limit: int | None, stream: bool) -> list[Offer]:
    """Every candidate that can take the request's media, with `limit` output tokens a choice at most.

    `limit` None means the caller set none: each model's own maximum is sent. A one-hour cache
    lifetime goes only to an offering that prices one-hour writes; any other gets the default.
    """
    parts = media(body)
    made = []
    for candidate in found:
        # Anthropic's and Bedrock's protocols have no `n`: they answer once, whatever was asked.
        choices = int(body.get("n") or 1) if candidate.provider.protocol in N_PROTOCOLS else 1
        if not all(candidate.model.accepts(p.kind) for p in parts):
            continue
        model_limit = candidate.model.max_output_tokens
        out = min(limit, model_limit) if limit else model_limit
        sent, customs = upstream_body(body, candidate, out, stream)
        chosen = tier(body, candidate)
        price = candidate.offering.tiers.get(chosen, candidate.offering.price) if chosen else candidate.offering.price
        dumped = orjson.dumps(sent)
        if LONG_CACHE in dumped and price.cache_write_1h is None:
            sent = {**sent, **{k: _short_lived(sent[k]) for k in ("messages", "tools") if k in sent}}
            dumped = orjson.dumps(sent)
        # The parts' sizes as sent: a body made portable for another protocol lost their cache_control.
        sizes = parts if sent.get("messages") is body.get("messages") else media(sent)
        measured = max(len(dumped), _wire_size(sent, candidate))
        size, text = _prompt_size(sent, measured, sizes, candidate)
        context = candidate.model.context_length
        made.append(
            Offer(
                candidate,
                sent,
                price,
                prompt=min(size, context),
                output=out * choices,
                choices=choices,
                size=size,
                long_cache=LONG_CACHE in dumped,
                # Anthropic and Bedrock write a cache entry only at a breakpoint; OpenAI-style providers cache
                # on their own, so any prompt there may be billed as a write.
                writes=candidate.provider.protocol not in BREAKPOINT_PROTOCOLS or b'"cache_control"' in dumped,
                estimate=_estimate(text, size - text, context),
                text=text,
                customs=customs,
            )
        )
    if not made:
        part = next(p for p in parts if not found[0].model.accepts(p.kind))
        names = ", ".join(sorted({f"`{c.model.id}`" for c in found}))
        raise invalid_request(
            f"{names} cannot take {part.kind} input ('{part.param}'); choose a model that lists "
            f"'{part.kind}' among its input modalities.",
            part.param,
            "unsupported_content",
        )
    return made


def cost_at(made: list[Offer], limit: int) -> Decimal:
    """What the offers could bill with `limit` output tokens a choice: to find the largest affordable limit."""
    return max(
        o.price.most(o.prompt, min(limit, o.candidate.model.max_output_tokens) * o.choices, o.long_cache, o.writes)
        for o in made
    )


def worst(made: list[Offer]) -> tuple[Decimal, int]:
    """What to reserve: the dearest offer's cost and the largest token count, since which answers is unknown."""
    return max(o.cost for o in made), max(o.tokens for o in made)
