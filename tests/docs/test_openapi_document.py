"""The gateway's own OpenAPI document: current, the template's routes exactly, and served publicly by the models app."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.api import app, docs
from lambdas.builds import load_template

ROOT = docs.DOCUMENT.parents[3]
PUBLIC = {"/v1/models", "/v1/chat/models", "/v1/models/{model}", "/models", "/models.php"}
PUBLIC |= {"/playground", "/", "/openapi.json", "/docs"}


def template_routes() -> set[tuple[str, str]]:
    template = load_template(ROOT / "template.yaml")
    found = set()
    for resource in template["Resources"].values():
        for event in (resource.get("Properties") or {}).get("Events", {}).values():
            if event["Type"] == "Api":
                path = re.sub(r"\{(\w+)\+\}", r"{\1}", event["Properties"]["Path"])  # {model+} is OpenAPI's {model}
                found.add((event["Properties"]["Method"].upper(), path))
    return found


def document_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, operations in document["paths"].items() for method in operations}


def test_the_served_document_is_the_routers_document() -> None:
    """`make openapi` writes it; a route added, removed or redescribed without it fails here."""
    assert docs.document() == json.loads(json.dumps(app.openapi_document())), "run `make openapi`"


def test_the_document_and_the_template_declare_the_same_routes() -> None:
    declared = document_routes(docs.document())
    assert declared == template_routes()
    assert {("POST", "/v1/chat/completions"), ("POST", "/v1/messages"), ("POST", "/v1/responses")} <= declared


def test_keyed_routes_declare_both_ways_to_send_the_key() -> None:
    document = docs.document()
    schemes = document["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {"type": "http", "scheme": "bearer", "bearerFormat": "sk-...", "description": ANY}
    assert schemes["APIKeyHeader"]["name"] == "x-api-key" and schemes["APIKeyHeader"]["in"] == "header"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            security = operation.get("security")
            if path in PUBLIC:
                assert not security, f"{method} {path} is public"
            else:
                assert security == [{"HTTPBearer": []}, {"APIKeyHeader": []}], f"{method} {path}"
            if method == "post":  # bodies are read by the gateway's own validation, described here
                schema = operation["requestBody"]["content"]["application/json"]["schema"]
                assert schema["type"] == "object"


class _Any:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(other)


ANY = _Any()


@pytest.mark.parametrize(("root_path", "server"), [("", "/"), ("/api", "/api")])
def test_models_app_serves_the_document_and_its_page(root_path: str, server: str) -> None:
    client = TestClient(app.models_app(), root_path=root_path)
    served = client.get("/openapi.json")
    assert served.status_code == 200 and served.headers["content-type"].startswith("application/json")
    body = served.json()
    assert body["servers"] == [{"url": server}]
    assert document_routes(body) == document_routes(docs.document())
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<a href="openapi.json">' in page.text  # relative: under the stage deployed, at the root locally
    for path in docs.document()["paths"]:
        assert f"<code>{html.escape(path)}</code>" in page.text, path


def test_the_page_loads_nothing_from_elsewhere() -> None:
    """It shares the playground's origin, where a key lives in sessionStorage: no script, no third party."""
    page = TestClient(app.models_app()).get("/docs")
    csp = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'none'" and csp["style-src"].startswith("'sha256-")
    assert "<script" not in page.text and "http" not in page.text.replace("<!doctype html>", "")


def test_chat_and_stats_apps_do_not_serve_it() -> None:
    for factory in (app.chat_app, app.stats_app):
        assert TestClient(factory()).get("/openapi.json").status_code == 404
