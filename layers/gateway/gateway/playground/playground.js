"use strict";
// The gateway's playground: plain JavaScript, no build step, no third-party code. It calls only the
// public API (GET /v1/models, POST /v1/chat/completions, GET /v1/key, GET /v1/stats) with the key the
// person pastes, which it keeps in this tab's sessionStorage and sends nowhere but this gateway.
(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORAGE = "llm-gateway.playground.key";
  const MODEL_STORAGE = "llm-gateway.playground.model";
  // The page is BASE/playground, the API BASE/v1: BASE is "" locally and "/STAGE" behind API Gateway.
  const BASE = location.pathname.replace(/\/playground(\/(index\.html)?)?$/, "").replace(/\/+$/, "");
  const API = BASE + "/v1";

  const state = {
    models: [],
    byId: new Map(),
    messages: [], // the conversation sent with every request: [{role, content}]
    controller: null, // AbortController of the answer streaming now
    totals: { answers: 0, tokens: 0, cost: 0 },
    metric: "tokens",
    stats: null,
    countdown: null,
    memoryKey: "", // used only when sessionStorage is unavailable
  };

  // ---------- formatting ----------
  const num = (v) => {
    const n = typeof v === "string" ? Number(v.trim()) : v;
    return typeof n === "number" && Number.isFinite(n) ? n : null;
  };
  const int = (v) => {
    const n = num(v);
    return n === null ? "–" : Math.round(n).toLocaleString("en-US");
  };
  function usd(v) {
    const n = num(v);
    if (n === null) return "–";
    if (n === 0) return "$0.00";
    const sign = n < 0 ? "-" : "";
    const a = Math.abs(n);
    // Whole cents read best; an amount that cents would round (a balance after a few small answers) keeps its digits.
    if (a >= 0.01 && Math.abs(a * 100 - Math.round(a * 100)) < 1e-6)
      return sign + "$" + a.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    if (a >= 0.01) return sign + "$" + a.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 6 });
    if (a < 0.0000005) return sign + "<$0.000001";
    return sign + "$" + a.toFixed(6).replace(/0+$/, "");
  }
  function pricePerMillion(v) {
    const n = num(v);
    if (n === null) return "–";
    if (n === 0) return "free";
    let s = n.toFixed(6).replace(/0+$/, "");
    if ((s.split(".")[1] || "").length < 2) s = n.toFixed(2);
    return "$" + s;
  }
  function compactTokens(v) {
    const n = num(v);
    if (n === null || n <= 0) return "–";
    if (n >= 1048576 && n % 1048576 === 0) return n / 1048576 + "M";
    if (n >= 1000000) return +(n / 1000000).toFixed(1) + "M";
    if (n % 1024 === 0) return n / 1024 + "K";
    if (n >= 1000) return +(n / 1000).toFixed(1) + "K";
    return String(n);
  }
  const compact = (n) =>
    n >= 1e6 ? +(n / 1e6).toFixed(1) + "M" : n >= 1e3 ? +(n / 1e3).toFixed(1) + "K" : String(+n.toFixed(2));
  const masked = (key) => (key.length > 12 ? key.slice(0, 7) + "…" + key.slice(-4) : "sk-…");
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };

  // ---------- the key: sessionStorage only ----------
  function getKey() {
    try {
      return sessionStorage.getItem(KEY_STORAGE) || "";
    } catch {
      return state.memoryKey;
    }
  }
  function storeKey(key) {
    try {
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch {
      state.memoryKey = key;
    }
  }
  const authHeaders = () => ({ authorization: "Bearer " + getKey() });

  function showKey(label, ok) {
    const key = getKey();
    $("key-input").value = "";
    $("key-input").placeholder = key ? "Paste another key to switch" : "Paste your API key (sk-…)";
    $("key-status").hidden = !key;
    $("key-forget").hidden = !key;
    $("key-label").textContent = key ? label || masked(key) : "";
    $("key-status").querySelector(".dot").className = "dot " + (ok === false ? "bad" : "ok");
  }

  async function useKey(raw) {
    const key = raw.trim().replace(/^Bearer\s+/i, "");
    if (!key) return;
    storeKey(key);
    hideBanner();
    showKey(masked(key), true);
    await checkKey();
    if (!$("panel-account").hidden) loadAccount();
  }

  async function checkKey() {
    const key = getKey();
    if (!key) return;
    try {
      const r = await fetch(API + "/key", { headers: authHeaders() });
      if (r.ok) {
        const body = await r.json().catch(() => ({}));
        const data = body.data || {};
        showKey(masked(key) + (data.name ? " · " + data.name : ""), true);
      } else if (r.status === 401 || r.status === 403) {
        showKey(masked(key), false);
        showError(await readError(r));
      }
    } catch {
      // the chat request will say what is wrong
    }
  }

  // ---------- errors a person can act on ----------
  function retryAfter(response, error) {
    const header = response && response.headers.get("retry-after");
    if (header) {
      const n = Number(header);
      if (Number.isFinite(n)) return Math.max(1, Math.ceil(n));
      const at = Date.parse(header);
      if (!Number.isNaN(at)) return Math.max(1, Math.ceil((at - Date.now()) / 1000));
    }
    const ms = num(response && response.headers.get("retry-after-ms"));
    if (ms !== null) return Math.max(1, Math.ceil(ms / 1000));
    const field = num(error && error.retry_after);
    return field !== null ? Math.max(1, Math.ceil(field)) : null;
  }

  async function readError(response) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    const error = (body && typeof body.error === "object" && body.error) || {};
    return {
      status: response.status,
      message: typeof error.message === "string" ? error.message : response.statusText || "",
      type: error.type || null,
      code: error.code || null,
      param: error.param || null,
      retryAfter: retryAfter(response, error),
      requestId: response.headers.get("x-request-id"),
      limits: {
        requests: num(response.headers.get("x-ratelimit-limit-requests")),
        tokens: num(response.headers.get("x-ratelimit-limit-tokens")),
      },
    };
  }

  const CODE_STATUS = {
    invalid_api_key: 401,
    insufficient_quota: 402,
    rate_limit_exceeded: 429,
    no_provider_available: 503,
    upstream_error: 502,
    upstream_timeout: 504,
    model_not_found: 404,
  };

  function explain(err, model) {
    const status = CODE_STATUS[err.code] || err.status || 0;
    const name = model ? "“" + model + "”" : "this model";
    switch (status) {
      case 401:
        return {
          title: "Invalid API key.",
          text: "The gateway did not accept this key. Check that you pasted all of it (it starts with sk-) and that it has not been revoked or expired.",
        };
      case 402:
        return {
          title: "No credit left.",
          text: "This key has used its free requests and has no credit left for this request. Top up the key's credit, pick a cheaper model, or lower Max tokens.",
        };
      case 429: {
        const limits = err.limits || {};
        let text = "This key has sent too many requests in the last minute.";
        if (err.type === "tokens")
          text = limits.tokens
            ? `This key may use at most ${int(limits.tokens)} tokens a minute.`
            : "This key has used too many tokens in the last minute.";
        else if (limits.requests) text = `This key may send at most ${int(limits.requests)} request${limits.requests === 1 ? "" : "s"} a minute.`;
        return { title: "Rate limit reached.", text, wait: err.retryAfter || 60 };
      }
      case 403:
        return { title: "Model not allowed.", text: `Your plan does not include ${name}. Pick another model.` };
      case 404:
        return { title: "Unknown model.", text: `The gateway has no model ${name}. Pick one from the list.` };
      case 400:
      case 413:
      case 422:
        return { title: "Request rejected.", text: (err.message || "The gateway could not use this request.") + (err.param ? ` (${err.param})` : "") };
      case 502:
        return {
          title: "Provider outage.",
          text: `The provider serving ${name} failed. Try again, or pick another model.`,
          wait: err.retryAfter,
        };
      case 503:
        if (err.code === "no_provider_available" || err.type === "service_unavailable")
          return {
            title: "Provider outage.",
            text: `No provider can serve ${name} right now: its providers are down or cooling down. You can pick another model.`,
            wait: err.retryAfter || 30,
          };
        return { title: "The gateway is busy.", text: "It could not take this request right now.", wait: err.retryAfter || 5 };
      case 504:
        return { title: "Provider timeout.", text: `The provider serving ${name} took too long to answer. Try again, or pick another model.` };
      case 0:
        return { title: "Gateway unreachable.", text: "The page could not reach the gateway. Check your connection and try again." };
      default:
        if (status >= 500) return { title: "Gateway error.", text: "Something went wrong inside the gateway. Try again in a moment." };
        return { title: `Error ${status}.`, text: err.message || "The request failed." };
    }
  }

  function showError(err, model, partial) {
    const info = explain(err, model);
    if (partial) info.text = "The answer broke off part-way; what arrived is kept below. " + info.text;
    const detail = [err.status ? "HTTP " + err.status : null, err.code, err.message, err.requestId ? "request " + err.requestId : null]
      .filter(Boolean)
      .join(" · ");
    showBanner(info.title, info.text, detail, "error", info.wait);
    return info;
  }

  function showBanner(title, text, detail, level, wait) {
    stopCountdown();
    const banner = $("banner");
    banner.className = "banner" + (level === "warn" ? " warn" : "");
    banner.dataset.kind = title;
    $("banner-title").textContent = title;
    $("banner-detail").textContent = detail || "";
    $("banner-detail").hidden = !detail;
    banner.hidden = false;
    if (!wait) {
      $("banner-text").textContent = text;
      return;
    }
    let left = wait;
    const tick = () => {
      $("banner-text").textContent =
        left > 0 ? `${text} Try again in ${left} s.` : `${text} You can try again now.`;
      if (left-- <= 0) stopCountdown();
    };
    tick();
    state.countdown = setInterval(tick, 1000);
  }
  function stopCountdown() {
    if (state.countdown) clearInterval(state.countdown);
    state.countdown = null;
  }
  function hideBanner() {
    stopCountdown();
    $("banner").hidden = true;
  }

  // ---------- models ----------
  async function loadModels() {
    const select = $("model-select");
    let data = [];
    try {
      const r = await fetch(API + "/models", { headers: { accept: "application/json" } });
      if (!r.ok) throw await readError(r);
      const body = await r.json();
      data = Array.isArray(body.data) ? body.data.filter((m) => m && typeof m.id === "string") : [];
    } catch (e) {
      select.replaceChildren(new Option("Models unavailable", ""));
      const err = e && e.status !== undefined ? e : { status: 0, message: String((e && e.message) || e) };
      const info = explain(err);
      showBanner("Could not load the model list.", info.text, err.message, "error");
      return;
    }
    const label = (m) => m.name || m.id;
    data.sort((a, b) => (b.available !== false) - (a.available !== false) || label(a).localeCompare(label(b)));
    state.models = data;
    state.byId = new Map(data.map((m) => [m.id, m]));
    const groups = [
      ["Available", data.filter((m) => m.available !== false)],
      ["Unavailable right now", data.filter((m) => m.available === false)],
    ];
    select.replaceChildren();
    for (const [title, models] of groups) {
      if (!models.length) continue;
      const group = document.createElement("optgroup");
      group.label = title;
      for (const m of models) {
        const p = m.pricing || {};
        const text = `${label(m)} — ${pricePerMillion(p.input)} in / ${pricePerMillion(p.output)} out · ${compactTokens(m.context_length)} ctx`;
        group.append(new Option(text, m.id));
      }
      select.append(group);
    }
    if (!data.length) select.append(new Option("No models configured", ""));
    select.disabled = !data.length;
    let wanted = null;
    try {
      wanted = sessionStorage.getItem(MODEL_STORAGE);
    } catch {
      wanted = null;
    }
    const first = data.find((m) => m.available !== false) || data[0];
    if (wanted && state.byId.has(wanted)) select.value = wanted;
    else if (first) select.value = first.id;
    showModel();
  }

  function showModel() {
    const m = state.byId.get($("model-select").value);
    $("model-card").hidden = !m;
    if (!m) return;
    try {
      sessionStorage.setItem(MODEL_STORAGE, m.id);
    } catch {
      // not remembered across reloads, which is fine
    }
    const p = m.pricing || {};
    $("model-name").textContent = m.name || m.id;
    $("model-id").textContent = m.id + (Array.isArray(m.aliases) && m.aliases.length ? "  (alias " + m.aliases.join(", ") + ")" : "");
    const badge = $("model-availability");
    badge.textContent = m.available === false ? "unavailable" : "available";
    badge.className = "pill " + (m.available === false ? "bad" : "ok");
    $("model-price-in").textContent = pricePerMillion(p.input) + (num(p.input) ? " / 1M tokens" : "");
    $("model-price-out").textContent = pricePerMillion(p.output) + (num(p.output) ? " / 1M tokens" : "");
    $("model-context").textContent = num(m.context_length) ? int(m.context_length) + " tokens" : "–";
    $("model-max-output").textContent = num(m.max_output_tokens) ? int(m.max_output_tokens) + " tokens" : "–";
    const providers = Array.isArray(m.providers) ? m.providers : [];
    $("model-providers").textContent = providers.length
      ? providers.map((o) => (o.provider || "?") + (o.available === false ? " (down)" : "")).join(", ")
      : "–";
  }

  // ---------- chat ----------
  function renderText(node, text) {
    // Plain text, with ``` fences as code blocks; never HTML from the model.
    node.replaceChildren();
    text.split("```").forEach((part, i) => {
      if (i % 2 === 0) {
        if (part) node.append(document.createTextNode(part));
      } else {
        const nl = part.indexOf("\n");
        node.append(el("pre", "", nl >= 0 && /^[\w+#.-]*$/.test(part.slice(0, nl)) ? part.slice(nl + 1) : part));
      }
    });
  }

  function addMessage(role, text) {
    $("empty-chat").hidden = true;
    const box = el("div", "msg " + role);
    const bubble = el("div", "bubble");
    renderText(bubble, text);
    const meta = el("div", "meta");
    box.append(bubble, meta);
    $("transcript").append(box);
    scrollDown(true);
    return { box, bubble, meta };
  }

  function scrollDown(force) {
    const t = $("transcript");
    if (force || t.scrollHeight - t.scrollTop - t.clientHeight < 80) t.scrollTop = t.scrollHeight;
  }

  function setBusy(busy) {
    $("send").disabled = busy;
    $("stop").hidden = !busy;
    $("model-select").disabled = busy || !state.models.length;
  }

  async function* sseEvents(body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer = (buffer + decoder.decode(value, { stream: true })).replace(/\r\n|\r(?!$)/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const raw = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = raw
            .split("\n")
            .filter((line) => line.startsWith("data:"))
            .map((line) => line.slice(5).replace(/^ /, ""))
            .join("\n");
          if (data) yield data;
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  function requestBody(model, history) {
    const body = { model, messages: history.slice(), stream: true, stream_options: { include_usage: true } };
    const system = $("system-prompt").value.trim();
    if (system) body.messages.unshift({ role: "system", content: system });
    const temperature = num($("temperature").value);
    if ($("temperature").value !== "" && temperature !== null) body.temperature = temperature;
    const maxTokens = num($("max-tokens").value);
    if ($("max-tokens").value !== "" && maxTokens !== null) body.max_tokens = Math.round(maxTokens);
    return body;
  }

  function estimateCost(model, usage) {
    const p = (state.byId.get(model) || {}).pricing || {};
    const i = num(p.input);
    const o = num(p.output);
    if (i === null || o === null) return null;
    return (i * (usage.prompt_tokens || 0) + o * (usage.completion_tokens || 0)) / 1e6;
  }

  function showRateInfo(headers) {
    const left = headers.get("x-ratelimit-remaining-requests");
    const limit = headers.get("x-ratelimit-limit-requests");
    const tokLeft = headers.get("x-ratelimit-remaining-tokens");
    const tokLimit = headers.get("x-ratelimit-limit-tokens");
    if (left === null || limit === null) return;
    let text = `Requests left this minute: ${int(left)} of ${int(limit)}`;
    if (tokLeft !== null && tokLimit !== null) text += ` · tokens: ${compact(num(tokLeft) || 0)} of ${compact(num(tokLimit) || 0)}`;
    $("rate-info").textContent = text;
  }

  function showTotals() {
    const t = state.totals;
    $("session-totals").textContent = t.answers
      ? `${t.answers} answer${t.answers === 1 ? "" : "s"} · ${int(t.tokens)} tokens · ${usd(t.cost)}`
      : "No answers yet.";
  }

  async function send(text) {
    if (state.controller) return;
    const key = getKey();
    if (!key) {
      showBanner("API key needed.", "Paste your API key at the top of the page, then send your message again.", "", "warn");
      $("key-input").focus();
      return;
    }
    const model = $("model-select").value;
    if (!model) {
      showBanner("No model.", "The model list is empty or could not be loaded.", "", "warn");
      return;
    }
    hideBanner();
    const user = { role: "user", content: text };
    const history = [...state.messages, user];
    const asked = addMessage("user", text);
    const answer = addMessage("assistant", "");
    answer.box.classList.add("streaming");
    answer.meta.textContent = "Waiting for the first token…";
    const controller = new AbortController();
    state.controller = controller;
    setBusy(true);

    const started = performance.now();
    let firstToken = null;
    let content = "";
    let usage = null;
    let finish = null;
    let servedBy = null;
    let failure = null;
    let stopped = false;
    let chunks = 0;
    try {
      const response = await fetch(API + "/chat/completions", {
        method: "POST",
        headers: { ...authHeaders(), "content-type": "application/json", accept: "text/event-stream" },
        body: JSON.stringify(requestBody(model, history)),
        signal: controller.signal,
      });
      showRateInfo(response.headers);
      if (!response.ok) {
        failure = await readError(response);
      } else if (!(response.headers.get("content-type") || "").includes("text/event-stream")) {
        const whole = await response.json();
        const choice = (whole.choices || [])[0] || {};
        content = (choice.message && choice.message.content) || "";
        finish = choice.finish_reason || null;
        usage = whole.usage || null;
        servedBy = whole.model || null;
        renderText(answer.bubble, content);
      } else {
        answer.meta.textContent = "Streaming…";
        for await (const data of sseEvents(response.body)) {
          if (data === "[DONE]") break;
          let chunk;
          try {
            chunk = JSON.parse(data);
          } catch {
            continue;
          }
          if (chunk && chunk.error) {
            const e = chunk.error;
            failure = {
              status: num(e.status) || 0,
              message: e.message || "",
              type: e.type || null,
              code: e.code || null,
              retryAfter: num(e.retry_after),
              requestId: response.headers.get("x-request-id"),
            };
            break;
          }
          servedBy = chunk.model || servedBy;
          if (chunk.usage) usage = chunk.usage;
          for (const choice of chunk.choices || []) {
            if ((choice.index || 0) !== 0) continue;
            const piece = choice.delta && typeof choice.delta.content === "string" ? choice.delta.content : "";
            if (piece) {
              if (firstToken === null) firstToken = performance.now();
              content += piece;
              chunks += 1;
              renderText(answer.bubble, content);
              scrollDown(false);
            }
            if (choice.finish_reason) finish = choice.finish_reason;
          }
        }
      }
    } catch (e) {
      if (e && e.name === "AbortError") stopped = true;
      else failure = { status: 0, message: String((e && e.message) || e) };
    }
    state.controller = null;
    setBusy(false);
    answer.box.classList.remove("streaming");
    const seconds = ((performance.now() - started) / 1000).toFixed(1);

    if (failure && !content) {
      answer.box.remove();
      asked.box.classList.add("failed");
      asked.meta.textContent = "Not answered — see the message above.";
      showError(failure, model);
      if (!$("prompt").value) $("prompt").value = text; // ready to send again
      return;
    }
    state.messages = [...history, { role: "assistant", content }];
    answer.meta.replaceChildren();
    const parts = [];
    if (usage) {
      let cost = num(usage.cost);
      const estimated = cost === null;
      if (estimated) cost = estimateCost(model, usage);
      parts.push(
        `${int(usage.prompt_tokens)} in · ${int(usage.completion_tokens)} out · ${int(usage.total_tokens)} tokens`,
      );
      const costNode = el("span", "cost", (estimated ? "≈ " : "") + usd(cost));
      costNode.dataset.cost = cost === null ? "" : String(cost);
      answer.meta.dataset.promptTokens = String(usage.prompt_tokens || 0);
      answer.meta.dataset.completionTokens = String(usage.completion_tokens || 0);
      answer.meta.append(document.createTextNode(parts.join(" · ") + " · "), costNode);
      state.totals.answers += 1;
      state.totals.tokens += num(usage.total_tokens) || 0;
      state.totals.cost += cost || 0;
      showTotals();
    }
    const tail = [];
    if (firstToken !== null) tail.push(`first token ${((firstToken - started) / 1000).toFixed(2)} s`);
    tail.push(`${seconds} s`);
    if (servedBy) tail.push(servedBy);
    if (finish === "length") tail.push("cut at max tokens");
    answer.meta.append(document.createTextNode((usage ? " · " : "") + tail.join(" · ")));
    if (stopped) {
      answer.box.classList.add("stopped");
      answer.meta.append(
        document.createTextNode(" · "),
        el("span", "flag", `Stopped after ${chunks} token${chunks === 1 ? "" : "s"}; the gateway bills only what was generated.`),
      );
    } else if (failure) {
      answer.box.classList.add("failed");
      answer.meta.append(document.createTextNode(" · "), el("span", "flag bad", "Interrupted by an error."));
      showError(failure, model, true);
    }
    scrollDown(false);
  }

  function newChat() {
    if (state.controller) state.controller.abort();
    state.messages = [];
    state.totals = { answers: 0, tokens: 0, cost: 0 };
    showTotals();
    for (const node of [...$("transcript").querySelectorAll(".msg")]) node.remove();
    $("empty-chat").hidden = false;
    hideBanner();
  }

  // ---------- account ----------
  async function loadAccount() {
    const message = $("account-message");
    const body = $("account-body");
    if (!getKey()) {
      body.hidden = true;
      message.hidden = false;
      message.textContent = "Paste your API key at the top of the page to see your plan, credit and usage.";
      return;
    }
    message.hidden = false;
    message.textContent = "Loading…";
    let keyInfo = {};
    let response;
    try {
      const [statsResponse, keyResponse] = await Promise.all([
        fetch(API + "/stats", { headers: authHeaders() }),
        fetch(API + "/key", { headers: authHeaders() }).catch(() => null),
      ]);
      response = statsResponse;
      if (keyResponse && keyResponse.ok) keyInfo = ((await keyResponse.json().catch(() => ({}))) || {}).data || {};
    } catch (e) {
      body.hidden = true;
      message.textContent = "Could not reach the gateway to read your usage.";
      showError({ status: 0, message: String((e && e.message) || e) });
      return;
    }
    if (response.status === 404) {
      state.stats = null;
      body.hidden = true;
      message.dataset.reason = "stats-missing";
      message.textContent =
        "Usage statistics are not available on this gateway yet: GET /v1/stats answered 404." +
        (keyInfo.key_id ? ` Your key ${keyInfo.label || ""} (${keyInfo.name || keyInfo.key_id}) works.` : "");
      return;
    }
    if (!response.ok) {
      const err = await readError(response);
      body.hidden = true;
      message.textContent = explain(err).title + " Your usage could not be loaded.";
      showError(err);
      return;
    }
    const stats = await response.json().catch(() => null);
    if (!stats || typeof stats !== "object") {
      body.hidden = true;
      message.textContent = "The gateway's usage answer could not be read.";
      return;
    }
    delete message.dataset.reason;
    message.hidden = true;
    body.hidden = false;
    state.stats = stats;
    renderAccount(stats, keyInfo);
  }

  function renderAccount(stats, keyInfo) {
    const plan = stats.plan || {};
    const credit = stats.credit || {};
    const today = stats.today || {};
    const month = stats.month || {};

    $("plan-name").textContent = plan.name || plan.id || "–";
    const free = num(plan.free_requests);
    const planBits = [];
    if (num(plan.monthly_credit) !== null) planBits.push(`${usd(plan.monthly_credit)} credit a month`);
    if (free) planBits.push(`${int(plan.free_requests_used || 0)} of ${int(free)} free requests used`);
    $("plan-detail").textContent = planBits.join(" · ");

    $("credit-balance").textContent = usd(credit.balance);
    const creditBits = [];
    const monthly = credit.monthly_remaining ?? credit.monthly;
    const bought = credit.purchased_remaining ?? credit.purchased;
    if (num(bought)) creditBits.push(`${usd(monthly ?? 0)} monthly + ${usd(bought)} bought`);
    else if (num(monthly) !== null) creditBits.push("left from this month's credit");
    if (num(credit.reserved)) creditBits.push(`${usd(credit.reserved)} held for requests in progress`);
    if (num(credit.debt)) creditBits.push(`${usd(credit.debt)} owed: top up to continue`);
    $("credit-detail").textContent = creditBits.join(" · ");

    const todayRequests = today.requests ?? stats.requests_today;
    const todayTokens = today.total_tokens ?? today.tokens ?? stats.tokens_used;
    $("today-cost").textContent = usd(today.cost ?? 0);
    const errors = (n) => (num(n) ? ` · ${int(n)} failed` : "");
    $("today-detail").textContent = `${int(todayRequests ?? 0)} requests · ${int(todayTokens ?? 0)} tokens${errors(today.errors)}`;
    $("month-cost").textContent = usd(month.cost ?? 0);
    $("month-detail").textContent =
      `${int(month.requests ?? 0)} requests · ${int(month.total_tokens ?? month.tokens ?? 0)} tokens${errors(month.errors)}`;

    const facts = [];
    if (keyInfo.label) facts.push(["Key", keyInfo.label + (keyInfo.name ? " · " + keyInfo.name : "")]);
    if (keyInfo.owner) facts.push(["Owner", keyInfo.owner]);
    if (num(plan.rpm) !== null) facts.push(["Requests per minute", int(plan.rpm)]);
    if (num(plan.tpm) !== null) facts.push(["Tokens per minute", int(plan.tpm)]);
    if (free !== null) facts.push(["Free requests a month", int(free)]);
    facts.push([
      "Models",
      Array.isArray(plan.allowed_models) && plan.allowed_models.length ? plan.allowed_models.join(", ") : "all models",
    ]);
    if (num(stats.success_rate) !== null) {
      const rate = num(stats.success_rate);
      facts.push(["Success rate today", (rate <= 1 ? rate * 100 : rate).toFixed(1) + " %"]);
    }
    const latency = stats.avg_latency ?? today.avg_latency_ms;
    if (num(latency) !== null) facts.push(["Average latency today", int(latency) + " ms"]);
    if (num(today.avg_ttft_ms) !== null) facts.push(["Average time to first token today", int(today.avg_ttft_ms) + " ms"]);
    const list = $("limits");
    list.replaceChildren();
    for (const [name, value] of facts) list.append(el("dt", "", name), el("dd", "", value));
    renderChart();
  }

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceTop(v, ticks, whole) {
    // The axis top: `ticks` equal steps of 1, 2, 2.5 or 5 times a power of ten (whole steps for counts).
    if (v <= 0) return whole ? ticks : 1;
    const raw = v / ticks;
    const p = 10 ** Math.floor(Math.log10(raw));
    for (const m of [1, 2, 2.5, 5, 10]) {
      const step = m * p;
      if (step >= raw && (!whole || Number.isInteger(step))) return step * ticks;
    }
    return 10 * p * ticks;
  }

  function renderChart() {
    const stats = state.stats;
    const box = $("chart");
    box.replaceChildren();
    if (!stats) return;
    const daily = (Array.isArray(stats.daily) ? stats.daily : []).filter((d) => d && typeof d.date === "string");
    const isDay = (d) => typeof d === "string" && /^\d{4}-\d{2}-\d{2}/.test(d);
    const serverDay = [stats.date, stats.today && stats.today.date].find(isDay); // the gateway's "today" (UTC)
    const todayIso = serverDay ? serverDay.slice(0, 10) : new Date().toISOString().slice(0, 10);
    const monthIso = todayIso.slice(0, 7);
    const [year, monthNo] = monthIso.split("-").map(Number);
    const days = new Date(Date.UTC(year, monthNo, 0)).getUTCDate();
    const byDate = new Map(daily.map((d) => [d.date.slice(0, 10), d]));
    const metric = state.metric;
    const value = (d) => {
      if (!d) return 0;
      if (metric === "cost") return num(d.cost) || 0;
      if (metric === "requests") return num(d.requests) || 0;
      return num(d.tokens ?? d.total_tokens) || 0;
    };
    const rows = [];
    for (let day = 1; day <= days; day++) {
      const date = `${monthIso}-${String(day).padStart(2, "0")}`;
      const d = byDate.get(date);
      rows.push({ day, date, d, v: value(d), errors: metric === "requests" && d ? num(d.errors) || 0 : 0 });
    }
    const W = 920;
    const H = 260;
    const L = 58;
    const R = 10;
    const T = 12;
    const B = 28;
    const plotW = W - L - R;
    const plotH = H - T - B;
    const top = niceTop(Math.max(...rows.map((r) => r.v)), 4, metric !== "cost");
    const fmt = (v) => (metric === "cost" ? (top < 0.1 ? "$" + +v.toPrecision(2) : usd(v)) : compact(v));
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "chart-title" });
    for (let i = 0; i <= 4; i++) {
      const y = T + plotH - (plotH * i) / 4;
      chart.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y, y2: y }));
      chart.append(svg("text", { x: L - 8, y: y + 4, "text-anchor": "end" }, fmt((top * i) / 4)));
    }
    const slot = plotW / days;
    const barW = Math.max(2, slot * 0.68);
    const monthName = new Date(Date.UTC(year, monthNo - 1, 1)).toLocaleString("en-US", { month: "short", timeZone: "UTC" });
    for (const r of rows) {
      const x = L + slot * (r.day - 1) + (slot - barW) / 2;
      const h = top ? (plotH * r.v) / top : 0;
      const isToday = r.date === todayIso;
      const bar = svg("rect", {
        class: "bar" + (isToday ? " today" : ""),
        x: x.toFixed(1),
        y: (T + plotH - h).toFixed(1),
        width: barW.toFixed(1),
        height: Math.max(h, 0).toFixed(1),
        rx: 2,
        "data-date": r.date,
        "data-value": r.v,
      });
      const d = r.d || {};
      bar.append(
        svg(
          "title",
          {},
          `${monthName} ${r.day}: ${int(d.tokens ?? d.total_tokens ?? 0)} tokens · ${int(d.requests || 0)} requests · ${usd(d.cost || 0)}` +
            (num(d.errors) ? ` · ${int(d.errors)} errors` : ""),
        ),
      );
      chart.append(bar);
      if (r.errors && top) {
        const eh = (plotH * Math.min(r.errors, r.v)) / top;
        chart.append(svg("rect", { class: "bar errors", x: x.toFixed(1), y: (T + plotH - eh).toFixed(1), width: barW.toFixed(1), height: eh.toFixed(1), rx: 2 }));
      }
      if (slot >= 22 || r.day === 1 || r.day % 5 === 0 || isToday)
        chart.append(svg("text", { x: (x + barW / 2).toFixed(1), y: H - 10, "text-anchor": "middle" }, String(r.day)));
    }
    if (!rows.some((r) => r.v > 0))
      chart.append(svg("text", { class: "empty-note", x: L + plotW / 2, y: T + plotH / 2, "text-anchor": "middle" }, "No usage yet this month."));
    box.append(chart);
    const label = { tokens: "tokens", cost: "cost in USD", requests: "requests (errors in red)" }[metric];
    $("chart-title").textContent = `Daily usage in ${monthName} ${year}`;
    $("chart-note").textContent = `Each bar is one day (UTC) of ${label}; today is highlighted. Hover a bar for its numbers.`;
  }

  // ---------- tabs and wiring ----------
  function showTab(name) {
    const account = name === "account";
    $("tab-chat").setAttribute("aria-selected", String(!account));
    $("tab-account").setAttribute("aria-selected", String(account));
    $("panel-chat").hidden = account;
    $("panel-account").hidden = !account;
    const hash = account ? "#account" : "";
    if (location.hash !== hash) history.replaceState(null, "", location.pathname + location.search + hash);
    if (account) loadAccount();
    else $("prompt").focus();
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    useKey($("key-input").value);
  });
  $("key-forget").addEventListener("click", () => {
    storeKey("");
    showKey();
    if (!$("panel-account").hidden) loadAccount();
  });
  $("banner-close").addEventListener("click", hideBanner);
  $("tab-chat").addEventListener("click", () => showTab("chat"));
  $("tab-account").addEventListener("click", () => showTab("account"));
  $("account-refresh").addEventListener("click", loadAccount);
  $("model-select").addEventListener("change", showModel);
  $("new-chat").addEventListener("click", newChat);
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("prompt").value.trim();
    if (!text || state.controller) return;
    $("prompt").value = "";
    send(text);
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  for (const button of document.querySelectorAll(".seg")) {
    button.addEventListener("click", () => {
      state.metric = button.dataset.metric;
      for (const b of document.querySelectorAll(".seg")) b.setAttribute("aria-checked", String(b === button));
      renderChart();
    });
  }

  $("base-url").textContent = location.origin + API;
  showKey();
  showTotals();
  loadModels();
  if (getKey()) checkKey();
  showTab(location.hash === "#account" ? "account" : "chat");
})();
