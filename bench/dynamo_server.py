"""The gateway's local DynamoDB (moto's server, as `gateway.local.dynamodb.start` runs it, with the
template's tables) in its own process, so the emulator's CPU is not counted as the gateway's.

Prints one JSON line (`{"endpoint": ..., "tables": {...}}`) when ready, then serves until killed.

    .venv/bin/python -m bench.dynamo_server --port 9102 [--nodelay] [--key]

`--key` also issues an API key (the default plan) and adds it to that line as `"key"`: made here,
where the gateway's settings already name these tables (bench/invoke.py's events need one).

`--nodelay` turns Nagle's algorithm off on the emulator's connections (werkzeug writes a
response's headers and its body in two sends), to measure what that costs; off by default,
so the benchmark runs the emulator exactly as the package ships it.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import threading


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
    args = parser.parse_args(argv)
    if args.nodelay:
        _nodelay()

    from gateway.local import dynamodb

    local = dynamodb.start(args.port, prefix=args.prefix)
    ready: dict[str, object] = {"endpoint": local.endpoint, "tables": local.tables}
    if args.key:
        from gateway.accounts import keys

        ready["key"] = keys.create(owner="local@example.com", name=f"{args.prefix} key")[0]
    print(json.dumps(ready), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    local.stop()


if __name__ == "__main__":
    main()
