// The "Chats" / "Past sessions" tabs, the list of the waiter's past sessions
// (get_history_session) and the read-only views of a customer's earlier messages.

import { avatar, clear, compareIds, displayName, h, icon, parseDate } from "../dom.js";
import { MessageLog } from "../message-log.js";
import { messagePreview } from "../message-row.js";

export class PastSessions {
  /**
   * @param {object} o
   * @param {import("../i18n.js").I18n} o.i18n
   * @param {import("./connection.js").Connection} o.conn
   * @param {import("./workspace.js").Workspace} o.workspace
   * @param {import("./conversation-list.js").ConversationList} o.chats
   * @param {Record<string, HTMLElement>} o.elements  chatsTab, pastTab, chatsPanel, pastPanel, list, empty
   */
  constructor({ i18n, conn, workspace, chats, elements }) {
    this.i18n = i18n;
    this.t = i18n.t;
    this.conn = conn;
    this.workspace = workspace;
    this.chats = chats;
    this.el = elements;
    this.views = new Map(); // user id -> {pane, log}

    this.el.chatsTab.addEventListener("click", () => this.showTab("chats"));
    this.el.pastTab.addEventListener("click", () => this.showTab("past"));
    for (const tab of [this.el.chatsTab, this.el.pastTab]) tab.addEventListener("keydown", (e) => this.tabKeys(e));
    conn.on("session_history", (f) => this.render(f.payload || {}));
    conn.on("message_history", (f) => {
      const p = f.payload || {};
      if (!this.chats.get(p.user_id) && this.views.has(p.user_id)) this.fill(this.views.get(p.user_id), p.data);
    });
  }

  showTab(which) {
    const chats = which === "chats";
    const { chatsTab, pastTab, chatsPanel, pastPanel, empty } = this.el;
    chatsTab.setAttribute("aria-selected", String(chats));
    pastTab.setAttribute("aria-selected", String(!chats));
    chatsTab.tabIndex = chats ? 0 : -1;
    pastTab.tabIndex = chats ? -1 : 0;
    chatsPanel.hidden = !chats;
    pastPanel.hidden = chats;
    if (!chats) {
      clear(empty).append(h("p", { text: this.t("console.loading") }));
      empty.hidden = false;
      if (!this.conn.requestSessions()) clear(empty).append(h("p", { text: this.t("past.offline") }));
    }
  }

  tabKeys(e) {
    if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return;
    const next = e.currentTarget === this.el.chatsTab ? "past" : "chats";
    this.showTab(next);
    (next === "past" ? this.el.pastTab : this.el.chatsTab).focus();
  }

  render(p) {
    const t = this.t;
    const list = clear(this.el.list);
    const data = Array.isArray(p.data) ? p.data : [];
    this.el.empty.hidden = data.length > 0;
    clear(this.el.empty).append(h("p", { class: "empty-title", text: t("past.none") }), h("p", { text: t("past.none_text") }));
    for (const s of data) {
      const user = s.user || {};
      const latest = Array.isArray(s.history) && s.history[0];
      const preview = latest ? messagePreview(this.i18n, latest.type, latest.payload) : t("past.no_messages");
      const when = s.created_at ? this.i18n.stamp(parseDate(s.created_at)) : "";
      const button = h(
        "button",
        { type: "button", class: "item", onclick: () => this.open(user) },
        h("span", { class: "item-avatar" }, avatar(user, "avatar")),
        h("span", { class: "item-main" }, h("span", { class: "item-name", text: displayName(user) }), h("span", { class: "item-preview", text: preview })),
        h("span", { class: "item-side" }, h("span", { class: "item-wait", text: when })),
      );
      list.append(h("li", {}, button));
    }
  }

  /** A customer's earlier messages, read-only; their live conversation if they have one. */
  open(user) {
    if (!user || !user.id) return;
    if (this.chats.get(user.id)) {
      this.showTab("chats");
      this.chats.select(user.id, { focus: true });
      return;
    }
    const key = `h:${user.id}`;
    if (!this.views.has(user.id)) this.views.set(user.id, this.buildView(user, key));
    this.workspace.show(key);
    this.conn.requestHistory(user.id);
  }

  buildView(user, key) {
    const t = this.t;
    const name = displayName(user);
    const log = new MessageLog(this.i18n, {
      attrs: { role: "log", "aria-label": t("past.earlier_with", { name }) },
      waitingText: t("msg.waiting_customer"),
      theirImage: t("msg.image_from_customer"),
    });
    const close = h("button", {
      type: "button",
      class: "btn ghost",
      text: t("past.close"),
      onclick: () => {
        this.workspace.remove(key);
        this.views.delete(user.id);
        this.workspace.showEmpty();
      },
    });
    const back = h("button", { type: "button", class: "icon-btn back", "aria-label": t("past.back"), onclick: () => this.chats.showList() }, icon("back"));
    const pane = h(
      "section",
      { class: "pane history-view", "aria-label": t("past.earlier_with", { name }) },
      h(
        "header",
        { class: "pane-head" },
        back,
        h("span", { class: "pane-avatar" }, avatar(user, "avatar")),
        h("div", { class: "pane-title" }, h("h2", { class: "pane-name", text: name }), h("p", { class: "pane-sub", text: t("past.sub", { username: user.username }) })),
        h("div", { class: "pane-actions" }, close),
      ),
      log.element,
    );
    this.workspace.add(key, pane);
    log.notice(t("console.loading"));
    return { user, pane, log };
  }

  fill(view, data) {
    const entries = (Array.isArray(data) ? data : []).filter((e) => e && e.id);
    view.log.clear();
    if (!entries.length) view.log.notice(this.t("past.no_messages_dot"));
    const me = this.conn.me;
    for (const e of [...entries].sort((a, b) => compareIds(a.id, b.id))) {
      const mine = Boolean(me && e.sender && e.sender.id === me.id);
      const who = mine ? null : e.sender ? displayName(e.sender) : this.t("past.customer");
      view.log.add({ id: e.id, mine, type: e.type, payload: e.payload, date: e.date, who });
    }
    view.log.scrollToEnd();
  }

  /** Sign-out. */
  clear() {
    for (const [userId] of this.views) this.workspace.remove(`h:${userId}`);
    this.views.clear();
  }
}
