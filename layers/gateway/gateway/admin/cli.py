"""`gateway-admin`: issue keys, set plans, top up credit, read usage and set provider keys.

It talks to DynamoDB directly with the operator's AWS credentials: against a deployed
stack (`--stack`, table names from its outputs), or the local server's emulator (`--local`).
Provider keys go into a deployed stack's Secrets Manager secret, together with the list of
which keys it holds that the models and stats functions read instead (providers/credentials.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

LOCAL_ENDPOINT = "http://127.0.0.1:8001"
PROVIDER_KEY_COMMANDS = ("set-provider-key", "remove-provider-key")
NO_PROVIDER_SECRET = (
    "gateway-admin: provider keys belong to a deployed gateway: --stack NAME (or PROVIDER_SECRET_ID and "
    "PROVIDER_KEY_NAMES_PARAMETER). Locally, set them as environment variables instead (OPENAI_API_KEY=...)."
)
# Environment variable -> the stack output that sets it (the same names the functions read).
STACK_OUTPUTS = {
    "KEYS_TABLE": "KeysTableName",
    "USAGE_TABLE": "UsageTableName",
    "PROVIDER_SECRET_ID": "ProviderSecretArn",
    "PROVIDER_KEY_NAMES_PARAMETER": "ProviderKeyNamesParameter",
}


def _stack_outputs(stack_name: str) -> dict[str, str]:
    import boto3

    stack = boto3.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", ())}


def _target(args: argparse.Namespace) -> None:
    """Point the shared package at the chosen tables, through the same environment a Lambda reads."""
    if args.command in PROVIDER_KEY_COMMANDS and (args.local or args.endpoint_url):
        raise SystemExit(NO_PROVIDER_SECRET)
    if args.profile:
        os.environ["AWS_PROFILE"] = args.profile
    if args.region:
        os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"] = args.region
    if args.local or args.endpoint_url:
        from gateway.local.dynamodb import FAKE_CREDENTIALS

        for name, value in FAKE_CREDENTIALS.items():
            os.environ.setdefault(name, value)
        from gateway.local.dynamodb import running_endpoint

        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = args.endpoint_url or running_endpoint() or LOCAL_ENDPOINT
        os.environ.setdefault("KEYS_TABLE", "gateway-keys")
        os.environ.setdefault("USAGE_TABLE", "gateway-usage")
    if args.stack:
        outputs = _stack_outputs(args.stack)
        for variable, output in STACK_OUTPUTS.items():
            if output in outputs:  # a stack deployed before an output existed lacks it
                os.environ[variable] = outputs[output]
    if args.command in PROVIDER_KEY_COMMANDS:
        if not (os.environ.get("PROVIDER_SECRET_ID") and os.environ.get("PROVIDER_KEY_NAMES_PARAMETER")):
            raise SystemExit(NO_PROVIDER_SECRET)
    elif not os.environ.get("KEYS_TABLE"):
        raise SystemExit("gateway-admin: say which gateway: --stack NAME, --local, or KEYS_TABLE/USAGE_TABLE")


def _expiry(value: str | None) -> str | None:
    """An ISO date or time, or a duration such as 30d or 12h, as an ISO timestamp in UTC."""
    if not value:
        return None
    match = re.fullmatch(r"(\d+)([dh])", value)
    if match:
        amount = int(match.group(1))
        delta = timedelta(days=amount) if match.group(2) == "d" else timedelta(hours=amount)
        return (datetime.now(UTC) + delta).isoformat(timespec="seconds")
    parsed = datetime.fromisoformat(value)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).isoformat(timespec="seconds")


def _money(value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount: {value!r}") from None
    if amount <= 0 or amount.as_tuple().exponent < -6:  # type: ignore[operator]
        raise argparse.ArgumentTypeError("the amount must be positive, with at most 6 decimal places")
    return amount


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(_plain(data), indent=2) if args.json else text)


def _key_or_exit(key_id: str) -> Any:
    from gateway.accounts import keys

    key = keys.get_by_id(key_id)
    if key is None:
        raise SystemExit(f"gateway-admin: no key with id {key_id}")
    return key


def _summary(key: Any) -> dict[str, Any]:
    from gateway.accounts import account, plans
    from gateway.stats import counters

    plan = plans.effective(key.record)
    credit = account.credit_view(account.read(key.key_id, plan))
    month = counters.summary(counters.read_key(key.key_id, account.month_of(time.time())))
    return {
        "key_id": key.key_id,
        "prefix": key.prefix,
        "name": key.name,
        "owner": key.owner,
        "plan": plan.id,
        "status": "expired" if key.expired else key.status,
        "balance": credit["balance"],
        "monthly_credit_left": credit["monthly"],
        "purchased_credit_left": credit["purchased"],
        "reserved": credit["reserved"],
        "debt": credit["debt"],
        "month_requests": month["requests"],
        "month_tokens": month["total_tokens"],
        "month_cost": month["cost"],
        "expires_at": key.record.get("expires_at"),
    }


def create_key(args: argparse.Namespace) -> None:
    from gateway.accounts import keys

    models = [m.strip() for m in args.models.split(",")] if args.models else None
    key, record = keys.create(
        owner=args.owner,
        name=args.name,
        plan=args.plan,
        expires_at=_expiry(args.expires),
        allowed_models=models,
        rpm=args.rpm,
        tpm=args.tpm,
        admin=args.admin,
    )
    data = {
        "key": key,
        "key_id": record.key_id,
        "prefix": record.prefix,
        "plan": record.record["plan"],
        "owner": record.owner,
        "expires_at": record.record.get("expires_at"),
    }
    _print(
        args,
        data,
        f"{key}\n\nkey id {record.key_id}, plan {data['plan']}. This is the only time the key is shown: store it now.",
    )


def list_keys(args: argparse.Namespace) -> None:
    from gateway.accounts import keys

    rows = [_summary(k) for k in keys.list_all()]
    columns = ["key_id", "prefix", "name", "owner", "plan", "status", "balance", "debt", "month_requests", "month_cost"]
    _print(args, rows, _table(rows, columns) if rows else "no keys")


def show_key(args: argparse.Namespace) -> None:
    summary = _summary(_key_or_exit(args.key_id))
    _print(args, summary, "\n".join(f"{k:22} {v}" for k, v in summary.items()))


def revoke(args: argparse.Namespace) -> None:
    from gateway.accounts import keys

    _key_or_exit(args.key_id)
    key = keys.set_status(args.key_id, "revoked")
    _print(
        args,
        {"key_id": args.key_id, "status": "revoked"},
        f"revoked {key.prefix} ({args.key_id}); instances stop accepting it within seconds",
    )


def set_plan(args: argparse.Namespace) -> None:
    from gateway.accounts import keys, plans

    plans.get(args.plan)
    _key_or_exit(args.key_id)
    keys.update(args.key_id, plan=args.plan)
    _print(
        args,
        {"key_id": args.key_id, "plan": args.plan},
        f"{args.key_id} is now on {args.plan}; its limits apply at once, its monthly credit from next month",
    )


def top_up(args: argparse.Namespace) -> None:
    from gateway.accounts import account, plans

    key = _key_or_exit(args.key_id)
    state = account.top_up(key.key_id, plans.effective(key.record), args.amount)
    credit = account.credit_view(state)
    _print(
        args, {"key_id": key.key_id, **credit}, f"added ${args.amount} to {key.key_id}: balance ${credit['balance']}"
    )


def show_usage(args: argparse.Namespace) -> None:
    from gateway.accounts import account
    from gateway.stats import counters

    key = _key_or_exit(args.key_id)
    period = args.day or args.month or account.month_of(time.time())
    data = {"period": period, **counters.summary(counters.read_key(key.key_id, period))}
    _print(args, data, "\n".join(f"{k:18} {v}" for k, v in data.items()))


def show_margins(args: argparse.Namespace) -> None:
    """Revenue, provider cost and margin for a day, gateway-wide and per model and provider."""
    from gateway.catalog import catalog
    from gateway.stats import counters
    from gateway.stats.present import margins
    from gateway.storage import schema

    day = args.day or datetime.now(UTC).date().isoformat()
    cat = catalog()
    scopes = {"gateway": schema.ALL_SCOPE}
    scopes |= {f"model {m}": schema.model_scope(m) for m in cat.models}
    scopes |= {f"provider {p}": schema.provider_scope(p) for p in cat.providers}
    read = counters.read_shared_many(list(scopes.values()), day)
    rows = [
        {"scope": name, "requests": read[scope]["requests"], **margins(read[scope])}
        for name, scope in scopes.items()
        if read[scope]["requests"] or name == "gateway"
    ]
    _print(args, rows, f"{day}\n" + _table(rows, ("scope", "requests", "revenue", "provider_cost", "margin")))


def smoke(args: argparse.Namespace) -> None:
    """The deployed endpoint through the official SDKs; with --stack, a key made for it and revoked after."""
    from gateway.admin import smoke as checks

    base_url, key, made = args.base_url, args.key, None
    if args.stack:
        base_url = base_url or _stack_outputs(args.stack)["BaseUrl"]
    if not base_url:
        raise SystemExit("gateway-admin smoke: say where: --stack NAME, or --base-url URL with --key")
    if not key:
        from gateway.accounts import keys

        key, made = keys.create(owner="gateway-admin smoke", name="smoke test")
    try:
        results = checks.run(base_url.rstrip("/"), key, args.model)
    finally:
        if made is not None:
            from gateway.accounts import keys

            keys.set_status(made.key_id, "revoked")
    _print(args, [asdict(c) for c in results], checks.table(results))
    if not all(c.ok for c in results):
        raise SystemExit(1)


def list_plans(args: argparse.Namespace) -> None:
    from gateway.accounts import plans

    rows = [
        {
            "plan": p.id,
            "name": p.name,
            "monthly_credit": p.monthly_credit,
            "free_requests": p.free_requests,
            "rpm": p.rpm,
            "tpm": p.tpm,
            "models": ", ".join(p.allowed_models) if p.allowed_models else "all",
        }
        for p in plans.all_plans().values()
    ]
    _print(args, rows, _table(rows, list(rows[0])))


def _credential_name(name: str) -> str:
    """A provider id (openai) stands for its key's name (OPENAI_API_KEY); any other name is the key's own."""
    from gateway.catalog import catalog

    provider = catalog().providers.get(name)
    if provider is not None:
        if not provider.key:
            raise ValueError(f"provider {name} takes no key (it is called with the function's IAM role or none)")
        return provider.key
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"not a provider id or a key name: {name!r}")
    if name not in {p.key for p in catalog().providers.values()}:
        print(f"gateway-admin: note: no provider in the catalog reads {name}", file=sys.stderr)
    return name


def _read_value(value: str | None) -> str:
    """The key from the argument, or else from stdin (prompted, unechoed, on a terminal): not in shell history."""
    if value is None:
        if sys.stdin.isatty():
            import getpass

            value = getpass.getpass("key (not echoed): ")
        else:
            value = sys.stdin.readline()
    value = value.strip()
    if not value:
        raise ValueError("the key is empty")
    return value


def _change_provider_keys(change: Callable[[dict[str, Any]], None], adding: bool) -> list[str]:
    """Apply `change` to the secret's keys and write the list of their names; the names set, sorted.

    The list is written second when a key is added and first when one is removed, so when the
    second write fails the list only under-states: a provider shown unconfigured that works,
    never one shown configured whose key is gone. Each command rewrites the whole list from the
    secret, so it also repairs a list that a change made by other means left stale.
    """
    import boto3

    secret_id = os.environ["PROVIDER_SECRET_ID"]
    parameter = os.environ["PROVIDER_KEY_NAMES_PARAMETER"]
    secrets, ssm = boto3.client("secretsmanager"), boto3.client("ssm")
    keys = json.loads(secrets.get_secret_value(SecretId=secret_id).get("SecretString") or "{}")
    if not isinstance(keys, dict):
        raise ValueError("the provider secret is not a JSON object")
    change(keys)
    names = sorted(name for name, value in keys.items() if value)

    def write_secret() -> None:
        secrets.put_secret_value(SecretId=secret_id, SecretString=json.dumps(keys))

    def write_names() -> None:
        ssm.put_parameter(Name=parameter, Value=json.dumps(names), Type="String", Overwrite=True)

    for write in (write_secret, write_names) if adding else (write_names, write_secret):
        write()
    return names


def set_provider_key(args: argparse.Namespace) -> None:
    name = _credential_name(args.name)
    value = _read_value(args.value)
    names = _change_provider_keys(lambda keys: keys.update({name: value}), adding=True)
    _print(
        args,
        {"set": name, "keys": names},
        f"set {name}; the secret holds {', '.join(names)}. The functions read it within 5 minutes.",
    )


def remove_provider_key(args: argparse.Namespace) -> None:
    name = _credential_name(args.name)
    names = _change_provider_keys(lambda keys: keys.pop(name, None), adding=False)
    _print(
        args,
        {"removed": name, "keys": names},
        f"removed {name}; the secret holds {', '.join(names) or 'no key'}. The functions notice within 5 minutes.",
    )


def catalog_check(args: argparse.Namespace) -> None:
    from gateway.admin import catalog_tools

    findings, text = catalog_tools.check_files(args.catalog, args.template, args.today)
    _print(args, [asdict(f) for f in findings], text)
    if any(f.level == "error" for f in findings):
        raise SystemExit(1)


def catalog_refresh(args: argparse.Namespace) -> None:
    from gateway.admin import catalog_tools

    changes = catalog_tools.refresh_file(Path(args.catalog), Path(args.source), args.write)
    verb = "changed" if args.write else "would change (dry run; --write to save)"
    _print(args, changes, f"{len(changes)} facts {verb}:\n" + "\n".join(changes))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="gateway-admin", description=__doc__.splitlines()[0])
    target = root.add_argument_group("which gateway")
    target.add_argument("--stack", help="a deployed stack's name (tables from its outputs)")
    target.add_argument("--local", action="store_true", help="the running local server's emulator (8001 by default)")
    target.add_argument("--endpoint-url", help="another DynamoDB endpoint")
    target.add_argument("--region")
    target.add_argument("--profile")
    root.add_argument("--json", action="store_true", help="machine-readable output")
    sub = root.add_subparsers(dest="command", required=True)

    p = sub.add_parser("create-key", help="issue a key (printed once)")
    p.add_argument("--owner", required=True)
    p.add_argument("--name", default="")
    p.add_argument("--plan", help="plan id (see `plans`); the default plan if omitted")
    p.add_argument("--expires", help="ISO date/time, or a duration such as 30d or 12h")
    p.add_argument("--models", help="comma-separated model ids this key may use (default: the plan's)")
    p.add_argument("--rpm", type=int, help="override the plan's requests per minute")
    p.add_argument("--tpm", type=int, help="override the plan's tokens per minute")
    p.add_argument("--admin", action="store_true", help="may also read gateway-wide statistics")
    p.set_defaults(run=create_key)

    sub.add_parser("list-keys", help="every key with its plan, balance and this month's usage").set_defaults(
        run=list_keys
    )
    for name, run, text in (("show-key", show_key, "one key in detail"), ("revoke", revoke, "revoke a key")):
        p = sub.add_parser(name, help=text)
        p.add_argument("key_id")
        p.set_defaults(run=run)
    p = sub.add_parser("set-plan", help="move a key to another plan")
    p.add_argument("key_id")
    p.add_argument("plan")
    p.set_defaults(run=set_plan)
    p = sub.add_parser("top-up", help="add purchased credit (USD), which does not expire")
    p.add_argument("key_id")
    p.add_argument("amount", type=_money)
    p.set_defaults(run=top_up)
    p = sub.add_parser("usage", help="a key's usage for a day or a month (default: this month)")
    p.add_argument("key_id")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--day", help="YYYY-MM-DD")
    when.add_argument("--month", help="YYYY-MM")
    p.set_defaults(run=show_usage)
    sub.add_parser("plans", help="the plans keys can be on").set_defaults(run=list_plans)
    p = sub.add_parser("smoke", help="after a deploy: the official SDKs against the endpoint, a table of results")
    p.add_argument("--base-url", help="the endpoint, ending in /v1 (default: the stack's BaseUrl output)")
    p.add_argument("--key", help="a key to use (default: one made for the test, revoked after; needs --stack)")
    p.add_argument("--model", default="gateway-echo", help="the model every check asks (default: the built-in)")
    p.set_defaults(run=smoke)
    p = sub.add_parser("margins", help="revenue, provider cost and margin of a day, per model and provider")
    p.add_argument("--day", help="YYYY-MM-DD (default: today, UTC)")
    p.set_defaults(run=show_margins)
    p = sub.add_parser("set-provider-key", help="store an upstream provider's API key in the stack's secret")
    p.add_argument("name", help="a provider id (openai) or the key's name (OPENAI_API_KEY)")
    p.add_argument("value", nargs="?", help="the key; read from stdin if omitted, which keeps it out of shell history")
    p.set_defaults(run=set_provider_key)
    p = sub.add_parser("remove-provider-key", help="delete a provider's API key from the stack's secret")
    p.add_argument("name", help="a provider id (openai) or the key's name (OPENAI_API_KEY)")
    p.set_defaults(run=remove_provider_key)
    catalog = sub.add_parser("catalog", help="check a catalog, or refresh its facts from a price map").add_subparsers(
        dest="action", required=True
    )
    p = catalog.add_parser("check", help="retired offerings, prices below cost, missing facts and permissions")
    p.add_argument("--catalog", action="append", help="a catalog file (repeat; default: the gateway's own)")
    p.add_argument("--template", default="template.yaml", help="the SAM template whose Bedrock permissions to check")
    p.add_argument("--today", help="YYYY-MM-DD: check as of this day")
    p.set_defaults(run=catalog_check)
    p = catalog.add_parser("refresh", help="update costs, limits and dates from a model price map (JSON)")
    p.add_argument("--from", dest="source", required=True, help="the price map, e.g. LiteLLM's JSON")
    p.add_argument("--catalog", default=str(Path(__file__).parents[1] / "catalog.json"), help="the file to update")
    p.add_argument("--write", action="store_true", help="save the changes (default: print them)")
    p.set_defaults(run=catalog_refresh)
    return root


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command not in ("plans", "catalog") and not (args.command == "smoke" and args.key):
        _target(args)  # a smoke test with a key of its own needs no tables
    try:
        args.run(args)
    except (KeyError, ValueError) as exc:
        print(f"gateway-admin: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
