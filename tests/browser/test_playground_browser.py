"""The playground in a real headless Chromium (Debian's package), driven by Selenium, against a real gateway.

The gateway runs in its own process (this file with --serve: moto's DynamoDB, the local app with the
playground's routes, uvicorn on a free loopback port), so the environment it needs (a slower built-in
model, an extra catalog with a priced model and a model in an outage, keys for each error) never leaks
into the other tests. The browser loads /playground and uses it as a person would: paste a key, pick a
model, send, stop, open the account tab. Screenshots go to tests/artifacts/.

Why Selenium rather than Playwright: Debian's chromium-driver is built from the same source as its
chromium, so the driver always matches the browser, and Selenium is a small pure-Python wheel, while
Playwright brings its own Node.js driver and speaks the protocol of the Chromium release it was built
for. Neither downloads anything here: the driver and browser paths are given.

Without a browser (no chromium, chromium-driver or selenium) the tests skip, except under CI=true,
where they fail: CI must install them (apt-get install chromium chromium-driver; pip install selenium).

`python -m tests.browser.test_playground_browser --serve INFO.json` runs the same gateway by hand; with
UPDATE_DOCS_SCREENSHOT=1 the tests also refresh docs/playground.png, the README's screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.money import usd
from tests.support.processes import stop

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
DOCS_SCREENSHOT = ROOT / "docs" / "playground.png"
CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1360,900",
    "--force-device-scale-factor=1",
    "--lang=en-US",
)
TOKEN_DELAY = 0.05  # seconds between the built-in model's tokens: slow enough to watch and to stop
WAIT = 15  # seconds any one thing on the page may take


def catalog_model(model_id: str, name: str, provider: str, upstream: str, **fields: Any) -> dict[str, Any]:
    """A catalog model of this test, served by one offering."""
    return {
        "id": model_id,
        "owned_by": "gateway",
        "created": 1767225600,
        "display_name": name,
        "pricing": {"input": "3", "output": "15"} if model_id == "paid-echo" else {"input": "1", "output": "2"},
        "offerings": [{"provider": provider, "model": upstream}],
        **fields,
    }


EXTRA_CATALOG = {
    "providers": {
        "fake-midstream": {
            "name": "The tests' fake upstream (tests/support/fake_upstream.py)",
            "protocol": "openai",
            "base_url_env": "PLAYGROUND_FAKE_BASE_URL",  # set by serve() once the fake listens
            "key_required": False,
        },
        "outage": {
            "name": "A provider in an outage (never configured)",
            "protocol": "openai",
            "base_url_env": "PLAYGROUND_OUTAGE_BASE_URL_NEVER_SET",
            "key_required": False,
        },
    },
    "models": [
        catalog_model(
            "paid-echo", "Paid Echo (test)", "builtin", "echo", context_length=131072, max_output_tokens=8192
        ),
        catalog_model(
            "outage-model", "Outage model (test)", "outage", "anything", context_length=65536, max_output_tokens=4096
        ),
        catalog_model("midstream-failure", "Fails mid-stream (test)", "fake-midstream", "error-mid"),
    ],
}


# ---------------------------------------------------------------- the gateway, in its own process


def serve(info_path: str) -> None:
    """Run the gateway with the playground on a free port; write its URL and keys to `info_path`."""
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    from tests.support.fake_upstream import FakeUpstream  # run from the repository (python -m): importable

    os.environ["PLAYGROUND_FAKE_BASE_URL"] = FakeUpstream().start().url + "/v1"
    from gateway.local import dynamodb

    dynamodb.start(0)
    from gateway.accounts import keys

    made = {
        "main": keys.create(
            owner="ada@example.com",
            name="playground",
            plan="startup",
            rpm=10_000,
            tpm=100_000_000,
            monthly_credit=Decimal(10),
            free_requests=0,  # every answer is charged, so its cost shows
        ),
        "broke": keys.create(
            owner="bob@example.com", name="no credit", plan="free", monthly_credit=Decimal(0), free_requests=0
        ),
        "limited": keys.create(owner="cy@example.com", name="one a minute", plan="startup", rpm=1),
    }
    import uvicorn

    from gateway.local.app import local_app

    app = local_app()
    port = dynamodb.free_port()
    info = {"url": f"http://127.0.0.1:{port}", "keys": {name: key for name, (key, _) in made.items()}}
    tmp = Path(info_path + ".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(info_path)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class Gateway:
    def __init__(self, url: str, keys: dict[str, str], process: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.keys = keys
        self.process = process

    def get(self, path: str, key: str | None = None) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.get(self.url + path, headers=headers, timeout=10, trust_env=False)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("playground-gateway")
    catalog = workdir / "catalog.json"
    catalog.write_text(json.dumps(EXTRA_CATALOG))
    info = workdir / "info.json"
    log = (workdir / "server.log").open("wb")
    env = {
        **os.environ,
        "BUILTIN_TOKEN_DELAY": str(TOKEN_DELAY),
        "GATEWAY_CATALOG_EXTRA": str(catalog),
        "KEY_CACHE_SECONDS": "0",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.browser.test_playground_browser", "--serve", str(info)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        while not info.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the gateway did not start:\n{(workdir / 'server.log').read_text()[-4000:]}")
            time.sleep(0.1)
        data = json.loads(info.read_text())
        gw = Gateway(data["url"], data["keys"], process)
        while True:
            try:
                if gw.get("/playground").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the gateway did not answer:\n{(workdir / 'server.log').read_text()[-4000:]}")
            time.sleep(0.1)
        yield gw
    finally:
        stop(process, timeout=10)
        log.close()


# ---------------------------------------------------------------- the browser


def _missing_browser() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install selenium)"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (Path(path).exists() or shutil.which(path)):
            return f"{path} is missing (apt-get install {package})"
    return None


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    missing = _missing_browser()
    if missing:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the browser test, but {missing}", pytrace=False)
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="playground-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER)
    browser = webdriver.Chrome(service=service, options=options)
    browser.set_page_load_timeout(WAIT)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """The playground as a person sees it: find things, type, click, wait, take screenshots."""

    def __init__(self, driver: Any, gateway: Gateway) -> None:
        self.driver = driver
        self.gateway = gateway

    def open(self, fragment: str = "") -> Page:
        self.driver.get(self.gateway.url + "/playground" + fragment)
        self.driver.execute_script("sessionStorage.clear()")
        self.driver.get(self.gateway.url + "/playground" + fragment)
        self.wait(lambda: self.js("return document.querySelectorAll('#model-select option[value]').length > 1"))
        return self

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.js("const n = document.querySelector(arguments[0]); return n ? n.textContent : null", css) or ""

    def visible(self, css: str) -> bool:
        return bool(
            self.js(
                "const n = document.querySelector(arguments[0]); return !!n && n.offsetParent !== null && !n.hidden",
                css,
            )
        )

    def wait(self, condition: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                self.screenshot("timeout")
                raise AssertionError(f"timed out waiting for {what or condition}; banner: {self.banner()!r}")
            time.sleep(0.05)

    def use_key(self, key: str) -> None:
        field = self.find("#key-input")
        field.clear()
        field.send_keys(key)
        self.find("#key-save").click()
        self.wait(lambda: self.visible("#key-status"), what="the key to be taken")

    def pick_model(self, model_id: str) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self.find("#model-select")).select_by_value(model_id)
        self.wait(lambda: self.text("#model-id").startswith(model_id), what=f"{model_id} to be picked")

    def send(self, text: str) -> None:
        answers = self.answers_count()
        self.wait(lambda: self.find("#send").is_enabled(), what="the Send button")
        box = self.find("#prompt")
        box.clear()
        if len(text) > 200:  # typing a long text key by key takes seconds; a paste is one step
            self.js("arguments[0].value = arguments[1]", box, text[:-1])
            text = text[-1]
        box.send_keys(text)
        self.find("#send").click()
        self.wait(lambda: self.answers_count() > answers or self.banner(), what="the answer to start")

    def answers_count(self) -> int:
        return int(self.js("return document.querySelectorAll('.msg.assistant').length"))

    def last_answer(self) -> dict[str, Any]:
        return self.js(
            """const all = document.querySelectorAll('.msg.assistant'); const a = all[all.length - 1];
            if (!a) return null;
            const m = a.querySelector('.meta'); const c = a.querySelector('.cost');
            return {text: a.querySelector('.bubble').textContent, meta: m.textContent,
                    streaming: a.classList.contains('streaming'), stopped: a.classList.contains('stopped'),
                    cost: c ? c.dataset.cost : null, costText: c ? c.textContent : null,
                    prompt: Number(m.dataset.promptTokens || 0), completion: Number(m.dataset.completionTokens || 0)}"""
        )

    def wait_answer_done(self, timeout: float = WAIT) -> dict[str, Any]:
        self.wait(
            lambda: (a := self.last_answer()) and not a["streaming"] and not self.visible("#stop"),
            timeout,
            what="the answer to finish",
        )
        return self.last_answer()

    def banner(self) -> str:
        if not self.js("return !document.getElementById('banner').hidden"):
            return ""
        return self.text("#banner-title") + " " + self.text("#banner-text")

    def screenshot(self, name: str, path: Path | None = None) -> Path:
        """The whole page, beyond the window's height, as a PNG in tests/artifacts/ (or at `path`)."""
        path = path or ARTIFACTS / f"playground-{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            },
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


@pytest.fixture
def page(driver: Any, gateway: Gateway) -> Page:
    return Page(driver, gateway).open()


# ---------------------------------------------------------------- the tests


def test_the_page_is_served_whole_with_nothing_from_elsewhere(gateway: Gateway) -> None:
    response = gateway.get("/playground")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "connect-src 'self'" in csp and "default-src 'none'" in csp
    html = response.text
    assert "<script>" in html and "<style>" in html  # inline: one request, no build step
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html
    root = httpx.get(gateway.url + "/", timeout=10, trust_env=False)
    assert root.status_code == 302 and root.headers["location"] == "/playground"


@pytest.mark.parametrize(
    ("path", "stage_path", "status", "location"),
    [
        ("/", "/api/", 302, "/api/playground"),
        ("/", "/api", 302, "/api/playground"),
        ("/playground", "/api/playground", 200, None),
    ],
)
def test_behind_api_gateway_the_redirect_keeps_the_stage(
    path: str, stage_path: str, status: int, location: Any
) -> None:
    """Under Mangum (the ModelsFunction) the REST API's event path lacks the stage; the browser's URL has it."""
    from mangum import Mangum

    from gateway.api import playground
    from gateway.api.app import create_app

    event = {
        "resource": path,
        "path": path,
        "httpMethod": "GET",
        "headers": {"host": "abc123.execute-api.us-east-1.amazonaws.com"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "requestContext": {
            "path": stage_path,
            "stage": "api",
            "requestId": "r-1",
            "identity": {"sourceIp": "192.0.2.1"},
        },
        "isBase64Encoded": False,
        "body": None,
    }
    response = Mangum(create_app(playground.router), lifespan="off")(event, object())
    assert response["statusCode"] == status
    assert response["headers"].get("location") == location
    if status == 200:
        assert response["headers"]["content-type"].startswith("text/html")
        assert "content-security-policy" in response["headers"]


def test_the_page_loads_and_lists_models_with_prices_and_context(page: Page, gateway: Gateway) -> None:
    assert page.driver.title.startswith("Playground")
    listed = {m["id"]: m for m in gateway.get("/v1/models").json()["data"]}
    options = page.js(
        "return [...document.querySelectorAll('#model-select option[value]')].map(o => [o.value, o.textContent])"
    )
    assert {value for value, _ in options} == set(listed)
    labels = dict(options)
    assert "$3.00 in / $15.00 out" in labels["paid-echo"] and "128K ctx" in labels["paid-echo"]
    assert "free in / free out" in labels["gateway-echo"] and "32K ctx" in labels["gateway-echo"]
    unavailable = page.js(
        "return [...document.querySelectorAll('#model-select optgroup')].map(g => [g.label, g.children.length])"
    )
    assert unavailable[0][0] == "Available"
    page.pick_model("paid-echo")
    assert page.text("#model-price-in") == "$3.00 / 1M tokens"
    assert page.text("#model-price-out") == "$15.00 / 1M tokens"
    assert page.text("#model-context") == "131,072 tokens"
    assert page.text("#model-max-output") == "8,192 tokens"
    assert page.js("return document.getElementById('base-url').textContent") == gateway.url + "/v1"
    page.screenshot("models")
    logs = [e for e in page.driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not logs, logs  # no script error, no blocked resource


def test_the_key_lives_in_session_storage_only(page: Page, gateway: Gateway) -> None:
    key = gateway.keys["main"]
    page.use_key(key)
    assert page.js("return Object.values(sessionStorage)").count(key) == 1
    assert key not in json.dumps(page.js("return Object.assign({}, localStorage)"))
    assert key not in page.js("return document.cookie")
    assert page.text("#key-label").startswith(key[:7] + "…" + key[-4:])
    assert page.js("return document.getElementById('key-input').value") == ""
    page.find("#key-forget").click()
    assert page.js("return sessionStorage.length") == 0 or key not in page.js("return Object.values(sessionStorage)")


def test_an_answer_streams_in_with_its_tokens_and_cost_and_history(page: Page, gateway: Gateway) -> None:
    page.use_key(gateway.keys["main"])
    page.pick_model("paid-echo")
    words = (
        "Hello! Please say this back to me, so that I can watch the answer stream in token by token, "
        "and then see what it cost."
    )
    page.send(words)
    expected = f"You said: {words}"
    # While it streams: a growing prefix of the answer, the Stop button, and Send disabled.
    partial = page.wait(
        lambda: (a := page.last_answer()) and a["streaming"] and 0 < len(a["text"]) < len(expected) and a["text"],
        what="a partial answer",
    )
    assert expected.startswith(partial)
    assert page.visible("#stop") and not page.find("#send").is_enabled()
    page.screenshot("streaming")
    first = page.wait_answer_done()
    assert first["text"] == expected
    assert not first["stopped"]
    assert first["completion"] > 20 and first["prompt"] > 0
    assert f"{first['prompt']} in · {first['completion']} out" in first["meta"]
    expected_cost = (Decimal(3) * first["prompt"] + Decimal(15) * first["completion"]) / 1_000_000
    assert usd(first["cost"]) == pytest.approx(expected_cost)
    assert first["costText"].startswith("$") and "paid-echo" in first["meta"]
    # A second turn sends the whole conversation: its prompt holds the first question and answer.
    page.send("And a second turn?")
    second = page.wait_answer_done()
    assert second["text"] == "You said: And a second turn?"
    assert second["prompt"] > first["prompt"] + first["completion"]
    assert page.text("#session-totals").startswith("2 answers")
    assert page.text("#rate-info").startswith("Requests left this minute")
    page.screenshot("chat")
    # No back door: everything the page fetched is the public API, with the key any client sends.
    fetched = page.js("return performance.getEntriesByType('resource').map(e => e.name)")
    assert fetched and all(url.startswith(gateway.url + "/v1/") for url in fetched), fetched
    assert {url.split("/v1/")[1] for url in fetched} <= {"models", "key", "chat/completions", "stats"}
    if os.environ.get("UPDATE_DOCS_SCREENSHOT"):
        page.screenshot("docs", DOCS_SCREENSHOT)


def test_stop_ends_the_stream_and_keeps_the_partial_answer(page: Page, gateway: Gateway) -> None:
    page.use_key(gateway.keys["main"])
    page.pick_model("gateway-echo")
    words = " ".join(f"token{i}" for i in range(200))  # 400+ tokens: 20 s at TOKEN_DELAY
    page.send(words)
    page.wait(lambda: len(page.last_answer()["text"]) > 20, what="some text")
    started = time.monotonic()
    page.find("#stop").click()
    answer = page.wait_answer_done(timeout=5)
    assert time.monotonic() - started < 3
    assert answer["stopped"] and "Stopped after" in answer["meta"]
    assert f"You said: {words}".startswith(answer["text"]) and len(answer["text"]) < len(words) / 2
    time.sleep(4 * TOKEN_DELAY)
    assert page.last_answer()["text"] == answer["text"]  # nothing more arrives
    assert page.find("#send").is_enabled() and not page.visible("#stop")
    page.screenshot("stopped")
    page.send("after the stop")  # the conversation goes on
    assert page.wait_answer_done()["text"] == "You said: after the stop"


def test_an_invalid_key_is_explained(page: Page) -> None:
    page.use_key("sk-" + "x" * 40)
    page.wait(lambda: "Invalid API key" in page.banner(), what="the invalid-key banner")
    assert "revoked" in page.banner()
    assert "invalid_api_key" in page.text("#banner-detail") and "HTTP 401" in page.text("#banner-detail")
    page.find("#banner-close").click()
    page.send("hello")
    page.wait(lambda: "Invalid API key" in page.banner(), what="the invalid-key banner after sending")
    assert page.answers_count() == 0
    assert page.js("return document.getElementById('prompt').value") == "hello"  # ready to send again
    page.screenshot("invalid-key")


def test_no_credit_left_is_explained(page: Page, gateway: Gateway) -> None:
    page.use_key(gateway.keys["broke"])
    page.pick_model("paid-echo")
    page.send("hello")
    page.wait(lambda: "No credit left" in page.banner(), what="the no-credit banner")
    assert "insufficient_quota" in page.text("#banner-detail")
    page.screenshot("no-credit")


def test_a_rate_limit_says_how_long_to_wait(page: Page, gateway: Gateway) -> None:
    page.use_key(gateway.keys["limited"])
    page.pick_model("gateway-echo")
    page.send("one")
    page.wait_answer_done()
    for attempt in range(2):  # the second try is refused even if the first crossed into a new minute
        page.send(f"two, try {attempt}")
        page.wait(lambda: page.banner() or not page.last_answer()["streaming"], what="an answer or a refusal")
        if "Rate limit" in page.banner():
            break
    banner = page.wait(lambda: "Rate limit" in page.banner() and page.banner(), what="the rate-limit banner")
    assert "at most 1 request a minute" in banner
    wait = int(banner.split("Try again in ")[1].split(" s")[0])
    assert 1 <= wait <= 60
    page.wait(lambda: f"Try again in {wait - 1} s" in page.banner() or wait == 1, timeout=3, what="the countdown")
    page.screenshot("rate-limit")


def test_a_provider_outage_is_explained(page: Page, gateway: Gateway) -> None:
    page.use_key(gateway.keys["main"])
    assert "Unavailable right now" in page.js(
        "return [...document.querySelectorAll('#model-select optgroup')].map(g => g.label)"
    )
    page.pick_model("outage-model")
    assert page.text("#model-availability") == "unavailable"
    page.send("hello")
    banner = page.wait(lambda: "Provider outage" in page.banner() and page.banner(), what="the outage banner")
    assert "outage-model" in banner and "Try again in" in banner
    page.screenshot("outage")


def test_a_failure_mid_stream_keeps_the_partial_answer_and_says_why(page: Page, gateway: Gateway) -> None:
    page.use_key(gateway.keys["main"])
    page.pick_model("midstream-failure")
    page.send("hello")
    page.wait(lambda: "Provider outage" in page.banner(), what="the mid-stream failure banner")
    answer = page.wait_answer_done()
    assert answer["text"], "the part that arrived before the failure is kept"
    assert "Interrupted by an error" in answer["meta"]
    assert "upstream_error" in page.text("#banner-detail")
    page.screenshot("mid-stream-failure")


def test_a_gateway_without_stats_says_so(page: Page, gateway: Gateway) -> None:
    """Older gateways (or one whose StatsFunction is not deployed) answer GET /v1/stats with a 404."""
    page.use_key(gateway.keys["main"])
    page.js(
        """const real = window.fetch;
        window.fetch = (url, init) => String(url).endsWith('/v1/stats')
          ? Promise.resolve(new Response(JSON.stringify({error: {message: 'Invalid URL (GET /v1/stats).',
              type: 'invalid_request_error', param: null, code: 'not_found'}}),
              {status: 404, headers: {'content-type': 'application/json'}}))
          : real(url, init);"""
    )
    page.find("#tab-account").click()
    page.wait(lambda: "not available on this gateway yet" in page.text("#account-message"), what="the message")
    assert "works" in page.text("#account-message")  # GET /v1/key still answered
    assert not page.visible("#account-body")


def test_the_account_tab_shows_plan_credit_usage_and_chart(page: Page, gateway: Gateway) -> None:
    key = gateway.keys["main"]
    answer = httpx.post(
        gateway.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "paid-echo", "messages": [{"role": "user", "content": "usage for the chart"}]},
        timeout=10,
        trust_env=False,
    )
    assert answer.status_code == 200, answer.text
    page.use_key(key)
    page.find("#tab-account").click()
    page.wait(lambda: page.visible("#account-body") or page.text("#account-message") not in ("", "Loading…"))
    stats = gateway.get("/v1/stats", key)
    assert stats.status_code == 200, stats.text  # a gateway that lost GET /v1/stats fails here
    data = stats.json()
    page.wait(lambda: page.visible("#account-body"), what="the account")
    assert page.text("#plan-name") == (data["plan"].get("name") or data["plan"]["id"])
    assert page.text("#credit-balance").startswith("$")
    assert "requests" in page.text("#today-detail") and "tokens" in page.text("#month-detail")
    today = datetime.now(UTC).date()
    bars = page.js(
        "return [...document.querySelectorAll('#chart rect.bar:not(.errors)')]"
        ".map(b => [b.dataset.date, +b.dataset.value])"
    )
    assert len(bars) >= 28 and all(date.startswith(today.strftime("%Y-%m")) for date, _ in bars)
    used = [date for date, value in bars if value > 0]
    if data.get("month", {}).get("total_tokens"):
        assert used, "the month has usage but the chart shows none"
    page.find(".seg[data-metric='requests']").click()
    page.wait(lambda: "requests" in page.text("#chart-note"))
    page.screenshot("account")


if __name__ == "__main__":
    if sys.argv[1:2] != ["--serve"] or len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} --serve INFO.json")
    serve(sys.argv[2])
