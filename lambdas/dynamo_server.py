"""The gateway's local DynamoDB (moto's server, as `python -m gateway.local.dynamodb` runs it for
`gateway-local`, with the template's tables) in its own process, so the emulator's CPU is not
counted as the gateway's; with the benchmark's extras below.

Prints one JSON line (`{"endpoint": ..., "tables": {...}, "pid": ...}`) when ready, then serves
until SIGTERM or SIGINT (or until the `--parent` process is gone).

    .venv/bin/python -m lambdas.dynamo_server --port 9102 [--nodelay] [--key]

`--key` also issues an API key (the default plan) and adds it to that line as `"key"`: made here,
where the gateway's settings already name these tables (lambdas/invoke.py's events need one).

`--nodelay` turns Nagle's algorithm off on the emulator's connections (werkzeug writes a
response's headers and its body in two sends), to measure what that costs; off by default,
so the benchmark runs the emulator exactly as the package ships it.
"""

from __future__ import annotations

import argparse
import socket


def _nodelay() -> None:
    from werkzeug.serving import WSGIRequestHandler

    setup = WSGIRequestHandler.setup

    def nodelay_setup(self: WSGIRequestHandler) -> None:
        setup(self)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    WSGIRequestHandler.setup = nodelay_setup  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--prefix", default="bench", help="table names: PREFIX-keys, PREFIX-usage")
    parser.add_argument("--nodelay", action="store_true", help="TCP_NODELAY on the emulator's connections")
    parser.add_argument("--key", action="store_true", help="also issue an API key and print it")
    parser.add_argument("--parent", type=int, help="end when this process does")
    args = parser.parse_args(argv)
    from gateway.local import child, dynamodb

    if args.parent:
        child.die_with_parent(args.parent)
    if args.nodelay:
        _nodelay()
    local = dynamodb.start(args.port, prefix=args.prefix)
    extra: dict[str, object] = {}
    if args.key:
        from gateway.accounts import keys

        extra["key"] = keys.create(owner="local@example.com", name=f"{args.prefix} key")[0]
    dynamodb.serve(local, **extra)


if __name__ == "__main__":
    main()
