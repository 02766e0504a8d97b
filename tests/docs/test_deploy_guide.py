"""docs/deploy.md, command by command: each one run, or checked as far as it can be without an AWS account.

Every command of the guide (each shell command of its indented and fenced code, the Python example, the
agents' configuration files) must be covered by exactly one entry of COVERAGE, which says which test here
exercises it and how; a command added to the guide without an entry fails
`test_every_command_in_the_guide_is_covered`, and an entry that no longer matches anything fails too.

What runs for real: the curl commands, the Python example and the agents' settings against the gateway
running locally (conftest's e2e stack: uvicorn, moto), `gateway-admin --stack` against a stack on moto
(tests/conftest.py's `deployed`), `make -n invoke` and the command it prints when that builds nothing,
`scripts/sam --version`, `pyenv latest -k`. What needs an account is checked against what would run it:
each `aws` call against botocore's model of its service (what the AWS CLI reads), its `--query` against the
template's outputs, each `scripts/sam` flag against `scripts/sam SUBCOMMAND --help`, and the parameters and
outputs the guide lists against template.yaml.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import anthropic
import boto3
import httpx
import jmespath
import openai
import pytest
import yaml
from botocore import xform_name
from botocore.session import get_session

from gateway.admin import cli
from gateway.storage.tables import create_all
from lambdas import builds as lambda_build
from tests.support.admin import run_admin, stored
from tests.support.builds import CI, unavailable
from tests.support.kit import sse_data
from tests.support.stack import Stack, applied

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "deploy.md"
TEMPLATE = ROOT / "template.yaml"
SAM = ROOT / "scripts" / "sam"
SAM_VENV = ROOT / ".venv-sam"
DEPLOYED_HOST = "https://ID.execute-api.REGION.amazonaws.com"  # the guide's placeholder; the stage follows
STACK = "llm-gateway"  # the stack name the guide uses throughout
PLACEHOLDER_KEY = "sk-..."


# --- The guide's commands -----------------------------------------------------------------------


@dataclass(frozen=True)
class Snippet:
    kind: str  # "shell" for one command; otherwise the fenced block's language (python, toml, yaml, ts)
    text: str  # shell: the whole command line, continuations joined; a block: its text
    words: tuple[str, ...]  # shell: this command's words (`a && b` gives two snippets); a block: ()
    line: int  # where it starts in the guide

    @property
    def key(self) -> str:
        """What a Way's pattern is matched against."""
        return " ".join(self.words) if self.kind == "shell" else self.text


SHELL_FENCES = {"sh", "bash", "shell", "console"}
ILLUSTRATIONS = {"text"}  # fenced blocks that hold no command (the architecture diagram)


def shell_words(command: str) -> list[str]:
    """The words bash would see (quotes removed, comments dropped), with `&&` and `<` as words of their own."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def _shell_snippets(lines: list[str], first: int) -> Iterator[Snippet]:
    """The commands of shell lines (`first` is the guide's number of the first); `a \\` continues on the next."""
    command, start = "", first
    for offset, line in enumerate(lines):
        if not command:
            start = first + offset
        command = f"{command} {line.strip()}".strip()
        if command.endswith("\\"):
            command = command[:-1].rstrip()
            continue
        text, command = command, ""
        if not text or text.startswith("#"):
            continue
        words: list[str] = []
        for word in [*shell_words(text), "&&"]:
            if word == "&&":
                yield Snippet("shell", text, tuple(words), start)
                words = []
            else:
                words.append(word)


def snippets(markdown: str) -> list[Snippet]:
    """Every command of the guide: indented code (4 spaces after a blank line) and fenced blocks."""
    lines = markdown.splitlines()
    found: list[Snippet] = []
    i = 0
    while i < len(lines):
        fence = re.fullmatch(r"```(\w*)\s*", lines[i])
        if fence:
            end = lines.index("```", i + 1)
            language, body = fence.group(1) or "(no language)", lines[i + 1 : end]
            if language in SHELL_FENCES:
                found += _shell_snippets(body, i + 2)
            elif language not in ILLUSTRATIONS:
                found.append(Snippet(language, "\n".join(body) + "\n", (), i + 2))
            i = end + 1
        elif lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            block = [line[4:] for line in lines[i:end]]
            found += _shell_snippets(block, i + 1)
            i = end
        else:
            i += 1
    return found


# --- How each is exercised: the maintained table -------------------------------------------------


@dataclass(frozen=True)
class Way:
    """One row of the table: which commands (kind and pattern), the tests that exercise them, and how."""

    kind: str
    pattern: str  # shell: must match the command's words joined by spaces; a block: searched in its text
    tests: tuple[str, ...]  # the tests below that exercise it
    how: str


COVERAGE: tuple[Way, ...] = (
    # Prerequisites
    Way(
        "shell",
        r"aws sts get-caller-identity",
        ("test_aws_calls_exist_in_botocore",),
        "needs an account: the operation is checked in botocore's model of the service",
    ),
    Way(
        "shell",
        r"python3 -m venv \.venv|\.venv/bin/pip install -e \.",
        ("test_the_tools_install_as_the_guide_says",),
        "what `make`'s .venv recipe runs (and so what made the venv this suite runs in); requires-python agrees",
    ),
    Way(
        "shell",
        r"pyenv install 3\.12",
        ("test_pyenv_can_install_python_3_12",),
        "not run (it compiles Python): `pyenv latest -k 3.12` names what it installs; scripts/sam looks there",
    ),
    Way("shell", r"scripts/sam --version", ("test_sam_commands_use_flags_sam_has",), "run"),
    # Build, deploy, logs, delete, sam local
    Way(
        "shell",
        r"scripts/sam deploy --guided",
        ("test_sam_commands_use_flags_sam_has", "test_the_guides_parameters_and_outputs_are_the_templates"),
        "needs an account: its flag is in `sam deploy --help`, its prompts in SAM CLI's source, and the guide's "
        "parameters and outputs are exactly the template's",
    ),
    Way(
        "shell",
        r"scripts/sam delete .*",
        ("test_sam_commands_use_flags_sam_has", "test_sam_delete_keeps_the_tables_and_only_them"),
        "needs an account: its flags are in `sam delete --help`; what the guide says it keeps is the template's "
        "DeletionPolicy",
    ),
    Way(
        "shell",
        r"scripts/sam (build|logs|local invoke|local start-api)( .*)?",
        ("test_sam_commands_use_flags_sam_has",),
        "each flag is in `scripts/sam SUBCOMMAND --help`; function names and events are the template's "
        "(`sam build` itself runs in tests/lambda/test_build.py)",
    ),
    Way(
        "shell",
        r"aws (cloudformation|dynamodb) .*|export BASE=\$\(aws .*\)",
        ("test_aws_calls_exist_in_botocore",),
        "needs an account: operation and flags checked in botocore's model; a --query is run on the template's outputs",
    ),
    Way(
        "shell",
        r"\.venv/bin/gateway-admin --stack llm-gateway (?!.*\bsmoke$).*",
        ("test_gateway_admin_commands_against_a_stack_on_moto",),
        "run, against a stack, its secret, parameter and tables on moto, through --stack as on AWS",
    ),
    Way(
        "shell",
        r"\.venv/bin/gateway-admin --stack llm-gateway --region \S+ smoke",
        ("test_the_smoke_command_of_the_guide",),
        "parsed; its checks run through the official SDKs against the local gateway (no stack has an endpoint here)",
    ),
    # Calling the endpoint, streaming
    Way(
        "shell",
        r"export KEY=sk-\.\.\.|curl (?!-sN -o /dev/null -w).*",
        ("test_curl_commands_against_the_local_gateway",),
        "run with BASE and KEY of the local gateway: status 200 and a JSON body, or an SSE stream ending in [DONE]",
    ),
    Way(
        "shell",
        r"curl -sN -o /dev/null -w .*",
        ("test_curl_shows_the_stream_arrive",),
        "run against the local gateway: the first byte comes well before the last",
    ),
    Way(
        "python",
        r"from openai import OpenAI",
        ("test_python_example_against_the_local_gateway",),
        "run with BASE and KEY of the local gateway",
    ),
    # Coding agents
    Way(
        "shell",
        r"export ANTHROPIC_\w+=\S+|claude",
        ("test_claude_code_settings_reach_the_messages_api",),
        "Claude Code is not run: its variables are, by the anthropic SDK it is built on, against the local gateway",
    ),
    Way(
        "toml",
        r"\[model_providers\.",
        ("test_codex_config_reaches_the_responses_api",),
        "parsed with tomllib; its base URL, wire API and model called on the local gateway",
    ),
    Way(
        "shell",
        r"export LLM_GATEWAY_API_KEY=sk-\.\.\.|codex",
        ("test_codex_config_reaches_the_responses_api",),
        "Codex is not run: the variable is the one its config's env_key names",
    ),
    Way(
        "yaml",
        r"apiBase:",
        ("test_continue_config_reaches_chat_completions",),
        "parsed; its apiBase and model called on the local gateway",
    ),
    Way(
        "ts",
        r"createOpenAI\(",
        ("test_ai_sdk_snippet_calls_served_routes",),
        "not run (no Node packages here): its baseURL, the routes its calls use and its models, on the local gateway",
    ),
    # Trying the functions locally, cold start
    Way(
        "shell",
        r"make invoke( FUNCTION=\w+)?( EVENT=\S+)?",
        ("test_make_invoke_lines",),
        "`make -n` prints the command; its function and event are the template's; without FUNCTION it is run",
    ),
    Way(
        "shell",
        r"\.venv/bin/python -m bench\.coldstart",
        ("test_bench_coldstart_starts",),
        "not run (it builds twice): `--help`, with the options the guide names",
    ),
)


def ways(snippet: Snippet) -> list[Way]:
    """The entries that cover a command: exactly one, or the table is wrong."""

    def matches(way: Way) -> bool:
        if way.kind != snippet.kind:
            return False
        if snippet.kind == "shell":
            return re.fullmatch(way.pattern, snippet.key) is not None
        return re.search(way.pattern, snippet.key) is not None

    return [way for way in COVERAGE if matches(way)]


@cache
def guide_text() -> str:
    return GUIDE.read_text()


@cache
def guide_snippets() -> tuple[Snippet, ...]:
    return tuple(snippets(guide_text()))


def covered(test: str) -> list[Snippet]:
    """The guide's commands that `test` exercises; never empty, or the table has an entry too many."""
    mine = [s for s in guide_snippets() if any(test in way.tests for way in ways(s))]
    assert mine, f"{test}: no command of the guide is covered by it"
    return mine


def test_every_command_in_the_guide_is_covered() -> None:
    uncovered = [f"line {s.line}: {s.kind}: {s.key[:100]!r}" for s in guide_snippets() if not ways(s)]
    assert not uncovered, "commands of docs/deploy.md that no COVERAGE entry exercises:\n" + "\n".join(uncovered)
    twice = [f"line {s.line}: {s.key[:100]!r}" for s in guide_snippets() if len(ways(s)) > 1]
    assert not twice, "commands matched by more than one COVERAGE entry:\n" + "\n".join(twice)


def test_every_coverage_entry_covers_a_command_and_names_a_test_here() -> None:
    stale = [way.pattern for way in COVERAGE if not any(way in ways(s) for s in guide_snippets())]
    assert not stale, f"COVERAGE entries that match no command of the guide: {stale}"
    names = {test for way in COVERAGE for test in way.tests}
    assert not names - set(globals()), f"COVERAGE names tests that do not exist: {names - set(globals())}"


def test_the_extraction_sees_what_a_reader_copies() -> None:
    """Continuations joined, `&&` split, comments dropped, illustrations skipped; unlabeled fences count."""
    sample = (
        "Text\n\n    a --x \\\n      --y 'q # r'   # note\n    b && c\n\n"
        "```text\nnot a command\n```\n\n```\nuncovered\n```\n\n```toml\nk = 1\n```\n"
    )
    found = snippets(sample)
    assert [(s.kind, s.words) for s in found] == [
        ("shell", ("a", "--x", "--y", "q # r")),
        ("shell", ("b",)),
        ("shell", ("c",)),
        ("(no language)", ()),
        ("toml", ()),
    ]
    assert found[0].line == 3 and found[3].line == 12


# --- What the checks share ---------------------------------------------------------------------


@cache
def template() -> dict[str, Any]:
    return lambda_build.load_template(TEMPLATE)


@cache
def functions() -> dict[str, lambda_build.BuiltFunction]:
    return lambda_build.built_functions(ROOT)  # the source template: names, routes, schedules


def template_routes() -> set[tuple[str, str]]:
    """(METHOD, path) of every Api event: what API Gateway forwards to a function, and nothing else."""
    return {route for fn in functions().values() for route in fn.api_routes}


def deployed_root() -> str:
    """The guide's placeholder for a deployment's root: the host and the template's default stage."""
    return f"{DEPLOYED_HOST}/{template()['Parameters']['StageName']['Default']}"


def local(url: str, stack: Stack) -> str:
    """The same URL on the local gateway, which serves at its root what API Gateway serves under the stage."""
    assert url.startswith(deployed_root()), f"{url} is not under the guide's base URL {deployed_root()}"
    return stack.gateway.url + url.removeprefix(deployed_root())


def exported(test: str) -> dict[str, str]:
    """NAME -> value of the guide's `export NAME=value` lines that `test` covers."""
    lines = [s.words[1] for s in covered(test) if s.words[:1] == ("export",)]
    return {name: value for name, _, value in (line.partition("=") for line in lines)}


def require_route(stack: Stack, method: str, path: str) -> None:
    """API Gateway routes it (template.yaml) and the gateway serves it: 401 without a key, not 404."""
    status = httpx.request(method, stack.gateway.url + path, json={}, timeout=15, trust_env=False).status_code
    routed = (method, path) in template_routes()
    assert routed, f"{method} {path} is not an Api event of template.yaml: API Gateway would answer 404"
    assert status == 401, f"{method} {path} without a key answered {status}, not 401"


def require_model(stack: Stack, model: str) -> None:
    response = httpx.get(f"{stack.base_url}/models/{model}", timeout=15, trust_env=False)
    assert response.status_code == 200, f"{model!r} is not a catalog model: {response.text[:300]}"


def call_chat_completions(base_url: str, key: str) -> None:
    with openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30) as client:
        answer = client.chat.completions.create(model="gateway-echo", messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content


def call_responses(base_url: str, key: str) -> None:
    """Streamed, as Codex and the AI SDK's streamText call it."""
    with openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30) as client:
        events = list(client.responses.create(model="gateway-echo", input="Hi", stream=True))
    assert events and events[-1].type == "response.completed", [e.type for e in events]


CALLS: dict[str, Callable[[str, str], None]] = {
    "/chat/completions": call_chat_completions,
    "/responses": call_responses,
}


@pytest.fixture
def key(e2e: Stack, make_key: Callable[..., tuple[str, Any]]) -> str:
    """What the guide's KEY holds: a key create-key printed (with room enough for every call here)."""
    return make_key(name="deploy guide")[0]


def need(program: str) -> str:
    """A program the guide runs; missing, its check skips (fails under CI=true)."""
    found = shutil.which(program)
    if found is None:
        unavailable(f"{program} is not installed")
    return str(found)


# --- Prerequisites -----------------------------------------------------------------------------


def test_the_tools_install_as_the_guide_says() -> None:
    covered("test_the_tools_install_as_the_guide_says")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    oldest = re.fullmatch(r">=(3\.\d+)", project["requires-python"])
    assert oldest and f"**Python {oldest.group(1)} or newer**" in guide_text(), project["requires-python"]
    assert project["scripts"]["gateway-admin"] == "gateway.admin.cli:main"
    makefile = (ROOT / "Makefile").read_text()
    assert "-m venv $(VENV)" in makefile and "pip install -q -e '.[dev]'" in makefile
    assert (Path(sys.executable).parent / "gateway-admin").is_file(), "pip install -e . creates .venv/bin/gateway-admin"


def test_pyenv_can_install_python_3_12() -> None:
    covered("test_pyenv_can_install_python_3_12")
    assert "versions/3.12*/bin/python3.12" in SAM.read_text(), "the guide says scripts/sam looks there"
    assert "$(pyenv root)/versions/3.12*/bin/python3.12" in guide_text()
    if shutil.which("pyenv") is None:
        pytest.skip("pyenv is not installed")
    latest = subprocess.run(["pyenv", "latest", "-k", "3.12"], capture_output=True, text=True, timeout=30)
    assert latest.returncode == 0 and re.fullmatch(r"3\.12\.\d+", latest.stdout.strip()), latest.stderr


# --- scripts/sam -------------------------------------------------------------------------------


def sam_installed() -> None:
    """SAM CLI from .venv-sam; where scripts/sam has not installed it, skip, except under CI, where it installs."""
    if not (SAM_VENV / ".installed").is_file() and not CI:
        pytest.skip("SAM CLI is not installed in .venv-sam (scripts/sam installs it on first use)")


def sam(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    return subprocess.run([str(SAM), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


# `sam SUBCOMMAND --help` for several subcommands in one process of .venv-sam's Python, through the entry
# point .venv-sam/bin/sam runs (samcli.cli.main:cli): one SAM CLI start-up (a second or two) instead of one each.
SAM_HELPS = """
import contextlib, io, json, sys
from samcli.cli.main import cli
helps = {}
for sub in sys.argv[1:]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        cli.main(args=[*sub.split(), "--help"], prog_name="sam", standalone_mode=False)
    helps[sub] = out.getvalue()
print(json.dumps(helps))
"""


def sam_helps(subcommands: list[tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"}  # as scripts/sam sets them
    python = SAM_VENV / "bin" / "python"
    args = [str(python), "-c", SAM_HELPS, *(" ".join(sub) for sub in subcommands)]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    helps = json.loads(done.stdout)
    return {sub: helps[" ".join(sub)] for sub in subcommands}


def flags(words: tuple[str, ...]) -> list[str]:
    return [w.split("=", 1)[0] for w in words if re.match(r"--?[A-Za-z]", w)]


def value(words: tuple[str, ...], *names: str) -> str | None:
    for i, word in enumerate(words[:-1]):
        if word in names:
            return words[i + 1]
    return None


def subcommand(words: tuple[str, ...]) -> tuple[str, ...]:
    return words[1:3] if words[1] == "local" else words[1:2]


def test_sam_commands_use_flags_sam_has() -> None:
    sam_installed()
    commands = [s.words for s in covered("test_sam_commands_use_flags_sam_has")]
    version = sam("--version")  # under CI the first call installs SAM CLI, before the others run at once
    assert version.returncode == 0 and version.stdout.startswith("SAM CLI, version"), version.stderr[-3000:]
    helps = sam_helps(sorted({subcommand(w) for w in commands if not w[1].startswith("-")}))
    problems = []
    for words in commands:
        if words[1].startswith("-"):
            continue
        sub = subcommand(words)
        text = helps[sub]
        assert f"Usage: sam {' '.join(sub)} [OPTIONS]" in text, text[:500]
        missing = [f for f in flags(words) if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text)]
        problems += [f"`{' '.join(words)}`: `sam {' '.join(sub)}` has no {f}" for f in missing]
        if value(words, "--stack-name") not in (None, STACK):
            problems.append(f"`{' '.join(words)}`: another stack name than {STACK}")
        name = words[3] if sub == ("local", "invoke") else value(words, "--name", "-n")
        if name is not None and name not in functions():
            problems.append(f"`{' '.join(words)}`: {name} is not a function of template.yaml")
        event = value(words, "-e", "--event")
        if event is not None and name is not None:
            path = ROOT / event
            if not path.is_file() or not functions()[name].targets(json.loads(path.read_text())):
                problems.append(f"`{' '.join(words)}`: {event} is not an event of {name}")
    assert not problems, "\n".join(problems)
    if any(subcommand(w) == ("deploy",) for w in commands):
        guided_prompts_are_sam_clis()


def guided_prompts_are_sam_clis() -> None:
    """The prompts the guide answers are the ones `sam deploy --guided` asks (SAM CLI's own source)."""
    (source,) = SAM_VENV.glob("lib/python3*/site-packages/samcli/commands/deploy/guided_context.py")
    code = source.read_text()
    section = guide_text().split("## Build and deploy", 1)[1].split("\n## ", 1)[0]
    prompts = re.findall(r"^- \*(.+?)\*", section, flags=re.MULTILINE)
    assert len(prompts) >= 4, prompts
    for prompt in prompts:
        first = prompt.split()[0]
        asked = prompt.replace(first, "{resource}", 1) if first in functions() else prompt
        assert asked in code, f"`sam deploy --guided` does not ask {prompt!r}"


def markdown_table(after: str) -> list[list[str]]:
    """The rows (cells, stripped) of the first table after the text `after` in the guide, header left out."""
    table: list[list[str]] = []
    for line in guide_text().split(after, 1)[1].splitlines():
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif table:
            break
    assert len(table) > 2, f"no table after {after!r}"
    return table[2:]


def test_the_guides_parameters_and_outputs_are_the_templates() -> None:
    """What `sam deploy --guided` asks for is the template's Parameters; what it prints, its Outputs."""
    covered("test_the_guides_parameters_and_outputs_are_the_templates")
    parameters = template()["Parameters"]
    listed = {row[0].strip("`"): row[1] for row in markdown_table("### Parameters\n")}
    assert list(listed) == list(parameters), "the guide's parameters, in order, are the template's"
    for name, default in listed.items():
        expected = str(parameters[name].get("Default", ""))
        assert default == (f"`{expected}`" if expected else "(empty)"), f"{name}: the guide says {default}"
    outputs = [name for row in markdown_table("prints the stack's outputs:") for name in re.findall(r"`(\w+)`", row[0])]
    assert sorted(outputs) == sorted(template()["Outputs"]), "the guide's outputs are the template's"


def test_sam_delete_keeps_the_tables_and_only_them() -> None:
    """The guide: delete removes everything but the two tables, whose generated names start with the stack's."""
    covered("test_sam_delete_keeps_the_tables_and_only_them")
    resources = template()["Resources"]
    retained = {name for name, r in resources.items() if r.get("DeletionPolicy") == "Retain"}
    assert retained == {"KeysTable", "UsageTable"} and "**retained** (`DeletionPolicy: Retain`)" in guide_text()
    assert all("TableName" not in resources[name]["Properties"] for name in retained), "CloudFormation names them"
    assert f"`{STACK}-KeysTable-...`" in guide_text()
    assert "samconfig.toml" in (ROOT / ".gitignore").read_text().split(), "the guide says samconfig.toml is ignored"


# --- aws ---------------------------------------------------------------------------------------

AWS_GLOBAL_OPTIONS = {"--query", "--output", "--region", "--profile", "--endpoint-url", "--no-paginate"}
AWS_OUTPUTS = {"json", "text", "table", "yaml", "yaml-stream"}


def template_outputs_response() -> dict[str, Any]:
    """What describe-stacks answers for a stack of this template, each output's value named after it."""
    outputs = [{"OutputKey": k, "OutputValue": f"<{k}>"} for k in template()["Outputs"]]
    return {"Stacks": [{"StackName": STACK, "Outputs": outputs}]}


def aws_call(words: list[str]) -> Any:
    """Checks `aws SERVICE OPERATION --flags...` against botocore's model; returns what its --query selects."""
    assert words[0] == "aws" and len(words) >= 3, words
    service = get_session().get_service_model(words[1])
    operations = {xform_name(name, "-"): name for name in service.operation_names}
    assert words[2] in operations, f"aws {words[1]} has no {words[2]}"
    shape = service.operation_model(operations[words[2]]).input_shape
    members = {xform_name(name, "-"): name for name in (shape.members if shape else {})}
    given = {w[2:]: words[i + 1] if i + 1 < len(words) else "" for i, w in enumerate(words) if w.startswith("--")}
    unknown = [f for f in given if f"--{f}" not in AWS_GLOBAL_OPTIONS and f not in members]
    assert not unknown, f"aws {words[1]} {words[2]} has no {unknown}"
    required = [xform_name(name, "-") for name in (shape.required_members if shape else [])]
    assert all(r in given for r in required), f"aws {words[1]} {words[2]} needs --{required}"
    assert given.get("output", "json") in AWS_OUTPUTS
    if "query" not in given:
        return None
    assert words[2] == "describe-stacks", "a --query is checked only on describe-stacks"
    selected = jmespath.search(given["query"], template_outputs_response())
    assert selected, f"--query {given['query']} selects nothing from the template's outputs"
    return selected


def test_aws_calls_exist_in_botocore() -> None:
    for snippet in covered("test_aws_calls_exist_in_botocore"):
        if snippet.words[0] == "export":  # export BASE="$(aws ...)": the call inside, as bash reads it
            inner = re.fullmatch(r'export BASE="\$\((.*)\)"', snippet.text, flags=re.DOTALL)
            assert inner, snippet.text
            assert aws_call(shell_words(inner.group(1))) == ["<BaseUrl>"], "BASE is the BaseUrl output"
        else:
            aws_call(list(snippet.words))


# --- gateway-admin -----------------------------------------------------------------------------


@pytest.fixture
def stack_tables(deployed: dict[str, str]) -> Iterator[dict[str, str]]:
    """The deployed stack of test_admin_cli, with the tables its outputs name."""
    stack = boto3.client("cloudformation").describe_stacks(StackName=deployed["stack"])["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    names = {"KeysTable": outputs["KeysTableName"], "UsageTable": outputs["UsageTableName"]}
    client = boto3.client("dynamodb")
    create_all(client, TEMPLATE, names)
    try:
        yield {**deployed, **names}
    finally:
        for name in names.values():
            client.delete_table(TableName=name)


def test_gateway_admin_commands_against_a_stack_on_moto(stack_tables: dict[str, str]) -> None:
    assert (Path(sys.executable).parent / "gateway-admin").is_file()
    with applied({}):  # the gateway's caches (settings, clients) forget the e2e stack's, and forget these after
        for snippet in covered("test_gateway_admin_commands_against_a_stack_on_moto"):
            words = [stack_tables["stack"] if w == STACK else w for w in snippet.words[1:]]
            stdin = "sk-pasted-at-the-prompt\n"
            if "<" in words:  # `< FILE`: the key is the file's content
                at = words.index("<")
                stdin, words = f"sk-from-{words[at + 1]}\n", words[:at]
            code, out, err = run_admin(*words, stdin=stdin)
            assert code == 0, f"`{snippet.text}` failed: {err}"
            command = cli.parser().parse_args(words).command
            secret, names = stored(stack_tables)
            if command == "set-provider-key":
                name = cli._credential_name(words[words.index(command) + 1])
                assert secret[name] == stdin.strip() and name in names
            elif command == "remove-provider-key":
                name = cli._credential_name(words[words.index(command) + 1])
                assert name not in secret and name not in names
            elif command == "create-key":
                assert out.startswith("sk-"), out
                (item,) = boto3.client("dynamodb").scan(TableName=stack_tables["KeysTable"])["Items"]
                assert item["plan"]["S"] == value(tuple(words), "--plan")
            else:
                pytest.fail(f"no check for `gateway-admin {command}`: add one here")


def test_the_smoke_command_of_the_guide(e2e: Stack, key: str) -> None:
    from gateway.admin import smoke

    (snippet,) = covered("test_the_smoke_command_of_the_guide")
    args = cli.parser().parse_args(snippet.words[1:])
    assert (args.command, args.stack, args.model) == ("smoke", STACK, "gateway-echo")
    checks = smoke.run(e2e.base_url, key, args.model)
    assert all(c.ok for c in checks), smoke.table(checks)
    assert smoke.table(checks).splitlines()[-1] == "7 passed, 0 failed"


# --- Calling the endpoint, streaming -----------------------------------------------------------


def curl_env(stack: Stack, key: str, home: Path) -> dict[str, str]:
    """BASE and KEY as the guide sets them, and curl's config from `home` only (not the user's .curlrc)."""
    no_proxy = "127.0.0.1,localhost"
    return {**os.environ, "BASE": stack.base_url, "KEY": key, "CURL_HOME": str(home), "NO_PROXY": no_proxy}


def test_curl_commands_against_the_local_gateway(e2e: Stack, key: str, tmp_path: Path) -> None:
    need("curl")
    (tmp_path / ".curlrc").write_text('silent\nshow-error\nwrite-out = "\\n%{http_code}\\n"\n')
    env = curl_env(e2e, key, tmp_path)
    for snippet in covered("test_curl_commands_against_the_local_gateway"):
        if snippet.words[0] == "export":
            assert snippet.words[1] == f"KEY={PLACEHOLDER_KEY}", "the test puts a real key in KEY"
            continue
        done = subprocess.run(["bash", "-c", snippet.text], env=env, capture_output=True, text=True, timeout=60)
        body, _, status = done.stdout.rstrip("\n").rpartition("\n")
        assert done.returncode == 0 and status == "200", f"`{snippet.text}`: {status} {body[:500]} {done.stderr}"
        if '"stream": true' in snippet.text:
            data = sse_data(body)
            assert data[-1] == "[DONE]" and all("error" not in json.loads(d) for d in data[:-1]), body[-500:]
        else:
            assert "error" not in json.loads(body), body[:500]


def test_curl_shows_the_stream_arrive(e2e: Stack, key: str, tmp_path: Path) -> None:
    need("curl")
    (tmp_path / ".curlrc").write_text("")
    with applied({"BUILTIN_TOKEN_DELAY": "0.01"}):  # gateway-echo's pace when deployed (the e2e stack sets 0)
        for snippet in covered("test_curl_shows_the_stream_arrive"):
            done = subprocess.run(
                ["bash", "-c", snippet.text],
                env=curl_env(e2e, key, tmp_path),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            first, last = map(float, re.findall(r"\d+\.\d+", done.stdout))
            assert last - first >= 0.1, f"the stream came all at once: {done.stdout}"


def test_python_example_against_the_local_gateway(e2e: Stack, key: str) -> None:
    """In a Python of its own, as a reader runs it (this process's stdout also carries the gateway's logs)."""
    env = {**os.environ, "BASE": e2e.base_url, "KEY": key}
    for snippet in covered("test_python_example_against_the_local_gateway"):
        done = subprocess.run([sys.executable, "-"], input=snippet.text, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        printed = done.stdout.splitlines()
        assert printed[0].startswith("ChatCompletion(") and "You said: Hi" in printed[0], printed[:1]
        assert printed[-1].startswith("CompletionUsage("), printed[-1:]


# --- Coding agents -----------------------------------------------------------------------------


def test_claude_code_settings_reach_the_messages_api(e2e: Stack, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = exported("test_claude_code_settings_reach_the_messages_api")
    assert settings.pop("ANTHROPIC_AUTH_TOKEN") == PLACEHOLDER_KEY
    base = settings.pop("ANTHROPIC_BASE_URL")
    assert base == deployed_root(), "the SDK appends /v1/messages to the base URL itself"
    assert all(name.endswith("_MODEL") for name in settings), settings
    for model in settings.values():
        require_model(e2e, model)
    require_route(e2e, "POST", "/v1/messages")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)  # Claude Code sends the token as a bearer token only
    with anthropic.Anthropic(base_url=local(base, e2e), auth_token=key, max_retries=0, timeout=30) as client:
        messages = [{"role": "user", "content": "Hi"}]
        with client.messages.stream(model="gateway-echo", max_tokens=64, messages=messages) as stream:  # type: ignore[arg-type]
            assert stream.get_final_text()


def test_codex_config_reaches_the_responses_api(e2e: Stack, key: str) -> None:
    (block,) = [s for s in covered("test_codex_config_reaches_the_responses_api") if s.kind == "toml"]
    config = tomllib.loads(block.text)
    provider = config["model_providers"][config["model_provider"]]
    assert provider["wire_api"] == "responses" and provider["base_url"] == f"{deployed_root()}/v1"
    assert exported("test_codex_config_reaches_the_responses_api") == {provider["env_key"]: PLACEHOLDER_KEY}
    require_model(e2e, config["model"])
    require_route(e2e, "POST", "/v1/responses")  # Codex appends /responses to base_url
    call_responses(local(provider["base_url"], e2e), key)


def test_continue_config_reaches_chat_completions(e2e: Stack, key: str) -> None:
    (block,) = covered("test_continue_config_reaches_chat_completions")
    config = yaml.safe_load(block.text)
    assert {"name", "version", "schema"} <= set(config) and config["models"]
    for model in config["models"]:
        assert model["provider"] == "openai" and model["apiKey"] == PLACEHOLDER_KEY
        require_model(e2e, model["model"])
        require_route(e2e, "POST", "/v1/chat/completions")
        call_chat_completions(local(model["apiBase"], e2e), key)


def test_ai_sdk_snippet_calls_served_routes(e2e: Stack, key: str) -> None:
    (block,) = covered("test_ai_sdk_snippet_calls_served_routes")
    provider = re.search(
        r"const (\w+) = createOpenAI\(\{\s*baseURL: \"([^\"]+)\",\s*apiKey: process\.env\.(\w+)", block.text
    )
    assert provider, block.text
    name, base_url, variable = provider.groups()
    assert f"export {variable}={PLACEHOLDER_KEY}" in guide_text(), f"the guide never sets {variable}"
    calls = re.findall(rf"\b{name}(\.chat|\.responses)?\(\"([^\"]+)\"\)", block.text)
    assert calls, block.text
    for method, model in calls:
        require_model(e2e, model)
        route = "/chat/completions" if method == ".chat" else "/responses"  # AI SDK 5+: the provider's default
        require_route(e2e, "POST", f"/v1{route}")
        CALLS[route](local(base_url, e2e), key)


# --- make invoke, bench ------------------------------------------------------------------------


def test_make_invoke_lines() -> None:
    need("make")
    python = ROOT / ".venv" / "bin" / "python"
    for snippet in covered("test_make_invoke_lines"):
        assignments = dict(w.split("=", 1) for w in snippet.words[2:])
        dry = subprocess.run(["make", "-n", *snippet.words[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0, dry.stderr
        (printed,) = [line for line in dry.stdout.splitlines() if "-m lambdas.invoke" in line]
        expected = [".venv/bin/python", "-m", "lambdas.invoke"]
        if "FUNCTION" in assignments:
            expected += ["--function", assignments["FUNCTION"]]
        if "EVENT" in assignments:
            expected += ["--event", assignments["EVENT"]]
        assert shlex.split(printed) == expected, printed
        if "FUNCTION" not in assignments:  # it only lists the functions: nothing to build, so run it
            run = [str(python) if python.exists() else sys.executable, *expected[1:]]
            listed = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert listed.returncode == 2 and all(name in listed.stderr for name in functions()), listed.stderr
            continue
        fn = functions()[assignments["FUNCTION"]]
        if "EVENT" in assignments:
            assert fn.targets(json.loads((ROOT / assignments["EVENT"]).read_text())), snippet.text
        else:
            assert fn.schedules, f"{fn.name} needs an EVENT: it has no schedule"


def test_bench_coldstart_starts() -> None:
    for snippet in covered("test_bench_coldstart_starts"):
        module = snippet.words[snippet.words.index("-m") + 1]
        done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        for option in ("--reuse", "--check"):  # the options the guide describes
            assert option in done.stdout and f"`{option}`" in guide_text()
