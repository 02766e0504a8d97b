"""The real coding agents, installed from npm at pinned versions into a cache kept between runs.

`install()` puts Claude Code and Codex under build/agents-npm/ (build/ is git-ignored), with
`npm install --ignore-scripts` from a package.json that pins both, and writes a stamp of the
versions; a later run whose stamp matches reuses the tree without touching npm. Lifecycle scripts
stay off: Claude Code's postinstall only copies its platform binary into bin/, and each package's
platform binary is run directly (as /work/agents-research found: `claude-code-<platform>/claude`,
`codex-<platform>/vendor/<target>/bin/codex`).

Without node or npm the tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLAUDE_CODE = ("@anthropic-ai/claude-code", "2.1.337")
CODEX = ("@openai/codex", "0.171.0")
PINNED = dict((CLAUDE_CODE, CODEX))
CACHE = Path(os.environ.get("AGENTS_NPM_CACHE") or ROOT / "build" / "agents-npm")
INSTALL_TIMEOUT = 900  # seconds: two native binaries of about 200 MB each on a first run
VERSION_TIMEOUT = 30
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(message: str) -> None:
    """Skip, or fail under CI (where the agents must run)."""
    if CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass(frozen=True)
class Agents:
    claude: Path  # Claude Code's native binary
    codex: Path  # Codex's native binary
    versions: dict[str, str]  # package -> what `--version` printed


def _platform() -> tuple[str, str]:
    """(npm's platform suffix, Rust's target triple) for this machine."""
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    system = platform.system().lower()
    rust_arch = "x86_64" if arch == "x64" else "aarch64"
    if system == "darwin":
        return f"darwin-{arch}", f"{rust_arch}-apple-darwin"
    return f"linux-{arch}", f"{rust_arch}-unknown-linux-musl"


def binaries(tree: Path) -> tuple[Path, Path]:
    suffix, target = _platform()
    modules = tree / "node_modules"
    claude = modules / "@anthropic-ai" / f"claude-code-{suffix}" / "claude"
    codex = modules / "@openai" / f"codex-{suffix}" / "vendor" / target / "bin" / "codex"
    return claude, codex


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One installer at a time (pytest-xdist workers, two sessions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _npm_install(tree: Path) -> None:
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    package = {"name": "gateway-agents-e2e", "private": True, "version": "0.0.0", "dependencies": PINNED}
    (tree / "package.json").write_text(json.dumps(package, indent=1))
    command = ["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--no-update-notifier"]
    command += ["--loglevel=error", "--include=optional"]
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, cwd=tree, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        unavailable(f"npm install of {PINNED} did not finish in {INSTALL_TIMEOUT} s")
    if done.returncode != 0:
        unavailable(f"npm install of {PINNED} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    print(f"\n[agents] installed {PINNED} into {tree} in {time.monotonic() - started:.0f} s")


def _version(binary: Path) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(CACHE / "version-home"), "TERM": "dumb"}
    env |= {"DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT, env=env,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return (done.stdout or done.stderr).strip()


def install() -> Agents:
    """Both CLIs at their pinned versions, from the cache when its stamp matches, else from npm."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        unavailable(f"{' and '.join(missing)} not found: the coding-agent tests need Node.js and npm")
    tree = CACHE / "tree"
    stamp = CACHE / "installed.json"
    with _locked(CACHE / ".lock"):
        claude, codex = binaries(tree)
        current = json.loads(stamp.read_text()) if stamp.exists() else None
        if current != PINNED or not (claude.exists() and codex.exists()):
            stamp.unlink(missing_ok=True)
            _npm_install(tree)
            claude, codex = binaries(tree)
            for binary in (claude, codex):
                if not binary.exists():
                    unavailable(f"npm installed no {binary.relative_to(tree)} (no build for this platform?)")
            stamp.write_text(json.dumps(PINNED))
    versions = {CLAUDE_CODE[0]: _version(claude), CODEX[0]: _version(codex)}
    for (package, pinned), printed in zip((CLAUDE_CODE, CODEX), versions.values(), strict=True):
        assert pinned in printed, f"{package}: expected {pinned}, `--version` printed {printed!r}"
    return Agents(claude=claude, codex=codex, versions=versions)
