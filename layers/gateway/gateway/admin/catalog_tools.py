"""`gateway-admin catalog check` and `catalog refresh`: a catalog's facts against what providers charge and serve.

`check` reads a catalog (the bundled one and GATEWAY_CATALOG_EXTRA, or the files named) and lists,
per offering: retired or retiring offerings, prices below the provider's cost (an operator may sell
below cost on purpose: it is a warning, and the gateway serves), costs and limits it does not
state, and Bedrock models the template grants no permission for. `refresh` reads a maintained
price map (the model price and context-window JSON LiteLLM ships, read as data) and updates each
offering's cost, limits and dates in a catalog file, printing what changed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.catalog import Catalog, Price, build

NEAR = timedelta(days=90)  # a retirement this close is announced in the check
PARTS = ("input", "output", "cache_read", "cache_write", "cache_write_1h")
MILLION = Decimal(1_000_000)
# The price map's key for an offering: its upstream model, with the provider's prefix where the map uses one.
MAP_PREFIX = {
    "gemini": "gemini/",
    "deepseek": "deepseek/",
    "groq": "groq/",
    "cerebras": "cerebras/",
    "sambanova": "sambanova/",
    "mistral": "mistral/",
    "openrouter": "openrouter/",  # the map has no OpenRouter entries: its ids must not match another provider's
}
MAP_FIELDS = {  # our cost part -> the map's USD per token
    "input": "input_cost_per_token",
    "output": "output_cost_per_token",
    "cache_read": "cache_read_input_token_cost",
    "cache_write": "cache_creation_input_token_cost",
    "cache_write_1h": "cache_creation_input_token_cost_above_1hr",
}


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # "error": the gateway would lose money or fail; "warning": worth a look
    model: str
    provider: str
    what: str


def _effective(price: Price, part: str) -> Decimal | None:
    """What a part of a price bills: unset cache prices bill the input price (catalog.Price.cost)."""
    value = getattr(price, part)
    if value is None and part in ("cache_read", "cache_write"):
        return price.input
    if value is None and part == "cache_write_1h":
        return None  # never sent: egress gives such offerings the default lifetime
    return value


def below_cost(price: Price, cost: Price) -> list[str]:
    """Each part a key pays less for than the provider charges."""
    found = []
    for part in PARTS:
        charged, paid = getattr(cost, part), _effective(price, part)
        if charged is not None and paid is not None and paid < charged:
            found.append(f"{part} sold at ${paid} per million, below its cost of ${charged}")
    return found


def check(
    cat: Catalog, raw_models: Mapping[str, Mapping[str, Any]], today: date, bedrock_granted: set[str] | None = None
) -> list[Finding]:
    found: list[Finding] = []
    for model in cat.models.values():
        raw = raw_models.get(model.id, {})
        served = bool(model.offerings) and cat.providers[model.offerings[0].provider].protocol != "builtin"
        for limit in ("context_length", "max_output_tokens"):
            if served and limit not in raw:
                found.append(Finding("warning", model.id, "", f"states no {limit}; {getattr(model, limit)} is assumed"))
        for offering in model.offerings:
            provider = cat.providers[offering.provider]
            if provider.protocol == "builtin" or provider.discover:
                continue  # free, or the operator's own server
            where = (model.id, offering.provider)
            if offering.retired(today):
                found.append(Finding("error", *where, f"retired on {offering.retirement}: routing skips it"))
            elif offering.retirement and offering.retirement - today <= NEAR:
                found.append(Finding("warning", *where, f"retires on {offering.retirement}"))
            elif offering.deprecation and offering.deprecation <= today:
                found.append(Finding("warning", *where, f"deprecated since {offering.deprecation}"))
            if offering.cost is None:
                found.append(Finding("warning", *where, "states no cost: its margin is unknown"))
            else:
                found += [Finding("warning", *where, what) for what in below_cost(offering.price, offering.cost)]
            if provider.protocol == "bedrock" and bedrock_granted is not None:
                missing = [arn for arn in bedrock_arns(offering.upstream_model) if arn not in bedrock_granted]
                if missing:
                    found.append(Finding("error", *where, f"no permission to invoke it: {', '.join(missing)}"))
    return found


# --- Bedrock ---------------------------------------------------------------------------------------

_PROFILE = re.compile(r"^(us|eu|apac|au|jp|ca|us-gov|global)\.(.+)$")


def bedrock_arns(upstream: str, region: str = "${BedrockRegion}") -> list[str]:
    """The resources one Bedrock model id needs, as the template writes them: a cross-Region inference profile
    (`global.` / `us.` ...) in the calling Region and its foundation model in every Region it routes to,
    or a foundation model in the calling Region."""
    profile = _PROFILE.match(upstream)
    if profile:
        return [
            f"arn:${{AWS::Partition}}:bedrock:{region}:${{AWS::AccountId}}:inference-profile/{upstream}",
            f"arn:${{AWS::Partition}}:bedrock:*::foundation-model/{profile.group(2)}",
        ]
    return [f"arn:${{AWS::Partition}}:bedrock:{region}::foundation-model/{upstream}"]


def granted_in(template: Path) -> set[str]:
    """The Bedrock resources a template's text grants (`!Sub` strings), without parsing its YAML tags."""
    return set(re.findall(r"!Sub\s+(arn:\$\{AWS::Partition\}:bedrock:[^\s'\"]+)", template.read_text()))


# --- refresh from a price map ----------------------------------------------------------------------


def _per_million(value: Any) -> str | None:
    if not isinstance(value, int | float):
        return None
    return format((Decimal(str(value)) * MILLION).normalize(), "f")


def map_key(provider: str, upstream: str, raw: Mapping[str, Any]) -> str:
    return raw.get("map_key") or MAP_PREFIX.get(provider, "") + upstream


def refresh(document: dict[str, Any], prices: Mapping[str, Any], today: date) -> list[str]:
    """Update each offering's cost, retirement date and its model's limits from the map; what changed, as lines."""
    changes: list[str] = []
    for model in document.get("models", ()):
        limits: dict[str, list[int]] = {"context_length": [], "max_output_tokens": []}
        for offering in model.get("offerings", ()):
            entry = prices.get(map_key(offering["provider"], offering.get("model", model["id"]), offering))
            if not isinstance(entry, dict):
                continue
            where = f"{model['id']} on {offering['provider']}"
            cost = {part: _per_million(entry.get(name)) for part, name in MAP_FIELDS.items()}
            cost = {part: value for part, value in cost.items() if value is not None}
            if cost and cost != offering.get("cost"):
                changes.append(f"{where}: cost {offering.get('cost')} -> {cost}")
                offering["cost"] = cost
            retires = entry.get("deprecation_date")  # the map's date is the day the provider stops serving it
            if isinstance(retires, str) and retires != offering.get("retirement_date"):
                changes.append(f"{where}: retirement_date {offering.get('retirement_date')} -> {retires}")
                offering["retirement_date"] = retires
            for ours, theirs in (("context_length", "max_input_tokens"), ("max_output_tokens", "max_output_tokens")):
                if isinstance(entry.get(theirs), int):
                    limits[ours].append(entry[theirs])
        for name, values in limits.items():  # the smallest of its providers' limits: every one must take it
            if not values or min(values) == model.get(name):
                continue
            if name == "max_output_tokens" and model.get(name) and min(values) > model[name]:
                # A higher default output limit raises every reservation of a caller who sets none: the operator's call.
                changes.append(f"{model['id']}: {name} kept at {model[name]} (the map allows {min(values)})")
                continue
            changes.append(f"{model['id']}: {name} {model.get(name)} -> {min(values)}")
            model[name] = min(values)
    document["refreshed"] = today.isoformat()
    return changes


def load(paths: Iterable[Path]) -> tuple[Catalog, dict[str, Mapping[str, Any]]]:
    documents = [json.loads(Path(p).read_text()) for p in paths]
    raw = {m["id"]: m for doc in documents for m in doc.get("models", ())}
    return build(documents), raw


def report(findings: Sequence[Finding]) -> str:
    if not findings:
        return "no retired offering, no price below cost, nothing missing"
    width = max(len(f.model) for f in findings)
    return "\n".join(f"{f.level:7}  {f.model:{width}}  {f.provider:10}  {f.what}" for f in findings)


def check_files(catalogs: Sequence[str] | None, template: str | None, today: str | None) -> tuple[list[Finding], str]:
    """`catalog check` on files (default: the gateway's own catalog), as findings and their report."""
    from gateway.catalog import utc_today
    from gateway.config import catalog_paths

    cat, raw = load([Path(p) for p in catalogs] if catalogs else catalog_paths())
    day = date.fromisoformat(today) if today else utc_today()
    path = Path(template) if template else None
    findings = check(cat, raw, day, granted_in(path) if path and path.exists() else None)
    return findings, f"catalog refreshed {cat.refreshed or 'never'}; checked {day}\n" + report(findings)


def refresh_file(catalog: Path, source: Path, write: bool) -> list[str]:
    """`catalog refresh`: the changes a price map makes to a catalog file, saved when `write`."""
    from gateway.catalog import utc_today

    document = json.loads(catalog.read_text())
    changes = refresh(document, json.loads(source.read_text()), utc_today())
    if write:
        catalog.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    return changes
