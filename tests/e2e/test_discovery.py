"""Local discovery: the models of llama.cpp, Ollama and vLLM servers are served by `gateway-local`.

A real child process plays the three local servers on 127.0.0.1 (their /models shapes, file-path
ids included, and chat completions whole and streamed with their own usage); `gateway-local` runs
as `make serve` runs it, in a subprocess, and the openai SDK checks that the discovered models are
listed, answer under their short aliases and full ids, and are answered by the child.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway import catalog as catalog_module
from gateway.caches import reset_caches
from gateway.config import BUNDLED_CATALOG
from gateway.local import discovery
from gateway.local.dynamodb import free_port
from tests.support.processes import stop

GGUF = "/models/gemma-3-270m-it-Q8_0.gguf"
VLLM_KEY = "vllm-secret"
VLLM_CONTEXT = 2048
PROMPT_TOKENS, COMPLETION_TOKENS = 27, 40  # the child's own count, which no gateway estimate gives

# The three servers on one port, under /llamacpp, /ollama and /vllm: their /v1/models documents as
# llama.cpp (b5000+), Ollama (/v1 and its native /api/tags) and vLLM send them, and chat completions.
CHILD = r"""
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONFIG = json.loads(sys.argv[1])
CONTEXT, KEY, USAGE = CONFIG["context"], CONFIG["key"], CONFIG["usage"]
GGUF = "/models/gemma-3-270m-it-Q8_0.gguf"
MODELS = {
    "llamacpp": {
        "models": [{"name": GGUF, "model": GGUF, "modified_at": "", "size": "", "digest": "", "type": "model",
                    "description": "", "tags": [""], "capabilities": ["completion"], "parameters": "",
                    "details": {"parent_model": "", "format": "gguf", "family": "", "families": [""],
                                "parameter_size": "", "quantization_level": ""}}],
        "object": "list",
        "data": [{"id": GGUF, "object": "model", "created": 1767225600, "owned_by": "llamacpp",
                  "meta": {"vocab_type": 1, "n_vocab": 262144, "n_ctx_train": 32768, "n_embd": 640,
                           "n_params": 268098176, "size": 291545856}}],
    },
    "ollama": {"object": "list", "data": [
        {"id": "llama3.2:latest", "object": "model", "created": 1767225600, "owned_by": "library"},
        {"id": "qwen3:0.6b", "object": "model", "created": 1767225600, "owned_by": "library"},
    ]},
    "vllm": {"object": "list", "data": [
        {"id": "Qwen/Qwen2.5-0.5B-Instruct", "object": "model", "created": 1767225600, "owned_by": "vllm",
         "root": "Qwen/Qwen2.5-0.5B-Instruct", "parent": None, "max_model_len": CONTEXT,
         "permission": [{"id": "modelperm-1", "object": "model_permission", "created": 1767225600,
                         "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                         "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                         "organization": "*", "group": None, "is_blocking": False}]},
    ]},
}
TAGS = {"models": [{"name": m["id"], "model": m["id"], "modified_at": "2026-01-01T00:00:00Z", "size": 1,
                    "digest": "0", "details": {"format": "gguf"}} for m in MODELS["ollama"]["data"]]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, document):
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def server_name(self):
        name = self.path.strip("/").split("/")[0]
        if name == "vllm" and self.headers.get("authorization") != f"Bearer {KEY}":
            self.send(401, {"error": {"message": "Unauthorized", "type": "invalid_request_error"}})
            return None
        return name

    def do_GET(self):
        name = self.server_name()
        if name is None:
            return
        if self.path == "/ollama/api/tags":
            return self.send(200, TAGS)
        if self.path == f"/{name}/v1/models" and name in MODELS:
            return self.send(200, MODELS[name])
        self.send(404, {"error": "not found"})

    def do_POST(self):
        name = self.server_name()
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if name is None:
            return
        if self.path != f"/{name}/v1/chat/completions":
            return self.send(404, {"error": "not found"})
        if name == "vllm" and USAGE["prompt_tokens"] + (body.get("max_tokens") or 0) > CONTEXT:
            message = f"This model's maximum context length is {CONTEXT} tokens. However, you requested more."
            return self.send(400, {"object": "error", "message": message, "type": "BadRequestError", "code": 400})
        words = f"{name} answered {body['model']}".split(" ")
        head = {"id": "chatcmpl-child", "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            message = {"role": "assistant", "content": " ".join(words)}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return self.send(200, {**head, "object": "chat.completion", "choices": [choice], "usage": USAGE})
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        chunk = {**head, "object": "chat.completion.chunk"}
        deltas = [{"role": "assistant", "content": ""}]
        deltas += [{"content": (" " if i else "") + w} for i, w in enumerate(words)]
        for i, delta in enumerate(deltas):
            finish = "stop" if i == len(deltas) - 1 else None
            event = {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        if (body.get("stream_options") or {}).get("include_usage"):
            self.wfile.write(f"data: {json.dumps({**chunk, 'choices': [], 'usage': USAGE})}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_port, flush=True)
server.serve_forever()
"""


@pytest.fixture(scope="module")
def child(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The child process playing the local servers; its base URL (servers under /llamacpp, /ollama, /vllm)."""
    script = tmp_path_factory.mktemp("child") / "local_servers.py"
    script.write_text(CHILD)
    usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS}
    config = {"context": VLLM_CONTEXT, "key": VLLM_KEY, "usage": {**usage, "total_tokens": sum(usage.values())}}
    process = subprocess.Popen([sys.executable, str(script), json.dumps(config)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process, timeout=10)


def server_env(child: str) -> dict[str, str]:
    """Where the catalog's llama.cpp, Ollama and vLLM providers find the child, as a developer sets it."""
    return {
        "LLAMACPP_BASE_URL": f"{child}/llamacpp/v1",
        "OLLAMA_BASE_URL": f"{child}/ollama/v1",
        "VLLM_BASE_URL": f"{child}/vllm/v1",
        "VLLM_API_KEY": VLLM_KEY,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


# --- short names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listed", "short"),
    [
        (GGUF, "gemma-3-270m-it"),
        ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "llama-3.2-1b-instruct"),
        ("/m/Qwen2.5-7B-Instruct-Q4_K_M-00001-of-00002.gguf", "qwen2.5-7b-instruct"),
        ("C:\\models\\phi-2.IQ4_XS.gguf", "phi-2"),
        ("tinyllama-1.1b-chat-v1.0.Q2_K.gguf", "tinyllama-1.1b-chat-v1.0"),
        ("/models/model-UD-Q4_K_XL.gguf", "model"),
        ("/models/mistral-7b-v0.1-F16.gguf", "mistral-7b-v0.1"),
        ("llama3.2:latest", "llama3.2"),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "llama-3.2-1b-instruct"),
        ("Qwen/Qwen2.5-0.5B-Instruct", "qwen2.5-0.5b-instruct"),
        ("qwen3:0.6b", "qwen3:0.6b"),
        ("gemma", "gemma"),
    ],
)
def test_short_name(listed: str, short: str) -> None:
    assert discovery.short_name(listed) == short


def test_listed_models_reads_openai_and_ollama_shapes() -> None:
    assert [m["id"] for m in discovery.listed_models({"object": "list", "data": [{"id": "a"}, {"x": 1}]})] == ["a"]
    tags = {"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest"}, {"name": "b"}, 7]}
    assert [m["id"] for m in discovery.listed_models(tags)] == ["llama3.2:latest", "b"]
    assert discovery.listed_models(["not", "a", "document"]) == []


# --- discover() against the child ---------------------------------------------------------------


def _catalog(*extra: dict[str, Any]) -> catalog_module.Catalog:
    return catalog_module.build([json.loads(BUNDLED_CATALOG.read_text()), *extra])


def test_discover_lists_every_server_with_short_aliases(child: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in server_env(child).items():
        monkeypatch.setenv(name, value)
    models = {m["id"]: m for m in discovery.discover(_catalog())}
    assert set(models) == {GGUF, "llama3.2:latest", "qwen3:0.6b", "Qwen/Qwen2.5-0.5B-Instruct"}
    gemma = models[GGUF]
    assert gemma["aliases"] == [f"llamacpp/{GGUF}", "gemma-3-270m-it", "llamacpp/gemma-3-270m-it"]
    assert gemma["offerings"] == [{"provider": "llamacpp", "model": GGUF}]
    assert gemma["display_name"] == "gemma-3-270m-it-Q8_0"
    assert models["llama3.2:latest"]["aliases"] == ["ollama/llama3.2:latest", "llama3.2", "ollama/llama3.2"]
    assert models["qwen3:0.6b"]["aliases"] == ["ollama/qwen3:0.6b"]  # its id is short already
    qwen = models["Qwen/Qwen2.5-0.5B-Instruct"]  # listed only with the key (VLLM_API_KEY)
    assert "qwen2.5-0.5b-instruct" in qwen["aliases"]
    assert (qwen["context_length"], qwen["max_output_tokens"]) == (VLLM_CONTEXT, VLLM_CONTEXT // 2)
    catalog = _catalog({"models": list(models.values())})  # the entries make a valid catalog
    assert catalog.find("GEMMA-3-270M-IT") is catalog.find(GGUF) is not None


def test_short_aliases_never_collide(child: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A short name the catalog already has, or that two listed models would share, is given to none."""
    monkeypatch.setenv("LLAMACPP_BASE_URL", f"{child}/llamacpp/v1")
    monkeypatch.setenv("OLLAMA_BASE_URL", f"{child}/llamacpp/v1")  # the same file listed by two servers
    listed = discovery.discover(_catalog())
    (gemma,) = listed  # one model, offered by both
    assert [o["provider"] for o in gemma["offerings"]] == ["ollama", "llamacpp"]  # in catalog order
    assert gemma["aliases"] == [
        f"ollama/{GGUF}",
        f"llamacpp/{GGUF}",
        "gemma-3-270m-it",
        "ollama/gemma-3-270m-it",
        "llamacpp/gemma-3-270m-it",
    ]

    taken = {"models": [{"id": "gemma-3-270m-it", "offerings": [{"provider": "builtin"}]}]}
    (gemma,) = discovery.discover(_catalog(taken))
    assert "gemma-3-270m-it" not in gemma["aliases"] and "llamacpp/gemma-3-270m-it" in gemma["aliases"]

    models = [{"id": f"/a/{n}", "aliases": [], "offerings": [{"provider": "llamacpp"}]} for n in ("x-Q4_0", "x-Q8_0")]
    discovery._add_short_aliases(_catalog(), models)
    assert [m["aliases"] for m in models] == [[], []]  # `x` would be ambiguous


def test_an_unreachable_server_is_skipped(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LLAMACPP_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    assert discovery.discover(_catalog(), timeout=1) == []
    assert "could not list models" in capsys.readouterr().out


# --- the order that broke: discovery and the cached settings ------------------------------------


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No cached settings or catalog, nor an extra catalog; everything as it was afterwards.

    discovery.extend_catalog sets GATEWAY_CATALOG_EXTRA itself, which monkeypatch does not know
    of: the whole environment is put back, or later tests would read a deleted catalog file.
    """
    saved = dict(os.environ)
    for name in ("GATEWAY_CATALOG", "GATEWAY_CATALOG_EXTRA", "OLLAMA_BASE_URL", "VLLM_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    reset_caches()
    yield
    for path in os.environ.get("GATEWAY_CATALOG_EXTRA", "").split(os.pathsep):
        if path:
            Path(path).unlink(missing_ok=True)
    monkeypatch.undo()
    os.environ.clear()
    os.environ.update(saved)
    reset_caches()


@pytest.mark.parametrize("settings_read_first", [False, True], ids=["discovered first", "settings read first"])
def test_extend_catalog_reaches_the_catalog(
    child: str, monkeypatch: pytest.MonkeyPatch, fresh_settings: None, settings_read_first: bool
) -> None:
    from gateway.config import settings

    monkeypatch.setenv("LLAMACPP_BASE_URL", f"{child}/llamacpp/v1")
    if settings_read_first:
        assert catalog_module.catalog().find(GGUF) is None
    else:
        assert settings.cache_info().currsize == 0  # what gateway-local guarantees by discovering first
    assert [m["id"] for m in discovery.extend_catalog()] == [GGUF]
    assert settings.cache_info().currsize == 0  # discovery never reads settings(), and forgets a cached one
    assert catalog_module.catalog().find("gemma-3-270m-it") is catalog_module.catalog().models[GGUF]
    assert len(settings().catalog_paths) == 2


# --- gateway-local, as `make serve` runs it --------------------------------------------------------


@contextlib.contextmanager
def gateway_local(env: dict[str, str]) -> Iterator[tuple[str, str, list[str]]]:
    """`gateway-local` in a subprocess on free ports: (base URL, development key, its output so far)."""
    port = free_port()
    script = Path(sys.executable).with_name("gateway-local")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "gateway.local.server"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_CATALOG", "AWS_ENDPOINT_URL"))}
    process = subprocess.Popen(
        [*command, "--port", str(port), "--dynamodb-port", "0"],
        env={**clean, **env, "BUILTIN_TOKEN_DELAY": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "gateway-local exited:\n" + "".join(lines)
            assert time.monotonic() < deadline, "gateway-local did not start:\n" + "".join(lines)
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/models", timeout=1, trust_env=False).status_code == 200:
                    break
            time.sleep(0.1)
        key = re.search(r"API key\s+(\S+)", "".join(lines))
        assert key, "".join(lines)
        yield base, key.group(1), lines
    finally:
        stop(process, timeout=10)


def test_gateway_local_serves_the_discovered_models(child: str) -> None:
    with gateway_local(server_env(child)) as (base, key, output):
        client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=20)

        listed = {m.id: m for m in client.models.list()}
        assert {GGUF, "llama3.2:latest", "Qwen/Qwen2.5-0.5B-Instruct", "gateway-echo"} <= set(listed)
        gemma = listed[GGUF]
        assert "gemma-3-270m-it" in (gemma.model_extra or {})["aliases"]
        assert (gemma.model_extra or {})["available"] is True
        assert client.models.retrieve("gemma-3-270m-it").id == GGUF
        assert httpx.get(f"{base}/models/{GGUF}", trust_env=False).json()["id"] == GGUF

        for name in ("gemma-3-270m-it", GGUF, "llamacpp/gemma-3-270m-it"):
            whole = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}])
            assert whole.choices[0].message.content == f"llamacpp answered {GGUF}"  # the child, with the file path
            assert whole.usage is not None
            assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)

        stream = client.chat.completions.create(
            model="gemma-3-270m-it", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == f"llamacpp answered {GGUF}"
        usage = chunks[-1].usage
        assert usage is not None
        assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)

        for name, answer in (
            ("llama3.2", "ollama answered llama3.2:latest"),
            ("qwen3:0.6b", "ollama answered qwen3:0.6b"),
        ):
            reply = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}])
            assert reply.choices[0].message.content == answer
        # vLLM with its key, and an output limit that fits its context (it refuses one that does not)
        reply = client.chat.completions.create(
            model="qwen2.5-0.5b-instruct", messages=[{"role": "user", "content": "Hi"}]
        )
        assert reply.choices[0].message.content == "vllm answered Qwen/Qwen2.5-0.5B-Instruct"
        assert f"gemma-3-270m-it ({GGUF})" in "".join(output)  # the banner names it as it can be typed
