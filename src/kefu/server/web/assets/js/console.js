// The waiter console: sign in, take customers from the queue, chat with several at once.
//
// Conversations are keyed by the customer's user id, not by socket UUID: a
// customer who reconnects gets a new socket UUID (new_connection with
// `resumed: true`), and the console just moves its pane to the new UUID.

import {
  appendText,
  avatar,
  clear,
  compareIds,
  displayName,
  duration,
  fullLabel,
  h,
  icon,
  maxId,
  newOpId,
  parseDate,
  safeHttpUrl,
  shortStamp,
  timeLabel,
} from "./dom.js";
import { KefuSocket, wsUrl } from "./socket.js";

const TOKEN_KEY = "kefu.console.token";
const READY_KEY = "kefu.console.ready";
const STATUS_EVERY = 3000;
// After a reconnect the server re-announces every conversation it still has
// (new_connection, resumed). One not re-announced quickly is a customer who has
// not come back yet (after a server restart): held as "reconnecting". One still
// missing after the resume grace (60 s by default) has ended.
const AWAY_AFTER = 4000;
const STALE_END_AFTER = 75000;
const TYPING_SEND_EVERY = 3000;
const TYPING_IDLE = 4000;
const TYPING_SHOW_FOR = 7000;

const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  me: null,
  socket: null,
  wantReady: sessionStorage.getItem(READY_KEY) === "1",
  ready: false,
  convs: new Map(), // user id -> Conv
  byUuid: new Map(), // socket uuid (current or earlier) -> user id
  ops: new Map(), // op_id -> user id
  historyFloors: new Map(), // get_history op_id -> oldest message id to merge (or null)
  staleGen: 0,
  views: new Map(), // user id -> read-only history pane
  active: null, // user id, or "h:" + user id for a history view
  newestId: null,
  statusTimer: null,
  tickTimer: null,
  flash: null,
  audio: null,
};

// ------------------------------------------------------------------ start-up

function init() {
  for (const el of document.querySelectorAll("[data-icon]")) el.replaceWith(icon(el.dataset.icon));
  $("signin-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", () => signOut());
  $("ready").addEventListener("click", toggleReady);
  $("tab-chats").addEventListener("click", () => showTab("chats"));
  $("tab-past").addEventListener("click", () => showTab("past"));
  for (const id of ["tab-chats", "tab-past"]) $(id).addEventListener("keydown", tabKeys);
  $("kicked-reconnect").addEventListener("click", () => {
    $("kicked").hidden = true;
    connect();
  });
  $("kicked-signout").addEventListener("click", () => {
    $("kicked").hidden = true;
    signOut();
  });
  document.addEventListener("visibilitychange", onVisible);
  window.addEventListener("focus", onVisible);
  document.addEventListener("pointerdown", unlockAudio, { once: true });
  document.addEventListener("keydown", unlockAudio, { once: true });

  const fromHash = new URLSearchParams(location.hash.replace(/^#/, "")).get("token");
  if (fromHash) {
    sessionStorage.setItem(TOKEN_KEY, fromHash);
    history.replaceState(null, "", location.pathname + location.search);
  }
  const token = fromHash || sessionStorage.getItem(TOKEN_KEY);
  if (token) start(token);
  else showSignIn();
}

function showSignIn(message) {
  $("app").hidden = true;
  $("signin").hidden = false;
  const err = $("signin-error");
  err.hidden = !message;
  err.textContent = message || "";
  document.title = "Sign in · kefu console";
  $("username").focus();
}

async function signIn(event) {
  event.preventDefault();
  const username = $("username").value.trim();
  const password = $("password").value;
  const err = $("signin-error");
  if (!username || !password) {
    err.textContent = "Enter your username and password.";
    err.hidden = false;
    return;
  }
  const button = $("signin-button");
  button.disabled = true;
  button.textContent = "Signing in…";
  try {
    const resp = await fetch("/v1/auth/login", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify({ username, password }),
    });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(body.message || `Sign-in failed (HTTP ${resp.status}).`);
    if (body.role && body.role !== "waiter" && body.role !== "admin") {
      throw new Error("This account is not an agent account.");
    }
    $("password").value = "";
    sessionStorage.setItem(TOKEN_KEY, body.token);
    start(body.token);
  } catch (e) {
    err.textContent = e instanceof TypeError ? "Cannot reach the server." : capitalize(e.message);
    err.hidden = false;
  } finally {
    button.disabled = false;
    button.textContent = "Sign in";
  }
}

function start(token) {
  state.token = token;
  $("signin").hidden = true;
  $("app").hidden = false;
  document.title = "kefu console";
  connect();
  pollStatus();
  clearInterval(state.statusTimer);
  state.statusTimer = setInterval(pollStatus, STATUS_EVERY);
  clearInterval(state.tickTimer);
  state.tickTimer = setInterval(tick, 1000);
}

function connect() {
  if (state.socket) state.socket.stop("replaced");
  state.socket = new KefuSocket({
    url: wsUrl(location.href, "/v1/ws/connect/waiter"),
    token: () => state.token,
    lastId: () => state.newestId,
    onFrame,
    onState,
  });
  state.socket.start();
}

function signOut(message) {
  if (state.socket) state.socket.stop("signed-out");
  state.socket = null;
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(READY_KEY);
  clearInterval(state.statusTimer);
  clearInterval(state.tickTimer);
  for (const conv of state.convs.values()) {
    conv.pane.remove();
    conv.item.remove();
  }
  for (const view of state.views.values()) view.pane.remove();
  state.convs.clear();
  state.views.clear();
  state.byUuid.clear();
  state.ops.clear();
  state.active = null;
  state.me = null;
  state.wantReady = false;
  state.ready = false;
  state.newestId = null;
  renderReady();
  updateLists();
  showSignIn(message);
}

// ------------------------------------------------------------------ socket

function onState(s, info) {
  const conn = $("conn");
  const text = $("conn-text");
  conn.dataset.state = s;
  if (s === "open") {
    text.textContent = "Connected";
    if (state.wantReady) state.socket.send({ type: "ready" });
    if (info.resumed) {
      for (const conv of state.convs.values()) if (!conv.ended) conv.stale = true;
      const gen = ++state.staleGen;
      setTimeout(() => gen === state.staleGen && markAway(), AWAY_AFTER);
      setTimeout(() => gen === state.staleGen && endStale(), STALE_END_AFTER);
    }
  } else if (s === "connecting") {
    text.textContent = state.socket && state.socket.sessions ? "Reconnecting…" : "Connecting…";
  } else if (s === "waiting") {
    text.textContent = `Offline, retrying in ${Math.max(1, Math.round(info.delay / 1000))} s`;
    state.ready = false;
    renderReady();
  } else if (s === "stopped") {
    state.ready = false;
    renderReady();
    if (info.reason === "kickout") {
      text.textContent = "Signed in elsewhere";
      showKicked();
    } else if (info.reason === "auth-failed") {
      signOut("Your session has expired or is not valid. Please sign in again.");
    } else if (info.reason === "refused") {
      text.textContent = "Refused by the server";
      toast("The server refused the connection. Reload the page to try again.", "error");
    } else if (info.reason === "ended") {
      text.textContent = "Disconnected";
    }
  }
}

function onFrame(f) {
  switch (f.type) {
    case "auth_success":
      state.me = f.payload;
      renderMe();
      break;
    case "ready":
      state.ready = true;
      renderReady();
      break;
    case "unready":
      state.ready = false;
      renderReady();
      break;
    case "new_connection":
      newConnection(f.payload || {});
      break;
    case "disconnected":
      disconnected(f.from);
      break;
    case "message_text":
    case "message_image":
      incoming(f);
      break;
    case "message_text_success":
    case "message_image_success":
      acked(f);
      break;
    case "message_history":
      onHistory(f.payload || {}, f.op_id);
      break;
    case "session_history":
      renderSessions(f.payload || {});
      break;
    case "rate_success": {
      const conv = convOf(f.from);
      if (conv) notice(conv, `You asked ${displayName(conv.user)} to rate this chat.`);
      break;
    }
    case "rate_user_success": {
      const conv = convOf(f.from);
      const rate = Number(f.payload && f.payload.rate) || 0;
      if (conv) {
        conv.rating = rate;
        conv.endedBy = "rated";
        notice(conv, `${displayName(conv.user)} rated this chat ${"★".repeat(rate)}${"☆".repeat(5 - rate)} (${rate}/5).`, "rating");
        renderItem(conv);
      }
      break;
    }
    case "typing": {
      const conv = convOf(f.from);
      if (conv) showTyping(conv, Boolean(f.payload && f.payload.typing));
      break;
    }
    case "read": {
      const conv = convOf(f.from);
      if (conv && f.payload && f.payload.id) markSeen(conv, f.payload.id);
      break;
    }
    case "error":
      onError(f);
      break;
    default:
      break;
  }
}

function onError(f) {
  const p = f.payload || {};
  const userId = f.op_id ? state.ops.get(f.op_id) : null;
  if (userId) {
    const conv = state.convs.get(userId);
    if (conv) failed(conv, f.op_id, p.message ? `Not sent: ${p.message}` : "Not sent.");
    return;
  }
  if (p.status === 999999) return; // the socket handles auth failures
  if (p.status === 100002 && /socket is for waiters/.test(p.message || "")) {
    signOut("This account is not an agent account.");
    return;
  }
  toast(p.message ? capitalize(p.message) : "Something went wrong.", "error");
}

// ------------------------------------------------------------------ top bar

function renderMe() {
  const me = $("me");
  clear(me);
  if (!state.me) return;
  me.append(
    avatar(state.me, "avatar small"),
    h("span", { class: "me-text" }, h("span", { class: "me-name", text: displayName(state.me) }), h("span", { class: "me-user", text: `@${state.me.username}` })),
  );
}

function toggleReady() {
  const want = !state.ready;
  state.wantReady = want;
  sessionStorage.setItem(READY_KEY, want ? "1" : "0");
  if (!state.socket || !state.socket.send({ type: want ? "ready" : "unready" })) {
    toast("You are offline; the switch will apply when the console reconnects.");
  }
}

function renderReady() {
  const btn = $("ready");
  btn.setAttribute("aria-checked", String(state.ready));
  btn.classList.toggle("on", state.ready);
  $("ready-text").textContent = state.ready ? "Ready" : "Paused";
  $("chat-empty-text").textContent = state.ready
    ? "You are ready. New customers from the queue will appear here."
    : "Switch to Ready to start taking customers from the queue.";
}

async function pollStatus() {
  try {
    const resp = await fetch("/v1/ws/status", { headers: { accept: "application/json" }, cache: "no-store" });
    if (!resp.ok) throw new Error(String(resp.status));
    const body = await resp.json();
    const n = Number(body && body.data && body.data.pending_num) || 0;
    $("queue-text").textContent = `Queue: ${n} waiting`;
    $("queue-chip").classList.toggle("busy", n > 0);
  } catch {
    $("queue-text").textContent = "Queue: unknown";
  }
}

function showKicked() {
  if (state.socket) state.socket.stop("kickout-shown");
  $("kicked").hidden = false;
  $("kicked-reconnect").focus();
  notify("Signed in elsewhere");
}

// ------------------------------------------------------------------ conversations

function convOf(uuid) {
  if (!uuid) return null;
  const userId = state.byUuid.get(uuid);
  return userId ? state.convs.get(userId) || null : null;
}

function newConnection(p) {
  if (!p.id) return;
  let conv = state.convs.get(p.id);
  const fresh = !conv;
  if (!conv) {
    conv = createConv(p);
    state.convs.set(p.id, conv);
    if (p.resumed) requestHistory(p.id); // a reload: fetch what was said so far
  } else if (conv.ended) {
    reopen(conv);
  } else if (p.resumed) {
    // A reconnect: the server replays what came after our last id; the history
    // fills any gap (dedupe by id), without pulling in earlier conversations.
    requestHistory(p.id, oldestId(conv) || conv.floorId);
  }
  conv.user = { id: p.id, username: p.username, nickname: p.nickname, avatar: p.avatar };
  conv.stale = false;
  if (p.uuid) {
    conv.uuid = p.uuid;
    state.byUuid.set(p.uuid, p.id);
  } else {
    conv.uuid = null; // restored after a restart; the customer is not back yet
  }
  if (p.previous_uuid && !state.byUuid.has(p.previous_uuid)) state.byUuid.set(p.previous_uuid, p.id);
  renderHead(conv);
  renderItem(conv);
  updateLists();
  if (!p.resumed) {
    notice(conv, `${displayName(conv.user)} joined the chat.`);
    notify(`New customer: ${displayName(conv.user)}`);
  } else if (!fresh) {
    notice(conv, conv.uuid ? `${displayName(conv.user)} is back online.` : `Waiting for ${displayName(conv.user)} to reconnect…`);
  }
  if (!state.active) select(p.id, { reveal: false });
  state.socket.flush((frame) => state.ops.get(frame.op_id) === p.id);
}

function createConv(p) {
  const conv = {
    user: p,
    uuid: null,
    startedAt: Date.now(),
    floorId: state.newestId, // messages of this conversation come after this one
    waitingSince: p.resumed ? null : Date.now(),
    unread: 0,
    ended: false,
    endedBy: null,
    rating: null,
    preview: "",
    rows: new Map(),
    pending: new Map(),
    newestIncoming: null,
    lastReadSent: null,
    seenId: null,
    seenRow: null,
    typingOn: false,
    typingSentAt: 0,
  };
  buildPane(conv);
  buildItem(conv);
  return conv;
}

function reopen(conv) {
  conv.ended = false;
  conv.endedBy = null;
  conv.rating = null;
  conv.startedAt = Date.now();
  conv.waitingSince = Date.now();
  conv.pane.classList.remove("ended");
  conv.endedBar.hidden = true;
  setComposerEnabled(conv, true);
}

function disconnected(from) {
  const conv = convOf(from);
  if (!conv || conv.ended) return;
  conv.ended = true;
  conv.waitingSince = null;
  showTyping(conv, false);
  const name = displayName(conv.user);
  const text = {
    me: "You ended the chat.",
    rated: "The chat ended with the customer's rating.",
    stale: "The chat ended while you were offline.",
  }[conv.endedBy] || `${name} left the chat.`;
  notice(conv, text);
  conv.pane.classList.add("ended");
  conv.endedText.textContent = "This chat has ended.";
  conv.endedBar.hidden = false;
  setComposerEnabled(conv, false);
  for (const [opId] of conv.pending) failed(conv, opId, "Not sent: the chat has ended.");
  renderItem(conv);
  updateLists();
}

function markAway() {
  for (const conv of state.convs.values()) {
    if (!conv.stale || conv.ended || !conv.uuid) continue;
    conv.uuid = null; // its old socket is gone; messages wait for the new one
    notice(conv, `Waiting for ${displayName(conv.user)} to reconnect…`);
    renderItem(conv);
  }
}

function endStale() {
  for (const conv of state.convs.values()) {
    if (conv.stale && !conv.ended) {
      conv.endedBy = "stale";
      const uuid = conv.uuid || `stale:${conv.user.id}`;
      state.byUuid.set(uuid, conv.user.id);
      disconnected(uuid);
    }
    conv.stale = false;
  }
}

function closeConv(conv) {
  conv.pane.remove();
  conv.item.remove();
  state.convs.delete(conv.user.id);
  if (state.active === conv.user.id) {
    state.active = null;
    const next = [...state.convs.values()].find((c) => !c.ended) || state.convs.values().next().value;
    if (next) select(next.user.id, { reveal: false });
    else showMainEmpty();
  }
  updateLists();
}

function endChat(conv) {
  if (conv.ended) return;
  if (!conv.uuid || !state.socket.send({ type: "disconnect", payload: { uuid: conv.uuid } })) {
    toast("Cannot end the chat while the customer or you are offline.", "error");
    return;
  }
  conv.endedBy = "me";
}

function askRating(conv) {
  if (conv.ended) return;
  if (!conv.uuid || !state.socket.send({ type: "rate", to: conv.uuid })) {
    toast("Cannot ask for a rating while the customer or you are offline.", "error");
  }
}

/** Ask for a customer's messages; with `floor`, only those from that message id on are merged. */
function requestHistory(userId, floor = null) {
  if (!state.socket) return;
  const opId = newOpId();
  if (state.socket.send({ type: "get_history", op_id: opId, payload: { user_id: userId, limit: 100 } })) {
    state.historyFloors.set(opId, floor);
  }
}

function onHistory(p, opId) {
  const userId = p.user_id;
  const data = Array.isArray(p.data) ? p.data : [];
  const conv = state.convs.get(userId);
  const floor = opId ? state.historyFloors.get(opId) : null;
  if (opId) state.historyFloors.delete(opId);
  if (conv) {
    for (const entry of data) {
      if (!floor || (entry && entry.id && compareIds(entry.id, floor) >= 0)) historyEntry(conv, entry);
    }
    if (conv.loadingEarlier) {
      conv.loadingEarlier = false;
      conv.earlierBtn.disabled = false;
      if (!data.length) toast(`No earlier messages from ${displayName(conv.user)}.`);
    }
    return;
  }
  const view = state.views.get(userId);
  if (view) renderHistoryView(view, data);
}

function oldestId(conv) {
  let oldest = null;
  for (const id of conv.rows.keys()) if (!oldest || compareIds(id, oldest) < 0) oldest = id;
  return oldest;
}

function historyEntry(conv, e) {
  if (!e || !e.id || conv.rows.has(e.id)) return;
  state.newestId = maxId(state.newestId, e.id);
  const mine = Boolean(state.me && e.sender && e.sender.id === state.me.id);
  if (!mine) conv.newestIncoming = maxId(conv.newestIncoming, e.id);
  addRow(conv, messageRow({ id: e.id, mine, type: e.type, payload: e.payload, date: e.date, who: e.sender }), conv.rows);
}

// ------------------------------------------------------------------ messages

function incoming(f) {
  if (f.id) state.newestId = maxId(state.newestId, f.id);
  const conv = convOf(f.from);
  if (!conv || !f.id || conv.rows.has(f.id)) return;
  conv.newestIncoming = maxId(conv.newestIncoming, f.id);
  if (!conv.waitingSince) conv.waitingSince = parseDate(f.date).getTime();
  showTyping(conv, false);
  addRow(conv, messageRow({ id: f.id, mine: false, type: f.type, payload: f.payload, date: f.date }), conv.rows);
  conv.preview = previewOf(f.type, f.payload);
  if (!isShown(conv)) conv.unread += 1;
  renderItem(conv);
  markRead(conv);
  if (document.visibilityState !== "visible") notify(`${displayName(conv.user)}: ${conv.preview}`);
}

function acked(f) {
  if (f.id) state.newestId = maxId(state.newestId, f.id);
  state.socket.ack(f.op_id);
  const userId = (f.op_id && state.ops.get(f.op_id)) || state.byUuid.get(f.from);
  state.ops.delete(f.op_id);
  const conv = userId ? state.convs.get(userId) : null;
  if (!conv) return;
  conv.waitingSince = null;
  const row = f.op_id ? conv.pending.get(f.op_id) : null;
  if (row) {
    conv.pending.delete(f.op_id);
    if (f.id && conv.rows.has(f.id)) row.remove();
    else setRowId(conv, row, f.id, f.date);
  } else if (f.id && !conv.rows.has(f.id)) {
    addRow(conv, messageRow({ id: f.id, mine: true, type: f.type.replace(/_success$/, ""), payload: f.payload, date: f.date }), conv.rows);
  }
  renderItem(conv);
}

function sendText(conv) {
  const text = conv.input.value;
  if (!text.trim() || conv.ended) return;
  conv.input.value = "";
  autosize(conv.input);
  typingStop(conv);
  sendMessage(conv, "message_text", { text });
  conv.input.focus();
}

function sendImage(conv) {
  const url = safeHttpUrl(conv.imageInput.value.trim());
  if (!url) {
    conv.imageError.textContent = "Enter a link that starts with http:// or https://";
    conv.imageError.hidden = false;
    conv.imageInput.focus();
    return;
  }
  conv.imageInput.value = "";
  toggleImageForm(conv, false);
  sendMessage(conv, "message_image", { image: url });
}

function sendMessage(conv, type, payload) {
  if (conv.ended) return;
  const row = messageRow({ id: null, mine: true, type, payload, date: null });
  const userId = conv.user.id;
  const opId = state.socket.sendReliable({ type, to: conv.uuid, payload }, (frame) => {
    const c = state.convs.get(userId);
    if (!c || !c.uuid || c.ended) return false;
    frame.to = c.uuid;
    return true;
  });
  state.ops.set(opId, userId);
  row.dataset.op = opId;
  conv.pending.set(opId, row);
  setRowState(row, state.socket.isOpen && conv.uuid ? "sending" : "waiting");
  addRow(conv, row, conv.rows);
  conv.log.scrollTop = conv.log.scrollHeight;
  conv.preview = `You: ${previewOf(type, payload)}`;
  renderItem(conv);
}

function failed(conv, opId, text) {
  const row = conv.pending.get(opId);
  state.socket.ack(opId);
  state.ops.delete(opId);
  if (!row) return;
  conv.pending.delete(opId);
  setRowState(row, "failed", text);
}

function previewOf(type, payload) {
  if (type === "message_image") return "Image";
  const text = String((payload && payload.text) || "").replace(/\s+/g, " ").trim();
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

function messageRow({ id, mine, type, payload, date }) {
  const row = h("div", { class: `msg ${mine ? "mine" : "theirs"}` });
  const bubble = h("div", { class: "bubble" });
  if (type === "message_image") {
    const url = safeHttpUrl(payload && payload.image);
    if (url) {
      const img = h("img", { src: url, alt: mine ? "Image you sent" : "Image from the customer", loading: "lazy", referrerpolicy: "no-referrer" });
      img.addEventListener("error", () => img.replaceWith(document.createTextNode(url)), { once: true });
      bubble.classList.add("image");
      bubble.append(h("a", { href: url, target: "_blank", rel: "noopener noreferrer", "aria-label": "Open image in a new tab" }, img));
    } else {
      bubble.append(String((payload && payload.image) || ""));
    }
  } else {
    appendText(bubble, String((payload && payload.text) || ""));
  }
  row.append(bubble, h("div", { class: "meta" }, h("time", { class: "time" }), h("span", { class: "state" })));
  if (id) {
    row.dataset.id = id;
    stampRow(row, date);
  }
  return row;
}

function stampRow(row, date) {
  const d = parseDate(date);
  const time = row.querySelector("time");
  time.dateTime = d.toISOString();
  time.textContent = timeLabel(d);
  time.title = fullLabel(d);
  setRowState(row, "sent");
}

function setRowId(conv, row, id, date) {
  row.dataset.id = id;
  conv.rows.set(id, row);
  stampRow(row, date);
  if (conv.seenId && compareIds(id, conv.seenId) <= 0) markSeen(conv, conv.seenId);
}

function setRowState(row, st, text) {
  row.dataset.state = st;
  const label = { sending: "Sending…", waiting: "Waiting for the customer…", failed: text || "Not sent", sent: "" }[st];
  row.querySelector(".state").textContent = label || "";
}

/** Insert by message id; rows still waiting for their ack stay at the bottom. */
function addRow(conv, row, rows) {
  const log = conv.log;
  const id = row.dataset.id;
  if (id) rows.set(id, row);
  let after = log.lastElementChild;
  if (id) {
    while (after) {
      const other = after.dataset.id;
      if ((after.classList.contains("msg") && !other) || (other && compareIds(other, id) > 0)) {
        after = after.previousElementSibling;
        continue;
      }
      break;
    }
  }
  const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  if (after) after.after(row);
  else log.prepend(row);
  if (stick) log.scrollTop = log.scrollHeight;
}

function notice(conv, text, kind) {
  const log = conv.log;
  const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  log.append(h("div", { class: `notice ${kind || ""}`, role: "note" }, h("span", { text })));
  if (stick) log.scrollTop = log.scrollHeight;
}

function markSeen(conv, id) {
  conv.seenId = maxId(conv.seenId, id);
  let last = null;
  for (const row of conv.log.querySelectorAll(".msg.mine[data-id]")) {
    if (compareIds(row.dataset.id, conv.seenId) <= 0) last = row;
  }
  if (!last || last === conv.seenRow) return;
  if (conv.seenRow) {
    conv.seenRow.classList.remove("seen");
    if (conv.seenRow.dataset.state === "sent") conv.seenRow.querySelector(".state").textContent = "";
  }
  conv.seenRow = last;
  last.classList.add("seen");
  if (last.dataset.state === "sent") last.querySelector(".state").textContent = "Seen";
}

/** The person can see this conversation right now. */
function isShown(conv) {
  return state.active === conv.user.id && document.visibilityState === "visible" && conv.pane.getClientRects().length > 0;
}

function markRead(conv) {
  if (!isShown(conv)) return;
  if (conv.unread) {
    conv.unread = 0;
    renderItem(conv);
  }
  if (conv.ended || !conv.uuid) return;
  const id = conv.newestIncoming;
  if (!id || id === conv.lastReadSent) return;
  if (state.socket && state.socket.send({ type: "read", to: conv.uuid, payload: { id } })) conv.lastReadSent = id;
}

// ------------------------------------------------------------------ typing

function typingInput(conv) {
  if (conv.ended || !conv.uuid) return;
  const now = Date.now();
  if (!conv.typingOn || now - conv.typingSentAt > TYPING_SEND_EVERY) {
    if (state.socket.send({ type: "typing", to: conv.uuid, payload: { typing: true } })) {
      conv.typingOn = true;
      conv.typingSentAt = now;
    }
  }
  clearTimeout(conv.typingTimer);
  conv.typingTimer = setTimeout(() => typingStop(conv), TYPING_IDLE);
}

function typingStop(conv) {
  clearTimeout(conv.typingTimer);
  if (!conv.typingOn) return;
  conv.typingOn = false;
  if (!conv.ended && conv.uuid) state.socket.send({ type: "typing", to: conv.uuid, payload: { typing: false } });
}

function showTyping(conv, on) {
  clearTimeout(conv.typingShowTimer);
  conv.typingText.textContent = on ? `${displayName(conv.user)} is typing…` : "";
  conv.typing.hidden = !on;
  conv.item.classList.toggle("is-typing", on);
  if (conv.peerTyping !== on) {
    conv.peerTyping = on;
    renderItem(conv);
  }
  if (on) conv.typingShowTimer = setTimeout(() => showTyping(conv, false), TYPING_SHOW_FOR);
}

// ------------------------------------------------------------------ panes

let paneSeq = 0;

function buildPane(conv) {
  paneSeq += 1;
  const id = `pane-${paneSeq}`;
  conv.headAvatar = h("span", { class: "pane-avatar" });
  conv.headName = h("h2", { class: "pane-name", id: `${id}-name` });
  conv.headSub = h("p", { class: "pane-sub" });
  conv.earlierBtn = h(
    "button",
    {
      type: "button",
      class: "btn ghost",
      "aria-label": "Earlier messages",
      title: "Load this customer's earlier messages",
      onclick: () => {
        conv.loadingEarlier = true;
        conv.earlierBtn.disabled = true;
        requestHistory(conv.user.id);
      },
    },
    icon("history"),
    h("span", { class: "btn-text", text: "Earlier messages" }),
  );
  conv.rateBtn = h("button", { type: "button", class: "btn ghost", "aria-label": "Ask for rating", title: "Ask the customer to rate this chat", onclick: () => askRating(conv) }, icon("star"), h("span", { class: "btn-text", text: "Ask for rating" }));
  conv.endBtn = h("button", { type: "button", class: "btn danger", "aria-label": "End chat", title: "End this chat", onclick: () => endChat(conv) }, icon("end"), h("span", { class: "btn-text", text: "End chat" }));
  const back = h("button", { type: "button", class: "icon-btn back", "aria-label": "Back to conversations", onclick: () => showList() }, icon("back"));
  const head = h(
    "header",
    { class: "pane-head" },
    back,
    conv.headAvatar,
    h("div", { class: "pane-title" }, conv.headName, conv.headSub),
    h("div", { class: "pane-actions" }, conv.earlierBtn, conv.rateBtn, conv.endBtn),
  );
  conv.log = h("div", { class: "log", role: "log", "aria-live": "polite", tabindex: "0", "aria-labelledby": `${id}-name` });
  conv.typingText = h("span");
  conv.typing = h("div", { class: "typing", hidden: true }, h("span", { class: "dots", "aria-hidden": "true" }, h("i"), h("i"), h("i")), conv.typingText);
  conv.endedText = h("span", { text: "This chat has ended." });
  conv.endedBar = h(
    "div",
    { class: "ended-bar", hidden: true, role: "status" },
    conv.endedText,
    h("button", { type: "button", class: "btn ghost small", text: "Close chat", onclick: () => closeConv(conv) }),
  );
  conv.input = h("textarea", {
    class: "input",
    rows: "1",
    placeholder: "Write a reply…",
    maxlength: "4096",
    onkeydown: (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        sendText(conv);
      }
    },
    oninput: () => {
      autosize(conv.input);
      typingInput(conv);
    },
  });
  conv.imageToggle = h(
    "button",
    { type: "button", class: "icon-btn", "aria-label": "Send an image link", title: "Send an image link", "aria-expanded": "false", onclick: () => toggleImageForm(conv) },
    icon("image"),
  );
  conv.sendBtn = h("button", { type: "submit", class: "send", "aria-label": "Send reply", title: "Send (Enter)" }, icon("send"));
  conv.composer = h("form", { class: "composer", onsubmit: (e) => (e.preventDefault(), sendText(conv)) }, conv.imageToggle, conv.input, conv.sendBtn);
  conv.imageInput = h("input", {
    type: "url",
    class: "image-url",
    placeholder: "https://example.com/picture.png",
    "aria-label": "Image URL",
    onkeydown: (e) => {
      if (e.key === "Escape") toggleImageForm(conv, false);
    },
  });
  conv.imageError = h("p", { class: "form-error", role: "alert", hidden: true });
  conv.imageForm = h(
    "form",
    { class: "image-form", hidden: true, onsubmit: (e) => (e.preventDefault(), sendImage(conv)) },
    h("div", { class: "image-row" }, conv.imageInput, h("button", { type: "submit", class: "btn primary small", text: "Send image" })),
    conv.imageError,
  );
  conv.pane = h(
    "section",
    { class: "pane", id, hidden: true, "aria-labelledby": `${id}-name`, "data-user": conv.user.id },
    head,
    conv.log,
    conv.typing,
    conv.endedBar,
    conv.imageForm,
    conv.composer,
  );
  $("main").append(conv.pane);
}

function renderHead(conv) {
  clear(conv.headAvatar).append(avatar(conv.user, "avatar"));
  const name = displayName(conv.user);
  conv.headName.textContent = name;
  conv.input.setAttribute("aria-label", `Reply to ${name}`);
  conv.pane.setAttribute("aria-label", `Chat with ${name}`);
  renderSub(conv);
}

function renderSub(conv) {
  const started = `started ${timeLabel(new Date(conv.startedAt))}`;
  const status = conv.ended ? "ended" : conv.uuid ? "online" : "reconnecting…";
  conv.headSub.textContent = `@${conv.user.username} · ${started} · ${status}`;
  conv.pane.classList.toggle("away", !conv.uuid && !conv.ended);
}

function setComposerEnabled(conv, on) {
  for (const el of [conv.input, conv.sendBtn, conv.imageToggle, conv.rateBtn, conv.endBtn]) el.disabled = !on;
  if (!on) toggleImageForm(conv, false, true);
  conv.input.placeholder = on ? "Write a reply…" : "This chat has ended";
}

function toggleImageForm(conv, show, quiet) {
  const open = show === undefined ? conv.imageForm.hidden : show;
  conv.imageForm.hidden = !open;
  conv.imageToggle.setAttribute("aria-expanded", String(open));
  conv.imageError.hidden = true;
  if (open) conv.imageInput.focus();
  else if (!quiet) conv.imageToggle.focus();
}

function autosize(el) {
  el.style.height = "auto";
  el.style.height = `${Math.min(el.scrollHeight, 160)}px`;
}

// ------------------------------------------------------------------ the list

function buildItem(conv) {
  conv.itemAvatar = h("span", { class: "item-avatar" });
  conv.itemName = h("span", { class: "item-name" });
  conv.itemPreview = h("span", { class: "item-preview" });
  conv.itemWait = h("span", { class: "item-wait" });
  conv.itemUnread = h("span", { class: "unread", hidden: true });
  conv.itemButton = h(
    "button",
    { type: "button", class: "item", onclick: () => select(conv.user.id, { focus: true }) },
    conv.itemAvatar,
    h("span", { class: "item-main" }, conv.itemName, conv.itemPreview),
    h("span", { class: "item-side" }, conv.itemWait, conv.itemUnread),
  );
  conv.item = h("li", { "data-user": conv.user.id }, conv.itemButton);
  $("chat-list").append(conv.item);
}

function renderItem(conv) {
  clear(conv.itemAvatar).append(avatar(conv.user, "avatar"));
  const name = displayName(conv.user);
  conv.itemName.textContent = name;
  let preview = conv.preview || "New conversation";
  if (conv.peerTyping) preview = "typing…";
  if (conv.ended) preview = conv.rating ? `Ended · rated ${conv.rating}/5` : "Ended";
  conv.itemPreview.textContent = preview;
  conv.itemUnread.hidden = conv.unread === 0;
  conv.itemUnread.textContent = conv.unread > 99 ? "99+" : String(conv.unread);
  conv.item.classList.toggle("ended", conv.ended);
  conv.item.classList.toggle("has-unread", conv.unread > 0);
  const label = [name, conv.unread ? `${conv.unread} unread` : "", conv.ended ? "ended" : ""].filter(Boolean).join(", ");
  conv.itemButton.setAttribute("aria-label", label);
  renderWait(conv);
  renderSub(conv);
}

function renderWait(conv) {
  const now = Date.now();
  if (conv.ended) {
    conv.itemWait.textContent = "";
    conv.itemWait.className = "item-wait";
  } else if (conv.waitingSince) {
    conv.itemWait.textContent = `waiting ${duration((now - conv.waitingSince) / 1000)}`;
    conv.itemWait.className = `item-wait waiting${now - conv.waitingSince > 60000 ? " late" : ""}`;
    conv.itemWait.title = "Time since the customer's first unanswered message";
  } else {
    conv.itemWait.textContent = duration((now - conv.startedAt) / 1000);
    conv.itemWait.className = "item-wait";
    conv.itemWait.title = "Time since the chat started";
  }
}

function tick() {
  for (const conv of state.convs.values()) renderWait(conv);
}

function updateLists() {
  const open = [...state.convs.values()].filter((c) => !c.ended).length;
  $("chat-count").textContent = String(open);
  $("chat-empty").hidden = state.convs.size > 0;
  if (!state.active) showMainEmpty();
}

/** Show a pane; `reveal` (phones) swaps the list for it, `focus` puts the cursor in its box. */
function select(key, { reveal = true, focus = false } = {}) {
  state.active = key;
  $("main-empty").hidden = true;
  for (const conv of state.convs.values()) {
    const on = conv.user.id === key;
    conv.pane.hidden = !on;
    if (on) conv.itemButton.setAttribute("aria-current", "true");
    else conv.itemButton.removeAttribute("aria-current");
  }
  for (const [userId, view] of state.views) view.pane.hidden = `h:${userId}` !== key;
  if (reveal) document.body.classList.add("show-pane");
  const conv = state.convs.get(key);
  if (conv) {
    if (isShown(conv)) conv.unread = 0;
    renderItem(conv);
    markRead(conv);
    conv.log.scrollTop = conv.log.scrollHeight;
    if (focus && !conv.input.disabled) conv.input.focus();
  }
}

function showList() {
  document.body.classList.remove("show-pane");
  const conv = state.convs.get(state.active);
  (conv ? conv.itemButton : $("tab-chats")).focus();
}

function showMainEmpty() {
  $("main-empty").hidden = false;
  document.body.classList.remove("show-pane");
}

function showTab(which) {
  const chats = which === "chats";
  $("tab-chats").setAttribute("aria-selected", String(chats));
  $("tab-past").setAttribute("aria-selected", String(!chats));
  $("tab-chats").tabIndex = chats ? 0 : -1;
  $("tab-past").tabIndex = chats ? -1 : 0;
  $("chats-panel").hidden = !chats;
  $("past-panel").hidden = chats;
  if (!chats) {
    clear($("past-empty")).append(h("p", { text: "Loading…" }));
    $("past-empty").hidden = false;
    if (!state.socket || !state.socket.send({ type: "get_history_session" })) {
      clear($("past-empty")).append(h("p", { text: "You are offline." }));
    }
  }
}

function tabKeys(e) {
  if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return;
  const next = e.currentTarget.id === "tab-chats" ? "past" : "chats";
  showTab(next);
  $(`tab-${next}`).focus();
}

// ------------------------------------------------------------------ past sessions

function renderSessions(p) {
  const list = clear($("past-list"));
  const data = Array.isArray(p.data) ? p.data : [];
  $("past-empty").hidden = data.length > 0;
  clear($("past-empty")).append(h("p", { class: "empty-title", text: "No past sessions" }), h("p", { text: "Chats you have had appear here." }));
  for (const s of data) {
    const user = s.user || {};
    const latest = Array.isArray(s.history) && s.history[0];
    const preview = latest ? previewOf(latest.type, latest.payload) : "No messages";
    const when = s.created_at ? shortStamp(parseDate(s.created_at)) : "";
    const button = h(
      "button",
      { type: "button", class: "item", onclick: () => openHistoryView(user) },
      h("span", { class: "item-avatar" }, avatar(user, "avatar")),
      h("span", { class: "item-main" }, h("span", { class: "item-name", text: displayName(user) }), h("span", { class: "item-preview", text: preview })),
      h("span", { class: "item-side" }, h("span", { class: "item-wait", text: when })),
    );
    list.append(h("li", {}, button));
  }
}

function openHistoryView(user) {
  if (!user || !user.id) return;
  if (state.convs.has(user.id)) {
    showTab("chats");
    select(user.id, { focus: true });
    return;
  }
  let view = state.views.get(user.id);
  if (!view) {
    const name = h("h2", { class: "pane-name", text: displayName(user) });
    const log = h("div", { class: "log", role: "log", tabindex: "0", "aria-label": `Earlier messages with ${displayName(user)}` });
    const close = h("button", {
      type: "button",
      class: "btn ghost",
      text: "Close",
      onclick: () => {
        view.pane.remove();
        state.views.delete(user.id);
        state.active = null;
        showMainEmpty();
      },
    });
    const back = h("button", { type: "button", class: "icon-btn back", "aria-label": "Back to the list", onclick: () => showList() }, icon("back"));
    const pane = h(
      "section",
      { class: "pane history-view", "aria-label": `Earlier messages with ${displayName(user)}` },
      h("header", { class: "pane-head" }, back, h("span", { class: "pane-avatar" }, avatar(user, "avatar")), h("div", { class: "pane-title" }, name, h("p", { class: "pane-sub", text: `@${user.username} · past messages` })), h("div", { class: "pane-actions" }, close)),
      log,
    );
    view = { user, pane, log, rows: new Map() };
    state.views.set(user.id, view);
    $("main").append(pane);
    log.append(h("div", { class: "notice" }, h("span", { text: "Loading…" })));
  }
  select(`h:${user.id}`);
  requestHistory(user.id);
}

function renderHistoryView(view, data) {
  clear(view.log);
  if (!data.length) view.log.append(h("div", { class: "notice" }, h("span", { text: "No messages." })));
  const fake = { log: view.log };
  const sorted = [...data].sort((a, b) => compareIds(a.id, b.id));
  for (const e of sorted) {
    const mine = Boolean(state.me && e.sender && e.sender.id === state.me.id);
    const row = messageRow({ id: e.id, mine, type: e.type, payload: e.payload, date: e.date });
    if (!mine && e.sender) row.prepend(h("span", { class: "who", text: displayName(e.sender) }));
    else if (mine === false) row.prepend(h("span", { class: "who", text: "Customer" }));
    addRow(fake, row, view.rows);
  }
  view.log.scrollTop = view.log.scrollHeight;
}

// ------------------------------------------------------------------ attention

function onVisible() {
  if (document.visibilityState !== "visible") return;
  stopFlash();
  const conv = state.convs.get(state.active);
  if (conv) markRead(conv);
}

/** The tab is hidden: flash the title and play a short sound. */
function notify(text) {
  if (document.visibilityState === "visible") return;
  beep();
  const original = "kefu console";
  if (state.flash) state.flash.text = text;
  else {
    state.flash = { text, count: 0, on: false };
    state.flash.timer = setInterval(() => {
      const f = state.flash;
      f.on = !f.on;
      document.title = f.on ? `● ${f.text}` : original;
    }, 1000);
  }
  state.flash.count += 1;
  document.title = `● ${text}`;
}

function stopFlash() {
  if (!state.flash) return;
  clearInterval(state.flash.timer);
  state.flash = null;
  document.title = "kefu console";
}

function unlockAudio() {
  try {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (Ctx && !state.audio) state.audio = new Ctx();
  } catch {
    state.audio = null;
  }
}

function beep() {
  const ctx = state.audio;
  if (!ctx) return;
  try {
    if (ctx.state === "suspended") ctx.resume();
    const t = ctx.currentTime;
    for (const [freq, at] of [
      [880, 0],
      [1320, 0.12],
    ]) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "sine";
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, t + at);
      gain.gain.exponentialRampToValueAtTime(0.15, t + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + at + 0.18);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t + at);
      osc.stop(t + at + 0.2);
    }
  } catch {
    // sound is a nicety
  }
}

function toast(text, kind) {
  const el = h("div", { class: `toast ${kind || ""}` }, icon(kind === "error" ? "alert" : "bell"), h("span", { text }));
  $("toasts").append(el);
  setTimeout(() => el.classList.add("leaving"), 4200);
  setTimeout(() => el.remove(), 4600);
}

function capitalize(s) {
  const text = String(s || "");
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

init();
