// The console's current conversations: the list on the left and the frames that
// concern them (new_connection, disconnected, messages, acks, history, typing,
// read, ratings). Each conversation is a Conversation (conversation.js); this
// module finds the right one for a frame and draws its list entry.

import { avatar, clear, compareIds, duration, h } from "../dom.js";
import { Conversation } from "./conversation.js";

// After a reconnect the server re-announces every conversation it still has
// (new_connection, resumed). One not re-announced quickly is a customer who has
// not come back yet (after a server restart): held as "reconnecting". One still
// missing after the resume grace (60 s by default) has ended.
const AWAY_AFTER = 4000;
const STALE_END_AFTER = 75000;
const LATE_AFTER = 60000; // a waiting time turns red

export class ConversationList {
  /**
   * @param {object} o
   * @param {import("../i18n.js").I18n} o.i18n
   * @param {import("./connection.js").Connection} o.conn
   * @param {import("./workspace.js").Workspace} o.workspace
   * @param {import("./notifications.js").Notifier} o.notifier
   * @param {{list: HTMLElement, count: HTMLElement, empty: HTMLElement, chatsTab: HTMLElement}} o.elements
   */
  constructor({ i18n, conn, workspace, notifier, elements }) {
    this.i18n = i18n;
    this.t = i18n.t;
    this.conn = conn;
    this.workspace = workspace;
    this.notifier = notifier;
    this.el = elements;
    this.convs = new Map(); // user id -> Conversation
    this.items = new Map(); // user id -> list entry parts
    this.byUuid = new Map(); // socket uuid (current or earlier) -> user id
    this.staleGen = 0;
    this.tickTimer = null;

    conn.on("new_connection", (f) => this.newConnection(f.payload || {}));
    conn.on("disconnected", (f) => {
      const conv = this.ofSocket(f.from);
      if (conv) conv.end();
    });
    conn.on(["message_text", "message_image"], (f) => this.incoming(f));
    conn.on(["message_text_success", "message_image_success"], (f) => this.acked(f));
    conn.on("message_history", (f) => this.history(f.payload || {}, f.op_id));
    conn.on("rate_success", (f) => this.ofSocket(f.from)?.rateAsked());
    conn.on("rate_user_success", (f) => this.ofSocket(f.from)?.rated(Number(f.payload && f.payload.rate) || 0));
    conn.on("typing", (f) => this.ofSocket(f.from)?.showTyping(Boolean(f.payload && f.payload.typing)));
    conn.on("read", (f) => {
      if (f.payload && f.payload.id) this.ofSocket(f.from)?.markSeen(f.payload.id);
    });
    workspace.onChange(() => {
      for (const [id, item] of this.items) this.markCurrent(id, item);
    });
    conn.onState((s, info) => {
      if (s === "open" && info.resumed) this.resumed();
    });
  }

  /** The waiting times tick. */
  start() {
    clearInterval(this.tickTimer);
    this.tickTimer = setInterval(() => this.tick(), 1000);
  }

  get(userId) {
    return this.convs.get(userId) || null;
  }

  ofSocket(uuid) {
    if (!uuid) return null;
    const userId = this.byUuid.get(uuid);
    return userId ? this.get(userId) : null;
  }

  /** A failed send (`error` with the op_id of a message): true if it was one of ours. */
  failedOp(f) {
    const userId = this.conn.userOfOp(f.op_id);
    if (!userId) return false;
    const conv = this.get(userId);
    const p = f.payload || {};
    if (conv) conv.failed(f.op_id, p.message ? this.t("msg.not_sent_reason", { reason: p.message }) : this.t("msg.not_sent_plain"));
    return true;
  }

  // ------------------------------------------------------------------ frames

  newConnection(p) {
    if (!p.id) return;
    const t = this.t;
    let conv = this.get(p.id);
    const fresh = !conv;
    if (!conv) {
      conv = this.create(p);
      if (p.resumed) this.conn.requestHistory(p.id); // a reload: fetch what was said so far
    } else if (conv.ended) {
      conv.reopen();
    } else if (p.resumed) {
      // A reconnect: the server replays what came after our last id; the history
      // fills any gap (dedupe by id), without pulling in earlier conversations.
      this.conn.requestHistory(p.id, conv.log.oldestId() || conv.floorId);
    }
    const user = { id: p.id, username: p.username, nickname: p.nickname, avatar: p.avatar };
    conv.connected(user, p.uuid);
    if (p.uuid) this.byUuid.set(p.uuid, p.id);
    if (p.previous_uuid && !this.byUuid.has(p.previous_uuid)) this.byUuid.set(p.previous_uuid, p.id);
    this.renderItem(conv);
    this.updateCounts();
    if (!p.resumed) {
      conv.notice(t("conv.joined", { name: conv.name }));
      this.notifier.attention(t("conv.new_customer", { name: conv.name }));
    } else if (!fresh) {
      conv.notice(conv.uuid ? t("conv.back", { name: conv.name }) : t("conv.waiting_reconnect", { name: conv.name }));
    }
    if (!this.workspace.active) this.select(p.id, { reveal: false });
    this.conn.flushFor(p.id);
  }

  incoming(f) {
    const conv = this.ofSocket(f.from);
    if (!conv) return;
    conv.incoming(f);
    if (document.visibilityState !== "visible") this.notifier.attention(`${conv.name}: ${conv.preview}`);
  }

  acked(f) {
    const userId = this.conn.userOfOp(f.op_id) || this.byUuid.get(f.from);
    this.conn.ack(f.op_id);
    const conv = userId ? this.get(userId) : null;
    if (conv) conv.acked(f);
  }

  history(p, opId) {
    const floor = this.conn.takeHistoryFloor(opId);
    const conv = this.get(p.user_id);
    if (!conv) return false;
    const data = Array.isArray(p.data) ? p.data : [];
    for (const entry of data) {
      if (!floor || (entry && entry.id && compareIds(entry.id, floor) >= 0)) conv.historyEntry(entry);
    }
    conv.historyDone(data.length);
    return true;
  }

  /** Our socket is back: conversations not announced again soon are away, later ended. */
  resumed() {
    for (const conv of this.convs.values()) if (!conv.ended) conv.stale = true;
    const gen = ++this.staleGen;
    setTimeout(() => gen === this.staleGen && this.markAway(), AWAY_AFTER);
    setTimeout(() => gen === this.staleGen && this.endStale(), STALE_END_AFTER);
  }

  markAway() {
    for (const conv of this.convs.values()) conv.away();
  }

  endStale() {
    for (const conv of this.convs.values()) {
      if (conv.stale && !conv.ended) {
        conv.endedBy = "stale";
        conv.end();
      }
      conv.stale = false;
    }
  }

  // ------------------------------------------------------------------ the list

  create(p) {
    const conv = new Conversation({
      i18n: this.i18n,
      conn: this.conn,
      user: p,
      resumed: Boolean(p.resumed),
      toast: (text, kind) => this.notifier.toast(text, kind),
      isShown: () => this.isShown(conv),
      onChange: () => {
        this.renderItem(conv);
        this.updateCounts();
      },
      onClose: () => this.close(conv),
      onBack: () => this.showList(),
    });
    this.convs.set(p.id, conv);
    this.workspace.add(p.id, conv.pane);
    this.buildItem(conv);
    return conv;
  }

  buildItem(conv) {
    const item = {
      avatar: h("span", { class: "item-avatar" }),
      name: h("span", { class: "item-name" }),
      preview: h("span", { class: "item-preview" }),
      wait: h("span", { class: "item-wait" }),
      unread: h("span", { class: "unread", hidden: true }),
    };
    item.button = h(
      "button",
      { type: "button", class: "item", onclick: () => this.select(conv.id, { focus: true }) },
      item.avatar,
      h("span", { class: "item-main" }, item.name, item.preview),
      h("span", { class: "item-side" }, item.wait, item.unread),
    );
    item.li = h("li", { "data-user": conv.id }, item.button);
    this.items.set(conv.id, item);
    this.el.list.append(item.li);
  }

  renderItem(conv) {
    const t = this.t;
    const item = this.items.get(conv.id);
    if (!item) return;
    clear(item.avatar).append(avatar(conv.user, "avatar"));
    item.name.textContent = conv.name;
    let preview = conv.preview || t("list.new");
    if (conv.peerTyping) preview = t("list.typing");
    if (conv.ended) preview = conv.rating ? t("list.ended_rated", { n: conv.rating }) : t("list.ended");
    item.preview.textContent = preview;
    item.unread.hidden = conv.unread === 0;
    item.unread.textContent = conv.unread > 99 ? "99+" : String(conv.unread);
    item.li.classList.toggle("ended", conv.ended);
    item.li.classList.toggle("has-unread", conv.unread > 0);
    item.li.classList.toggle("is-typing", conv.peerTyping);
    const label = [conv.name, conv.unread ? t("list.unread", { n: conv.unread }) : "", conv.ended ? t("list.ended_label") : ""];
    item.button.setAttribute("aria-label", label.filter(Boolean).join(", "));
    this.markCurrent(conv.id, item);
    this.renderWait(conv, item);
    conv.renderSub();
  }

  markCurrent(userId, item) {
    if (this.workspace.isActive(userId)) item.button.setAttribute("aria-current", "true");
    else item.button.removeAttribute("aria-current");
  }

  renderWait(conv, item) {
    const now = Date.now();
    if (conv.ended) {
      item.wait.textContent = "";
      item.wait.className = "item-wait";
    } else if (conv.waitingSince) {
      item.wait.textContent = this.t("list.waiting", { time: duration((now - conv.waitingSince) / 1000) });
      item.wait.className = `item-wait waiting${now - conv.waitingSince > LATE_AFTER ? " late" : ""}`;
      item.wait.title = this.t("list.waiting_title");
    } else {
      item.wait.textContent = duration((now - conv.startedAt) / 1000);
      item.wait.className = "item-wait";
      item.wait.title = this.t("list.duration_title");
    }
  }

  tick() {
    for (const conv of this.convs.values()) this.renderWait(conv, this.items.get(conv.id));
  }

  updateCounts() {
    const open = [...this.convs.values()].filter((c) => !c.ended).length;
    this.el.count.textContent = String(open);
    this.el.empty.hidden = this.convs.size > 0;
    if (!this.workspace.active) this.workspace.showEmpty();
  }

  /** Show a conversation; `reveal` (phones) swaps the list for it, `focus` puts the cursor in its box. */
  select(userId, { reveal = true, focus = false } = {}) {
    const conv = this.get(userId);
    if (!conv) return;
    this.workspace.show(userId, { reveal });
    conv.shown({ focus });
    this.renderItem(conv);
  }

  /** Phones: back from a pane to the list, the cursor on its entry. */
  showList() {
    this.workspace.showList();
    const item = this.items.get(this.workspace.active);
    (item ? item.button : this.el.chatsTab).focus();
  }

  /** The person can see this conversation right now. */
  isShown(conv) {
    return this.workspace.isActive(conv.id) && document.visibilityState === "visible" && conv.pane.getClientRects().length > 0;
  }

  /** The tab is visible again: the open conversation is read. */
  visible() {
    const conv = this.get(this.workspace.active);
    if (conv) conv.markRead();
  }

  close(conv) {
    conv.close();
    const wasActive = this.workspace.isActive(conv.id);
    this.workspace.remove(conv.id);
    this.items.get(conv.id)?.li.remove();
    this.items.delete(conv.id);
    this.convs.delete(conv.id);
    if (wasActive) {
      const next = [...this.convs.values()].find((c) => !c.ended) || this.convs.values().next().value;
      if (next) this.select(next.id, { reveal: false });
      else this.workspace.showEmpty();
    }
    this.updateCounts();
  }

  /** Sign-out: every conversation goes. */
  clear() {
    clearInterval(this.tickTimer);
    for (const conv of this.convs.values()) {
      conv.close();
      this.workspace.remove(conv.id);
      this.items.get(conv.id)?.li.remove();
    }
    this.convs.clear();
    this.items.clear();
    this.byUuid.clear();
    this.staleGen += 1;
    this.updateCounts();
  }
}
