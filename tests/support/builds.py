"""Session fixtures for the tests that run the built functions (test_build.py, test_invoke.py).

tests/conftest.py registers them, so one session builds the template once, whichever of those
modules run: `sam build` takes a minute or more, and the suite must not pay it twice.
Without python3.12 or SAM CLI they skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lambdas import builds as lambda_build

ROOT = Path(__file__).resolve().parents[2]
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BUILD_TIMEOUT = 600  # seconds per build; both run at once


def unavailable(message: str) -> None:
    if CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def python312() -> str:
    found = lambda_build.find_python312()
    if found is None:
        unavailable("python3.12 (the Lambda runtime, and what sam build needs for BuildMethod python3.12) not found")
    return found


@pytest.fixture(scope="session")
def builds(python312: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"arm64": build dir, "host": build dir}, from two concurrent `sam build` runs.

    The repository keeps no .aws-sam: both go to temporary directories. The host build is the
    template with arm64 replaced by this machine's architecture (lambda_build.template_for).
    """
    try:
        version = subprocess.run([str(lambda_build.SAM), "--version"], capture_output=True, text=True, timeout=1200)
        problem = None if version.returncode == 0 else version.stderr[-3000:]
    except (OSError, subprocess.TimeoutExpired) as exc:
        problem = repr(exc)
    if problem:
        unavailable(f"scripts/sam could not install or run SAM CLI: {problem}")

    work = tmp_path_factory.mktemp("sam-build")
    had_aws_sam = (ROOT / ".aws-sam").exists()
    host = lambda_build.host_architecture()
    plans = {"arm64": "arm64", "host": host}

    def build(label: str) -> tuple[str, Path, subprocess.CompletedProcess[str]]:
        template = lambda_build.template_for(plans[label], work / label)
        build_dir = work / label / "build"
        result = lambda_build.sam_build(
            template, build_dir, python312, architecture=plans[label], timeout=BUILD_TIMEOUT
        )
        return label, build_dir, result

    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(build, plans))
    for label, _, result in done:
        assert result.returncode == 0, f"sam build ({plans[label]}) failed:\n{result.stdout[-4000:]}\n{result.stderr}"
        assert "Build Succeeded" in result.stdout + result.stderr
    assert had_aws_sam or not (ROOT / ".aws-sam").exists(), "sam build must write only into --build-dir"
    return {label: build_dir for label, build_dir, _ in done}
