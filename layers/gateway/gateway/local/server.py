"""`gateway-local`: the whole gateway on 127.0.0.1 with a ready development key.

Order matters: DynamoDB and the catalog are set up through the environment before the app
is built, exactly as a Lambda's environment configures it, and the local servers' models are
discovered before anything reads `settings()`, which caches the catalog paths for good.

moto's DynamoDB server runs as a child process (`gateway.local.dynamodb.spawn`), so this process
runs the gateway alone, as a Lambda instance does: the emulator's CPU (about as much as the
gateway's per request) neither competes for this process's GIL nor shows in its figures. The
child starts first (moto imports while discovery runs), ends after uvicorn has finished its last
requests, and ends with this process whatever stops it.
"""

from __future__ import annotations

import argparse
import os
import subprocess

BANNER = """
LLM gateway running locally
  base URL   {base}
  API key    {key}
  models     {models}

Try it:
  curl {base}/chat/completions -H "Authorization: Bearer {key}" \\
    -H "Content-Type: application/json" \\
    -d '{{"model": "gateway-echo", "messages": [{{"role": "user", "content": "Hello!"}}]}}'

  python -c "from openai import OpenAI; c = OpenAI(base_url='{base}', api_key='{key}'); \\
print(c.chat.completions.create(model='gateway-echo', messages=[{{'role': 'user', 'content': 'Hi'}}]).choices[0].message.content)"

Admin (keys live in the emulator's memory, a child of this process, until it stops):
  gateway-admin --local create-key --owner you@example.com
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the whole gateway locally.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--dynamodb-port", type=int, default=8001, help="moto's DynamoDB server (0: any free port)")
    args = parser.parse_args(argv)

    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # EMF is for CloudWatch, not a terminal
    os.environ.setdefault("CORS_ALLOW_ORIGIN", "*")  # browser apps on other local ports may call it
    from gateway.local import dynamodb

    port = args.dynamodb_port
    if port and not dynamodb.port_free(port):  # another emulator (or anything) holds it: take any free port
        print(f"Port {port} is in use; the DynamoDB emulator takes a free one.", flush=True)
        port = 0
    emulator = dynamodb.spawn(port)  # moto imports while discovery runs
    try:
        _serve(args, emulator)
    finally:
        dynamodb.ChildServer(emulator).stop()  # after uvicorn's last requests have settled


def _serve(args: argparse.Namespace, emulator: subprocess.Popen[bytes]) -> None:
    from gateway.local import discovery, dynamodb

    discovered = {m["id"] for m in discovery.extend_catalog()}  # first: settings() must see the file it adds
    local = dynamodb.ready(emulator)
    dynamodb.announce(local.endpoint)  # `gateway-admin --local` finds it there, on whichever port
    from gateway.accounts import keys
    from gateway.catalog import catalog

    key, _ = keys.create(owner="local-developer", name="development key", plan="startup")
    import uvicorn

    from gateway.local.app import local_app

    app = local_app()
    import gc

    gc.freeze()  # as the chat function does: what start-up built is never collected again
    base = f"http://{args.host}:{args.port}/v1"
    models = ", ".join(_label(m, discovered) for m in catalog().models if _served(m)) or "none"
    print(BANNER.format(base=base, key=key, models=models), flush=True)
    print(f"DynamoDB (moto) at {local.endpoint}, process {emulator.pid}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


def _label(model_id: str, discovered: set[str]) -> str:
    """A discovered model by its short alias (the id as listed can be a file path), the id beside it."""
    from gateway.catalog import catalog

    short = next((a for a in catalog().models[model_id].aliases if "/" not in a), None)
    return f"{short} ({model_id})" if model_id in discovered and short else model_id


def _served(model_id: str) -> bool:
    from gateway.catalog import catalog
    from gateway.providers import registry

    model = catalog().models[model_id]
    return any(registry.available(catalog().providers[o.provider]) for o in model.offerings)


if __name__ == "__main__":
    main()
