// The visitor widget: a floating button that opens a chat panel (loaded by /widget.js).
//
// It lives in a shadow root, so the host page's CSS does not reach it and its
// CSS does not leak out. Message order and de-duplication go by message id;
// messages written while waiting in the queue or offline stay in the socket's
// outbox and are sent (once, thanks to their op_id) as soon as an agent is there.

import {
  append,
  appendText,
  avatar,
  clear,
  compareIds,
  displayName,
  fullLabel,
  h,
  icon,
  maxId,
  newOpId,
  parseDate,
  safeHttpUrl,
  timeLabel,
} from "./dom.js";
import { KefuSocket, wsUrl } from "./socket.js";

const TYPING_SEND_EVERY = 3000;
const TYPING_IDLE = 4000;
const TYPING_SHOW_FOR = 7000;
const RESUME_WAIT = 3000;

export function mount(options) {
  if (window.Kefu && window.Kefu.widget) return window.Kefu.widget;
  const widget = new Widget(options);
  widget.start();
  window.Kefu = {
    widget,
    open: () => widget.setOpen(true),
    close: () => widget.setOpen(false),
    toggle: () => widget.setOpen(!widget.isOpen),
  };
  return widget;
}

class Widget {
  constructor(options) {
    this.o = options;
    this.me = null;
    this.waiter = null;
    this.phase = "idle"; // idle | queued | chatting | ended
    this.isOpen = false;
    this.unread = 0;
    this.lastId = null; // newest message id we have (resume)
    this.newestIncoming = null;
    this.lastReadSent = null;
    this.rows = new Map(); // message id -> row
    this.pendingRows = new Map(); // op_id -> row
    this.rateState = "none"; // none | asked | offered | sending | done
    this.rateOp = null;
    this.wantConnect = false;
    this.typingSentAt = 0;
    this.typingOn = false;
    this.seenRow = null;
    this.build();
  }

  // ------------------------------------------------------------------ building

  build() {
    const host = h("div", { id: "kefu-widget", "data-kefu": "widget" });
    const root = host.attachShadow({ mode: "open" });
    const css = h("link", { rel: "stylesheet", href: new URL("static/css/widget.css", this.o.base).href });
    this.frame = h("div", { class: "kefu", hidden: true });
    css.addEventListener("load", () => (this.frame.hidden = false), { once: true });
    css.addEventListener("error", () => (this.frame.hidden = false), { once: true });
    root.append(css, this.frame);
    this.root = root;

    const title = this.o.title || "Chat with us";
    this.badge = h("span", { class: "badge", hidden: true, "aria-hidden": "true" });
    this.launcher = h(
      "button",
      {
        type: "button",
        class: "launcher",
        "aria-label": "Open chat",
        "aria-expanded": "false",
        "aria-controls": "kefu-panel",
        onclick: () => this.setOpen(!this.isOpen),
      },
      icon("chat", "icon icon-open"),
      icon("close", "icon icon-close"),
      this.badge,
    );

    this.headAvatar = h("span", { class: "head-avatar" }, icon("chat", "icon"));
    this.title = h("h2", { class: "title", id: "kefu-title", text: title });
    this.subtitle = h("p", { class: "subtitle", role: "status", text: "Connecting…" });
    this.endButton = h("button", {
      type: "button",
      class: "end",
      text: "End chat",
      hidden: true,
      onclick: () => this.endChat(),
    });
    const minimize = h(
      "button",
      { type: "button", class: "icon-btn", "aria-label": "Minimize chat", title: "Minimize", onclick: () => this.setOpen(false, true) },
      icon("minimize"),
    );
    const head = h(
      "header",
      { class: "head" },
      this.headAvatar,
      h("div", { class: "head-text" }, this.title, this.subtitle),
      this.endButton,
      minimize,
    );

    this.log = h("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": "Messages", tabindex: "0" });
    this.typing = h(
      "div",
      { class: "typing", hidden: true, "aria-live": "polite" },
      h("span", { class: "dots", "aria-hidden": "true" }, h("i"), h("i"), h("i")),
      h("span", { class: "typing-text" }),
    );
    this.stage = h("div", { class: "stage" }); // queue place, chat ended, rating

    this.input = h("textarea", {
      class: "input",
      rows: "1",
      placeholder: "Write a message…",
      "aria-label": "Message",
      maxlength: "4096",
      onkeydown: (e) => {
        if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
          e.preventDefault();
          this.sendText();
        }
      },
      oninput: () => {
        this.autosize();
        this.typingInput();
      },
    });
    this.imageToggle = h(
      "button",
      { type: "button", class: "icon-btn", "aria-label": "Send an image link", title: "Send an image link", "aria-expanded": "false", onclick: () => this.toggleImageForm() },
      icon("image"),
    );
    const sendBtn = h("button", { type: "submit", class: "send", "aria-label": "Send message", title: "Send" }, icon("send"));
    this.composer = h(
      "form",
      { class: "composer", onsubmit: (e) => (e.preventDefault(), this.sendText()) },
      this.imageToggle,
      this.input,
      sendBtn,
    );
    this.imageInput = h("input", {
      type: "url",
      class: "image-url",
      placeholder: "https://example.com/photo.jpg",
      "aria-label": "Image URL",
      onkeydown: (e) => {
        if (e.key === "Escape") {
          e.stopPropagation();
          this.toggleImageForm(false);
        }
      },
    });
    this.imageError = h("p", { class: "form-error", role: "alert", hidden: true });
    this.imageForm = h(
      "form",
      { class: "image-form", hidden: true, onsubmit: (e) => (e.preventDefault(), this.sendImage()) },
      h("div", { class: "image-row" }, this.imageInput, h("button", { type: "submit", class: "btn small", text: "Send image" })),
      this.imageError,
    );

    this.panel = h(
      "section",
      {
        class: "panel",
        id: "kefu-panel",
        role: "dialog",
        "aria-labelledby": "kefu-title",
        hidden: true,
        onkeydown: (e) => {
          if (e.key === "Escape") this.setOpen(false, true);
        },
      },
      head,
      this.log,
      this.typing,
      this.stage,
      this.imageForm,
      this.composer,
      h("p", { class: "brand", text: "Powered by kefu" }),
    );
    append(this.frame, [this.panel, this.launcher]);
    document.body.append(host);
    this.updateComposer();
  }

  start() {
    this.socket = new KefuSocket({
      url: wsUrl(this.o.base, "v1/ws/connect/user"),
      token: () => this.token(),
      lastId: () => this.lastId,
      onFrame: (f) => this.onFrame(f),
      onState: (s, info) => this.onSocketState(s, info),
    });
    this.socket.start();
    document.addEventListener("visibilitychange", () => this.markRead());
    if (this.o.open) this.setOpen(true);
  }

  async token() {
    if (this.o.token) return this.o.token;
    if (!this.o.tokenUrl) return "";
    const resp = await fetch(this.o.tokenUrl, { credentials: "include", headers: { accept: "application/json" } });
    if (!resp.ok) throw new Error(`token URL answered ${resp.status}`);
    const type = resp.headers.get("content-type") || "";
    if (type.includes("json")) {
      const body = await resp.json();
      return typeof body === "string" ? body : body.token || "";
    }
    return (await resp.text()).trim();
  }

  // ------------------------------------------------------------------ open / close

  setOpen(open, focusLauncher = false) {
    this.isOpen = open;
    this.panel.hidden = !open;
    this.frame.classList.toggle("is-open", open);
    this.launcher.setAttribute("aria-expanded", String(open));
    if (open) {
      this.unread = 0;
      this.updateBadge();
      if (this.phase === "idle") this.startChat();
      this.scrollDown(true);
      this.markRead();
      queueMicrotask(() => (this.input.disabled ? this.panel.querySelector("button, [tabindex]") : this.input)?.focus());
    } else {
      this.updateBadge();
      if (focusLauncher) this.launcher.focus();
    }
  }

  updateBadge() {
    const n = this.isOpen ? 0 : this.unread;
    this.badge.hidden = n === 0;
    this.badge.textContent = n > 9 ? "9+" : String(n);
    this.launcher.setAttribute(
      "aria-label",
      this.isOpen ? "Close chat" : n ? `Open chat, ${n} unread message${n === 1 ? "" : "s"}` : "Open chat",
    );
  }

  // ------------------------------------------------------------------ socket events

  onSocketState(state, info) {
    this.connState = state;
    if (state === "open") {
      if (!info.resumed) this.socket.send({ type: "get_history", payload: { limit: 100 } });
      else {
        this.socket.send({ type: "get_history", payload: { limit: 100 } });
        if (this.phase === "queued" || this.phase === "chatting") {
          clearTimeout(this.resumeTimer);
          this.resumeTimer = setTimeout(() => this.lostWhileAway(), RESUME_WAIT);
        }
      }
      if (this.wantConnect || (this.isOpen && this.phase === "idle")) this.startChat();
    } else if (state === "stopped") {
      this.stopped(info);
    }
    this.updateSubtitle();
    this.updateComposer();
  }

  stopped(info) {
    const reason = info.reason;
    if (reason === "ended") {
      if (this.phase === "queued" || this.phase === "chatting") this.toEnded("The chat was closed.");
      return;
    }
    const text = {
      "auth-failed": "We could not sign you in to the chat. Please reload the page.",
      "no-token": "The chat is not set up on this page (no token).",
      refused: "The chat server refused the connection.",
      kickout: "The chat was opened somewhere else.",
    }[reason];
    if (text) this.showStage(this.stageCard("alert", text));
  }

  onFrame(f) {
    switch (f.type) {
      case "auth_success":
        this.me = f.payload;
        break;
      case "connect_queue":
        this.resumed();
        this.setPhase("queued");
        this.showQueue(Number(f.payload && f.payload.location) || 0);
        break;
      case "connect_success":
        this.resumed();
        this.connected(f.payload || {});
        break;
      case "message_text":
      case "message_image":
        this.incoming(f);
        break;
      case "message_text_success":
      case "message_image_success":
        this.acked(f);
        break;
      case "message_history":
        for (const entry of Array.isArray(f.payload) ? f.payload : []) this.historyEntry(entry);
        break;
      case "typing":
        this.showTyping(Boolean(f.payload && f.payload.typing));
        break;
      case "read":
        if (f.payload && f.payload.id) this.markSeen(f.payload.id);
        break;
      case "disconnected":
        this.toEnded("The chat has ended.");
        break;
      case "rate":
        this.askRating(true);
        break;
      case "rate_success":
        this.rated(f.payload && f.payload.rate);
        break;
      case "idle":
        this.notice(f.payload && f.payload.message ? String(f.payload.message) : "Are you still there?");
        break;
      case "not_connect":
        this.failed(f.op_id, "Not sent: no agent is connected.");
        break;
      case "error":
        this.onError(f);
        break;
      default:
        break;
    }
  }

  resumed() {
    clearTimeout(this.resumeTimer);
    this.resumeTimer = null;
  }

  lostWhileAway() {
    if (this.phase === "queued" || this.phase === "chatting") this.toEnded("Your chat ended while you were offline.");
  }

  onError(f) {
    const p = f.payload || {};
    if (f.op_id && f.op_id === this.rateOp) {
      this.rateOp = null;
      if (p.status === 100006) this.rated(null);
      else if (this.rateState === "sending") {
        this.rateState = "offered";
        this.askRating(false, p.message);
      }
      return;
    }
    if (f.op_id && this.pendingRows.has(f.op_id)) {
      this.failed(f.op_id, p.message ? `Not sent: ${p.message}` : "Not sent.");
      return;
    }
    if (p.status !== 999999) console.warn("kefu:", p.message || f);
  }

  // ------------------------------------------------------------------ phases

  setPhase(phase) {
    this.phase = phase;
    this.endButton.hidden = !(phase === "queued" || phase === "chatting");
    this.endButton.textContent = phase === "queued" ? "Leave queue" : "End chat";
    this.updateSubtitle();
    this.updateComposer();
  }

  startChat() {
    this.wantConnect = true;
    if (this.connState === "stopped") {
      this.socket.restart();
      return;
    }
    if (!this.socket.isOpen) {
      this.showStage(this.stageCard("clock", "Connecting you to our team…"));
      return;
    }
    this.wantConnect = false;
    if (this.phase === "idle" || this.phase === "ended") {
      this.rateState = "none";
      this.socket.send({ type: "connect" });
      this.showStage(this.stageCard("clock", "Finding someone to help you…"));
    }
  }

  showQueue(location) {
    const place = location + 1;
    const card = h(
      "div",
      { class: "card queue", role: "status" },
      h("div", { class: "queue-num", "aria-hidden": "true", text: String(place) }),
      h(
        "div",
        {},
        h("p", { class: "card-title", text: `You are number ${place} in line` }),
        h("p", { class: "card-text", text: "Someone from our team will be with you shortly. You can already write your question." }),
      ),
    );
    this.showStage(card);
  }

  connected(profile) {
    const before = this.waiter;
    const wasChatting = this.phase === "chatting";
    this.waiter = profile;
    this.setPhase("chatting");
    this.showStage(null);
    this.rateState = "none";
    this.setHeader(profile);
    if (!wasChatting || !before || before.id !== profile.id) {
      this.notice(`You are now chatting with ${displayName(profile) || "an agent"}.`);
    }
    this.socket.flush();
  }

  setHeader(profile) {
    clear(this.headAvatar);
    if (profile) {
      this.headAvatar.append(avatar(profile, "avatar"));
      this.title.textContent = displayName(profile);
    } else {
      this.headAvatar.append(icon("chat", "icon"));
      this.title.textContent = this.o.title || "Chat with us";
    }
    this.updateSubtitle();
  }

  toEnded(text) {
    this.resumed();
    const wasActive = this.phase === "queued" || this.phase === "chatting";
    const hadWaiter = this.phase === "chatting";
    this.showTyping(false);
    this.setPhase("ended");
    if (wasActive) this.notice(text);
    for (const [opId, row] of this.pendingRows) {
      if (row.dataset.state === "waiting") this.failed(opId, "Not sent: the chat has ended.");
    }
    this.showEnded(hadWaiter);
  }

  showEnded(offerRating) {
    const again = h("button", { type: "button", class: "btn", text: "Start a new chat", onclick: () => this.startChat() });
    const card = h(
      "div",
      { class: "card ended" },
      h("p", { class: "card-title", text: "This chat has ended" }),
      h("p", { class: "card-text", text: "Need anything else? We are happy to help." }),
      again,
    );
    this.showStage(card);
    if (offerRating && (this.rateState === "none" || this.rateState === "asked")) this.askRating(false);
  }

  endChat() {
    if (this.phase !== "queued" && this.phase !== "chatting") return;
    if (!this.socket.send({ type: "disconnect" })) {
      this.notice("You are offline; try again in a moment.");
    }
  }

  // ------------------------------------------------------------------ rating

  askRating(askedByAgent, error) {
    if (this.rateState === "done" || this.rateState === "sending") return;
    this.rateState = askedByAgent ? "asked" : "offered";
    const who = displayName(this.waiter);
    const question = askedByAgent
      ? `${who || "Your agent"} would like to know: how was this chat?`
      : `How was your chat${who ? ` with ${who}` : ""}?`;
    const stars = [];
    const light = (n) => stars.forEach((s, i) => s.classList.toggle("lit", i < n));
    for (let n = 1; n <= 5; n++) {
      const star = h(
        "button",
        {
          type: "button",
          class: "star",
          "aria-label": `${n} star${n === 1 ? "" : "s"}`,
          title: ["Bad", "Poor", "Okay", "Good", "Great"][n - 1],
          onmouseenter: () => light(n),
          onfocus: () => light(n),
          onmouseleave: () => light(0),
          onblur: () => light(0),
          onclick: () => this.sendRating(n),
        },
        icon("star"),
      );
      stars.push(star);
    }
    const card = h(
      "div",
      { class: "card rating", role: "group", "aria-label": "Rate this chat" },
      h("p", { class: "card-title", text: question }),
      h("div", { class: "stars" }, stars),
      error ? h("p", { class: "form-error", role: "alert", text: error }) : null,
    );
    if (this.phase === "ended") this.stage.append(card);
    else this.showStage(card);
    this.ratingCard = card;
    if (askedByAgent && !this.isOpen) {
      this.unread += 1;
      this.updateBadge();
    }
  }

  sendRating(n) {
    this.rateState = "sending";
    this.rateOp = newOpId();
    if (!this.socket.send({ type: "rate", op_id: this.rateOp, payload: { rate: n } })) {
      this.rateState = "offered";
      this.askRating(false, "You are offline; try again in a moment.");
      return;
    }
    if (this.ratingCard) {
      this.ratingCard.querySelectorAll("button").forEach((b) => (b.disabled = true));
    }
  }

  rated(rate) {
    this.rateState = "done";
    this.rateOp = null;
    if (this.ratingCard) this.ratingCard.remove();
    this.ratingCard = null;
    const text = rate ? `Thank you! You rated this chat ${rate} out of 5.` : "Thank you for your feedback!";
    this.notice(text);
  }

  // ------------------------------------------------------------------ stage

  showStage(node) {
    clear(this.stage);
    this.ratingCard = null;
    if (node) this.stage.append(node);
    this.stage.hidden = !node;
  }

  stageCard(iconName, text) {
    return h("div", { class: "card slim", role: "status" }, icon(iconName, "icon card-icon"), h("p", { class: "card-text", text }));
  }

  // ------------------------------------------------------------------ messages

  incoming(f) {
    if (!f.id || this.rows.has(f.id)) return;
    this.lastId = maxId(this.lastId, f.id);
    this.newestIncoming = maxId(this.newestIncoming, f.id);
    this.showTyping(false);
    this.addRow(this.messageRow({ id: f.id, mine: false, type: f.type, payload: f.payload, date: f.date }));
    if (!this.isOpen || document.visibilityState !== "visible") {
      this.unread += 1;
      this.updateBadge();
    }
    this.markRead();
  }

  acked(f) {
    if (f.id) this.lastId = maxId(this.lastId, f.id);
    this.socket.ack(f.op_id);
    const row = f.op_id ? this.pendingRows.get(f.op_id) : null;
    if (row) {
      this.pendingRows.delete(f.op_id);
      if (f.id && this.rows.has(f.id)) {
        row.remove(); // already shown (e.g. from history)
        return;
      }
      this.setRowId(row, f.id, f.date);
      return;
    }
    if (f.id && !this.rows.has(f.id)) {
      const type = f.type.replace(/_success$/, "");
      this.addRow(this.messageRow({ id: f.id, mine: true, type, payload: f.payload, date: f.date }));
    }
  }

  historyEntry(e) {
    if (!e || !e.id) return;
    this.lastId = maxId(this.lastId, e.id);
    if (this.rows.has(e.id)) return;
    const mine = Boolean(this.me && e.sender && e.sender.id === this.me.id);
    if (!mine) this.newestIncoming = maxId(this.newestIncoming, e.id);
    this.addRow(this.messageRow({ id: e.id, mine, type: e.type, payload: e.payload, date: e.date }));
  }

  sendText() {
    const text = this.input.value;
    if (!text.trim()) return;
    if (this.phase === "idle" || this.phase === "ended") this.startChat();
    this.input.value = "";
    this.autosize();
    this.typingStop();
    this.sendMessage("message_text", { text });
    this.input.focus();
  }

  toggleImageForm(show) {
    const open = show === undefined ? this.imageForm.hidden : show;
    this.imageForm.hidden = !open;
    this.imageToggle.setAttribute("aria-expanded", String(open));
    this.imageError.hidden = true;
    if (open) this.imageInput.focus();
    else this.imageToggle.focus();
  }

  sendImage() {
    const url = safeHttpUrl(this.imageInput.value.trim());
    if (!url) {
      this.imageError.textContent = "Enter a link that starts with http:// or https://";
      this.imageError.hidden = false;
      this.imageInput.focus();
      return;
    }
    if (this.phase === "idle" || this.phase === "ended") this.startChat();
    this.imageInput.value = "";
    this.toggleImageForm(false);
    this.sendMessage("message_image", { image: url });
  }

  sendMessage(type, payload) {
    const row = this.messageRow({ id: null, mine: true, type, payload, date: null });
    const opId = this.socket.sendReliable({ type, payload }, () => this.phase === "chatting");
    row.dataset.op = opId;
    this.pendingRows.set(opId, row);
    this.setRowState(row, this.phase === "chatting" && this.socket.isOpen ? "sending" : "waiting");
    this.addRow(row);
    this.scrollDown(true);
  }

  failed(opId, text) {
    if (!opId) return;
    const row = this.pendingRows.get(opId);
    if (!row) return;
    this.socket.ack(opId);
    this.pendingRows.delete(opId);
    this.setRowState(row, "failed", text);
  }

  messageRow({ id, mine, type, payload, date }) {
    const row = h("div", { class: `msg ${mine ? "mine" : "theirs"}` });
    const bubble = h("div", { class: "bubble" });
    if (type === "message_image") {
      const url = safeHttpUrl(payload && payload.image);
      if (url) {
        const img = h("img", { src: url, alt: mine ? "Image you sent" : "Image", loading: "lazy", referrerpolicy: "no-referrer" });
        img.addEventListener("load", () => this.scrollDown(false));
        img.addEventListener("error", () => img.replaceWith(document.createTextNode(url)), { once: true });
        bubble.classList.add("image");
        bubble.append(h("a", { href: url, target: "_blank", rel: "noopener noreferrer", "aria-label": "Open image in a new tab" }, img));
      } else {
        bubble.append(String((payload && payload.image) || ""));
      }
    } else {
      appendText(bubble, String((payload && payload.text) || ""));
    }
    const time = h("time", { class: "time" });
    const state = h("span", { class: "state" });
    row.append(bubble, h("div", { class: "meta" }, time, state));
    if (id) this.setRowId(row, id, date);
    return row;
  }

  setRowId(row, id, date) {
    row.dataset.id = id;
    this.rows.set(id, row);
    const d = parseDate(date);
    const time = row.querySelector("time");
    time.dateTime = d.toISOString();
    time.textContent = timeLabel(d);
    time.title = fullLabel(d);
    this.setRowState(row, "sent");
    if (this.seenId && row.classList.contains("mine") && compareIds(id, this.seenId) <= 0) this.markSeen(this.seenId);
  }

  setRowState(row, state, text) {
    row.dataset.state = state;
    const el = row.querySelector(".state");
    const label = { sending: "Sending…", waiting: "Waiting for an agent…", failed: text || "Not sent", sent: "" }[state];
    el.textContent = label || "";
  }

  /** Insert by id; rows without an id (not yet acked) stay at the bottom. */
  addRow(row) {
    const id = row.dataset.id;
    let after = this.log.lastElementChild;
    if (id) {
      while (after) {
        const other = after.dataset.id;
        if (after.classList.contains("msg") && !other) {
          after = after.previousElementSibling;
          continue;
        }
        if (other && compareIds(other, id) > 0) {
          after = after.previousElementSibling;
          continue;
        }
        break;
      }
    }
    const stick = this.nearBottom();
    if (after) after.after(row);
    else this.log.prepend(row);
    this.scrollDown(stick);
  }

  notice(text) {
    const row = h("div", { class: "notice", role: "note" }, h("span", { text }));
    const stick = this.nearBottom();
    this.log.append(row);
    this.scrollDown(stick);
  }

  markSeen(id) {
    this.seenId = maxId(this.seenId, id);
    let last = null;
    for (const row of this.log.querySelectorAll(".msg.mine[data-id]")) {
      if (compareIds(row.dataset.id, this.seenId) <= 0) last = row;
    }
    if (!last || last === this.seenRow) return;
    if (this.seenRow) this.seenRow.classList.remove("seen");
    this.seenRow = last;
    last.classList.add("seen");
    const state = last.querySelector(".state");
    if (last.dataset.state === "sent") state.textContent = "Seen";
    for (const row of this.log.querySelectorAll(".msg.mine:not(.seen)[data-state='sent'] .state")) row.textContent = "";
  }

  markRead() {
    if (!this.isOpen || document.visibilityState !== "visible" || this.phase !== "chatting") return;
    const id = this.newestIncoming;
    if (!id || id === this.lastReadSent) return;
    if (this.socket.send({ type: "read", payload: { id } })) this.lastReadSent = id;
  }

  // ------------------------------------------------------------------ typing

  typingInput() {
    if (this.phase !== "chatting") return;
    const now = Date.now();
    if (!this.typingOn || now - this.typingSentAt > TYPING_SEND_EVERY) {
      if (this.socket.send({ type: "typing", payload: { typing: true } })) {
        this.typingOn = true;
        this.typingSentAt = now;
      }
    }
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.typingStop(), TYPING_IDLE);
  }

  typingStop() {
    clearTimeout(this.typingTimer);
    if (!this.typingOn) return;
    this.typingOn = false;
    if (this.phase === "chatting") this.socket.send({ type: "typing", payload: { typing: false } });
  }

  showTyping(on) {
    clearTimeout(this.typingShowTimer);
    const name = displayName(this.waiter) || "The agent";
    this.typing.querySelector(".typing-text").textContent = on ? `${name} is typing…` : "";
    this.typing.hidden = !on;
    if (on) this.typingShowTimer = setTimeout(() => this.showTyping(false), TYPING_SHOW_FOR);
  }

  // ------------------------------------------------------------------ bits

  updateSubtitle() {
    let text;
    const s = this.connState;
    if (s === "waiting" || (s === "connecting" && this.socket && this.socket.sessions > 0)) text = "Reconnecting…";
    else if (s === "connecting" || !s) text = "Connecting…";
    else if (s === "stopped") text = "Offline";
    else if (this.phase === "chatting") text = "Online now";
    else if (this.phase === "queued") text = "Waiting for an agent";
    else text = "We typically reply in a few minutes";
    this.subtitle.textContent = text;
    this.frame.classList.toggle("is-offline", s === "waiting" || s === "stopped");
  }

  updateComposer() {
    const usable = this.phase === "chatting" || this.phase === "queued" || this.phase === "idle";
    this.input.placeholder = this.phase === "queued" ? "Write your question while you wait…" : "Write a message…";
    this.composer.classList.toggle("muted", !usable);
  }

  autosize() {
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, 120)}px`;
  }

  nearBottom() {
    const log = this.log;
    return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  }

  scrollDown(force) {
    if (force) this.log.scrollTop = this.log.scrollHeight;
  }
}
