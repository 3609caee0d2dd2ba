// framehub operator console: one WebSocket to /edge/console (protocol version 1), plus the
// HTTP API (same admin token) for what the socket does not stream: frame list and thumbnails,
// and campaigns and alerts while their streams are not offered.

const PROTOCOL_VERSION = 1;
const TOKEN_KEY = "framehub.console.token";
const STREAMS = ["events", "tree", "notifications", "frames", "campaigns", "alerts", "dead_letters"];
const MAX_FEED = 200;
const FRAME_POLL_MS = 3000;
const LIST_POLL_MS = 5000;
const DONE_STATES = new Set(["completed", "failed", "rolled_back", "cancelled"]);

const $ = (id) => document.getElementById(id);

const state = {
  config: null,
  token: sessionStorage.getItem(TOKEN_KEY),
  ws: null,
  backoff: 500,
  reconnectTimer: null,
  commandSeq: 0,
  pending: new Map(), // command id -> label
  restarts: new Map(), // actor path -> restarts last seen
  frames: new Map(), // frame id -> frame record
  thumbs: new Map(), // frame id -> {fileId, url}
  cards: new Map(), // frame id -> its card element
  live: new Set(), // streams the server has sent something on
  faults: new Map(), // rule id -> description
  campaigns: [],
  alerts: [],
  letters: [],
  pollTimers: [],
  refreshTimer: null,
};

// -- small DOM helpers ---------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function button(label, onclick, extra = {}) {
  return el("button", { type: "button", onclick, ...extra }, label);
}

function prepend(list, item) {
  list.prepend(item);
  while (list.children.length > MAX_FEED) list.lastElementChild.remove();
}

function setStatus(text, kind) {
  const status = $("status");
  status.textContent = text;
  status.dataset.state = kind;
}

// -- login and connection ------------------------------------------------------------------

function showLogin(message = "") {
  $("login").hidden = false;
  $("app").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("login-error").textContent = message;
  setStatus("offline", "offline");
}

function showApp() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
}

// Asked again before every connection: the console server may have restarted elsewhere.
async function loadConfig() {
  const response = await fetch("/console/config.json", { cache: "no-store" });
  if (!response.ok) throw new Error(`config: HTTP ${response.status}`);
  state.config = await response.json();
  return state.config;
}

function logout(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  clearTimeout(state.reconnectTimer);
  stopPolling();
  if (state.ws) {
    const ws = state.ws;
    state.ws = null;
    ws.close(1000);
  }
  showLogin(message);
}

async function connect() {
  clearTimeout(state.reconnectTimer);
  if (!state.token) return showLogin();
  showApp();
  setStatus("connecting…", "connecting");
  let config;
  try {
    config = await loadConfig();
  } catch (error) {
    return scheduleReconnect(String(error));
  }
  const ws = new WebSocket(config.ws_url);
  state.ws = ws;
  ws.addEventListener("open", () => {
    ws.send(JSON.stringify({ type: "hello", version: PROTOCOL_VERSION, token: state.token }));
  });
  ws.addEventListener("message", (message) => {
    if (state.ws !== ws) return;
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    handle(data);
  });
  ws.addEventListener("close", (event) => {
    if (state.ws !== ws) return; // logged out, or replaced
    state.ws = null;
    if (event.code === 4401 || event.code === 4403) {
      logout(event.code === 4401 ? "That token was not accepted." : "That token is not an admin's.");
      return;
    }
    scheduleReconnect(`closed (${event.code})`);
  });
}

function scheduleReconnect(why) {
  const delay = state.backoff;
  state.backoff = Math.min(state.backoff * 2, 15000);
  setStatus(`reconnecting in ${Math.round(delay / 1000)} s — ${why}`, "offline");
  state.reconnectTimer = setTimeout(connect, delay + Math.random() * 250);
}

function send(message) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
  state.ws.send(JSON.stringify(message));
  return true;
}

// -- messages from the server --------------------------------------------------------------

function handle(data) {
  switch (data.type) {
    case "welcome":
      state.backoff = 500;
      document.body.dataset.welcomes = String(Number(document.body.dataset.welcomes || 0) + 1);
      setStatus("live", "online");
      $("who").textContent = data.name;
      state.live.clear();
      // One subscription per stream: a stream this server does not offer is refused on its
      // own (an "error" message) and the others still start.
      for (const stream of STREAMS) send({ type: "subscribe", streams: [stream] });
      startPolling();
      break;
    case "tree":
      renderTree(data.root);
      break;
    case "event":
      onEvent(data);
      break;
    case "notification":
      onNotification(data.notification);
      break;
    case "reply":
      onReply(data);
      break;
    case "error":
      // Most likely a stream this server does not offer yet; nothing to show for it.
      console.debug("console server:", data.message);
      break;
    default:
      onStreamMessage(data);
  }
}

// Streams beyond events/tree/notifications: accept a list (``items``/``frames``/...) or one
// record (``frame``/``campaign``/...), and merge it into what is shown.
function recordsOf(data, singular, plural) {
  for (const key of [plural, "items", "snapshot"]) {
    if (Array.isArray(data[key])) return { records: data[key], full: true };
  }
  if (data[singular] && typeof data[singular] === "object") {
    return { records: [data[singular]], full: false };
  }
  return { records: [], full: false };
}

function mergeById(current, records, full, idOf) {
  if (full) return records;
  const merged = new Map(current.map((item) => [idOf(item), item]));
  for (const record of records) merged.set(idOf(record), record);
  return [...merged.values()];
}

function onStreamMessage(data) {
  const type = String(data.type || "");
  if (type.startsWith("frame")) {
    const { records, full } = recordsOf(data, "frame", "frames");
    state.live.add("frames");
    if (full) keepOnlyFrames(new Set(records.map((r) => r.device_id || r.frame_id)));
    for (const record of records) mergeFrame(record);
    renderFrames();
  } else if (type.startsWith("campaign")) {
    const { records, full } = recordsOf(data, "campaign", "campaigns");
    state.live.add("campaigns");
    state.campaigns = mergeById(state.campaigns, records, full, (c) => c.campaign_id);
    renderCampaigns();
  } else if (type.startsWith("alert")) {
    const { records, full } = recordsOf(data, "alert", "alerts");
    state.live.add("alerts");
    state.alerts = mergeById(state.alerts, records, full, (a) => a.alert_id);
    renderAlerts();
  } else if (type.startsWith("dead")) {
    const { records, full } = recordsOf(data, "letter", "letters");
    const more = records.length ? records : recordsOf(data, "dead_letter", "dead_letters").records;
    state.live.add("dead_letters");
    state.letters = mergeById(state.letters, more, full, letterId);
    renderLetters();
  }
}

// -- supervision tree ----------------------------------------------------------------------

function flatten(node, depth, rows) {
  rows.push({ node, depth });
  for (const child of node.children || []) flatten(child, depth + 1, rows);
  return rows;
}

function renderTree(root) {
  const body = $("tree");
  const rows = flatten(root, 0, []);
  const seen = new Set();
  const fragment = document.createDocumentFragment();
  for (const { node, depth } of rows) {
    seen.add(node.path);
    const previous = state.restarts.get(node.path);
    state.restarts.set(node.path, node.restarts);
    const name = depth === 0 ? "/" : node.path.slice(node.path.lastIndexOf("/") + 1);
    const row = el(
      "tr",
      { dataset: { path: node.path, restarts: String(node.restarts), state: node.state } },
      el("td", { class: "path", title: `${node.path} (${node.actor_class})`,
                 style: `padding-left:${0.4 + depth * 0.9}rem` }, name),
      el("td", { class: `state-${node.state}`, title: node.last_error || "" }, node.state),
      el("td", { class: "num restarts" }, node.restarts),
      el("td", { class: "num", title: `capacity ${node.mailbox_capacity}` }, node.mailbox_depth),
      el("td", {}, depth === 0 ? null : button("crash", () => injectFault(node.path, 1),
                                                { title: `inject a crash on ${node.path}` })),
    );
    if (previous !== undefined && node.restarts > previous) row.classList.add("flash");
    fragment.append(row);
  }
  body.replaceChildren(fragment);
  for (const path of [...state.restarts.keys()]) if (!seen.has(path)) state.restarts.delete(path);
}

// -- event feed ----------------------------------------------------------------------------

function summary(event) {
  const parts = [];
  for (const key of ["frame_id", "device_id", "file_id", "album_id", "campaign_id", "alert_id",
                     "command", "state", "path"]) {
    if (event && event[key] !== undefined && event[key] !== null) parts.push(`${key}=${event[key]}`);
  }
  return parts.join(" ");
}

function onEvent(data) {
  prepend($("events"), el("li", {}, el("span", { class: "seq" }, `#${data.seq} `),
                          el("span", { class: "name" }, data.name), " ", summary(data.event)));
  const event = data.event || {};
  if (event.frame_id || event.device_id || data.name.startsWith("device.")) refreshSoon("frames");
  if (data.name.startsWith("campaign.") || data.name.startsWith("update.")) refreshSoon("campaigns");
  if (data.name.startsWith("alert.")) refreshSoon("alerts");
  if (data.name.startsWith("file.")) refreshSoon("photos");
}

function onNotification(notification) {
  const text = notification.title || notification.message || notification.kind || "notification";
  prepend($("events"), el("li", {}, el("span", { class: "name" }, "notification "), text));
  refreshSoon("alerts");
}

// -- commands ------------------------------------------------------------------------------

function command(action, fields, label) {
  const id = `c${++state.commandSeq}`;
  const message = { type: "command", id, action, ...fields };
  if (!send(message)) {
    prepend($("replies"), el("li", { class: "bad" }, `${label}: not connected`));
    return;
  }
  state.pending.set(id, { label, action, fields });
  prepend($("replies"), el("li", { dataset: { id } }, `${label} … sent`));
}

function onReply(data) {
  const pending = state.pending.get(data.id) || { label: data.id, action: "" };
  state.pending.delete(data.id);
  const result = data.result === undefined || data.result === null ? "" : JSON.stringify(data.result);
  const text = data.ok
    ? `${pending.label}: ok ${result.length > 160 ? `${result.slice(0, 160)}…` : result}`
    : `${pending.label}: ${data.error}`;
  const item = el("li", { class: data.ok ? "ok" : "bad", dataset: { id: data.id, ok: String(data.ok) } }, text);
  const sent = $("replies").querySelector(`li[data-id="${data.id}"]`);
  if (sent) sent.replaceWith(item);
  else prepend($("replies"), item);
  if (data.ok && pending.action === "fault.inject" && data.result) {
    state.faults.set(data.result.rule_id, pending.fields.fault);
    renderFaults();
  }
  if (data.ok && pending.action === "fault.remove" && data.result) {
    state.faults.delete(data.result.rule_id);
    renderFaults();
  }
  if (pending.action.startsWith("frame.")) refreshSoon("frames");
  if (pending.action.startsWith("campaign.")) refreshSoon("campaigns");
  if (pending.action.startsWith("alert.")) refreshSoon("alerts");
}

function injectFault(path, times) {
  const fault = { action: "crash", path };
  if (times) fault.times = times;
  command("fault.inject", { fault }, `crash ${path}`);
}

function renderFaults() {
  const items = [...state.faults.entries()].map(([ruleId, fault]) =>
    el("li", { dataset: { ruleId: String(ruleId) } }, `#${ruleId} ${fault.action} ${fault.path} `,
       button("remove", () => command("fault.remove", { rule_id: ruleId }, `remove fault #${ruleId}`))));
  $("faults").replaceChildren(...items);
}

// -- HTTP (frames, campaigns, alerts) --------------------------------------------------------

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${state.token}` } });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response;
}

const refreshers = {
  async frames() {
    if (state.live.has("frames")) return; // the stream sends the whole list when it changes
    const page = await (await api("/api/v1/devices?limit=200")).json();
    if (state.live.has("frames")) return; // the stream took over meanwhile
    keepOnlyFrames(new Set(page.items.map((device) => device.device_id)));
    for (const device of page.items) mergeFrame(device);
    renderFrames();
  },
  async campaigns() {
    if (state.live.has("campaigns")) return;
    state.campaigns = (await (await api("/api/v1/campaigns?limit=200")).json()).items;
    renderCampaigns();
  },
  async photos() {
    // Suggestions for a frame's "show": the signed-in admin's newest photos.
    const page = await (await api("/api/v1/photos?limit=100")).json();
    $("photo-ids").replaceChildren(...page.items.map((photo) =>
      el("option", { value: photo.file_id }, photo.file_name || photo.file_id)));
  },
  async alerts() {
    if (state.live.has("alerts")) return;
    state.alerts = (await (await api("/api/v1/alerts?limit=200")).json()).items;
    renderAlerts();
  },
};

async function refresh(what) {
  if (!state.token) return;
  try {
    await refreshers[what]();
  } catch (error) {
    console.debug(error);
  }
}

const soon = new Map();
function refreshSoon(what) {
  if (soon.has(what)) return;
  soon.set(what, setTimeout(() => { soon.delete(what); refresh(what); }, 250));
}

function startPolling() {
  stopPolling();
  for (const what of Object.keys(refreshers)) refresh(what);
  state.pollTimers.push(setInterval(() => refresh("frames"), FRAME_POLL_MS));
  state.pollTimers.push(setInterval(() => { refresh("campaigns"); refresh("alerts"); }, LIST_POLL_MS));
}

function stopPolling() {
  for (const timer of state.pollTimers) clearInterval(timer);
  state.pollTimers = [];
}

// -- frames ----------------------------------------------------------------------------------

function keepOnlyFrames(ids) {
  for (const id of [...state.frames.keys()]) {
    if (ids.has(id)) continue;
    state.frames.delete(id);
    state.cards.delete(id);
    const thumb = state.thumbs.get(id);
    if (thumb && thumb.url) URL.revokeObjectURL(thumb.url);
    state.thumbs.delete(id);
  }
}

function mergeFrame(record) {
  const id = record.device_id || record.frame_id;
  if (!id) return;
  state.frames.set(id, { ...(state.frames.get(id) || {}), ...record, device_id: id });
}

function frameCard(frame) {
  const id = frame.device_id;
  let card = state.cards.get(id);
  if (card) return card;
  const thumb = el("img", { class: "thumb", alt: "", dataset: { fileId: "" } });
  const fileInput = el("input", { placeholder: "file id", "aria-label": "file id to show",
                                  class: "show-file", list: "photo-ids" });
  const act = (verb, extra = {}) =>
    command(`frame.${verb}`, { frame_id: id, ...extra }, `${verb} on ${frame.name || id}`);
  card = el(
    "article",
    { class: "frame", dataset: { frameId: id } },
    thumb,
    el("div", { class: "name" }, el("span", { class: "label" }), el("span", { class: "pill" })),
    el("div", { class: "meta" }),
    el("div", { class: "actions" },
       button("next", () => act("next"), { "data-action": "next" }),
       button("sync", () => act("sync"), { "data-action": "sync" }),
       button("restart", () => act("restart"), { "data-action": "restart" })),
    el("form", { class: "inline", onsubmit: (event) => {
      event.preventDefault();
      if (fileInput.value.trim()) act("show", { file_id: fileInput.value.trim() });
    } }, fileInput, el("button", { type: "submit", "data-action": "show" }, "show")),
  );
  state.cards.set(id, card);
  return card;
}

function renderFrames() {
  const container = $("frames");
  const frames = [...state.frames.values()].sort((a, b) =>
    String(a.name).localeCompare(String(b.name)));
  $("frames-source").textContent = state.live.has("frames") ? "(live)" : "(polled)";
  if (!frames.length) {
    container.replaceChildren(el("p", { class: "empty" }, "No frames paired."));
    return;
  }
  const cards = frames.map((frame) => {
    const card = frameCard(frame);
    const online = Boolean(frame.online);
    card.dataset.online = String(online);
    card.dataset.currentFileId = frame.current_file_id || "";
    card.querySelector(".label").textContent = frame.name || frame.device_id;
    const pill = card.querySelector(".pill");
    pill.textContent = online ? "online" : "offline";
    pill.className = `pill ${online ? "on" : "off"}`;
    const meta = [frame.model, frame.firmware_version && `fw ${frame.firmware_version}`,
                  frame.current_file_id ? `showing ${frame.current_file_id}` : "showing nothing",
                  frame.health_score !== undefined ? `health ${frame.health_score}` : null,
                  frame.in_sync === false ? "syncing" : null].filter(Boolean);
    card.querySelector(".meta").textContent = meta.join(" · ");
    loadThumb(frame.device_id, frame.current_file_id, card.querySelector(".thumb"));
    return card;
  });
  const same = cards.length === container.children.length &&
    cards.every((card, index) => container.children[index] === card);
  if (!same) container.replaceChildren(...cards); // (keeps focus while nothing moved)
}

async function loadThumb(frameId, fileId, img) {
  const shown = state.thumbs.get(frameId);
  if ((shown && shown.fileId === fileId) || (!shown && !fileId)) return;
  const entry = { fileId, url: null };
  state.thumbs.set(frameId, entry);
  if (shown && shown.url) URL.revokeObjectURL(shown.url);
  if (!fileId) {
    img.removeAttribute("src");
    img.dataset.fileId = "";
    return;
  }
  try {
    const response = await api(`/api/v1/files/download/${encodeURIComponent(fileId)}?size=thumbnail`);
    const blob = await response.blob();
    if (state.thumbs.get(frameId) !== entry) return; // a newer photo came meanwhile
    entry.url = URL.createObjectURL(blob);
    img.src = entry.url;
    img.alt = `photo ${fileId}`;
    img.dataset.fileId = fileId;
  } catch (error) {
    if (state.thumbs.get(frameId) === entry) state.thumbs.delete(frameId); // try again later
    console.debug(error);
  }
}

// -- campaigns, alerts, dead letters ---------------------------------------------------------

function renderCampaigns() {
  const container = $("campaigns");
  if (!state.campaigns.length) {
    container.replaceChildren(el("p", { class: "empty" }, "No campaigns."));
    return;
  }
  container.replaceChildren(...state.campaigns.map((campaign) => {
    const counts = campaign.counts || {};
    const total = campaign.targets || Object.values(counts).reduce((a, b) => a + b, 0);
    const done = Object.entries(counts).filter(([s]) => DONE_STATES.has(s))
      .reduce((sum, [, n]) => sum + n, 0);
    const id = campaign.campaign_id;
    const act = (verb) => command(`campaign.${verb}`, { campaign_id: id }, `${verb} ${campaign.name || id}`);
    return el("div", { class: "item", dataset: { campaignId: id, state: campaign.state } },
      el("div", { class: "title" }, el("strong", {}, `${campaign.name || id} → ${campaign.version || ""}`),
         el("span", {}, campaign.state)),
      el("progress", { max: String(Math.max(total, 1)), value: String(done),
                       title: `${done} of ${total} done` }),
      el("div", { class: "meta" }, Object.entries(counts).map(([s, n]) => `${s} ${n}`).join(" · "),
         campaign.pause_reason ? ` — ${campaign.pause_reason}` : ""),
      el("div", { class: "actions" },
         ...["start", "pause", "resume", "cancel", "rollback", "retry-failed"].map((verb) =>
           button(verb, () => act(verb), { "data-action": verb }))));
  }));
}

function renderAlerts() {
  const container = $("alerts");
  const open = state.alerts.filter((alert) => alert.state !== "resolved");
  if (!open.length) {
    container.replaceChildren(el("p", { class: "empty" }, "No open alerts."));
    return;
  }
  container.replaceChildren(...open.map((alert) => {
    const id = alert.alert_id;
    return el("div", { class: "item", dataset: { alertId: id, state: alert.state } },
      el("div", { class: "title" }, el("strong", {}, `${alert.severity || ""} ${alert.metric} = ${alert.value}`),
         el("span", {}, alert.state)),
      el("div", { class: "meta" }, `frame ${alert.device_id} · since ${alert.triggered_at}`),
      el("div", { class: "actions" },
         button("acknowledge", () => command("alert.acknowledge", { alert_id: id }, `acknowledge ${id}`),
                { "data-action": "acknowledge", disabled: alert.state === "acknowledged" ? "" : null }),
         button("resolve", () => command("alert.resolve", { alert_id: id }, `resolve ${id}`),
                { "data-action": "resolve" })));
  }));
}

function letterId(letter) {
  return letter.letter_id ?? letter.id ?? letter.seq;
}

function renderLetters() {
  const container = $("letters");
  if (!state.letters.length) {
    container.replaceChildren(el("p", { class: "empty" }, "No dead letters."));
    return;
  }
  container.replaceChildren(...state.letters.map((letter) => {
    const id = letterId(letter);
    return el("div", { class: "item", dataset: { letterId: String(id) } },
      el("div", { class: "title" },
         el("strong", {}, `#${id} ${letter.event || letter.message_type || ""}`),
         el("span", {}, letter.subscriber || letter.path || "")),
      el("div", { class: "meta" },
         [letter.seq !== undefined && `event #${letter.seq}`,
          letter.attempts !== undefined && `${letter.attempts} attempts`,
          letter.parked_at && `parked ${letter.parked_at}`,
          letter.replay_requested && "replay requested",
          letter.error].filter(Boolean).join(" · ")),
      el("div", { class: "actions" },
         button("replay", () => command("dead-letter.replay", { letter_id: Number(id) }, `replay #${id}`),
                { "data-action": "replay" })));
  }));
}

// -- start -------------------------------------------------------------------------------------

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  state.token = token;
  $("token").value = "";
  state.backoff = 500;
  connect();
});
$("logout").addEventListener("click", () => logout());
$("fault-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const times = Number($("fault-times").value) || null;
  injectFault($("fault-path").value.trim(), times);
});
window.addEventListener("online", () => { if (state.token && !state.ws) connect(); });

connect();
