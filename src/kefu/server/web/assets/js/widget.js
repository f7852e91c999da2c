// The visitor widget: a floating button that opens a chat panel (loaded by /widget.js).
//
// It lives in a shadow root, so the host page's CSS does not reach it and its
// CSS does not leak out; its stylesheets and modules come from the kefu server
// that served /widget.js. Messages written while waiting in the queue or offline
// stay in the socket's outbox and are sent (once, thanks to their op_id) as soon
// as an agent is there.

import { append, avatar, clear, displayName, h, icon, maxId, newOpId } from "./dom.js";
import { Composer } from "./composer.js";
import { I18n, chooseLanguage } from "./i18n.js";
import { MessageLog } from "./message-log.js";
import { KefuSocket, wsUrl } from "./socket.js";
import { TypingIndicator, TypingSignal } from "./typing.js";

const RESUME_WAIT = 3000;
const STYLESHEETS = ["static/css/base.css", "static/css/message.css", "static/css/widget.css"];

/**
 * @param {object} options  from the script tag (see /widget.js): base, token,
 *   tokenUrl, open, title, lang
 */
export function mount(options) {
  if (window.Kefu && window.Kefu.widget) return window.Kefu.widget;
  const i18n = new I18n(chooseLanguage(options.lang));
  const widget = new Widget(options, i18n);
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
  constructor(options, i18n) {
    this.o = options;
    this.i18n = i18n;
    this.t = i18n.t;
    this.me = null;
    this.waiter = null;
    this.phase = "idle"; // idle | queued | chatting | ended
    this.isOpen = false;
    this.unread = 0;
    this.lastId = null; // newest message id we have (resume)
    this.newestIncoming = null;
    this.lastReadSent = null;
    this.rateState = "none"; // none | asked | offered | sending | done
    this.rateOp = null;
    this.wantConnect = false;
    this.build();
  }

  // ------------------------------------------------------------------ building

  build() {
    const t = this.t;
    const host = h("div", { id: "kefu-widget", "data-kefu": "widget" });
    const root = host.attachShadow({ mode: "open" });
    this.frame = h("div", { class: "kefu", lang: this.i18n.lang, hidden: true });
    // Shown once every stylesheet has loaded (or failed): no flash of an unstyled panel.
    const links = STYLESHEETS.map((path) => h("link", { rel: "stylesheet", href: new URL(path, this.o.base).href }));
    let waiting = links.length;
    const done = () => {
      waiting -= 1;
      if (waiting === 0) this.frame.hidden = false;
    };
    for (const link of links) {
      link.addEventListener("load", done, { once: true });
      link.addEventListener("error", done, { once: true });
    }
    root.append(...links, this.frame);

    this.badge = h("span", { class: "badge", hidden: true, "aria-hidden": "true" });
    this.launcher = h(
      "button",
      {
        type: "button",
        class: "launcher",
        "aria-label": t("widget.open"),
        "aria-expanded": "false",
        "aria-controls": "kefu-panel",
        onclick: () => this.setOpen(!this.isOpen),
      },
      icon("chat", "icon icon-open"),
      icon("close", "icon icon-close"),
      this.badge,
    );

    this.headAvatar = h("span", { class: "head-avatar" }, icon("chat", "icon"));
    this.title = h("h2", { class: "title", id: "kefu-title", text: this.defaultTitle() });
    this.subtitle = h("p", { class: "subtitle", role: "status", text: t("widget.connecting") });
    this.endButton = h("button", { type: "button", class: "end", text: t("widget.end"), hidden: true, onclick: () => this.endChat() });
    const minimize = h(
      "button",
      { type: "button", class: "icon-btn", "aria-label": t("widget.minimize"), title: t("widget.minimize_title"), onclick: () => this.setOpen(false, true) },
      icon("minimize"),
    );
    const head = h("header", { class: "head" }, this.headAvatar, h("div", { class: "head-text" }, this.title, this.subtitle), this.endButton, minimize);

    this.log = new MessageLog(this.i18n, {
      attrs: { role: "log", "aria-live": "polite", "aria-label": t("widget.messages") },
      waitingText: t("msg.waiting_agent"),
    });
    this.typing = new TypingIndicator(this.i18n);
    this.typingSignal = new TypingSignal((on) => this.phase === "chatting" && this.socket.send({ type: "typing", payload: { typing: on } }));
    this.stage = h("div", { class: "stage" }); // queue place, chat ended, rating
    this.composer = new Composer(this.i18n, {
      placeholder: t("widget.placeholder"),
      label: t("widget.input_label"),
      sendLabel: t("widget.send"),
      sendTitle: t("widget.send_title"),
      maxHeight: 120,
      onText: (text) => {
        if (this.phase === "idle" || this.phase === "ended") this.startChat();
        this.typingSignal.stop();
        this.sendMessage("message_text", { text });
      },
      onImage: (url) => {
        if (this.phase === "idle" || this.phase === "ended") this.startChat();
        this.sendMessage("message_image", { image: url });
      },
      onInput: () => this.phase === "chatting" && this.typingSignal.input(),
    });

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
      this.log.element,
      this.typing.element,
      this.stage,
      this.composer.elements,
      h("p", { class: "brand", text: t("widget.powered") }),
    );
    append(this.frame, [this.panel, this.launcher]);
    document.body.append(host);
    this.updateComposer();
  }

  defaultTitle() {
    return this.o.title || this.t("widget.default_title");
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
      this.log.scrollToEnd();
      this.markRead();
      queueMicrotask(() => (this.composer.input.disabled ? this.panel.querySelector("button, [tabindex]") : this.composer.input)?.focus());
    } else {
      this.updateBadge();
      if (focusLauncher) this.launcher.focus();
    }
  }

  updateBadge() {
    const n = this.isOpen ? 0 : this.unread;
    this.badge.hidden = n === 0;
    this.badge.textContent = n > 9 ? "9+" : String(n);
    const label = this.isOpen ? this.t("widget.close") : n ? this.t("widget.open_unread", { n }) : this.t("widget.open");
    this.launcher.setAttribute("aria-label", label);
  }

  // ------------------------------------------------------------------ socket events

  onSocketState(state, info) {
    this.connState = state;
    if (state === "open") {
      this.socket.send({ type: "get_history", payload: { limit: 100 } });
      if (info.resumed && (this.phase === "queued" || this.phase === "chatting")) {
        clearTimeout(this.resumeTimer);
        this.resumeTimer = setTimeout(() => this.lostWhileAway(), RESUME_WAIT);
      }
      if (this.wantConnect || (this.isOpen && this.phase === "idle")) this.startChat();
    } else if (state === "stopped") {
      this.stopped(info);
    }
    this.updateSubtitle();
    this.updateComposer();
  }

  stopped(info) {
    const t = this.t;
    const reason = info.reason;
    if (reason === "ended") {
      if (this.phase === "queued" || this.phase === "chatting") this.toEnded(t("widget.closed"));
      return;
    }
    const text = {
      "auth-failed": t("widget.auth_failed"),
      "no-token": t("widget.no_token"),
      refused: t("widget.refused"),
      kickout: t("widget.kickout"),
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
        if (f.payload && f.payload.id) this.log.markSeen(f.payload.id);
        break;
      case "disconnected":
        this.toEnded(this.t("widget.ended_notice"));
        break;
      case "rate":
        this.askRating(true);
        break;
      case "rate_success":
        this.rated(f.payload && f.payload.rate);
        break;
      case "idle":
        // The server's words are English only; ours say the same in the page's language.
        this.log.notice(this.t("widget.idle"));
        break;
      case "not_connect":
        this.failed(f.op_id, this.t("msg.not_sent_no_agent"));
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
    if (this.phase === "queued" || this.phase === "chatting") this.toEnded(this.t("widget.ended_offline"));
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
    if (f.op_id && this.log.pending.has(f.op_id)) {
      this.failed(f.op_id, p.message ? this.t("msg.not_sent_reason", { reason: p.message }) : this.t("msg.not_sent_plain"));
      return;
    }
    if (p.status !== 999999) console.warn("kefu:", p.message || f);
  }

  // ------------------------------------------------------------------ phases

  setPhase(phase) {
    this.phase = phase;
    this.endButton.hidden = !(phase === "queued" || phase === "chatting");
    this.endButton.textContent = phase === "queued" ? this.t("widget.leave_queue") : this.t("widget.end");
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
      this.showStage(this.stageCard("clock", this.t("widget.connecting_team")));
      return;
    }
    this.wantConnect = false;
    if (this.phase === "idle" || this.phase === "ended") {
      this.rateState = "none";
      this.socket.send({ type: "connect" });
      this.showStage(this.stageCard("clock", this.t("widget.finding")));
    }
  }

  /** `location` is 0-based: the number of people ahead. */
  showQueue(location) {
    const place = location + 1;
    const card = h(
      "div",
      { class: "card queue", role: "status" },
      h("div", { class: "queue-num", "aria-hidden": "true", text: String(place) }),
      h(
        "div",
        {},
        h("p", { class: "card-title", text: this.t("widget.queue_place", { n: location, place }) }),
        h("p", { class: "card-text", text: this.t("widget.queue_text") }),
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
      const name = displayName(profile);
      this.log.notice(name ? this.t("widget.chatting_with", { name }) : this.t("widget.chatting_anon"));
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
      this.title.textContent = this.defaultTitle();
    }
    this.updateSubtitle();
  }

  toEnded(text) {
    this.resumed();
    const wasActive = this.phase === "queued" || this.phase === "chatting";
    const hadWaiter = this.phase === "chatting";
    this.showTyping(false);
    this.setPhase("ended");
    if (wasActive) this.log.notice(text);
    for (const opId of this.log.pendingOps()) {
      if (this.log.isHeld(opId)) this.failed(opId, this.t("msg.not_sent_ended"));
    }
    this.showEnded(hadWaiter);
  }

  showEnded(offerRating) {
    const again = h("button", { type: "button", class: "btn", text: this.t("widget.start_new"), onclick: () => this.startChat() });
    const card = h(
      "div",
      { class: "card ended" },
      h("p", { class: "card-title", text: this.t("widget.ended_title") }),
      h("p", { class: "card-text", text: this.t("widget.ended_text") }),
      again,
    );
    this.showStage(card);
    if (offerRating && (this.rateState === "none" || this.rateState === "asked")) this.askRating(false);
  }

  endChat() {
    if (this.phase !== "queued" && this.phase !== "chatting") return;
    if (!this.socket.send({ type: "disconnect" })) this.log.notice(this.t("widget.offline_retry"));
  }

  // ------------------------------------------------------------------ rating

  askRating(askedByAgent, error) {
    const t = this.t;
    if (this.rateState === "done" || this.rateState === "sending") return;
    this.rateState = askedByAgent ? "asked" : "offered";
    const name = displayName(this.waiter);
    let question;
    if (askedByAgent) question = name ? t("widget.rate_asked", { name }) : t("widget.rate_asked_anon");
    else question = name ? t("widget.rate_offer_named", { name }) : t("widget.rate_offer");
    const titles = [t("widget.star_1"), t("widget.star_2"), t("widget.star_3"), t("widget.star_4"), t("widget.star_5")];
    const stars = [];
    const light = (n) => stars.forEach((s, i) => s.classList.toggle("lit", i < n));
    for (let n = 1; n <= 5; n++) {
      const star = h(
        "button",
        {
          type: "button",
          class: "star",
          "aria-label": t("widget.stars", { n }),
          title: titles[n - 1],
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
      { class: "card rating", role: "group", "aria-label": t("widget.rate_group") },
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
      this.askRating(false, this.t("widget.offline_retry"));
      return;
    }
    if (this.ratingCard) this.ratingCard.querySelectorAll("button").forEach((b) => (b.disabled = true));
  }

  rated(rate) {
    this.rateState = "done";
    this.rateOp = null;
    if (this.ratingCard) this.ratingCard.remove();
    this.ratingCard = null;
    this.log.notice(rate ? this.t("widget.rated", { n: rate }) : this.t("widget.thanks"));
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
    if (!f.id || this.log.has(f.id)) return;
    this.lastId = maxId(this.lastId, f.id);
    this.newestIncoming = maxId(this.newestIncoming, f.id);
    this.showTyping(false);
    this.log.add({ id: f.id, mine: false, type: f.type, payload: f.payload, date: f.date });
    if (!this.isOpen || document.visibilityState !== "visible") {
      this.unread += 1;
      this.updateBadge();
    }
    this.markRead();
  }

  acked(f) {
    if (f.id) this.lastId = maxId(this.lastId, f.id);
    this.socket.ack(f.op_id);
    this.log.acked({ opId: f.op_id, id: f.id, type: f.type.replace(/_success$/, ""), payload: f.payload, date: f.date });
  }

  historyEntry(e) {
    if (!e || !e.id) return;
    this.lastId = maxId(this.lastId, e.id);
    if (this.log.has(e.id)) return;
    const mine = Boolean(this.me && e.sender && e.sender.id === this.me.id);
    if (!mine) this.newestIncoming = maxId(this.newestIncoming, e.id);
    this.log.add({ id: e.id, mine, type: e.type, payload: e.payload, date: e.date });
  }

  sendMessage(type, payload) {
    const opId = this.socket.sendReliable({ type, payload }, () => this.phase === "chatting");
    this.log.addPending(opId, type, payload, !(this.phase === "chatting" && this.socket.isOpen));
  }

  failed(opId, text) {
    if (!opId || !this.log.pending.has(opId)) return;
    this.socket.ack(opId);
    this.log.failed(opId, text);
  }

  markRead() {
    if (!this.isOpen || document.visibilityState !== "visible" || this.phase !== "chatting") return;
    const id = this.newestIncoming;
    if (!id || id === this.lastReadSent) return;
    if (this.socket.send({ type: "read", payload: { id } })) this.lastReadSent = id;
  }

  showTyping(on) {
    this.typing.show(on, displayName(this.waiter) || this.t("widget.the_agent"));
  }

  // ------------------------------------------------------------------ bits

  updateSubtitle() {
    const t = this.t;
    let text;
    const s = this.connState;
    if (s === "waiting" || (s === "connecting" && this.socket && this.socket.sessions > 0)) text = t("widget.reconnecting");
    else if (s === "connecting" || !s) text = t("widget.connecting");
    else if (s === "stopped") text = t("widget.offline");
    else if (this.phase === "chatting") text = t("widget.online");
    else if (this.phase === "queued") text = t("widget.waiting");
    else text = t("widget.reply_time");
    this.subtitle.textContent = text;
    this.frame.classList.toggle("is-offline", s === "waiting" || s === "stopped");
  }

  updateComposer() {
    const usable = this.phase === "chatting" || this.phase === "queued" || this.phase === "idle";
    this.composer.setPlaceholder(this.phase === "queued" ? this.t("widget.placeholder_queued") : this.t("widget.placeholder"));
    this.composer.form.classList.toggle("muted", !usable);
  }
}
