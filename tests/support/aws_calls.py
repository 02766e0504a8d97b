"""Which AWS calls each Lambda's code can reach, read from its source (nothing imported, nothing run).

tests/docs/test_template.py holds these against a table of the calls each function needs, and the
table against the IAM statements of template.yaml. The reading errs on the side of reaching too
much, never too little:

- A scope is a module's top-level function or class (a class with all its methods), or the
  module's own top-level code. A scope reaches every scope it names, called or not (a function
  passed to `dynamo.call` counts), the top-level code of a module reaches every function it
  decorates (a route registers its handler with the router the app mounts),, the top-level code of every module it
  imports, and every scope of a module whose dotted name it holds as a string (importlib).
  Annotations and `if TYPE_CHECKING:` blocks never run, so they reach nothing.
- A Lambda starts from every scope of functions/NAME/*.py, as Lambda (or run.sh) loads them.
- An AWS call is an `Op("Action", ...)` (storage/ops.py: the lean client and boto3 both send it), or a
  method of a boto3 client: on `dynamo.client()`, or on a name ending in
  `client` (`client.converse`, `self._client.converse_stream`), called or passed
  (`functools.partial(client.converse, ...)`); a Powertools Parameters getter
  (`parameters.get_secret`); or an item of a DynamoDB transaction (`{"Put": {"TableName": ...}}`),
  which IAM authorizes as that item's own action, as it does not know TransactWriteItems.
  `clients()` lists where clients are made, so a client of another service cannot slip by.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import botocore.session
from botocore import xform_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "gateway" / "gateway"
FUNCTIONS = ROOT / "functions"
MODULE_SCOPE = "<module>"

CLIENT_SERVICES = ("dynamodb", "bedrock-runtime")  # what the Lambdas make boto3 clients for
DYNAMO_CLIENT = ("gateway.storage.dynamo", "client")
OP_TYPES = (("gateway.storage.dynamo", "Op"), ("gateway.storage.ops", "Op"))  # a call described, sent by a driver
POWERTOOLS_PARAMETERS = "aws_lambda_powertools.utilities.parameters"
POWERTOOLS_GETTERS = {  # getter -> (service, operation) it calls
    "get_secret": ("secretsmanager", "GetSecretValue"),
    "get_secrets_by_name": ("secretsmanager", "BatchGetSecretValue"),
    "get_parameter": ("ssm", "GetParameter"),
    "get_parameters": ("ssm", "GetParametersByPath"),
    "get_parameters_by_name": ("ssm", "GetParameters"),
}
TRANSACTION_ITEMS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
# The IAM action of an operation not named after it; None: authorized item by item (TRANSACTION_ITEMS).
IAM_ACTION_OF = {
    ("bedrock-runtime", "Converse"): "bedrock:InvokeModel",
    ("bedrock-runtime", "ConverseStream"): "bedrock:InvokeModelWithResponseStream",
    ("dynamodb", "TransactWriteItems"): None,
    ("dynamodb", "TransactGetItems"): None,
}


@dataclass(frozen=True, slots=True)
class Call:
    module: str  # gateway.accounts.keys
    scope: str  # the top-level function or class that makes it
    method: str  # as the code writes it: get_item, converse, get_secret, or a transaction item's "Put"
    service: str  # botocore's name: dynamodb, bedrock-runtime, ssm, secretsmanager
    operation: str  # the API's: GetItem, Converse, GetSecretValue, PutItem
    line: int
    table: str | None = None  # what its TableName names, as written (`settings().usage_table` -> usage_table)
    index: bool = False  # whether it names an IndexName

    @property
    def site(self) -> tuple[str, str, str]:
        return (self.module, self.scope, self.method)

    @property
    def action(self) -> str | None:
        """The IAM action that authorizes it; None if its parts are authorized instead (a transaction)."""
        if (self.service, self.operation) in IAM_ACTION_OF:
            return IAM_ACTION_OF[(self.service, self.operation)]
        prefix = botocore.session.get_session().get_service_model(self.service).signing_name
        return f"{prefix}:{self.operation}"


@cache
def _operations() -> dict[str, tuple[str, ...]]:
    """Client method name -> "service:Operation" of each CLIENT_SERVICES service that has it."""
    session = botocore.session.get_session()
    found: dict[str, list[str]] = {}
    for service in CLIENT_SERVICES:
        for operation in session.get_service_model(service).operation_names:
            found.setdefault(xform_name(operation), []).append(f"{service}:{operation}")
    return {method: tuple(services) for method, services in found.items()}


@cache
def modules() -> dict[str, Path]:
    """Every module of the gateway package, and every entry point (functions/NAME/FILE.py as functions.NAME.FILE)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in sorted(FUNCTIONS.glob("*/*.py")):
        found[".".join(path.relative_to(ROOT).with_suffix("").parts)] = path
    return found


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _executed(node: ast.AST) -> Iterator[ast.AST]:
    """`node` and every node under it that runs: annotations and `if TYPE_CHECKING:` blocks left out."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        for field, value in ast.iter_fields(current):
            if field in ("annotation", "returns"):
                continue
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, ast.AST) and not _type_checking(child):
                    stack.append(child)


def _dotted(node: ast.AST) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"]; None for anything but a plain dotted name."""
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    return [node.id, *reversed(names)] if isinstance(node, ast.Name) else None


def _targets(node: ast.Assign | ast.AnnAssign) -> list[ast.expr]:
    return node.targets if isinstance(node, ast.Assign) else [node.target]


def _constant(node: ast.AST | None) -> object:
    return node.value if isinstance(node, ast.Constant) else None


class Module:
    """One module: its scopes, the names its imports bind, and what each scope reaches and calls."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.tree = ast.parse(path.read_text(), str(path))
        self.scopes: dict[str, list[ast.stmt]] = {MODULE_SCOPE: []}
        self.decorated: list[str] = []  # run at import: `@router.get(...)` keeps the handler where the app finds it
        for stmt in self.tree.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self.scopes[stmt.name] = [stmt]
                if stmt.decorator_list:
                    self.decorated.append(stmt.name)
            elif not _type_checking(stmt):
                self.scopes[MODULE_SCOPE].append(stmt)
        # local name -> the module it names, or the (module, attribute) it was imported as
        self.aliases: dict[str, str | tuple[str, str]] = {}
        self._called: dict[int, ast.Call] = {}  # id() of a called function expression -> its call
        self._used: set[int] = set()  # id() of expressions whose attribute is taken, or assigned to a *client name
        for node in _executed(self.tree):
            if isinstance(node, ast.Attribute) or (
                isinstance(node, ast.Assign | ast.AnnAssign)
                and node.value is not None
                and all((_dotted(t) or [""])[-1].lower().endswith("client") for t in _targets(node))
            ):
                self._used.add(id(node.value))  # type: ignore[union-attr]
            if isinstance(node, ast.Call):
                self._called[id(node.func)] = node
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    local = alias.asname or alias.name.split(".")[0]
                    self.aliases[local] = alias.name if alias.asname else local
            elif isinstance(node, ast.ImportFrom):
                assert node.module and not node.level, f"{name}:{node.lineno}: relative imports are not followed"
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    is_module = full in modules() or full == POWERTOOLS_PARAMETERS
                    self.aliases[alias.asname or alias.name] = full if is_module else (node.module, alias.name)

    def resolve(self, names: list[str]) -> tuple[str, str | None]:
        """A dotted name as (module, the name in it, if any), through the imports; ("", None) if not imported."""
        head, rest = names[0], names[1:]
        if head in self.scopes and head != MODULE_SCOPE:
            return self.name, head
        target = self.aliases.get(head)
        if target is None:
            return "", None
        if isinstance(target, tuple):
            return target
        while rest and f"{target}.{rest[0]}" in modules():
            target, rest = f"{target}.{rest[0]}", rest[1:]
        return target, (rest[0] if rest else None)

    def reaches(self, scope: str) -> set[tuple[str, str]]:
        """The (module, scope) pairs that `scope` names or imports."""
        found: set[tuple[str, str | None]] = {(self.name, None)}
        if scope == MODULE_SCOPE:
            found |= {(self.name, name) for name in self.decorated}
        for stmt in self.scopes[scope]:
            for node in _executed(stmt):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    names = [a.name for a in node.names]
                    if isinstance(node, ast.ImportFrom):
                        names = [node.module or "", *(f"{node.module}.{a}" for a in names)]
                    for name in names:
                        parts = name.split(".")  # importing a.b.c runs a, a.b and a.b.c
                        found |= {(".".join(parts[:i]), None) for i in range(1, len(parts) + 1)}
                elif isinstance(_constant(node), str) and _constant(node) in modules():
                    module = str(_constant(node))
                    found |= {(module, s) for s in parse(module).scopes}
                elif isinstance(node, ast.Name | ast.Attribute) and (names := _dotted(node)):
                    found.add(self.resolve(names))
        return {(m, s or MODULE_SCOPE) for m, s in found if m in modules()}

    def calls(self, scope: str) -> list[Call]:
        return [c for stmt in self.scopes[scope] for node in _executed(stmt) if (c := self._call(scope, node))]

    def clients(self, scope: str) -> set[str]:
        """The services of the boto3 clients the scope makes (`boto3....client("dynamodb", ...)`)."""
        return {
            str(_constant(node.args[0]))
            for stmt in self.scopes[scope]
            for node in _executed(stmt)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "client"
            and node.args
            and isinstance(_constant(node.args[0]), str)
        }

    def loose_clients(self, scope: str) -> list[int]:
        """Lines where `dynamo.client()` goes somewhere its calls would not be seen (`c = dynamo.client()`)."""
        return [
            node.lineno
            for stmt in self.scopes[scope]
            for node in _executed(stmt)
            if isinstance(node, ast.Call)
            and (function := _dotted(node.func))
            and self.resolve(function) == DYNAMO_CLIENT
            and id(node) not in self._used
        ]

    def _call(self, scope: str, node: ast.AST) -> Call | None:
        if isinstance(node, ast.Dict):
            return self._transaction_item(scope, node)
        if isinstance(node, ast.Call) and (function := _dotted(node.func)) and self.resolve(function) in OP_TYPES:
            return self._op(scope, node)
        names = _dotted(node)
        if names:
            module, attribute = self.resolve(names)
            if module == POWERTOOLS_PARAMETERS and attribute and attribute.startswith("get_"):
                assert attribute in POWERTOOLS_GETTERS, f"{self.name}:{node.lineno}: teach aws_calls.py {attribute}"
                return Call(self.name, scope, attribute, *POWERTOOLS_GETTERS[attribute], node.lineno)
        if not isinstance(node, ast.Attribute):
            return None
        services: tuple[str, ...] = ()
        if isinstance(node.value, ast.Call):
            function = _dotted(node.value.func)
            if function and self.resolve(function) == DYNAMO_CLIENT:
                if node.attr == "meta":  # the client's own metadata (region, config): no call to AWS
                    return None
                services = tuple(s for s in _operations().get(node.attr, ()) if s.startswith("dynamodb:"))
                assert services, f"{self.name}:{node.lineno}: dynamo.client().{node.attr} is no DynamoDB operation"
        elif (receiver := _dotted(node.value)) and receiver[-1].lower().endswith("client"):
            services = _operations().get(node.attr, ())
        if not services:
            return None
        assert len(services) == 1, f"{self.name}:{node.lineno}: .{node.attr} could be any of {services}"
        service, operation = services[0].split(":")
        arguments = self._arguments(scope, self._called.get(id(node)))
        table = ast.unparse(arguments["TableName"]).rsplit(".", 1)[-1] if "TableName" in arguments else None
        return Call(self.name, scope, node.attr, service, operation, node.lineno, table, "IndexName" in arguments)

    def _arguments(self, scope: str, call: ast.Call | None) -> dict[str, ast.expr]:
        """A call's keyword arguments, with those of `**name` where the scope assigns `name` a dict literal."""
        found: dict[str, ast.expr] = {}
        for keyword in call.keywords if call else ():
            if keyword.arg:
                found[keyword.arg] = keyword.value
            elif isinstance(keyword.value, ast.Name):
                for stmt in self.scopes[scope]:
                    for node in _executed(stmt):
                        if (
                            isinstance(node, ast.Assign | ast.AnnAssign)
                            and isinstance(node.value, ast.Dict)
                            and any(_dotted(t) == [keyword.value.id] for t in _targets(node))
                        ):
                            found |= {
                                str(_constant(k)): v
                                for k, v in zip(node.value.keys, node.value.values, strict=True)
                                if k
                            }
        return found

    def _op(self, scope: str, node: ast.Call) -> Call:
        """`Op("UpdateItem", {...})`: a DynamoDB call as the request path's client (and run_sync) sends it."""
        action = _constant(node.args[0]) if node.args else None
        assert isinstance(action, str), f"{self.name}:{node.lineno}: an Op's action must be written out"
        assert f"dynamodb:{action}" in _operations().get(xform_name(action), ()), f"{self.name}:{node.lineno}: {action}"
        payload = node.args[1] if len(node.args) > 1 else None
        fields = {}
        if isinstance(payload, ast.Dict):
            fields = {_constant(k): v for k, v in zip(payload.keys, payload.values, strict=True) if k is not None}
        table = ast.unparse(fields["TableName"]).rsplit(".", 1)[-1] if "TableName" in fields else None
        return Call(self.name, scope, action, "dynamodb", action, node.lineno, table, "IndexName" in fields)

    def _transaction_item(self, scope: str, node: ast.Dict) -> Call | None:
        """`{"Update": {"TableName": ..., ...}}`: one item of a DynamoDB transaction."""
        if len(node.keys) != 1 or _constant(node.keys[0]) not in TRANSACTION_ITEMS:
            return None
        kind = str(_constant(node.keys[0]))
        body = node.values[0]
        if not isinstance(body, ast.Dict):  # built elsewhere (`{"Update": account.release_payload(...)}`)
            return Call(self.name, scope, kind, "dynamodb", TRANSACTION_ITEMS[kind], node.lineno)
        fields = {_constant(k): v for k, v in zip(body.keys, body.values, strict=True) if k is not None}
        if "TableName" not in fields:
            return None
        table = ast.unparse(fields["TableName"]).rsplit(".", 1)[-1]
        return Call(self.name, scope, kind, "dynamodb", TRANSACTION_ITEMS[kind], node.lineno, table)


@cache
def parse(name: str) -> Module:
    return Module(name, modules()[name])


@cache
def reachable(function: str) -> frozenset[tuple[str, str]]:
    """Every (module, scope) that the Lambda whose code is in functions/FUNCTION/ can reach."""
    entries = [m for m in modules() if m.startswith(f"functions.{function}.")]
    assert entries, f"no entry points in functions/{function}/"
    seen: set[tuple[str, str]] = set()
    todo = [(m, s) for m in entries for s in parse(m).scopes]
    while todo:
        module, scope = todo.pop()
        if (module, scope) in seen or scope not in parse(module).scopes:
            continue
        seen.add((module, scope))
        todo += parse(module).reaches(scope) - seen
    return frozenset(seen)


def calls(function: str) -> list[Call]:
    """Every AWS call the Lambda can reach, by module and line."""
    found = [c for module, scope in reachable(function) for c in parse(module).calls(scope)]
    return sorted(found, key=lambda c: (c.module, c.line))


def clients(function: str) -> set[tuple[str, str, str]]:
    """(module, scope, service) of every boto3 client the Lambda can make."""
    return {(m, s, service) for m, s in reachable(function) for service in parse(m).clients(s)}


DRIVER = ("gateway.storage.dynamo", "send_sync")  # sends any Op on boto3: its calls are read where the Ops are


def loose_clients(function: str) -> list[str]:
    """`module:line` wherever the Lambda's code keeps `dynamo.client()` under a name the reading would not follow."""
    return sorted(
        f"{m}:{line}" for m, s in reachable(function) if (m, s) != DRIVER for line in parse(m).loose_clients(s)
    )
