// The Corral dashboard: plain JavaScript, no framework, no build step, nothing from elsewhere.
//
// Views (by the URL's hash, so a reload keeps the place): #/runs, #/runs/<id>, #/approvals,
// #/glance. The API token lives in sessionStorage (this tab only) and is sent as
// "Authorization: Bearer" on every fetch; it is never put in a URL. Live updates read
// server-sent events with fetch() and a stream reader, because EventSource cannot send a
// header. Every text that comes from a run (tasks, arguments, results) is set as text,
// never as markup, and the page's Content-Security-Policy forbids inline script and style.
"use strict";

(() => {
  const TOKEN_KEY = "corral.token";
  const SVG = "http://www.w3.org/2000/svg";
  const RESULT_CHARS = 1500;
  const MAX_DECIDED = 20;

  const state = {
    token: null,
    me: null,
    view: null,
    feed: null,
    decided: [],
    lastHash: "#/runs",
  };

  // -- DOM --------------------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    return fill(el, attrs, children);
  }

  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG, tag);
    return fill(el, attrs, children);
  }

  function fill(el, attrs, children) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "on") {
        for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
      } else if (key === "text") {
        el.textContent = value;
      } else if (key === "class" && el instanceof HTMLElement) {
        el.className = value;
      } else {
        el.setAttribute(key, value === true ? "" : String(value));
      }
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function replace(el, ...children) {
    el.replaceChildren();
    return append(el, children);
  }

  let uid = 0;
  function newId(prefix) {
    uid += 1;
    return `${prefix}-${uid}`;
  }

  function announce(message) {
    const region = document.getElementById("announce");
    region.textContent = "";
    window.setTimeout(() => { region.textContent = message; }, 50);
  }

  function banner(message) {
    const el = document.getElementById("banner");
    el.textContent = message || "";
    el.hidden = !message;
  }

  // -- formatting -------------------------------------------------------------------------

  const integer = new Intl.NumberFormat("en-US");

  function fmtInt(n) {
    return integer.format(Number(n) || 0);
  }

  function fmtCost(usd) {
    const value = Number(usd) || 0;
    return "$" + (value >= 1 ? value.toFixed(2) : value.toFixed(4));
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function fmtDuration(seconds) {
    const s = Math.max(Number(seconds) || 0, 0);
    if (s < 1) return `${Math.round(s * 1000)} ms`;
    if (s < 60) return `${s.toFixed(1)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  }

  function spent(status, seconds) {
    if (status === "waiting") return `paused after ${fmtDuration(seconds)}`;
    if (status === "running") return `${fmtDuration(seconds)} so far`;
    return fmtDuration(seconds);
  }

  function fmtPercent(ratio) {
    return ratio === null || ratio === undefined ? "–" : `${(ratio * 100).toFixed(1)} %`;
  }

  function json(value, indent) {
    try {
      return JSON.stringify(value, null, indent === undefined ? 2 : indent);
    } catch (_error) {
      return String(value);
    }
  }

  function compact(value) {
    const line = json(value, 0);
    return line.length <= 100 ? line : json(value);
  }

  function cut(text, limit) {
    const flat = String(text ?? "").replace(/\s+/g, " ").trim();
    return flat.length <= limit ? flat : flat.slice(0, limit - 1) + "…";
  }

  function badge(kind, value) {
    return h("span", { class: `badge ${kind}-${String(value).replace(/[^a-z_]/g, "")}`, text: value });
  }

  // -- the session ------------------------------------------------------------------------

  function can(role) {
    const roles = state.me ? state.me.roles : [];
    return roles.includes("admin") || roles.includes(role) ||
      (role === "read" && roles.length > 0);
  }

  function logout(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    state.me = null;
    stopFeed();
    if (state.view && state.view.destroy) state.view.destroy();
    state.view = null;
    document.getElementById("nav").hidden = true;
    document.getElementById("who").hidden = true;
    banner("");
    renderLogin(message);
  }

  // -- the API ----------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, problem, retryAfter) {
      const detail = problem && problem.detail ? problem.detail : `HTTP ${status}`;
      super(detail);
      this.status = status;
      this.problem = problem || {};
      this.retryAfter = retryAfter;
    }
  }

  function headers(extra) {
    return { Authorization: `Bearer ${state.token}`, ...extra };
  }

  async function api(path, options) {
    const opts = options || {};
    const extra = { Accept: "application/json", ...(opts.headers || {}) };
    if (opts.body !== undefined) extra["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method: opts.method || "GET",
      headers: headers(extra),
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: opts.signal,
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
    if (!response.ok) {
      let problem = null;
      try {
        problem = await response.json();
      } catch (_error) {
        problem = null;
      }
      const error = new ApiError(response.status, problem, response.headers.get("Retry-After"));
      if (response.status === 401 && !opts.login) logout("The server refused the token (401): log in again.");
      throw error;
    }
    return response.json();
  }

  function problemText(error) {
    if (!(error instanceof ApiError)) return String(error && error.message ? error.message : error);
    const parts = [error.message];
    if (error.status === 429 && error.retryAfter) parts.push(`(try again in ${error.retryAfter} s)`);
    return parts.join(" ");
  }

  // Server-sent events over fetch: the token goes in a header, never in the URL.
  async function readEvents(path, { signal, lastEventId, onEvent }) {
    const extra = { Accept: "text/event-stream" };
    if (lastEventId) extra["Last-Event-ID"] = String(lastEventId);
    const response = await fetch(path, {
      headers: headers(extra),
      signal,
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
    if (!response.ok) {
      let problem = null;
      try { problem = await response.json(); } catch (_error) { problem = null; }
      throw new ApiError(response.status, problem, response.headers.get("Retry-After"));
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let tail = "";
      if (buffer.endsWith("\r")) { // a CRLF split across chunks: wait for its LF
        tail = "\r";
        buffer = buffer.slice(0, -1);
      }
      buffer = buffer.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const message = { id: null, event: "message", data: [] };
        for (const line of block.split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const name = colon < 0 ? line : line.slice(0, colon);
          let text = colon < 0 ? "" : line.slice(colon + 1);
          if (text.startsWith(" ")) text = text.slice(1);
          if (name === "data") message.data.push(text);
          else if (name === "event") message.event = text;
          else if (name === "id") message.id = text;
        }
        if (message.data.length) {
          let data = null;
          try { data = JSON.parse(message.data.join("\n")); } catch (_error) { data = null; }
          onEvent({ id: message.id, event: message.event, data });
        }
      }
      buffer += tail;
    }
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const timer = window.setTimeout(resolve, ms);
      if (signal) signal.addEventListener("abort", () => { window.clearTimeout(timer); resolve(); });
    });
  }

  // The feed: one notice per run event, for every view (and the approvals count).
  function startFeed() {
    stopFeed();
    const controller = new AbortController();
    state.feed = controller;
    (async () => {
      let backoff = 1000;
      while (!controller.signal.aborted) {
        try {
          await readEvents("/v1/events/stream", {
            signal: controller.signal,
            onEvent: (message) => {
              backoff = 1000;
              if (message.event === "hello") return;
              if (state.view && state.view.onFeed) state.view.onFeed(message.data || {});
              if (message.event === "resync" || String(message.event).startsWith("gate_") ||
                  message.event === "run_finished") {
                refreshCount();
              }
            },
          });
        } catch (error) {
          if (controller.signal.aborted) return;
          if (error instanceof ApiError && error.status === 401) { logout("The server refused the token (401): log in again."); return; }
        }
        await sleep(backoff, controller.signal);
        backoff = Math.min(backoff * 2, 15000);
        if (state.view && state.view.onFeed) state.view.onFeed({ kind: "resync" });
      }
    })();
  }

  function stopFeed() {
    if (state.feed) state.feed.abort();
    state.feed = null;
  }

  function throttle(fn, ms) {
    let timer = null;
    let last = 0;
    return () => {
      if (timer !== null) return;
      const wait = Math.max(0, last + ms - Date.now());
      timer = window.setTimeout(() => {
        timer = null;
        last = Date.now();
        fn();
      }, Math.max(wait, 150));
    };
  }

  const refreshCount = throttle(async () => {
    if (!state.token) return;
    const count = document.getElementById("approval-count");
    try {
      const body = await api("/v1/approvals");
      const n = body.approvals.length;
      count.textContent = String(n);
      count.hidden = n === 0;
      count.setAttribute("aria-label", `${n} waiting`);
    } catch (_error) {
      // the next event tries again
    }
  }, 1000);

  // -- the router -------------------------------------------------------------------------

  function route() {
    const hash = window.location.hash || "#/runs";
    if (!hash.startsWith("#/")) return; // an in-page anchor (the skip link)
    if (!state.token) {
      state.lastHash = hash;
      renderLogin();
      return;
    }
    state.lastHash = hash;
    const [path, query] = hash.slice(1).split("?");
    const params = new URLSearchParams(query || "");
    const parts = path.split("/").filter(Boolean);
    if (state.view && state.view.destroy) state.view.destroy();
    banner("");
    let view;
    if (parts[0] === "runs" && parts[1]) view = runView(decodeURIComponent(parts[1]));
    else if (parts[0] === "approvals") view = approvalsView();
    else if (parts[0] === "glance") view = glanceView();
    else view = runsView(params);
    state.view = view;
    for (const link of document.querySelectorAll("#nav a")) {
      if (link.dataset.view === view.name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    const main = document.getElementById("main");
    replace(main, view.el);
    document.title = `${view.title} · Corral`;
    const heading = main.querySelector("h1");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: true });
    }
  }

  // -- log in -----------------------------------------------------------------------------

  function renderLogin(message) {
    const error = h("p", { class: "form-error", role: "alert", text: message || "" });
    const input = h("input", {
      id: "token", type: "password", autocomplete: "off", spellcheck: "false",
      required: true, "aria-describedby": "token-hint",
    });
    const form = h("form", { class: "login card", method: "post", novalidate: true },
      h("h1", { text: "Log in" }),
      h("label", { for: "token", text: "API token" }),
      input,
      h("p", {
        id: "token-hint", class: "hint",
        text: "The token stays in this browser tab (session storage) and is sent in the " +
          "Authorization header of each request, never in a URL. `corral token new` makes one.",
      }),
      h("button", { type: "submit", class: "primary", text: "Log in" }),
      error,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const token = input.value.trim();
      if (!token) {
        error.textContent = "Enter an API token.";
        input.focus();
        return;
      }
      state.token = token;
      try {
        state.me = await api("/v1/whoami", { login: true });
      } catch (failure) {
        state.token = null;
        error.textContent = failure instanceof ApiError && failure.status === 401
          ? "That token is not valid here." : `Could not log in: ${problemText(failure)}`;
        input.select();
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, token);
      input.value = "";
      loggedIn();
    });
    document.title = "Log in · Corral";
    replace(document.getElementById("main"), form);
    input.focus();
  }

  function loggedIn() {
    document.getElementById("nav").hidden = false;
    document.getElementById("who").hidden = false;
    document.getElementById("who-name").textContent =
      `${state.me.name} (${state.me.roles.join(", ")})`;
    startFeed();
    refreshCount();
    if (window.location.hash !== state.lastHash) window.location.hash = state.lastHash;
    else route();
  }

  // -- runs -------------------------------------------------------------------------------

  const STATUSES = ["running", "waiting", "finished"];
  const OUTCOMES = ["completed", "failed", "stopped_budget", "stopped_steps", "stopped_loop",
    "stopped_breaker", "cancelled"];

  function field(label, control, hint) {
    const id = control.id || newId("f");
    control.id = id;
    return h("div", { class: "field" }, h("label", { for: id, text: label }), control,
      hint ? h("p", { class: "hint", text: hint }) : null);
  }

  function select(name, values, current, anyLabel) {
    return h("select", { name },
      h("option", { value: "", text: anyLabel }),
      values.map((v) => h("option", { value: v, text: v, selected: v === current })));
  }

  function runsView(initial) {
    let params = initial;
    const tbody = h("tbody");
    const more = h("button", { type: "button", class: "quiet", text: "Load more", hidden: true });
    const summary = h("p", { class: "lead", "aria-live": "polite" });
    let cursor = null;
    let shown = 0;

    const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter runs" },
      field("Status", select("status", STATUSES, params.get("status"), "any")),
      field("Outcome", select("outcome", OUTCOMES, params.get("outcome"), "any")),
      field("Agent", h("input", { name: "agent", value: params.get("agent") || "", autocomplete: "off" })),
      field("Tenant", h("input", { name: "tenant", value: params.get("tenant") || "", autocomplete: "off" })),
      field("Started after", h("input", {
        name: "created_after", type: "datetime-local", value: params.get("created_after") || "",
      })),
      h("div", { class: "filter-actions" },
        h("button", { type: "submit", text: "Apply" }),
        h("button", { type: "reset", class: "quiet", text: "Clear" })),
    );
    filters.addEventListener("submit", (event) => {
      event.preventDefault(); // filter in place: the focus stays where it is
      const next = new URLSearchParams();
      for (const [key, value] of new FormData(filters)) if (value) next.set(key, String(value));
      params = next;
      const query = next.toString();
      state.lastHash = query ? `#/runs?${query}` : "#/runs";
      window.history.replaceState(null, "", state.lastHash);
      load(false);
    });
    filters.addEventListener("reset", () => {
      window.setTimeout(() => {
        for (const el of filters.elements) if (el.name) el.value = "";
        filters.requestSubmit();
      }, 0);
    });
    for (const el of filters.querySelectorAll("select")) {
      el.addEventListener("change", () => filters.requestSubmit());
    }

    function query(limit, after) {
      const q = new URLSearchParams();
      for (const key of ["status", "outcome", "agent", "tenant"]) {
        if (params.get(key)) q.set(key, params.get(key));
      }
      const createdAfter = params.get("created_after");
      if (createdAfter) {
        const d = new Date(createdAfter);
        if (!Number.isNaN(d.getTime())) q.set("created_after", d.toISOString());
      }
      q.set("limit", String(limit));
      if (after) q.set("cursor", after);
      return `/v1/run-table?${q}`;
    }

    function row(run) {
      const link = h("a", { href: `#/runs/${encodeURIComponent(run.run_id)}`, text: run.run_id });
      const duration = run.status === "finished" ? run.duration_s
        : (Date.parse(run.updated_at) - Date.parse(run.created_at)) / 1000;
      return h("tr", {},
        h("td", { "data-label": "Run", class: "run-cell" }, h("div", {}, link,
          h("span", { class: "task", title: run.task, text: cut(run.task, 90) }))),
        h("td", { "data-label": "Status" }, badge("status", run.status)),
        h("td", { "data-label": "Outcome" }, run.outcome ? badge("outcome", run.outcome) : "–"),
        h("td", { "data-label": "Agent", text: run.agent }),
        h("td", { "data-label": "Route", text: run.route || "–" }),
        h("td", { "data-label": "Steps", class: "num", text: fmtInt(run.steps) }),
        h("td", { "data-label": "Tokens", class: "num", text: fmtInt(run.tokens) }),
        h("td", { "data-label": "Cost", class: "num", text: fmtCost(run.cost_usd) }),
        h("td", { "data-label": "Started", text: fmtTime(run.created_at) }),
        h("td", { "data-label": "Duration", class: "num",
          text: spent(run.status, duration) }),
      );
    }

    async function load(append) {
      try {
        const limit = append ? 50 : Math.min(Math.max(shown, 50), 500);
        const page = await api(query(limit, append ? cursor : null));
        if (!append) tbody.replaceChildren();
        for (const run of page.runs) tbody.append(row(run));
        shown = tbody.children.length;
        cursor = page.next_cursor;
        more.hidden = !cursor;
        summary.textContent = shown === 0 ? "No runs match." :
          `${shown} run${shown === 1 ? "" : "s"}${cursor ? " (more below)" : ""}, newest first.`;
      } catch (error) {
        banner(`Could not load runs: ${problemText(error)}`);
      }
    }
    more.addEventListener("click", () => load(true));

    const el = h("section", { class: "view" },
      h("div", { class: "view-head" }, h("h1", { text: "Runs" })),
      can("submit") ? newRunForm() : null,
      filters,
      summary,
      h("div", { class: "table-wrap" },
        h("table", { class: "runs stack" },
          h("caption", { class: "sr-only", text: "Runs, newest first" }),
          h("thead", {}, h("tr", {},
            ["Run", "Status", "Outcome", "Agent", "Route", "Steps", "Tokens", "Cost", "Started", "Duration"]
              .map((name) => h("th", { scope: "col", text: name })))),
          tbody)),
      more,
    );
    load(false);
    const reload = throttle(() => load(false), 1000);
    return { name: "runs", title: "Runs", el, onFeed: reload };
  }

  function randomKey() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function newRunForm() {
    const error = h("p", { class: "form-error", role: "alert" });
    const task = h("textarea", { name: "task", rows: 3, required: true, maxlength: 100000 });
    const form = h("form", { class: "new-run", novalidate: true },
      field("Task", task),
      h("div", { class: "row-fields" },
        field("Kind", h("input", { name: "kind", autocomplete: "off" }), "optional, for routing"),
        field("Tenant", h("input", { name: "tenant", autocomplete: "off" }), "optional"),
        field("Agent", h("input", { name: "agent", autocomplete: "off" }), "optional: skip routing")),
      h("button", { type: "submit", class: "primary", text: "Submit run" }),
      error,
    );
    let key = randomKey(); // one per submission: a double click starts one run
    form.addEventListener("input", () => { key = randomKey(); });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      const body = { task: task.value.trim() };
      if (!body.task) {
        error.textContent = "Say what the run should do.";
        task.setAttribute("aria-invalid", "true");
        task.focus();
        return;
      }
      task.removeAttribute("aria-invalid");
      for (const name of ["kind", "tenant", "agent"]) {
        const value = form.elements[name].value.trim();
        if (value) body[name] = value;
      }
      try {
        const run = await api("/v1/runs", { method: "POST", body, headers: { "Idempotency-Key": key } });
        announce(`Submitted run ${run.run_id}`);
        window.location.hash = `#/runs/${encodeURIComponent(run.run_id)}`;
      } catch (failure) {
        error.textContent = `Not submitted: ${problemText(failure)}`;
      }
    });
    return h("details", { class: "card new-run-box" },
      h("summary", { text: "New run" }), form);
  }

  // -- one run ----------------------------------------------------------------------------

  const PROBES = {
    done: "probe: done · it took effect: not run again",
    not_done: "probe: not done · it did not take effect: runs again",
    unknown: "probe: unknown · a person decides",
    failed: "probe failed · a person decides",
    retried: "idempotent · runs again (safe to run twice)",
  };

  // The reasoning trail, grouped the way `corral trace` groups it: by model step, each
  // call under its step, and every verdict, gate, attempt and result under its call.
  function buildTrail(events) {
    const trail = {
      started: null, finished: null, steps: new Map(), task: [], callStep: new Map(),
      gateOpened: new Map(), doubt: new Set(), children: [], first: null, spent: [],
    };
    const step = (n) => {
      if (!trail.steps.has(n)) trail.steps.set(n, { number: n, called: null, offered: null, rows: [], calls: new Map(), orphans: new Map() });
      return trail.steps.get(n);
    };
    const add = (n, callId, row) => {
      let number = n;
      if (number <= 0 && callId) number = trail.callStep.get(callId) || 0;
      if (number <= 0) { trail.task.push(row); return; }
      const target = step(number);
      if (!callId) target.rows.push(row);
      else if (target.calls.has(callId)) target.calls.get(callId).rows.push(row);
      else {
        if (!target.orphans.has(callId)) target.orphans.set(callId, []);
        target.orphans.get(callId).push(row);
      }
    };
    const row = (kind, name, detail, tone, extra) => ({ kind, name, detail, tone, ...(extra || {}) });
    for (const e of events) {
      if (trail.first === null) trail.first = e.ts;
      const at = e.ts;
      switch (e.kind) {
        case "run_started": trail.started = e; break;
        case "run_finished": trail.finished = e; break;
        case "model_called": {
          step(e.step).called = e;
          const u = e.response.usage || {};
          const tokens = (u.input_tokens || 0) + (u.output_tokens || 0) + (u.cache_read_tokens || 0) + (u.cache_write_tokens || 0);
          trail.spent.push({ step: e.step, tokens, cost: e.cost_usd || 0 });
          break;
        }
        case "model_failed":
          add(e.step, null, row("failed", e.error_type, `attempt ${e.attempt}: ${e.error}${e.will_retry ? `; retry in ${e.delay_s.toFixed(2)} s` : ""}`, "bad", { at }));
          break;
        case "tool_call_proposed": {
          const target = step(e.step);
          if (target.offered === null && e.offered && e.offered.length) target.offered = e.offered;
          trail.callStep.set(e.call_id, e.step);
          const call = { proposed: e, rows: target.orphans.get(e.call_id) || [] };
          target.orphans.delete(e.call_id);
          target.calls.set(e.call_id, call);
          break;
        }
        case "tool_call_rejected":
          add(e.step, e.call_id, row("blocked", e.guardrail, e.reason, "warn", { at }));
          break;
        case "guardrail_verdict":
          add(e.step, e.call_id, row(e.decision, e.guardrail, e.reason, "warn", { at }));
          break;
        case "gate_opened": {
          trail.gateOpened.set(e.gate_id, e.ts);
          const doubt = e.doubt && Object.keys(e.doubt).length;
          if (doubt) trail.doubt.add(e.gate_id);
          add(e.step, e.call_id, row("gate", doubt ? "in doubt" : "needs approval", `${e.gate_id}: ${e.reason}`, "warn", { at }));
          break;
        }
        case "gate_decided": {
          const opened = trail.gateOpened.get(e.gate_id);
          const waited = opened !== undefined ? ` after ${fmtDuration(e.ts - opened)}` : "";
          let kind = e.decision;
          let settles = "";
          if (e.happened) {
            kind = "happened";
            settles = "; it took effect, not run again";
          } else if (trail.doubt.has(e.gate_id)) {
            settles = e.decision === "approved" ? "; it did not happen, runs again with the same key" : "; skipped";
          }
          const edited = e.arguments !== null && e.arguments !== undefined;
          const who = e.by ? `by ${e.by}` : "(no one)";
          const detail = `${e.gate_id}${waited}${edited ? "; arguments edited" : ""}${settles}${e.note ? `: ${e.note}` : ""}`;
          add(0, e.call_id, row(kind, who, detail, e.decision === "approved" ? "good" : "bad",
            { at, pre: edited ? json(e.arguments) : null, preLabel: "Edited arguments" }));
          break;
        }
        case "call_reconciled":
          add(e.step, e.call_id, row("reconcile", PROBES[e.answer] || e.answer, `attempt ${e.attempt} in doubt${e.detail && e.answer !== "retried" ? `: ${e.detail}` : ""}; key ${e.idempotency_key}`, "warn", { at }));
          break;
        case "tool_call_started":
          if (e.fallback_for) add(e.step, e.call_id, row("fallback", e.tool, `standing in for ${e.fallback_for} (attempt ${e.attempt})`, "note", { at }));
          else if (e.attempt > 1) add(e.step, e.call_id, row("retry", e.tool, `attempt ${e.attempt}`, "note", { at }));
          break;
        case "tool_call_failed": {
          const then = e.will_retry ? `; retry in ${e.delay_s.toFixed(2)} s` : e.final ? "; gave up" : "; falling back";
          add(e.step, e.call_id, row("error", e.error_type, `attempt ${e.attempt}: ${e.error}${then}`, "bad", { at }));
          break;
        }
        case "tool_call_finished":
          add(e.step, e.call_id, row("result", `${e.tool} · ${fmtDuration(e.duration_s)}`,
            e.truncated ? `cut from ${fmtInt(e.result_chars)} characters, as the model saw it` : "as the model saw it",
            "good", { at, pre: e.content, result: true }));
          break;
        case "wait_started":
          add(e.step, e.call_id, row("wait", e.tool, `waiting for event "${e.key}"`, "warn", { at }));
          break;
        case "wait_resolved":
          if (e.timed_out) add(0, e.call_id, row("timed out", e.tool, `no event "${e.key}"`, "bad", { at }));
          else add(0, e.call_id, row("event", e.tool, `event "${e.key}"`, "note", { at, pre: json(e.payload) }));
          break;
        case "step_started":
          if (e.child_run_id) trail.children.push({ step: e.step, run: e.child_run_id });
          trail.task.push(row("started", e.step, e.child_run_id ? `run ${e.child_run_id}` : "", "note", { at, child: e.child_run_id }));
          break;
        case "step_finished":
          trail.task.push(row("finished", e.step, "", "good", { at, pre: json(e.output) }));
          break;
        case "step_failed":
          trail.task.push(row("failed", e.step, e.error, "bad", { at }));
          break;
        default:
          break;
      }
    }
    return trail;
  }

  function pre(text, label) {
    const full = String(text ?? "");
    if (full.length <= RESULT_CHARS) return h("pre", { class: "content", "aria-label": label || null, text: full });
    return h("div", { class: "long" },
      h("pre", { class: "content", "aria-label": label || null, text: full.slice(0, RESULT_CHARS) + "…" }),
      h("details", {}, h("summary", { text: `Show all ${fmtInt(full.length)} characters` }),
        h("pre", { class: "content", text: full })));
  }

  function trailRow(r, start) {
    const elapsed = r.at !== undefined && start !== null ? `+${(r.at - start).toFixed(2)} s` : "";
    return h("li", { class: `row tone-${r.tone}` },
      h("span", { class: "kind", text: r.kind }),
      h("span", { class: "name", text: r.name }),
      h("span", { class: "detail", text: r.detail }),
      h("span", { class: "elapsed", text: elapsed }),
      r.child ? h("a", { class: "child", href: `#/runs/${encodeURIComponent(r.child)}`, text: "open child run" }) : null,
      r.pre !== null && r.pre !== undefined ? pre(r.pre, r.preLabel || (r.result ? "Result" : null)) : null);
  }

  function renderTrail(trail) {
    const start = trail.first;
    const list = h("ol", { class: "trail" });
    if (trail.task.length) {
      list.append(h("li", { class: "step" },
        h("h3", { text: "The task" }),
        h("ul", { class: "rows" }, trail.task.map((r) => trailRow(r, start)))));
    }
    const numbers = [...trail.steps.keys()].sort((a, b) => a - b);
    for (const n of numbers) {
      const st = trail.steps.get(n);
      const called = st.called;
      const meta = [];
      if (called) {
        const u = called.response.usage || {};
        meta.push(called.model, `${fmtInt(u.input_tokens)} in + ${fmtInt(u.output_tokens)} out tokens`,
          fmtCost(called.cost_usd), fmtDuration(called.duration_s));
        if (called.attempt > 1) meta.push(`attempt ${called.attempt}`);
        if (start !== null) meta.push(`+${(called.ts - start).toFixed(2)} s`);
      }
      const calls = [...st.calls.values()].map((call) => h("li", { class: "call" },
        h("div", { class: "picked" },
          h("span", { class: "kind", text: "picked" }),
          h("code", { class: "name", text: call.proposed.tool }),
          call.proposed.parse_error ? h("span", { class: "detail bad", text: `unreadable arguments: ${call.proposed.parse_error}` }) : null),
        pre(compact(call.proposed.arguments), `Arguments of ${call.proposed.tool}`),
        h("ul", { class: "rows" }, call.rows.map((r) => trailRow(r, start)))));
      const orphans = [...st.orphans.values()].flat();
      const text = called && called.response.text ? called.response.text : "";
      const final = called && !(called.response.tool_calls || []).length;
      list.append(h("li", { class: "step", id: `step-${n}` },
        h("h3", {}, `Step ${n}`, h("span", { class: "meta", text: meta.join(" · ") })),
        st.offered ? h("p", { class: "offered" }, "Offered: ",
          st.offered.map((name, i) => [i ? ", " : "", h("code", { text: name })])) : null,
        st.rows.length ? h("ul", { class: "rows" }, st.rows.map((r) => trailRow(r, start))) : null,
        calls.length ? h("ol", { class: "calls" }, calls) : null,
        orphans.length ? h("ul", { class: "rows" }, orphans.map((r) => trailRow(r, start))) : null,
        text ? h("div", { class: `answer${final ? " final" : ""}` },
          h("span", { class: "kind", text: final ? "answer" : "said" }), pre(text, final ? "The answer" : null)) : null,
      ));
    }
    if (trail.finished) {
      const f = trail.finished;
      list.append(h("li", { class: "step end" },
        h("h3", {}, "Finished ", badge("outcome", f.outcome)),
        h("p", { text: [f.reason, `${fmtInt(f.tokens)} tokens`, fmtCost(f.cost_usd), fmtDuration(f.duration_s)].filter(Boolean).join(" · ") })));
    }
    return list;
  }

  function budgetBar(trail) {
    const limits = (trail.started && trail.started.limits) || {};
    const max = Number(limits.max_tokens) || 0;
    const used = trail.spent.reduce((sum, s) => sum + s.tokens, 0);
    const scale = Math.max(max, used, 1);
    const caption = max
      ? `${fmtInt(used)} of ${fmtInt(max)} tokens (${fmtPercent(used / max)}) over ${trail.spent.length} model call${trail.spent.length === 1 ? "" : "s"}`
      : `${fmtInt(used)} tokens over ${trail.spent.length} model calls (no token limit)`;
    const svg = s("svg", { viewBox: "0 0 1000 28", preserveAspectRatio: "none", role: "img", "aria-label": caption, class: "budget" });
    svg.append(s("rect", { x: 0, y: 4, width: 1000, height: 20, class: "track" }));
    let x = 0;
    trail.spent.forEach((spent, i) => {
      const w = (spent.tokens / scale) * 1000;
      svg.append(s("rect", { x: x.toFixed(2), y: 4, width: Math.max(w, 0.5).toFixed(2), height: 20, class: `seg seg-${i % 2}` },
        s("title", { text: `step ${spent.step}: ${fmtInt(spent.tokens)} tokens` })));
      x += w;
    });
    if (max) svg.append(s("line", { x1: 800, x2: 800, y1: 0, y2: 28, class: "warn-line" }, s("title", { text: "80 %: the model is told to wrap up" })));
    const parts = [h("p", { class: "caption", text: caption })];
    const maxCost = Number(limits.max_cost_usd) || 0;
    if (maxCost) {
      const cost = trail.spent.reduce((sum, s) => sum + s.cost, 0);
      parts.push(h("p", { class: "caption" }, `${fmtCost(cost)} of ${fmtCost(maxCost)} `,
        h("meter", { min: 0, max: maxCost, value: cost, "aria-label": "Cost against its limit" })));
    }
    return h("figure", { class: "budget-figure" }, svg, h("figcaption", {}, parts));
  }

  const WIDE = new Set(["Task", "Reason", "Route", "Child runs"]);

  function dl(pairs) {
    return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
      .map(([k, v]) => h("div", { class: WIDE.has(k) ? "wide" : null }, h("dt", { text: k }), h("dd", {}, v))));
  }

  function download(name, text) {
    const url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
    const link = h("a", { href: url, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    window.setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  function runView(runId) {
    const controller = new AbortController();
    const head = h("div", { class: "view-head" }, h("h1", {}, "Run ", h("code", { text: runId })));
    const actions = h("div", { class: "actions" });
    const facts = h("div", { class: "facts-box" });
    const budget = h("section", { "aria-labelledby": "budget-h" }, h("h2", { id: "budget-h", text: "Budget" }));
    const budgetBody = h("div");
    budget.append(budgetBody);
    const gates = h("section", { "aria-labelledby": "gates-h", hidden: true });
    const trailBox = h("section", { "aria-labelledby": "trail-h" },
      h("h2", { id: "trail-h", text: "Reasoning trail" }),
      h("p", { class: "hint", text: "Each step: the tools offered, the call the model picked with its arguments, every verdict and decision, and the result as the model saw it." }));
    const trailBody = h("div", { class: "trail-body", "aria-live": "off" });
    trailBox.append(trailBody);
    const live = h("p", { class: "live-state", "aria-live": "polite" });
    const events = [];
    let lastSeq = 0;
    let view = null;
    let loaded = false;

    function renderFacts() {
      if (!view) return;
      replace(head, h("h1", {}, "Run ", h("code", { text: runId })), badge("status", view.status),
        view.outcome ? badge("outcome", view.outcome) : null);
      const trail = buildTrail(events);
      const parent = trail.started && trail.started.parent_run_id;
      const family = [];
      if (parent) family.push(["Part of", h("a", { href: `#/runs/${encodeURIComponent(parent)}`, text: parent })]);
      if (trail.children.length) {
        family.push(["Child runs", trail.children.map((c, i) => [i ? ", " : "",
          h("a", { href: `#/runs/${encodeURIComponent(c.run)}`, text: `${c.step}: ${c.run}` })])]);
      }
      const running = view.status !== "finished";
      const duration = running ? (Date.parse(view.updated_at) - Date.parse(view.created_at)) / 1000 : view.duration_s;
      replace(facts,
        h("p", { class: "task-text", text: view.task }),
        dl([
          ["Agent", view.agent],
          ["Tenant", view.tenant],
          ["Submitted by", view.submitted_by || "–"],
          ["Started", fmtTime(view.created_at)],
          ["Duration", spent(view.status, duration)],
          ["Steps", fmtInt(view.steps)],
          ["Model calls", fmtInt(view.model_calls)],
          ["Tokens", fmtInt(view.tokens)],
          ["Cost", fmtCost(view.cost_usd)],
          ["Route", view.route.rule ? `${view.route.rule} (${view.route.reason})` : "–"],
          ...family,
          ["Reason", view.reason],
        ]),
        view.output ? h("div", { class: "output" }, h("h2", { text: "Output" }), pre(view.output, "Output")) : null,
      );
      replace(actions,
        h("button", { type: "button", text: "Export JSON", on: { click: exportRun } }),
        can("submit") && running ? h("button", { type: "button", class: "danger", text: "Cancel run", on: { click: cancelRun } }) : null,
        view.gates.some((g) => g.status === "open") ? h("a", { class: "button", href: "#/approvals", text: can("approve") ? "Decide its gates" : "See its gates" }) : null,
      );
      renderGates();
    }

    function renderGates() {
      if (!view.gates.length) { gates.hidden = true; return; }
      gates.hidden = false;
      replace(gates, h("h2", { id: "gates-h", text: "Gates" }),
        h("div", { class: "table-wrap" }, h("table", { class: "stack" },
          h("thead", {}, h("tr", {}, ["Gate", "Tool", "Status", "Decided by", "When", "Note", "Edited arguments"].map((t) => h("th", { scope: "col", text: t })))),
          h("tbody", {}, view.gates.map((g) => h("tr", {},
            h("td", { "data-label": "Gate" }, h("code", { text: g.gate_id })),
            h("td", { "data-label": "Tool" }, h("code", { text: g.tool })),
            h("td", { "data-label": "Status" }, badge("gate", g.status)),
            h("td", { "data-label": "Decided by", text: g.decided_by || "–" }),
            h("td", { "data-label": "When", text: g.decided_at ? fmtTime(g.decided_at) : `opened ${fmtTime(g.opened_at)}` }),
            h("td", { "data-label": "Note", text: g.note || "–" }),
            h("td", { "data-label": "Edited arguments" }, g.edited_arguments ? pre(json(g.edited_arguments)) : "–")))))));
    }

    function renderTrailNow() {
      const openKeys = new Set([...trailBody.querySelectorAll("details[open]")].map((d) => d.dataset.key));
      const trail = buildTrail(events);
      replace(budgetBody, budgetBar(trail));
      replace(trailBody, events.length ? renderTrail(trail) : h("p", { text: "No events yet." }));
      trailBody.querySelectorAll("details").forEach((d, i) => {
        d.dataset.key = String(i);
        if (openKeys.has(String(i))) d.open = true;
      });
    }

    let pending = false;
    function scheduleTrail() {
      if (pending) return;
      pending = true;
      window.requestAnimationFrame(() => { pending = false; renderTrailNow(); });
    }

    const refreshView = throttle(async () => {
      try {
        view = await api(`/v1/runs/${encodeURIComponent(runId)}`, { signal: controller.signal });
        renderFacts();
      } catch (error) {
        if (!controller.signal.aborted) banner(`Could not load the run: ${problemText(error)}`);
      }
    }, 500);

    function take(event) {
      if (!event || typeof event.seq !== "number" || event.seq <= lastSeq) return;
      lastSeq = event.seq;
      events.push(event);
      scheduleTrail();
      if (loaded && ["gate_opened", "gate_decided", "run_finished", "model_called", "tool_call_finished"].includes(event.kind)) refreshView();
    }

    async function follow() {
      let backoff = 500;
      while (!controller.signal.aborted) {
        live.textContent = "Live: following the run's events.";
        try {
          await readEvents(`/v1/runs/${encodeURIComponent(runId)}/events/stream`, {
            signal: controller.signal,
            lastEventId: lastSeq,
            onEvent: (message) => { backoff = 500; take(message.data); },
          });
        } catch (error) {
          if (controller.signal.aborted) return;
          if (error instanceof ApiError && error.status === 404) { live.textContent = ""; return; }
        }
        if (events.some((e) => e.kind === "run_finished")) {
          live.textContent = "The run has finished.";
          return;
        }
        live.textContent = "Reconnecting to the run's events…";
        await sleep(backoff, controller.signal);
        backoff = Math.min(backoff * 2, 10000);
      }
    }

    async function exportRun() {
      try {
        const doc = await api(`/v1/runs/${encodeURIComponent(runId)}/export`);
        download(`${runId}.json`, json(doc));
        announce(`Exported ${runId}.json`);
      } catch (error) {
        banner(`Could not export: ${problemText(error)}`);
      }
    }

    async function cancelRun() {
      if (!window.confirm(`Cancel run ${runId}? It stops where it stands.`)) return;
      try {
        const result = await api(`/v1/runs/${encodeURIComponent(runId)}/cancel`, { method: "POST", body: { reason: `cancelled by ${state.me.name} in the dashboard` } });
        view = result.run;
        renderFacts();
        announce(result.cancelled ? "Cancelled."
          : result.requested ? "Another worker drives this run: it was asked to cancel it, and does as soon as it hears."
          : "The run had already ended.");
      } catch (error) {
        banner(`Could not cancel: ${problemText(error)}`);
      }
    }

    (async () => {
      try {
        const [first, list] = await Promise.all([
          api(`/v1/runs/${encodeURIComponent(runId)}`, { signal: controller.signal }),
          api(`/v1/runs/${encodeURIComponent(runId)}/events`, { signal: controller.signal }),
        ]);
        view = first;
        for (const e of list.events) take(e);
        loaded = true;
        renderFacts();
        renderTrailNow();
        if (view.status !== "finished") follow();
      } catch (error) {
        if (controller.signal.aborted) return;
        replace(facts, h("p", { class: "form-error", role: "alert", text: `Could not load run ${runId}: ${problemText(error)}` }));
      }
    })();

    const el = h("section", { class: "view run" }, head, actions, live, facts, budget, gates, trailBox);
    return {
      name: "runs",
      title: `Run ${runId}`,
      el,
      destroy: () => controller.abort(),
    };
  }

  // -- approvals --------------------------------------------------------------------------

  function deepEqual(a, b) {
    return json(sortKeys(a), 0) === json(sortKeys(b), 0);
  }

  function sortKeys(value) {
    if (Array.isArray(value)) return value.map(sortKeys);
    if (value && typeof value === "object") {
      return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys(value[k])]));
    }
    return value;
  }

  function isType(value, type) {
    switch (type) {
      case "string": return typeof value === "string";
      case "number": return typeof value === "number" && Number.isFinite(value);
      case "integer": return Number.isInteger(value);
      case "boolean": return typeof value === "boolean";
      case "null": return value === null;
      case "array": return Array.isArray(value);
      case "object": return value !== null && typeof value === "object" && !Array.isArray(value);
      default: return true;
    }
  }

  // A small structural check against the tool's JSON Schema (types, required, extra
  // properties, enums, lengths, ranges, patterns), so a person sees mistakes before
  // sending; the server checks again with the full validator.
  function validate(schema, value, path, errors) {
    const out = errors || [];
    const at = path || "$";
    if (!schema || typeof schema !== "object") return out;
    if ("const" in schema && !deepEqual(value, schema.const)) out.push({ path: at, msg: `must be ${json(schema.const, 0)}` });
    if (Array.isArray(schema.enum) && !schema.enum.some((v) => deepEqual(v, value))) {
      out.push({ path: at, msg: `must be one of ${schema.enum.map((v) => json(v, 0)).join(", ")}` });
    }
    for (const key of ["anyOf", "oneOf"]) {
      if (Array.isArray(schema[key]) && !schema[key].some((sub) => validate(sub, value, at).length === 0)) {
        out.push({ path: at, msg: "does not match any of the shapes allowed" });
      }
    }
    if (Array.isArray(schema.allOf)) for (const sub of schema.allOf) validate(sub, value, at, out);
    if (schema.type !== undefined) {
      const types = [].concat(schema.type);
      if (!types.some((t) => isType(value, t))) {
        out.push({ path: at, msg: `must be ${types.map((t) => (t === "integer" ? "a whole number" : t === "array" ? "a list" : `a ${t}`)).join(" or ")}` });
        return out;
      }
    }
    if (typeof value === "string") {
      if (schema.minLength !== undefined && [...value].length < schema.minLength) out.push({ path: at, msg: `must be at least ${schema.minLength} characters` });
      if (schema.maxLength !== undefined && [...value].length > schema.maxLength) out.push({ path: at, msg: `must be at most ${schema.maxLength} characters` });
      if (schema.pattern) {
        try {
          if (!new RegExp(schema.pattern, "u").test(value)) out.push({ path: at, msg: `must match ${schema.pattern}` });
        } catch (_error) {
          // a pattern JavaScript cannot read: the server checks it
        }
      }
    }
    if (typeof value === "number") {
      if (schema.minimum !== undefined && value < schema.minimum) out.push({ path: at, msg: `must be at least ${schema.minimum}` });
      if (schema.maximum !== undefined && value > schema.maximum) out.push({ path: at, msg: `must be at most ${schema.maximum}` });
      if (typeof schema.exclusiveMinimum === "number" && value <= schema.exclusiveMinimum) out.push({ path: at, msg: `must be over ${schema.exclusiveMinimum}` });
      if (typeof schema.exclusiveMaximum === "number" && value >= schema.exclusiveMaximum) out.push({ path: at, msg: `must be under ${schema.exclusiveMaximum}` });
    }
    if (isType(value, "object")) {
      const props = schema.properties || {};
      for (const name of schema.required || []) {
        if (!(name in value)) out.push({ path: `${at}.${name}`, msg: "is required" });
      }
      for (const [name, item] of Object.entries(value)) {
        if (name in props) validate(props[name], item, `${at}.${name}`, out);
        else if (schema.additionalProperties === false) out.push({ path: `${at}.${name}`, msg: "is not an argument of this tool" });
        else if (schema.additionalProperties && typeof schema.additionalProperties === "object") validate(schema.additionalProperties, item, `${at}.${name}`, out);
      }
    }
    if (Array.isArray(value)) {
      if (schema.minItems !== undefined && value.length < schema.minItems) out.push({ path: at, msg: `needs at least ${schema.minItems} items` });
      if (schema.maxItems !== undefined && value.length > schema.maxItems) out.push({ path: at, msg: `takes at most ${schema.maxItems} items` });
      if (schema.items && typeof schema.items === "object") value.forEach((item, i) => validate(schema.items, item, `${at}[${i}]`, out));
    }
    return out;
  }

  const SOURCE_NAMES = { task: "the task", developer: "the instructions", person: "a person" };

  function describeSource(source) {
    if (source.source === "tool") return `the result of ${source.tool} (step ${source.step}, ${source.call_id})`;
    return SOURCE_NAMES[source.source] || source.source;
  }

  function provenanceFor(gate, name) {
    const prefix = `$.${name}`;
    return (gate.provenance || []).filter((p) => p.argument === prefix ||
      String(p.argument).startsWith(`${prefix}.`) || String(p.argument).startsWith(`${prefix}[`));
  }

  function sourceText(gate, name) {
    const records = provenanceFor(gate, name);
    if (!records.length) return "Where it came from: not traced (provenance follows identifiers, not prose or amounts).";
    return records.map((p) => {
      const from = (p.sources || []).map(describeSource);
      const where = p.argument === `$.${name}` ? "" : `${p.argument}: `;
      return `${where}${from.length ? `from ${from.join(", ")}` : "from no known source"}` +
        ` · ${p.trusted ? "trusted" : "untrusted"}`;
    }).join("; ");
  }

  function argKind(schema, value) {
    const types = schema && schema.type !== undefined ? [].concat(schema.type) : [];
    if (schema && Array.isArray(schema.enum)) return "enum";
    if (types.length === 1 && ["string", "number", "integer", "boolean"].includes(types[0])) return types[0];
    if (!types.length && typeof value === "string") return "string";
    return "json";
  }

  function argControl(id, kind, schema, value, editable) {
    const describedBy = `${id}-src ${id}-err`;
    const common = { id, "aria-describedby": describedBy, disabled: !editable };
    switch (kind) {
      case "enum":
        return h("select", common, schema.enum.map((v, i) => h("option", { value: String(i), text: json(v, 0), selected: deepEqual(v, value) })));
      case "boolean":
        return h("input", { ...common, type: "checkbox", checked: value === true });
      case "number":
      case "integer":
        return h("input", { ...common, type: "number", step: kind === "integer" ? "1" : "any", value: value === undefined ? "" : String(value), inputmode: "decimal" });
      case "string": {
        const text = value === undefined ? "" : String(value);
        if (text.length > 80 || text.includes("\n")) return h("textarea", { ...common, rows: 3, text });
        return h("input", { ...common, type: "text", value: text, autocomplete: "off", spellcheck: "false" });
      }
      default:
        return h("textarea", { ...common, rows: 3, class: "code", spellcheck: "false", text: value === undefined ? "" : json(value) });
    }
  }

  function readControl(control, kind, schema) {
    switch (kind) {
      case "enum": return { value: schema.enum[Number(control.value)] };
      case "boolean": return { value: control.checked };
      case "number":
      case "integer":
        if (control.value.trim() === "") return { missing: true };
        return { value: Number(control.value) };
      case "string": return { value: control.value };
      default:
        if (control.value.trim() === "") return { missing: true };
        try {
          return { value: JSON.parse(control.value) };
        } catch (_error) {
          return { error: "is not valid JSON" };
        }
    }
  }

  function gateCard(gate) {
    const editable = can("approve");
    const schema = gate.input_schema || { type: "object" };
    const props = schema.properties || {};
    const names = [...new Set([...Object.keys(props), ...Object.keys(gate.arguments)])];
    const base = `g-${gate.gate_id.replace(/[^A-Za-z0-9_-]/g, "")}`;
    const fields = new Map();
    const required = new Set(schema.required || []);
    const argRows = names.map((name) => {
      const id = `${base}-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
      const kind = argKind(props[name], gate.arguments[name]);
      const control = argControl(id, kind, props[name], gate.arguments[name], editable);
      const error = h("p", { id: `${id}-err`, class: "field-error", hidden: true });
      fields.set(name, { control, kind, error });
      const type = props[name] && props[name].type ? [].concat(props[name].type).join(" | ") : kind;
      return h("div", { class: "arg" },
        h("label", { for: id }, h("code", { text: name })),
        h("span", { class: "type", text: `${type}${required.has(name) ? ", required" : ""}` }),
        control,
        h("p", { id: `${id}-src`, class: "source", text: sourceText(gate, name) }),
        error);
    });
    const run = gate.run;
    const context = h("section", { class: "context", "aria-label": "The run's context" },
      run ? dl([
        ["Task", run.task],
        ["Run", h("a", { href: `#/runs/${encodeURIComponent(gate.run_id)}`, text: gate.run_id })],
        ["Agent", gate.agent],
        ["Tenant", run.tenant],
        ["So far", `${fmtInt(run.steps)} steps · ${fmtInt(run.tokens)} tokens · ${fmtCost(run.cost_usd)}`],
      ]) : h("p", { text: `Run ${gate.run_id}` }),
      gate.sources.length ? h("details", { class: "sources" },
        h("summary", { text: `Source results (${gate.sources.length})` }),
        gate.sources.map((src) => h("div", { class: "source-result" },
          h("h4", { text: `${src.tool} · step ${src.step} · ${src.call_id}` }),
          pre(src.content + (src.truncated ? "…" : ""), `Result of ${src.tool}`)))) : null);
    const heading = h("h2", { id: `${base}-h` }, h("code", { text: gate.tool }), " ", badge("effect", gate.side_effect));
    const meta = h("p", { class: "meta", text: `${gate.gate_id} · opened ${fmtTime(gate.opened_at)} · expires ${fmtTime(gate.expires_at)}` });
    const why = h("p", { class: "why", text: gate.reason });
    const doubt = gate.doubt ? h("p", { class: "why warn", text: `A call in doubt after a crash: approving runs it again with the same idempotency key; rejecting skips it. Probe: ${gate.doubt.probe || "none"} ${gate.doubt.detail || ""}` }) : null;
    const card = h("article", { class: "gate card", "aria-labelledby": `${base}-h`, "data-gate": gate.gate_id },
      heading, meta, why, doubt, context);
    if (!editable) {
      card.append(h("fieldset", { class: "args", disabled: true }, h("legend", { text: "Arguments" }), argRows),
        h("p", { class: "hint", text: `Signed in as ${state.me.name}: you can see this gate; deciding it needs the approve role.` }));
      return card;
    }
    const noteId = `${base}-note`;
    const note = h("textarea", { id: noteId, rows: 2, maxlength: 2000, "aria-describedby": `${noteId}-hint` });
    const formError = h("p", { class: "form-error", role: "alert" });
    const form = h("form", { class: "decide", novalidate: true },
      h("fieldset", { class: "args" }, h("legend", { text: "Arguments (edit before approving)" }), argRows),
      h("div", { class: "field" },
        h("label", { for: noteId, text: "Note or reason" }), note,
        h("p", { id: `${noteId}-hint`, class: "hint", text: "A note for the audit trail when approving; the reason the model is told when rejecting (required)." })),
      h("div", { class: "actions" },
        h("button", { type: "submit", class: "primary", value: "approve", text: "Approve" }),
        h("button", { type: "submit", class: "danger", value: "reject", text: "Reject" }),
        h("button", { type: "reset", class: "quiet", text: "Undo edits" })),
      formError);
    form.addEventListener("input", (event) => {
      for (const f of fields.values()) {
        if (f.control === event.target) {
          f.error.hidden = true;
          f.control.removeAttribute("aria-invalid");
          formError.textContent = "";
        }
      }
    });
    form.addEventListener("reset", () => {
      formError.textContent = "";
      window.setTimeout(() => fields.forEach((f) => { f.error.hidden = true; f.control.removeAttribute("aria-invalid"); }), 0);
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const approve = !event.submitter || event.submitter.value !== "reject";
      formError.textContent = "";
      fields.forEach((f) => { f.error.hidden = true; f.error.textContent = ""; f.control.removeAttribute("aria-invalid"); });
      note.removeAttribute("aria-invalid");
      const args = {};
      const problems = [];
      for (const [name, f] of fields) {
        const read = readControl(f.control, f.kind, props[name]);
        if (read.error) problems.push({ path: `$.${name}`, msg: read.error });
        else if (!read.missing) args[name] = read.value;
      }
      if (approve) problems.push(...validate(schema, args));
      else if (!note.value.trim()) {
        note.setAttribute("aria-invalid", "true");
        formError.textContent = "Say why: the model is told the reason for a rejection.";
        note.focus();
        return;
      }
      if (approve && problems.length) {
        let first = null;
        const general = [];
        for (const p of problems) {
          const name = p.path.slice(2).split(/[.[]/)[0];
          const f = fields.get(name);
          if (f) {
            f.error.textContent = `${name} ${p.msg}${p.path !== `$.${name}` ? ` (${p.path})` : ""}`;
            f.error.hidden = false;
            f.control.setAttribute("aria-invalid", "true");
            first = first || f.control;
          } else {
            general.push(`${p.path} ${p.msg}`);
          }
        }
        formError.textContent = `Not sent: the arguments do not fit ${gate.tool}'s schema.${general.length ? " " + general.join("; ") : ""}`;
        if (first) first.focus();
        return;
      }
      const buttons = form.querySelectorAll("button");
      buttons.forEach((b) => { b.disabled = true; });
      try {
        const path = `/v1/approvals/${encodeURIComponent(gate.gate_id)}/${approve ? "approve" : "reject"}`;
        const edited = !deepEqual(args, gate.arguments);
        const body = approve ? { note: note.value.trim(), arguments: edited ? args : null } : { reason: note.value.trim() };
        const decided = await api(path, { method: "POST", body });
        state.decided.unshift(decided);
        state.decided.length = Math.min(state.decided.length, MAX_DECIDED);
        announce(`${decided.tool} ${decided.status} by ${decided.decided_by}`);
        if (state.view && state.view.onDecided) state.view.onDecided(decided);
      } catch (error) {
        buttons.forEach((b) => { b.disabled = false; });
        const listed = error instanceof ApiError && Array.isArray(error.problem.errors)
          ? " " + error.problem.errors.map((e) => `${e.loc}: ${e.msg}`).join("; ") : "";
        formError.textContent = `${approve ? "Not approved" : "Not rejected"} (${error.status || "error"}): ${problemText(error)}${listed}`;
        if (error instanceof ApiError && [404, 409, 410].includes(error.status) && state.view && state.view.onFeed) state.view.onFeed({ kind: "resync" });
      }
    });
    card.append(form);
    return card;
  }

  function decisionItem(g) {
    return h("li", { class: `decision tone-${g.status === "approved" ? "good" : "bad"}` },
      h("code", { text: g.tool }), " on ",
      h("a", { href: `#/runs/${encodeURIComponent(g.run_id)}`, text: g.run_id }), ": ",
      badge("gate", g.status), ` by ${g.decided_by || "(no one)"} at ${fmtTime(g.decided_at)}`,
      g.note ? ` · “${g.note}”` : "",
      g.edited_arguments ? h("div", {}, h("span", { class: "hint", text: "Edited arguments:" }), pre(json(g.edited_arguments))) : null);
  }

  function approvalsView() {
    const list = h("div", { class: "gates" });
    const lead = h("p", { class: "lead", "aria-live": "polite" });
    const decidedBox = h("section", { "aria-labelledby": "decided-h", hidden: true });
    const cards = new Map();

    function renderDecided() {
      decidedBox.hidden = state.decided.length === 0;
      replace(decidedBox, h("h2", { id: "decided-h", text: "Decided in this session" }),
        h("ul", { class: "decisions" }, state.decided.map(decisionItem)));
    }

    async function load() {
      try {
        const queue = await api("/v1/approval-queue");
        const open = new Set(queue.approvals.map((g) => g.gate_id));
        for (const [id, card] of cards) if (!open.has(id)) { card.remove(); cards.delete(id); }
        for (const gate of queue.approvals) {
          if (!cards.has(gate.gate_id)) {
            const card = gateCard(gate);
            cards.set(gate.gate_id, card);
            list.append(card); // oldest first, as the API lists them
          }
        }
        const n = queue.approvals.length;
        lead.textContent = n ? `${n} gate${n === 1 ? "" : "s"} waiting for a person, oldest first.` : "No gate is waiting.";
      } catch (error) {
        banner(`Could not load the queue: ${problemText(error)}`);
      }
    }
    const reload = throttle(load, 700);

    const el = h("section", { class: "view" },
      h("div", { class: "view-head" }, h("h1", { text: "Approvals" })),
      lead,
      can("approve") ? null : h("p", { class: "note", text: `Signed in as ${state.me.name} (${state.me.roles.join(", ")}): read only.` }),
      list,
      decidedBox);
    renderDecided();
    load();
    return {
      name: "approvals",
      title: "Approvals",
      el,
      onFeed: (data) => {
        if (!data.kind || data.kind === "resync" || data.kind.startsWith("gate_") || data.kind === "run_finished") reload();
      },
      onDecided: (gate) => {
        const card = cards.get(gate.gate_id);
        if (card) { card.remove(); cards.delete(gate.gate_id); }
        renderDecided();
        reload();
      },
    };
  }

  // -- at a glance ------------------------------------------------------------------------

  function buckets(items, count) {
    const n = Math.min(count, items.length);
    const out = [];
    for (let i = 0; i < n; i += 1) {
      out.push(items.slice(Math.floor((i * items.length) / n), Math.floor(((i + 1) * items.length) / n)));
    }
    return out;
  }

  function sparkline(values, label) {
    const w = 120;
    const hgt = 28;
    const svg = s("svg", { viewBox: `0 0 ${w} ${hgt}`, class: "spark", role: "img", "aria-label": label });
    svg.append(s("line", { x1: 0, x2: w, y1: hgt - 2.5, y2: hgt - 2.5, class: "base" }));
    const known = values.map((v, i) => [i, v]).filter(([, v]) => v !== null);
    if (!known.length) return svg;
    const step = values.length > 1 ? w / (values.length - 1) : 0;
    const points = known.map(([i, v]) => `${(i * step).toFixed(1)},${(hgt - 3 - v * (hgt - 6)).toFixed(1)}`);
    if (points.length === 1) points.push(`${w},${points[0].split(",")[1]}`);
    svg.append(s("polyline", { points: points.join(" "), class: "line" }));
    for (const [i, v] of known) svg.append(s("circle", { cx: (i * step).toFixed(1), cy: (hgt - 3 - v * (hgt - 6)).toFixed(1), r: 2.2, class: "dot" }));
    return svg;
  }

  function barChart(values, { label, classes, titles, height }) {
    const w = 600;
    const hgt = height || 120;
    const max = Math.max(...values, 1);
    const svg = s("svg", { viewBox: `0 0 ${w} ${hgt + 16}`, class: "bars", role: "img", "aria-label": label, preserveAspectRatio: "none" });
    const bw = Math.min(w / Math.max(values.length, 1), 40);
    values.forEach((v, i) => {
      const bh = (v / max) * hgt;
      svg.append(s("rect", {
        x: (i * bw + bw * 0.1).toFixed(2), y: (hgt - bh).toFixed(2), width: Math.max(bw * 0.8, 0.5).toFixed(2), height: Math.max(bh, 0.5).toFixed(2),
        class: classes ? classes[i] : "bar",
      }, s("title", { text: titles ? titles[i] : String(v) })));
    });
    svg.append(s("line", { x1: 0, x2: w, y1: hgt + 0.5, y2: hgt + 0.5, class: "axis" }));
    return svg;
  }

  function percentile(sorted, p) {
    if (!sorted.length) return 0;
    return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
  }

  function panel(title, id, ...body) {
    return h("figure", { class: "panel card", "aria-labelledby": id }, h("h2", { id, text: title }), body);
  }

  function glanceView() {
    const body = h("div", { class: "glance" }, h("p", { text: "Loading…" }));
    const stamp = h("p", { class: "lead", "aria-live": "polite" });

    function render(o) {
      const runs = [...o.runs].reverse(); // oldest first, for "over time"
      const finished = runs.filter((r) => r.status === "finished");
      const tokens = runs.map((r) => r.tokens);
      const sorted = [...tokens].sort((a, b) => a - b);
      const cost = runs.reduce((sum, r) => sum + r.cost_usd, 0);
      const tokenLabel = runs.length
        ? `Tokens per run over the last ${runs.length} runs, oldest first: median ${fmtInt(percentile(sorted, 0.5))}, 95th percentile ${fmtInt(percentile(sorted, 0.95))}, ${fmtCost(cost)} in all.`
        : "No runs yet.";
      const tokenPanel = panel("Token cost per run", "p-tokens",
        runs.length ? barChart(tokens, {
          label: tokenLabel,
          classes: runs.map((r) => (r.outcome && r.outcome !== "completed" ? "bar off" : "bar")),
          titles: runs.map((r) => `${r.run_id}: ${fmtInt(r.tokens)} tokens, ${fmtCost(r.cost_usd)} (${r.outcome || r.status})`),
        }) : null,
        h("figcaption", { text: tokenLabel }));

      const slices = buckets(runs, 8);
      const toolRows = o.tools.map((t) => {
        const series = slices.map((slice) => {
          let ok = 0;
          let all = 0;
          for (const r of slice) {
            const tally = r.tools[t.tool];
            if (tally) { ok += tally.success; all += tally.success + tally.failed + tally.rejected; }
          }
          return all ? ok / all : null;
        });
        return h("tr", {},
          h("th", { scope: "row" }, h("code", { text: t.tool })),
          h("td", { class: "num", text: fmtPercent(t.rate) }),
          h("td", { class: "num", text: `${fmtInt(t.success)} / ${fmtInt(t.success + t.failed + t.rejected)}` }),
          h("td", {}, sparkline(series, `${t.tool}: success rate over time, ${series.filter((v) => v !== null).map((v) => fmtPercent(v)).join(", ")}`)));
      });
      const toolPanel = panel("Tool success rate per tool", "p-tools",
        o.tools.length ? h("div", { class: "mini-wrap" }, h("table", { class: "mini" },
          h("thead", {}, h("tr", {}, ["Tool", "Success", "Of attempts", "Over time"].map((t) => h("th", { scope: "col", text: t })))),
          h("tbody", {}, toolRows))) : h("p", { text: "No tool calls yet." }),
        h("figcaption", { text: "An attempt succeeds, fails (error or timeout) or is refused before it runs; retries count as attempts." }));

      const counts = Object.entries(o.step_counts).map(([k, v]) => [Number(k), v]).sort((a, b) => a[0] - b[0]);
      const lo = counts.length ? counts[0][0] : 0;
      const hi = counts.length ? counts[counts.length - 1][0] : -1;
      const histogram = [];
      for (let k = lo; k <= hi && histogram.length < 60; k += 1) histogram.push([k, o.step_counts[k] || 0]);
      const stepLabel = finished.length
        ? `Steps per finished run: ${histogram.filter(([, v]) => v).map(([k, v]) => `${v} run${v === 1 ? "" : "s"} with ${k} step${k === 1 ? "" : "s"}`).join(", ")}.`
        : "No finished runs yet.";
      const stepPanel = panel("Step-count distribution", "p-steps",
        histogram.length ? barChart(histogram.map(([, v]) => v), { label: stepLabel, titles: histogram.map(([k, v]) => `${k} steps: ${v} runs`), height: 100 }) : null,
        histogram.length ? h("div", { class: "axis-labels", "aria-hidden": "true" }, h("span", { text: `${lo} step${lo === 1 ? "" : "s"}` }), lo === hi ? null : h("span", { text: `${hi} steps` })) : null,
        h("figcaption", { text: stepLabel }));

      const guardRows = o.guardrails.map((g) => {
        const series = slices.map((slice) => {
          let rejected = 0;
          let calls = 0;
          for (const r of slice) { rejected += r.rejections[g.guardrail] || 0; calls += r.calls; }
          return calls ? rejected / calls : null;
        });
        return h("tr", {},
          h("th", { scope: "row" }, h("code", { text: g.guardrail })),
          h("td", { class: "num", text: fmtPercent(g.rate) }),
          h("td", { class: "num", text: `${fmtInt(g.rejections)} / ${fmtInt(g.calls)}` }),
          h("td", {}, sparkline(series, `${g.guardrail}: rejection rate over time, ${series.filter((v) => v !== null).map((v) => fmtPercent(v)).join(", ")}`)));
      });
      const guardPanel = panel("Guardrail rejection rate per guardrail", "p-guards",
        o.guardrails.length ? h("div", { class: "mini-wrap" }, h("table", { class: "mini" },
          h("thead", {}, h("tr", {}, ["Guardrail", "Rate", "Of calls", "Over time"].map((t) => h("th", { scope: "col", text: t })))),
          h("tbody", {}, guardRows))) : h("p", { text: "No call refused." }),
        h("figcaption", { text: "Calls each guardrail refused, over the tool calls the model proposed (a person's rejection counts under “person”)." }));

      const breakers = h("section", { class: "card", "aria-labelledby": "b-h" }, h("h2", { id: "b-h", text: "Circuit breakers" }),
        o.breakers.length ? h("table", { class: "mini stack" },
          h("thead", {}, h("tr", {}, ["Tool", "State", "Failures in a row", "Opened"].map((t) => h("th", { scope: "col", text: t })))),
          h("tbody", {}, o.breakers.map((b) => h("tr", {},
            h("th", { scope: "row", "data-label": "Tool" }, h("code", { text: b.tool })),
            h("td", { "data-label": "State" }, badge("breaker", b.state)),
            h("td", { "data-label": "Failures in a row", class: "num", text: fmtInt(b.consecutive_failures) }),
            h("td", { "data-label": "Opened", text: b.opened_at ? fmtTime(b.opened_at) : "–" }))))) : h("p", { text: "No tools." }));

      const tenants = h("section", { class: "card", "aria-labelledby": "t-h" }, h("h2", { id: "t-h", text: "Budget use per tenant (today, UTC)" }),
        o.tenants.length ? h("table", { class: "mini stack" },
          h("thead", {}, h("tr", {}, ["Tenant", "Tokens", "Cost", "Of the daily budget"].map((t) => h("th", { scope: "col", text: t })))),
          h("tbody", {}, o.tenants.map((t) => h("tr", {},
            h("th", { scope: "row", "data-label": "Tenant", text: t.tenant }),
            h("td", { "data-label": "Tokens", class: "num", text: `${fmtInt(t.tokens)}${t.daily_tokens ? ` of ${fmtInt(t.daily_tokens)}` : ""}` }),
            h("td", { "data-label": "Cost", class: "num", text: `${fmtCost(t.cost_usd)}${t.daily_cost_usd ? ` of ${fmtCost(t.daily_cost_usd)}` : ""}` }),
            h("td", { "data-label": "Of the daily budget" }, t.used_ratio === null ? "no daily limit"
              : [h("meter", { min: 0, max: 1, low: 0.8, high: 0.95, optimum: 0, value: Math.min(t.used_ratio, 1), "aria-label": `${t.tenant}: ${fmtPercent(t.used_ratio)} of its daily budget` }), ` ${fmtPercent(t.used_ratio)}`]))))) : h("p", { text: "No tenant has used anything today." }));

      replace(body, h("div", { class: "panels" }, tokenPanel, toolPanel, stepPanel, guardPanel), h("div", { class: "panels two" }, breakers, tenants));
      stamp.textContent = `The latest ${runs.length} run${runs.length === 1 ? "" : "s"} (at most ${o.window}); updated ${fmtTime(o.generated_at)}.`;
    }

    async function load() {
      try {
        render(await api("/v1/overview"));
      } catch (error) {
        banner(`Could not load the overview: ${problemText(error)}`);
      }
    }
    const reload = throttle(load, 3000);
    const el = h("section", { class: "view" },
      h("div", { class: "view-head" }, h("h1", { text: "At a glance" }),
        h("button", { type: "button", class: "quiet", text: "Refresh", on: { click: load } })),
      stamp, body);
    load();
    return {
      name: "glance",
      title: "At a glance",
      el,
      onFeed: (data) => { if (!data.kind || data.kind === "run_finished" || data.kind === "resync") reload(); },
    };
  }

  // -- start ------------------------------------------------------------------------------

  document.getElementById("logout").addEventListener("click", () => logout("Logged out."));
  window.addEventListener("hashchange", route);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    state.token = saved;
    state.lastHash = window.location.hash.startsWith("#/") ? window.location.hash : "#/runs";
    api("/v1/whoami", { login: true }).then((me) => {
      state.me = me;
      loggedIn();
    }, () => logout("Your session's token is no longer valid: log in again."));
  } else {
    state.lastHash = window.location.hash.startsWith("#/") ? window.location.hash : "#/runs";
    renderLogin();
  }
})();
