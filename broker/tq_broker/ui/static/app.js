// The taskqueue dashboard: plain JavaScript, no build step, no third-party code.
//
// Talks only to this broker's REST API and /ws. The API key lives in this tab's
// sessionStorage and travels only in the Authorization header; the WebSocket gets a
// single-use ticket from POST /api/v1/ws-tickets, so the key never appears in a URL.
// Everything user-supplied (task types, errors, payloads) is inserted as text, never as HTML.
// No page asks for an unbounded list: tables are pages of PAGE_SIZE rows, never counted.
"use strict";

const KEY_STORAGE = "tq.apiKey";
const PAGE_SIZE = 50;
const STATUSES = ["pending", "in_progress", "completed", "failed", "dead_letter", "cancelled"];
const OVERVIEW_REFRESH_MS = 5000;
const WORKERS_REFRESH_MS = 5000;
const RELOAD_THROTTLE_MS = 1000;
const REQUEUE_LIMIT = 1000;

const state = { me: null, timer: null, socket: null, socketWanted: null, reloadAt: 0 };

// --- small DOM helpers ---------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "className") el.className = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) el.setAttribute(name, String(value));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

const $ = (id) => document.getElementById(id);

function show(...nodes) {
  $("main").replaceChildren(...nodes);
}

function toast(message, isError) {
  const el = $("toast");
  el.textContent = message;
  el.className = isError ? "error" : "";
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 6000);
}

function badge(status) {
  return h("span", { className: `badge status-${status}`, "data-status": status }, status);
}

function number(n) {
  return Number(n).toLocaleString("en-US");
}

function age(iso) {
  if (!iso) return "—";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return duration(seconds) + " ago";
}

function duration(seconds) {
  if (seconds < 1) return "0 s";
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

function time(iso) {
  return iso ? h("time", { datetime: iso, title: iso }, new Date(iso).toLocaleString()) : "—";
}

// --- the API ------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers.Authorization = `Bearer ${key}`;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options = { ...options, body: JSON.stringify(options.json) };
  }
  const response = await fetch(path, { ...options, headers });
  if (response.status === 204) return null;
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const message = (body && body.error) || `${response.status} ${response.statusText}`;
    if (response.status === 401) signedOut(message);
    throw new ApiError(response.status, message);
  }
  return body;
}

function may(permission) {
  const granted = (state.me && state.me.permissions) || [];
  return granted.includes("admin") || granted.includes(permission);
}

// --- sign-in ------------------------------------------------------------------------

async function start() {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    signedOut("");
  });
  window.addEventListener("hashchange", route);
  try {
    state.me = await api("/api/v1/me");
  } catch (err) {
    if (err.status !== 401) toast(err.message, true);
    return;
  }
  signedIn();
}

async function signIn(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_STORAGE, key);
  try {
    state.me = await api("/api/v1/me");
  } catch (err) {
    sessionStorage.removeItem(KEY_STORAGE);
    $("sign-in-error").textContent = err.message;
    return;
  }
  $("api-key").value = "";
  signedIn();
}

function signedIn() {
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  $("sign-in-error").textContent = "";
  const me = state.me;
  $("who").textContent = me.auth ? `${me.name} · ${me.permissions.join(", ")}` : "authentication off";
  $("sign-out").hidden = !me.auth;
  route();
}

function signedOut(message) {
  state.me = null;
  stopTimers();
  closeSocket();
  $("main").replaceChildren();
  $("nav").hidden = true;
  $("who").textContent = "";
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message || "";
}

// --- routing ------------------------------------------------------------------------

function stopTimers() {
  clearInterval(state.timer);
  state.timer = null;
}

function route() {
  if (!state.me) return;
  stopTimers();
  const path = location.hash.replace(/^#\/?/, "").split("?")[0];
  const [page, arg] = (path || "overview").split("/");
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("current", link.dataset.page === page);
  }
  const pages = { overview, tasks, "dead-letters": deadLetters, workers };
  if (page === "tasks" && arg) return taskDetail(decodeURIComponent(arg));
  (pages[page] || overview)().catch((err) => show(h("p", { className: "error" }, err.message)));
}

function query() {
  const at = location.hash.indexOf("?");
  return new URLSearchParams(at < 0 ? "" : location.hash.slice(at + 1));
}

// --- live updates over /ws ------------------------------------------------------------

function closeSocket() {
  state.socketWanted = null;
  if (state.socket) state.socket.close();
  state.socket = null;
  $("live").className = "live off";
}

// Subscribe with `filters`; `onUpdate(task)` gets each task_update. A new call replaces the
// old subscription; a dropped connection is reopened with a fresh ticket.
async function live(filters, onUpdate) {
  closeSocket();
  const wanted = { filters, onUpdate };
  state.socketWanted = wanted;
  let delay = 500;
  const connect = async () => {
    if (state.socketWanted !== wanted) return;
    let ticket;
    try {
      ticket = (await api("/api/v1/ws-tickets", { method: "POST" })).ticket;
    } catch (err) {
      setTimeout(connect, delay = Math.min(delay * 2, 15000));
      return;
    }
    if (state.socketWanted !== wanted) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws?ticket=${encodeURIComponent(ticket)}`);
    state.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ type: "subscribe", filters }));
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "subscribed") {
        delay = 500;
        $("live").className = "live on";
      } else if (message.type === "task_update") {
        onUpdate(message.task);
      }
    };
    socket.onclose = () => {
      if (state.socket === socket) $("live").className = "live off";
      if (state.socketWanted === wanted) setTimeout(connect, delay = Math.min(delay * 2, 15000));
    };
  };
  await connect();
}

// --- overview -----------------------------------------------------------------------

async function overview() {
  closeSocket();
  const render = async () => {
    const [view, health] = await Promise.all([
      api("/api/v1/overview"),
      fetch("/health").then((r) => r.json()).catch(() => ({ status: "unreachable" })),
    ]);
    if (location.hash && !location.hash.startsWith("#/overview")) return;
    show(overviewPage(view, health));
  };
  await render();
  state.timer = setInterval(() => render().catch((err) => toast(err.message, true)), OVERVIEW_REFRESH_MS);
}

function card(label, value, extra, id) {
  return h("div", { className: `card ${extra || ""}`, id },
    h("div", { className: "label" }, label), h("div", { className: "value" }, value));
}

function overviewPage(view, health) {
  const unserved = new Set(view.unserved_task_types);
  const maxPriority = Math.max(1, ...Object.values(view.by_priority));
  return h("div", { id: "overview" },
    h("h1", {}, "Overview"),
    unserved.size ? h("p", { className: "note", id: "unserved-note" },
      `Ready tasks with no online worker: ${[...unserved].join(", ")}`) : null,
    h("div", { className: "cards" },
      card("Pending", number(view.pending), "", "count-pending"),
      card("Ready now", number(view.ready), "", "count-ready"),
      card("Scheduled", number(view.scheduled), "", "count-scheduled"),
      card("In progress", number(view.in_progress), "", "count-in-progress"),
      card("Dead letters", number(view.dead_letter), view.dead_letter ? "bad" : "", "count-dead-letter"),
      card("Workers online", number(view.workers_online), view.workers_online ? "ok" : "bad", "count-workers"),
      card("This replica", `${health.status}${health.is_leader ? " · leader" : ""}`,
        health.status === "healthy" ? "ok" : "bad", "replica"),
    ),
    h("div", { className: "columns" },
      h("div", {},
        h("h2", {}, "Completed and failed, last hour (per minute)"),
        throughputChart(view.throughput, view.as_of),
        h("div", { className: "legend" },
          h("span", {}, h("span", { className: "swatch completed" }), "completed"),
          h("span", {}, h("span", { className: "swatch failed" }), "failed attempts"))),
      h("div", {},
        h("h2", {}, "Pending by priority"),
        h("div", { className: "bars", id: "by-priority" },
          ["high", "normal", "low"].map((bucket) => h("div", { className: "bar" },
            h("span", {}, bucket),
            h("div", { className: "track" }, widthBar(view.by_priority[bucket] / maxPriority)),
            h("span", { className: "num" }, number(view.by_priority[bucket]))))))),
    h("h2", {}, "By task type"),
    h("table", { id: "task-types" },
      h("thead", {}, h("tr", {}, h("th", {}, "task type"), h("th", { className: "num" }, "ready"),
        h("th", { className: "num" }, "scheduled"), h("th", { className: "num" }, "in progress"),
        h("th", { className: "num" }, "dead letters"), h("th", { className: "num" }, "oldest ready"),
        h("th", {}, "workers"))),
      h("tbody", {}, view.task_types.map((t) => h("tr", { className: unserved.has(t.task_type) ? "unserved" : "", "data-task-type": t.task_type },
        h("td", {}, h("a", { href: `#/tasks?task_type=${encodeURIComponent(t.task_type)}` }, t.task_type)),
        h("td", { className: "num" }, number(t.ready)), h("td", { className: "num" }, number(t.scheduled)),
        h("td", { className: "num" }, number(t.in_progress)), h("td", { className: "num" }, number(t.dead_letter)),
        h("td", { className: "num" }, t.ready ? duration(t.oldest_ready_seconds) : "—"),
        h("td", {}, t.served ? "online" : h("span", { className: "badge warn" }, "no worker")))))),
    view.task_types_more ? h("p", { className: "muted" }, "Only the busiest task types are shown.") : null,
    h("p", { className: "muted" }, `As of ${new Date(view.as_of).toLocaleTimeString()}; refreshes every 5 s.`),
  );
}

function widthBar(fraction) {
  const fill = h("div", { className: "fill" });
  fill.style.width = `${Math.round(fraction * 100)}%`; // CSSOM, allowed by the page's CSP
  return fill;
}

function throughputChart(minutes, asOf) {
  const width = 600, height = 200, pad = 24;
  const end = Date.parse(asOf);
  const start = end - 3600 * 1000;
  const top = Math.max(1, ...minutes.map((m) => m.completed + m.failed));
  const slot = (width - 2 * pad) / 60;
  const chart = svg("svg", { class: "chart", id: "throughput", viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none" });
  for (const m of minutes) {
    const x = pad + ((Date.parse(m.minute) - start) / 60000) * slot;
    const scale = (height - 2 * pad) / top;
    const done = m.completed * scale, failed = m.failed * scale;
    chart.append(svg("rect", { class: "completed", x, width: Math.max(1, slot - 1), y: height - pad - done, height: done }));
    chart.append(svg("rect", { class: "failed", x, width: Math.max(1, slot - 1), y: height - pad - done - failed, height: failed }));
  }
  chart.append(svg("text", { x: pad, y: height - 6 }, "-60 min"));
  chart.append(svg("text", { x: width - pad - 24, y: height - 6 }, "now"));
  chart.append(svg("text", { x: pad, y: 14 }, `${number(top)}/min`));
  return chart;
}

// --- tasks --------------------------------------------------------------------------

async function tasks() {
  const params = query();
  const status = params.get("status") || "";
  const taskType = params.get("task_type") || "";
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  const table = h("tbody", { id: "task-rows" });
  const pager = h("div", { className: "pager" });
  const statusSelect = h("select", { id: "filter-status" },
    h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)));
  const typeInput = h("input", { id: "filter-type", placeholder: "task type", value: taskType });
  const apply = (extra) => {
    const next = new URLSearchParams();
    if (statusSelect.value) next.set("status", statusSelect.value);
    if (typeInput.value.trim()) next.set("task_type", typeInput.value.trim());
    if (extra) next.set("offset", extra);
    location.hash = `#/tasks?${next}`;
  };
  statusSelect.addEventListener("change", () => apply());
  typeInput.addEventListener("change", () => apply());
  show(h("div", { id: "tasks" },
    h("h1", {}, "Tasks"),
    h("div", { className: "toolbar" }, statusSelect, typeInput,
      h("button", { className: "secondary", type: "button", onclick: () => apply() }, "Filter")),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "task id"), h("th", {}, "type"),
      h("th", {}, "status"), h("th", { className: "num" }, "priority"), h("th", {}, "created"),
      h("th", {}, "updated"))), table),
    pager));
  const load = async () => {
    const q = new URLSearchParams({ limit: PAGE_SIZE + 1, offset });
    if (status) q.set("status", status);
    if (taskType) q.set("task_type", taskType);
    const rows = await api(`/api/v1/tasks?${q}`);
    table.replaceChildren(...rows.slice(0, PAGE_SIZE).map(taskRow));
    table.dataset.loaded = String(Date.now());
    pager.replaceChildren(
      h("button", { className: "secondary", type: "button", id: "newer", disabled: offset === 0,
        onclick: () => apply(String(Math.max(0, offset - PAGE_SIZE))) }, "← Newer"),
      h("span", { className: "muted" }, `rows ${number(offset + 1)}–${number(offset + Math.min(rows.length, PAGE_SIZE))}`),
      h("button", { className: "secondary", type: "button", id: "older", disabled: rows.length <= PAGE_SIZE,
        onclick: () => apply(String(offset + PAGE_SIZE)) }, "Older →"));
  };
  await load();
  // Live: update rows in place; on the first page, new matching tasks reload it (at most
  // once a second, however fast tasks arrive).
  const filters = {};
  if (status) filters.statuses = [status];
  if (taskType) filters.task_types = [taskType];
  await live(filters, (task) => {
    const row = table.querySelector(`tr[data-task-id="${CSS.escape(task.task_id)}"]`);
    if (row) {
      row.querySelector("td.status").replaceChildren(badge(task.status));
      row.querySelector("td.updated").replaceChildren(time(task.updated_at));
      row.classList.remove("flash");
      void row.offsetWidth;
      row.classList.add("flash");
    } else if (offset === 0) {
      reloadSoon(load);
    }
  });
}

function reloadSoon(load) {
  const now = Date.now();
  if (state.reloadPending) return;
  const wait = Math.max(0, state.reloadAt + RELOAD_THROTTLE_MS - now);
  state.reloadPending = true;
  setTimeout(() => {
    state.reloadPending = false;
    state.reloadAt = Date.now();
    load().catch((err) => toast(err.message, true));
  }, wait);
}

function taskRow(task) {
  return h("tr", { "data-task-id": task.task_id },
    h("td", {}, h("a", { href: `#/tasks/${task.task_id}` }, h("code", {}, task.task_id))),
    h("td", {}, task.task_type),
    h("td", { className: "status" }, badge(task.status)),
    h("td", { className: "num" }, task.priority),
    h("td", {}, time(task.created_at)),
    h("td", { className: "updated" }, time(task.updated_at)));
}

// --- task detail --------------------------------------------------------------------

async function taskDetail(taskId) {
  const task = await api(`/api/v1/tasks/${encodeURIComponent(taskId)}`).catch((err) => err);
  if (task instanceof Error) {
    show(h("div", {}, h("h1", {}, "Task"), h("p", { className: "error", id: "task-error" }, task.message)));
    return;
  }
  const [payload, attempts] = await Promise.all([
    api(`/api/v1/tasks/${task.task_id}/payload`).catch(() => null),
    api(`/api/v1/tasks/${task.task_id}/attempts`).catch(() => null), // the SDK's history, if the broker has it
  ]);
  const actions = h("div", { className: "toolbar", id: "actions" });
  const waiting = task.status === "pending" || task.status === "failed";
  if (waiting && may("cancel_tasks")) {
    actions.append(h("button", { className: "danger", type: "button", id: "cancel",
      onclick: () => act(`/api/v1/tasks/${task.task_id}`, { method: "DELETE" }, "Cancelled") }, "Cancel task"));
  }
  if (task.status === "dead_letter" && may("admin")) {
    actions.append(h("button", { type: "button", id: "requeue",
      onclick: () => act(`/api/v1/tasks/${task.task_id}/requeue`, { method: "POST" }, "Requeued") }, "Requeue"));
  }
  const refused = [];
  if (waiting && !may("cancel_tasks")) refused.push("cancel (needs cancel_tasks)");
  if (task.status === "dead_letter" && !may("admin")) refused.push("requeue (needs admin)");
  show(h("div", { id: "task-detail", "data-status": task.status },
    h("h1", {}, "Task ", h("code", {}, task.task_id)),
    actions,
    refused.length ? h("p", { className: "note", id: "not-allowed" }, `Your key may not: ${refused.join(", ")}.`) : null,
    h("dl", { className: "fields" },
      field("status", badge(task.status)), field("task type", task.task_type),
      field("priority", task.priority), field("retries", task.retry_count),
      field("worker", task.worker_id || "—"), field("created", time(task.created_at)),
      field("updated", time(task.updated_at)),
      // Beyond the contract: shown when the broker reports them.
      task.max_retries != null ? field("max retries", task.max_retries) : null,
      task.timeout_seconds != null ? field("timeout", `${task.timeout_seconds} s`) : null,
      task.run_at ? field("due", time(task.run_at)) : null),
    h("h2", {}, "Payload"), bytesView(payload && payload.payload, "payload"),
    h("h2", {}, "Result"), bytesView(task.result, "result"),
    task.error ? [h("h2", {}, "Error"), h("pre", { id: "error" }, task.error)] : null,
    attempts ? attemptsTable(attempts) : null));
  await live({}, (update) => {
    if (update.task_id === task.task_id && location.hash === `#/tasks/${task.task_id}`) route();
  });
}

async function act(path, options, done) {
  try {
    await api(path, options);
    toast(done);
  } catch (err) {
    toast(err.message, true);
  }
  route();
}

function field(name, value) {
  return [h("dt", {}, name), h("dd", { "data-field": name }, value)];
}

// Bytes as UTF-8 text, or pretty JSON when they are JSON; hex when they are not UTF-8.
function bytesView(base64, id) {
  if (base64 === null || base64 === undefined) return h("p", { className: "muted", id }, "none");
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  let text = null;
  try { text = new TextDecoder("utf-8", { fatal: true }).decode(bytes); } catch (_) { text = null; }
  if (text !== null) {
    try {
      const parsed = JSON.parse(text);
      if (typeof parsed === "object" && parsed !== null) {
        return h("pre", { id, "data-format": "json" }, JSON.stringify(parsed, null, 2));
      }
    } catch (_) { /* not JSON: plain text */ }
    return h("pre", { id, "data-format": "text" }, text.length ? text : "(empty)");
  }
  const shown = bytes.slice(0, 4096);
  const lines = [];
  for (let i = 0; i < shown.length; i += 16) {
    const chunk = Array.from(shown.slice(i, i + 16), (b) => b.toString(16).padStart(2, "0"));
    lines.push(`${i.toString(16).padStart(6, "0")}  ${chunk.join(" ")}`);
  }
  if (bytes.length > shown.length) lines.push(`… ${number(bytes.length)} bytes in all`);
  return h("pre", { id, "data-format": "hex" }, lines.join("\n"));
}

function attemptsTable(attempts) {
  const list = Array.isArray(attempts) ? attempts : attempts.attempts || [];
  if (!list.length) return null;
  const columns = Object.keys(list[0]).filter((k) => k !== "task_id");
  return [h("h2", {}, "Attempts"),
    h("table", { id: "attempts" },
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c.replaceAll("_", " "))))),
      h("tbody", {}, list.map((a) => h("tr", {}, columns.map((c) => h("td", {},
        typeof a[c] === "string" && a[c].includes("\n") ? h("pre", {}, a[c]) : (a[c] ?? "—")))))))];
}

// --- dead letters -------------------------------------------------------------------

async function deadLetters() {
  const params = query();
  const taskType = params.get("task_type") || "";
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  const q = new URLSearchParams({ status: "dead_letter", limit: PAGE_SIZE + 1, offset });
  if (taskType) q.set("task_type", taskType);
  const rows = await api(`/api/v1/tasks?${q}`);
  const typeInput = h("input", { id: "dead-type", placeholder: "task type (all)", value: taskType });
  const go = (nextOffset) => {
    const next = new URLSearchParams();
    if (typeInput.value.trim()) next.set("task_type", typeInput.value.trim());
    if (nextOffset) next.set("offset", nextOffset);
    location.hash = `#/dead-letters?${next}`;
  };
  typeInput.addEventListener("change", () => go());
  const which = taskType ? `dead letters of type ${taskType}` : "dead letters";
  const requeue = may("admin") && rows.length
    ? h("button", { type: "button", id: "requeue-all", onclick: async () => {
        if (!confirm(`Requeue the ${which} (up to ${number(REQUEUE_LIMIT)}, oldest first)?`)) return;
        try {
          const body = { limit: REQUEUE_LIMIT };
          if (taskType) body.task_type = taskType;
          const answer = await api("/api/v1/tasks/requeue", { method: "POST", json: body });
          toast(`Requeued ${number(answer.requeued.length)}${answer.remaining ? "; more remain" : ""}.`);
        } catch (err) {
          toast(err.message, true);
        }
        route();
      } }, `Requeue ${which}`)
    : null;
  show(h("div", { id: "dead-letters" },
    h("h1", {}, "Dead letters"),
    h("div", { className: "toolbar" }, typeInput,
      h("button", { className: "secondary", type: "button", onclick: () => go() }, "Filter"), requeue),
    may("admin") ? null : h("p", { className: "note", id: "not-allowed" }, "Your key may not requeue (needs admin)."),
    rows.length ? h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "task id"), h("th", {}, "type"), h("th", { className: "num" }, "priority"),
        h("th", {}, "created"), h("th", {}, "dead since"))),
      h("tbody", { id: "dead-rows" }, rows.slice(0, PAGE_SIZE).map((t) => h("tr", { "data-task-id": t.task_id },
        h("td", {}, h("a", { href: `#/tasks/${t.task_id}` }, h("code", {}, t.task_id))),
        h("td", {}, t.task_type), h("td", { className: "num" }, t.priority),
        h("td", {}, time(t.created_at)), h("td", {}, time(t.updated_at))))))
      : h("p", { className: "muted", id: "no-dead-letters" }, "No dead letters."),
    h("div", { className: "pager" },
      h("button", { className: "secondary", type: "button", disabled: offset === 0, onclick: () => go(String(Math.max(0, offset - PAGE_SIZE))) }, "← Newer"),
      h("button", { className: "secondary", type: "button", disabled: rows.length <= PAGE_SIZE, onclick: () => go(String(offset + PAGE_SIZE)) }, "Older →"))));
  await live({ statuses: ["dead_letter"], task_types: taskType ? [taskType] : [] }, () => {
    if (offset === 0) reloadSoon(deadLetters);
  });
}

// --- workers ------------------------------------------------------------------------

async function workers() {
  closeSocket();
  const render = async () => {
    const list = await api("/api/v1/workers");
    if (!location.hash.startsWith("#/workers")) return;
    const optional = (w, name) => (w[name] === undefined || w[name] === null ? "—" : w[name]);
    show(h("div", { id: "workers" },
      h("h1", {}, "Workers"),
      list.length ? h("table", {},
        h("thead", {}, h("tr", {}, ["worker", "status", "task types", "concurrency", "held tasks", "cpu %", "memory MB", "last heartbeat", "registered"]
          .map((c) => h("th", {}, c)))),
        h("tbody", { id: "worker-rows" }, list.map((w) => h("tr", { "data-worker-id": w.worker_id },
          h("td", {}, h("code", {}, w.worker_id)), h("td", {}, optional(w, "status")),
          h("td", {}, Array.isArray(w.task_types) ? w.task_types.join(", ") : "—"),
          h("td", { className: "num" }, optional(w, "concurrency")),
          h("td", { className: "num" }, w.current_tasks),
          h("td", { className: "num" }, Number(w.cpu_usage_percent).toFixed(1)),
          h("td", { className: "num" }, Math.round(w.memory_usage_mb)),
          h("td", {}, age(w.last_heartbeat)), h("td", {}, time(w.registered_at))))))
        : h("p", { className: "muted", id: "no-workers" }, "No workers online.")));
  };
  await render();
  state.timer = setInterval(() => render().catch((err) => toast(err.message, true)), WORKERS_REFRESH_MS);
}

start();
