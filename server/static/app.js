// raydo dashboard: plain ES modules, no build step. It reads and controls instances only through
// the HTTP API (/api/workflows), refreshing by polling while a list is open; an instance's page
// follows its event stream (server-sent events) instead. Data from the API is always put into the
// page as text (never as HTML).

const API = "/api/workflows";
const STATUSES = [
  "queued", "running", "waiting", "waitingForPause", "paused", "complete", "errored", "terminated",
];
const FINISHED = new Set(["complete", "errored", "terminated"]);
const view = document.getElementById("view");
const crumbs = document.getElementById("crumbs");
let refresh = null; // the pending poll of the current page
let generation = 0; // bumps on every navigation, so a late poll of an old page is dropped
let streamAbort = null; // stops the event stream of the page being left

// -- small helpers -------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "style") Object.assign(el.style, value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function badge(status) {
  return h("span", { class: `badge s-${status}`, "data-status": status }, status);
}

function toast(message, kind = "ok") {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = `show ${kind}`;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (el.className = ""), 3500);
}

function parseTime(value) {
  return value ? new Date(value).getTime() : null;
}

function clock(value) {
  if (!value) return "–";
  const d = new Date(value);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function dateTime(value) {
  if (!value) return "–";
  const d = new Date(value);
  return `${d.toLocaleDateString()} ${clock(value)}`;
}

// "1 instance", "2 instances": every count shown with its noun goes through here.
function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function span(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const m = Math.floor(ms / 60000);
  if (m < 60) return `${m}m ${Math.round((ms % 60000) / 1000)}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

function short(value, limit = 80) {
  const text = value === undefined ? "" : JSON.stringify(value);
  return text.length > limit ? text.slice(0, limit - 1) + "…" : text;
}

function pretty(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

// -- the API ---------------------------------------------------------------------------------------

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  const token = sessionStorage.getItem("raydo-token");
  if (token) headers.authorization = `Bearer ${token}`;
  if (options.body !== undefined) headers["content-type"] = "application/json";
  const reply = await fetch(path, { ...options, headers });
  if (reply.status === 401) {
    const given = prompt("This raydo server needs its access token:");
    if (given) {
      sessionStorage.setItem("raydo-token", given);
      return api(path, options);
    }
  }
  const body = await reply.json().catch(() => ({ code: "bad_reply", message: reply.statusText }));
  if (!reply.ok) throw Object.assign(new Error(body.message || reply.statusText), body);
  return body;
}

const enc = encodeURIComponent;

// -- routing ---------------------------------------------------------------------------------------

function route() {
  clearTimeout(refresh);
  if (streamAbort) streamAbort.abort();
  streamAbort = null;
  generation += 1;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "w" && parts[1] && parts[2] === "i" && parts[3]) {
    showInstance(parts[1], parts[3], generation);
  } else if (parts[0] === "w" && parts[1]) {
    showInstances(parts[1], generation);
  } else {
    showWorkflows(generation);
  }
}

function setCrumbs(...items) {
  crumbs.replaceChildren(
    ...items.flatMap((item, i) => [
      ...(i ? [h("span", { class: "sep" }, "/")] : []),
      item.href ? h("a", { href: item.href }, item.text) : h("span", {}, item.text),
    ]),
  );
}

function poll(gen, fn, ms) {
  if (gen !== generation) return;
  refresh = setTimeout(async () => {
    if (gen !== generation) return;
    try {
      await fn();
    } catch (err) {
      console.warn(err);
    }
    poll(gen, fn, ms);
  }, ms);
}

function fail(err) {
  view.replaceChildren(h("div", { class: "card error-card" }, h("h2", {}, "Cannot show this page"), h("p", {}, err.message)));
}

// -- workflows -------------------------------------------------------------------------------------

async function showWorkflows(gen) {
  setCrumbs({ text: "Workflows" });
  const draw = async () => {
    const { result } = await api(API);
    if (gen !== generation) return;
    const cards = result.map((wf) =>
      h("a", { class: "card wf-card", href: `#/w/${enc(wf.name)}`, "data-workflow": wf.name },
        h("div", { class: "wf-head" },
          h("h2", {}, wf.name),
          h("span", { class: "muted" }, wf.class)),
        h("div", { class: "wf-total" }, h("strong", {}, wf.instances.total), wf.instances.total === 1 ? " instance" : " instances",
          h("span", { class: "muted" }, ` · concurrency ${wf.concurrency}`)),
        countPills(wf.instances)));
    view.replaceChildren(
      h("h1", {}, "Workflows"),
      cards.length ? h("div", { class: "grid" }, cards) : h("p", { class: "muted" }, "No workflows are declared in the project config."),
    );
  };
  try {
    await draw();
    poll(gen, draw, 2000);
  } catch (err) {
    fail(err);
  }
}

function countPills(counts, onPick) {
  if (!STATUSES.some((s) => counts[s])) return h("div", { class: "pills muted" }, "No instances yet.");
  return h("div", { class: "pills" },
    STATUSES.filter((s) => counts[s]).map((s) =>
      h(onPick ? "button" : "span", { class: `pill s-${s}`, onclick: onPick && (() => onPick(s)), "data-count": s },
        h("span", { class: "n" }, counts[s]), " ", s)));
}

// -- instances of one workflow ------------------------------------------------------------------

async function showInstances(name, gen) {
  setCrumbs({ text: "Workflows", href: "#/" }, { text: name });
  const state = { status: sessionStorage.getItem(`filter-${name}`) || "", search: "", rows: [], cursor: null, shown: 50 };
  const counts = h("div", { class: "counts" });
  const table = h("tbody");
  const more = h("button", { class: "ghost", onclick: () => load(true) }, "Load more");
  const filter = h("select", { id: "status-filter", "aria-label": "status filter", onchange: (e) => { state.status = e.target.value; sessionStorage.setItem(`filter-${name}`, state.status); load(false); } },
    h("option", { value: "" }, "All statuses"), STATUSES.map((s) => h("option", { value: s }, s)));
  filter.value = state.status;
  const search = h("input", { id: "search", type: "search", placeholder: "Search or open an instance id", "aria-label": "search by id",
    oninput: (e) => { state.search = e.target.value.trim(); drawRows(); },
    onkeydown: (e) => { if (e.key === "Enter") openId(name, state.search); } });

  const drawRows = () => {
    const rows = state.rows.filter((r) => !state.search || r.id.includes(state.search));
    table.replaceChildren(...rows.map((r) =>
      h("tr", { "data-id": r.id },
        h("td", {}, h("a", { href: `#/w/${enc(name)}/i/${enc(r.id)}`, class: "mono" }, r.id)),
        h("td", {}, badge(r.status)),
        h("td", {}, dateTime(r.created_on)),
        h("td", {}, span(r.start ? (parseTime(r.end) || Date.now()) - parseTime(r.start) : null)),
        h("td", { class: "err-cell" }, r.error ? `${r.error.name}: ${r.error.message}` : ""))));
    if (!rows.length) table.replaceChildren(h("tr", {}, h("td", { colspan: 5, class: "muted empty" }, state.search ? "No instance on this page matches." : "No instances yet.")));
    more.hidden = !state.cursor;
  };

  const load = async (append) => {
    const params = new URLSearchParams({ limit: String(append ? 50 : state.shown) });
    if (state.status) params.set("status", state.status);
    if (append && state.cursor) params.set("cursor", state.cursor);
    const [page, wf] = await Promise.all([api(`${API}/${enc(name)}/instances?${params}`), api(`${API}/${enc(name)}`)]);
    if (gen !== generation) return;
    state.rows = append ? state.rows.concat(page.result) : page.result;
    state.shown = Math.max(50, state.rows.length);
    state.cursor = page.result_info.cursor;
    counts.replaceChildren(h("span", { class: "muted" }, plural(wf.result.instances.total, "instance")),
      countPills(wf.result.instances, (s) => { filter.value = s; filter.dispatchEvent(new Event("change")); }));
    drawRows();
  };

  view.replaceChildren(
    h("div", { class: "title-row" }, h("h1", {}, name), counts),
    createForm(name),
    h("div", { class: "card" },
      h("div", { class: "toolbar" }, filter, search),
      h("table", { class: "list" },
        h("thead", {}, h("tr", {}, ["Instance", "Status", "Created", "Duration", "Error"].map((t) => h("th", {}, t)))),
        table),
      h("div", { class: "more" }, more)),
  );
  try {
    await load(false);
    poll(gen, () => load(false), 2000);
  } catch (err) {
    fail(err);
  }
}

async function openId(name, id) {
  if (!id) return;
  try {
    await api(`${API}/${enc(name)}/instances/${enc(id)}`);
    location.hash = `#/w/${enc(name)}/i/${enc(id)}`;
  } catch (err) {
    toast(err.message, "bad");
  }
}

function createForm(name) {
  const id = h("input", { id: "new-id", placeholder: "id (optional)", "aria-label": "new instance id" });
  const params = h("textarea", { id: "new-params", rows: 1, placeholder: 'params as JSON, e.g. {"name": "ana"}', "aria-label": "params as JSON" });
  const submit = async (e) => {
    e.preventDefault();
    let value = null;
    try {
      value = params.value.trim() ? JSON.parse(params.value) : null;
    } catch (err) {
      toast(`params are not JSON: ${err.message}`, "bad");
      return;
    }
    try {
      const body = { params: value };
      if (id.value.trim()) body.id = id.value.trim();
      const { result } = await api(`${API}/${enc(name)}/instances`, { method: "POST", body: JSON.stringify(body) });
      toast(`created ${result.id}`);
      location.hash = `#/w/${enc(name)}/i/${enc(result.id)}`;
    } catch (err) {
      toast(err.message, "bad");
    }
  };
  return h("form", { class: "card create", onsubmit: submit },
    h("strong", {}, "New instance"), id, params, h("button", { type: "submit", id: "create" }, "Create"));
}

// -- one instance --------------------------------------------------------------------------------

async function showInstance(name, id, gen) {
  setCrumbs({ text: "Workflows", href: "#/" }, { text: name, href: `#/w/${enc(name)}` }, { text: id });
  const progress = new Map(); // step label -> its latest step_emitted event
  let inst = null;
  const render = () => {
    if (gen !== generation || !inst) return;
    const page = h("div", { class: "instance", "data-status": inst.status },
      h("div", { class: "title-row" }, h("h1", { class: "mono" }, inst.id), badge(inst.status)),
      metaGrid(inst),
      h("div", { class: "card" }, h("h2", {}, "Timeline"), timeline(inst)),
      progressCard(inst, progress),
      h("div", { class: "columns" },
        h("div", { class: "card" }, h("h2", {}, "Params"), pretty(inst.params)),
        inst.error
          ? h("div", { class: "card error-card" }, h("h2", {}, "Error"), h("p", { class: "mono" }, `${inst.error.name}: ${inst.error.message}`))
          : h("div", { class: "card" }, h("h2", {}, "Output"), inst.status === "complete" ? pretty(inst.output) : h("p", { class: "muted" }, "Not finished yet."))),
      h("div", { class: "card" }, h("h2", {}, "Steps"), stepsTable(inst)));
    // The action bar survives refreshes, so what someone is typing into it is kept.
    let actions = view.querySelector(".actions");
    if (actions && actions.dataset.instance === `${name}/${inst.id}`) updateActions(actions, inst);
    else actions = actionBar(name, inst);
    page.insertBefore(actions, page.children[1]);
    view.replaceChildren(page);
  };
  const draw = async () => {
    ({ result: inst } = await api(`${API}/${enc(name)}/instances/${enc(id)}`));
    render();
  };
  let queued = null; // events come in bursts: one fetch of the details per 150 ms at most
  const changed = () => {
    if (queued) return;
    queued = setTimeout(async () => {
      queued = null;
      await draw().catch((err) => console.warn(err));
    }, 150);
  };
  try {
    await draw();
  } catch (err) {
    fail(err);
    return;
  }
  follow(gen, `${API}/${enc(name)}/instances/${enc(id)}/stream`, (ev) => {
    if (ev.type === "step_emitted") progress.set(ev.count > 1 ? `${ev.step} #${ev.count}` : ev.step, ev);
    changed();
  });
  // Between events only the clock moves: redraw from what we have (no request).
  poll(gen, async () => { if (inst && !FINISHED.has(inst.status)) render(); }, 1000);
}

// The instance's server-sent events, read with fetch (EventSource cannot send the token), resumed
// from the last event's id after a dropped connection; ends with the stream's "end" message.
async function follow(gen, url, onEvent) {
  let cursor = null;
  while (gen === generation) {
    streamAbort = new AbortController();
    try {
      const headers = { accept: "text/event-stream" };
      const token = sessionStorage.getItem("raydo-token");
      if (token) headers.authorization = `Bearer ${token}`;
      if (cursor !== null) headers["last-event-id"] = cursor;
      const reply = await fetch(url, { headers, signal: streamAbort.signal });
      if (reply.status === 404) return; // deleted: nothing more will come
      if (!reply.ok) throw new Error(`event stream: ${reply.status} ${reply.statusText}`);
      const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const msg = parseSse(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (msg.event === "end") return;
          if (msg.id !== undefined) cursor = msg.id;
          if (msg.event && msg.data) onEvent(JSON.parse(msg.data));
        }
      }
    } catch (err) {
      if (err.name === "AbortError") return;
      console.warn(err);
    }
    await new Promise((done) => setTimeout(done, 1000));
  }
}

function parseSse(block) {
  const msg = {};
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const at = line.indexOf(":");
    const field = at < 0 ? line : line.slice(0, at);
    const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
    msg[field] = field === "data" && msg.data !== undefined ? `${msg.data}\n${value}` : value;
  }
  return msg;
}

// What steps emitted with ctx.emit: the latest record of each, live; a bar for a percentage.
function progressCard(inst, progress) {
  if (!progress.size) return null;
  const rows = [...progress.entries()].map(([label, ev]) => {
    const pct = percentOf(ev.data);
    return h("div", { class: "progress-row", "data-step": label },
      h("span", { class: "step-name" }, label),
      h("span", { class: "muted" }, `attempt ${ev.attempt} · ${clock(ev.at)}`),
      pct === null ? null : h("span", { class: "meter" }, h("i", { style: { width: `${pct}%` } })),
      h("code", { class: "emitted" }, short(ev.data)));
  });
  return h("div", { class: "card" }, h("h2", {}, "Progress"), rows);
}

function percentOf(data) {
  if (typeof data === "number") return data >= 0 && data <= 100 ? data : null;
  if (data && typeof data === "object") {
    for (const key of ["percent", "pct", "progress"]) {
      if (typeof data[key] === "number" && data[key] >= 0 && data[key] <= 100) return data[key];
    }
  }
  return null;
}

function metaGrid(inst) {
  const started = parseTime(inst.start);
  const ended = parseTime(inst.end);
  const lastOk = [...inst.steps].reverse().find((s) => s.success);
  const items = [
    ["Queued", dateTime(inst.created_on)],
    ["Started", dateTime(inst.start)],
    ["Ended", dateTime(inst.end)],
    ["Duration", span(started ? (ended || Date.now()) - started : null)],
    ["Last successful step", lastOk ? lastOk.name : "–"],
    ["Steps", String(inst.step_count)],
  ];
  if (inst.wake_at && !FINISHED.has(inst.status)) items.push(["Wakes at", dateTime(inst.wake_at)]);
  return h("div", { class: "card meta" }, items.map(([k, v]) => h("div", {}, h("div", { class: "k" }, k), h("div", { class: "v" }, v))));
}

function actionBar(name, inst) {
  const base = `${API}/${enc(name)}/instances/${enc(inst.id)}`;
  const act = async (action, extra = {}) => {
    try {
      const { result } = await api(`${base}/status`, { method: "PATCH", body: JSON.stringify({ action, ...extra }) });
      toast(`${action}: now ${result.status}`);
      route();
    } catch (err) {
      toast(err.message, "bad");
    }
  };
  const fromStep = h("select", { id: "restart-from", "aria-label": "restart from step" });
  const type = h("input", { id: "event-type", placeholder: "event type", "aria-label": "event type" });
  const payload = h("input", { id: "event-payload", placeholder: "payload JSON", "aria-label": "event payload" });
  const send = async () => {
    let body = "";
    try {
      body = payload.value.trim() ? JSON.stringify(JSON.parse(payload.value)) : "";
    } catch (err) {
      toast(`payload is not JSON: ${err.message}`, "bad");
      return;
    }
    try {
      await api(`${base}/events/${enc(type.value.trim())}`, { method: "POST", body });
      toast(`event ${type.value.trim()} sent`);
      route();
    } catch (err) {
      toast(err.message, "bad");
    }
  };
  const bar = h("div", { class: "card actions", "data-instance": `${name}/${inst.id}` },
    h("button", { id: "pause", onclick: () => act("pause") }, "Pause"),
    h("button", { id: "resume", onclick: () => act("resume") }, "Resume"),
    h("button", { id: "terminate", class: "danger", onclick: () => act("terminate") }, "Terminate"),
    h("span", { class: "group" },
      h("button", { id: "restart", onclick: () => act("restart", fromStep.value ? { from: JSON.parse(fromStep.value) } : {}) }, "Restart"),
      fromStep),
    h("span", { class: "group" }, type, payload, h("button", { id: "send-event", onclick: send }, "Send event")));
  updateActions(bar, inst);
  return bar;
}

function updateActions(bar, inst) {
  const done = FINISHED.has(inst.status);
  bar.querySelector("#pause").disabled = done || inst.status === "paused" || inst.status === "waitingForPause";
  bar.querySelector("#resume").disabled = inst.status !== "paused";
  bar.querySelector("#terminate").disabled = done;
  bar.querySelector("#send-event").disabled = done;
  const select = bar.querySelector("#restart-from");
  const chosen = select.value;
  const options = [h("option", { value: "" }, "from the start")].concat(
    inst.steps.map((s) => h("option", { value: JSON.stringify({ name: s.name, count: s.count }) }, `from “${s.name}”${s.count > 1 ? ` #${s.count}` : ""}`)));
  select.replaceChildren(...options);
  select.value = chosen;
}

// -- timeline: a bar per step on one time axis ----------------------------------------------------

function timeline(inst) {
  const now = Date.now();
  const t0 = parseTime(inst.created_on) ?? parseTime(inst.start) ?? now;
  const live = !FINISHED.has(inst.status);
  const end = live ? now : Math.max(parseTime(inst.end) || now, ...inst.steps.map((s) => parseTime(s.end) || 0));
  const width = Math.max(end - t0, 1) * (live ? 1.08 : 1.0);
  const pos = (t) => `${Math.min(100, Math.max(0, ((t - t0) / width) * 100))}%`;
  const len = (a, b) => `${Math.max(0.4, Math.min(100, ((b - a) / width) * 100))}%`;
  // A bar too narrow for its label shows the label beside it instead.
  const narrow = (a, b) => ((b - a) / width) * 100 < 9;
  const axisEnd = t0 + width;

  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) =>
    h("span", { class: "tick", style: { left: `${f * 100}%` } }, f === 0 ? "0" : `+${span(width * f)}`));
  const rows = [instanceRow(inst, t0, end, pos, len)].concat(
    inst.steps.map((s) => stepRow(inst, s, now, axisEnd, pos, len, narrow)));
  return h("div", { class: "timeline" },
    h("div", { class: "tl-row axis" }, h("div", { class: "tl-label" }), h("div", { class: "tl-track" }, ticks)),
    rows,
    live ? h("div", { class: "tl-row now-row" }, h("div", { class: "tl-label" }), h("div", { class: "tl-track" }, h("span", { class: "now", style: { left: pos(now) } }, "now"))) : null,
    legend());
}

function instanceRow(inst, t0, end, pos, len) {
  const start = parseTime(inst.start) || t0;
  const queued = start > t0 ? h("div", { class: "bar queued", style: { left: pos(t0), width: len(t0, start) }, title: "queued" }) : null;
  return h("div", { class: "tl-row instance-row" },
    h("div", { class: "tl-label" }, h("strong", {}, "instance"), h("span", { class: "muted" }, inst.status)),
    h("div", { class: "tl-track" }, queued,
      h("div", { class: `bar inst s-${inst.status}`, style: { left: pos(start), width: len(start, end) } },
        h("span", {}, span(end - start)))));
}

function stepRow(inst, s, now, axisEnd, pos, len, narrow) {
  const start = parseTime(s.start) || now;
  const until = parseTime(s.until);
  const ended = parseTime(s.end);
  const bars = [];
  let note = "";
  const tries = (inst.attempts || []).filter((a) => a.step === s.name && a.count === s.count);
  if (s.type === "do" && tries.length > 1) {
    // One bar per attempt: failed ones red, the last green when it succeeded.
    for (const a of tries) {
      const from = parseTime(a.started_at) || start;
      const to = parseTime(a.ended_at) || now;
      const kind = a.success === true ? "ok" : a.success === false ? "fail" : "run";
      const title = a.error ? `attempt ${a.attempt}: ${a.error.name}: ${a.error.message}` : `attempt ${a.attempt}`;
      bars.push(h("div", { class: `bar ${kind}${narrow(from, to) ? " narrow" : ""}`, style: { left: pos(from), width: len(from, to) }, title, "data-attempt": a.attempt }, h("span", {}, `#${a.attempt}`)));
    }
    note = s.state === "done" ? plural(tries.length, "attempt") : `attempt ${s.attempts}`;
    if (s.state === "retrying" && until) {
      bars.push(h("span", { class: "marker retry-at", style: { left: pos(Math.min(until, axisEnd)) }, title: `retries at ${clock(s.until)}` }, `retry at ${clock(s.until)}`));
    }
  } else if (s.type === "do") {
    const kind = s.state === "done" ? (s.success ? "ok" : "fail") : s.state === "retrying" ? "retry" : "run";
    const stop = ended && s.state !== "running" ? ended : now;
    const tries = s.attempts > 1 ? ` · ${s.attempts} attempts` : "";
    note = s.state === "done" ? span(stop - start) + tries : s.state === "retrying" ? `attempt ${s.attempts} failed` : `attempt ${s.attempts}`;
    const fit = narrow(start, stop) ? " narrow" : "";
    bars.push(h("div", { class: `bar ${kind}${fit}`, style: { left: pos(start), width: len(start, stop) }, title: note }, h("span", {}, note)));
    if (s.state === "retrying" && until) {
      bars.push(h("span", { class: "marker retry-at", style: { left: pos(Math.min(until, axisEnd)) }, title: `retries at ${clock(s.until)}` }, `retry at ${clock(s.until)}`));
    }
  } else {
    const kind = s.type === "sleep" ? "sleep" : "wait";
    const pending = s.state !== "done";
    const stop = pending ? Math.min(until || now, axisEnd) : ended || now;
    if (s.type === "sleep") note = pending ? `sleeping until ${clock(s.until)}` : `slept ${span(stop - start)}`;
    else note = pending ? `waiting for “${s.event_type}”` : s.output ? `got “${s.output.type}”` : "timed out";
    const fit = !pending && narrow(start, stop) ? " narrow" : "";
    bars.push(h("div", { class: `bar ${kind}${pending ? " pending" : ""}${fit}`, style: { left: pos(start), width: len(start, stop) }, title: note }, h("span", {}, note)));
  }
  const label = s.count > 1 ? `${s.name} #${s.count}` : s.name;
  return h("div", { class: "tl-row", "data-step": label, "data-state": s.state },
    h("div", { class: "tl-label" }, h("span", { class: "step-name", title: label }, label), h("span", { class: "muted" }, s.type)),
    h("div", { class: "tl-track" }, bars));
}

function legend() {
  const items = [["ok", "succeeded"], ["run", "running"], ["retry", "failed, will retry"], ["fail", "failed"], ["sleep", "sleeping"], ["wait", "waiting for event"]];
  return h("div", { class: "legend" }, items.map(([k, t]) => h("span", {}, h("i", { class: `swatch ${k}` }), t)));
}

function stepsTable(inst) {
  if (!inst.steps.length) return h("p", { class: "muted" }, "No steps yet.");
  return h("table", { class: "list steps" },
    h("thead", {}, h("tr", {}, ["#", "Step", "Type", "State", "Attempts", "Start", "Duration", "Output / error"].map((t) => h("th", {}, t)))),
    h("tbody", {}, inst.steps.map((s, i) => {
      const stop = parseTime(s.end) || (s.state === "done" ? null : Date.now());
      let detail = s.error ? `${s.error.name}: ${s.error.message}` : s.type === "sleep" ? "" : short(s.output);
      if (s.state === "running") detail = `running attempt ${s.attempts}`;
      else if (s.state === "retrying") detail = `${detail} · retries at ${clock(s.until)}`;
      else if (s.state === "pending") detail = s.type === "sleep" ? `until ${clock(s.until)}` : `waiting for “${s.event_type}” until ${clock(s.until)}`;
      return h("tr", {},
        h("td", { class: "muted" }, i + 1),
        h("td", {}, s.count > 1 ? `${s.name} #${s.count}` : s.name),
        h("td", {}, s.type),
        h("td", {}, h("span", { class: `state st-${s.success === false ? "fail" : s.state}` }, s.success === false ? "failed" : s.state)),
        h("td", {}, s.type === "do" ? s.attempts : "–"),
        h("td", {}, clock(s.start)),
        h("td", {}, span(s.start ? stop - parseTime(s.start) : null)),
        h("td", { class: s.error ? "err-cell mono" : "mono" }, detail));
    })));
}

window.addEventListener("hashchange", route);
route();
