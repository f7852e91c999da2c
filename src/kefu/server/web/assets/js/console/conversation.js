// One customer's conversation in the console: what is known about it and its pane
// (header with actions, the message log, typing line, ended bar, composer).
//
// It is keyed by the customer's user id, not by socket UUID: a customer who
// reconnects gets a new socket UUID, and the conversation just moves to it.
// What the list shows of it (unread, waiting time, preview) is read from here;
// `onChange` tells the list to draw it again.

import { avatar, clear, displayName, h, icon, maxId, parseDate } from "../dom.js";
import { Composer } from "../composer.js";
import { MessageLog } from "../message-log.js";
import { messagePreview } from "../message-row.js";
import { TypingIndicator, TypingSignal } from "../typing.js";

let paneSeq = 0;

export class Conversation {
  /**
   * @param {object} o
   * @param {import("../i18n.js").I18n} o.i18n
   * @param {import("./connection.js").Connection} o.conn
   * @param {object} o.user          the customer's profile
   * @param {boolean} o.resumed      announced again after a reconnect, not new
   * @param {(text: string, kind?: string) => void} o.toast
   * @param {() => boolean} o.isShown   the person can see this pane now
   * @param {() => void} o.onChange     list entry to be drawn again
   * @param {() => void} o.onClose      "Close chat" on an ended chat
   * @param {() => void} o.onBack       phones: back to the list
   */
  constructor(o) {
    this.o = o;
    this.i18n = o.i18n;
    this.t = o.i18n.t;
    this.conn = o.conn;
    this.user = o.user;
    this.uuid = null;
    this.startedAt = Date.now();
    this.floorId = o.conn.newestId; // messages of this conversation come after this one
    this.waitingSince = o.resumed ? null : Date.now();
    this.unread = 0;
    this.ended = false;
    this.endedBy = null; // me | rated | stale | null (the customer left)
    this.rating = null;
    this.preview = "";
    this.peerTyping = false;
    this.stale = false; // not re-announced since our reconnect
    this.newestIncoming = null;
    this.lastReadSent = null;
    this.loadingEarlier = false;
    this.build();
  }

  get id() {
    return this.user.id;
  }

  get name() {
    return displayName(this.user);
  }

  // ------------------------------------------------------------------ the pane

  build() {
    const t = this.t;
    paneSeq += 1;
    const id = `pane-${paneSeq}`;
    this.headAvatar = h("span", { class: "pane-avatar" });
    this.headName = h("h2", { class: "pane-name", id: `${id}-name` });
    this.headSub = h("p", { class: "pane-sub" });
    const action = (cls, iconName, label, title, onclick) =>
      h("button", { type: "button", class: `btn ${cls}`, "aria-label": label, title, onclick }, icon(iconName), h("span", { class: "btn-text", text: label }));
    this.earlierBtn = action("ghost", "history", t("conv.earlier"), t("conv.earlier_title"), () => this.loadEarlier());
    this.rateBtn = action("ghost", "star", t("conv.ask_rating"), t("conv.ask_rating_title"), () => this.askRating());
    this.endBtn = action("danger", "end", t("conv.end"), t("conv.end_title"), () => this.endChat());
    const back = h("button", { type: "button", class: "icon-btn back", "aria-label": t("conv.back_to_list"), onclick: () => this.o.onBack() }, icon("back"));
    const head = h(
      "header",
      { class: "pane-head" },
      back,
      this.headAvatar,
      h("div", { class: "pane-title" }, this.headName, this.headSub),
      h("div", { class: "pane-actions" }, this.earlierBtn, this.rateBtn, this.endBtn),
    );
    this.log = new MessageLog(this.i18n, {
      attrs: { role: "log", "aria-live": "polite", "aria-labelledby": `${id}-name` },
      waitingText: t("msg.waiting_customer"),
      theirImage: t("msg.image_from_customer"),
    });
    this.typing = new TypingIndicator(this.i18n, {
      onChange: (on) => {
        this.peerTyping = on;
        this.o.onChange();
      },
    });
    this.typingSignal = new TypingSignal((on) => !this.ended && Boolean(this.uuid) && this.conn.typing(this.uuid, on));
    this.endedText = h("span", { text: t("conv.ended_bar") });
    this.endedBar = h(
      "div",
      { class: "ended-bar", hidden: true, role: "status" },
      this.endedText,
      h("button", { type: "button", class: "btn ghost small", text: t("conv.close"), onclick: () => this.o.onClose() }),
    );
    this.composer = new Composer(this.i18n, {
      placeholder: t("conv.placeholder"),
      sendLabel: t("conv.send"),
      sendTitle: t("conv.send_title"),
      maxHeight: 160,
      onText: (text) => {
        if (this.ended) return false;
        this.typingSignal.stop();
        this.sendMessage("message_text", { text });
        return true;
      },
      onImage: (url) => this.sendMessage("message_image", { image: url }),
      onInput: () => this.typingSignal.input(),
    });
    this.pane = h(
      "section",
      { class: "pane", id, hidden: true, "aria-labelledby": `${id}-name`, "data-user": this.user.id },
      head,
      this.log.element,
      this.typing.element,
      this.endedBar,
      this.composer.elements,
    );
  }

  /** Name, picture and status line (after the profile or the connection changed). */
  renderHead() {
    const t = this.t;
    clear(this.headAvatar).append(avatar(this.user, "avatar"));
    this.headName.textContent = this.name;
    this.composer.input.setAttribute("aria-label", t("conv.reply_to", { name: this.name }));
    this.pane.setAttribute("aria-label", t("conv.chat_with", { name: this.name }));
    this.renderSub();
  }

  renderSub() {
    const t = this.t;
    const status = this.ended ? t("conv.status_ended") : this.uuid ? t("conv.status_online") : t("conv.status_reconnecting");
    const time = this.i18n.time(new Date(this.startedAt));
    this.headSub.textContent = t("conv.sub", { username: this.user.username, time, status });
    this.pane.classList.toggle("away", !this.uuid && !this.ended);
  }

  /** The pane is being shown: read what came, put the newest at the bottom in view. */
  shown({ focus = false } = {}) {
    this.markRead();
    this.log.scrollToEnd();
    if (focus && !this.composer.input.disabled) this.composer.focus();
  }

  // ------------------------------------------------------------------ who is there

  /** new_connection: the customer (again), on socket `uuid` (null: restored, not back yet). */
  connected(profile, uuid) {
    this.user = profile;
    this.stale = false;
    this.uuid = uuid || null;
    this.renderHead();
  }

  /** A new chat with a customer whose earlier one ended (still on screen). */
  reopen() {
    this.ended = false;
    this.endedBy = null;
    this.rating = null;
    this.startedAt = Date.now();
    this.waitingSince = Date.now();
    this.pane.classList.remove("ended");
    this.endedBar.hidden = true;
    this.setEnabled(true);
  }

  /** After our reconnect the customer was not announced again: their old socket is gone. */
  away() {
    if (!this.stale || this.ended || !this.uuid) return;
    this.uuid = null; // messages wait for the new one
    this.notice(this.t("conv.waiting_reconnect", { name: this.name }));
    this.o.onChange();
  }

  /** The chat is over (`disconnected`, or given up after our reconnect). */
  end() {
    if (this.ended) return;
    const t = this.t;
    this.ended = true;
    this.waitingSince = null;
    this.showTyping(false);
    const text = {
      me: t("conv.ended_me"),
      rated: t("conv.ended_rated"),
      stale: t("conv.ended_stale"),
    }[this.endedBy] || t("conv.left", { name: this.name });
    this.notice(text);
    this.pane.classList.add("ended");
    this.endedText.textContent = t("conv.ended_bar");
    this.endedBar.hidden = false;
    this.setEnabled(false);
    for (const opId of this.log.pendingOps()) this.failed(opId, t("msg.not_sent_ended"));
    this.o.onChange();
  }

  setEnabled(on) {
    this.composer.setEnabled(on, on ? this.t("conv.placeholder") : this.t("conv.placeholder_ended"));
    this.rateBtn.disabled = !on;
    this.endBtn.disabled = !on;
  }

  endChat() {
    if (this.ended) return;
    if (!this.uuid || !this.conn.endChat(this.uuid)) {
      this.o.toast(this.t("conv.cannot_end"), "error");
      return;
    }
    this.endedBy = "me";
  }

  askRating() {
    if (this.ended) return;
    if (!this.uuid || !this.conn.askRating(this.uuid)) this.o.toast(this.t("conv.cannot_rate"), "error");
  }

  rateAsked() {
    this.notice(this.t("conv.rate_asked", { name: this.name }));
  }

  rated(rate) {
    this.rating = rate;
    this.endedBy = "rated";
    const stars = `${"★".repeat(rate)}${"☆".repeat(5 - rate)}`;
    this.notice(this.t("conv.rated", { name: this.name, stars, n: rate }), "rating");
    this.o.onChange();
  }

  // ------------------------------------------------------------------ messages

  notice(text, kind) {
    this.log.notice(text, kind);
  }

  incoming(f) {
    if (!f.id || this.log.has(f.id)) return;
    this.newestIncoming = maxId(this.newestIncoming, f.id);
    if (!this.waitingSince) this.waitingSince = parseDate(f.date).getTime();
    this.showTyping(false);
    this.log.add({ id: f.id, mine: false, type: f.type, payload: f.payload, date: f.date });
    this.preview = messagePreview(this.i18n, f.type, f.payload);
    if (!this.o.isShown()) this.unread += 1;
    this.o.onChange();
    this.markRead();
  }

  acked(f) {
    this.waitingSince = null;
    this.log.acked({ opId: f.op_id, id: f.id, type: f.type.replace(/_success$/, ""), payload: f.payload, date: f.date });
    this.o.onChange();
  }

  /** One entry of a get_history answer (merged by id). */
  historyEntry(e) {
    if (!e || !e.id || this.log.has(e.id)) return;
    this.conn.noteId(e.id);
    const mine = Boolean(this.conn.me && e.sender && e.sender.id === this.conn.me.id);
    if (!mine) this.newestIncoming = maxId(this.newestIncoming, e.id);
    this.log.add({ id: e.id, mine, type: e.type, payload: e.payload, date: e.date });
  }

  /** A get_history answer came: the "Earlier messages" button is free again. */
  historyDone(count) {
    if (!this.loadingEarlier) return;
    this.loadingEarlier = false;
    this.earlierBtn.disabled = false;
    if (!count) this.o.toast(this.t("conv.no_earlier", { name: this.name }));
  }

  loadEarlier() {
    this.loadingEarlier = true;
    this.earlierBtn.disabled = true;
    this.conn.requestHistory(this.user.id);
  }

  sendMessage(type, payload) {
    if (this.ended) return;
    const opId = this.conn.sendMessage(this.user.id, type, payload, () => (this.ended || this.closed ? null : this.uuid));
    this.log.addPending(opId, type, payload, !(this.conn.isOpen && this.uuid));
    this.preview = this.t("list.you", { text: messagePreview(this.i18n, type, payload) });
    this.o.onChange();
  }

  failed(opId, text) {
    this.conn.ack(opId);
    this.log.failed(opId, text);
  }

  markSeen(id) {
    this.log.markSeen(id);
  }

  /** Tell the customer we read their newest message, if the pane is in view. */
  markRead() {
    if (!this.o.isShown()) return;
    if (this.unread) {
      this.unread = 0;
      this.o.onChange();
    }
    if (this.ended || !this.uuid) return;
    const id = this.newestIncoming;
    if (!id || id === this.lastReadSent) return;
    if (this.conn.read(this.uuid, id)) this.lastReadSent = id;
  }

  showTyping(on) {
    this.typing.show(on, this.name);
  }

  close() {
    this.closed = true;
    this.typingSignal.stop();
  }
}
