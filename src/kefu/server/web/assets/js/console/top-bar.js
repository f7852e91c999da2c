// The console's top bar: who is signed in, the Ready/Paused switch, the
// connection's state and the queue length (GET /v1/ws/status every few seconds).

import { avatar, clear, displayName, h } from "../dom.js";

const READY_KEY = "kefu.console.ready";
const STATUS_EVERY = 3000;

export class TopBar {
  /**
   * @param {object} o
   * @param {import("../i18n.js").I18n} o.i18n
   * @param {import("./connection.js").Connection} o.conn
   * @param {import("./notifications.js").Notifier} o.notifier
   * @param {Record<string, HTMLElement>} o.elements  me, ready, readyText, conn, connText, queueChip, queueText, emptyText
   */
  constructor({ i18n, conn, notifier, elements }) {
    this.t = i18n.t;
    this.conn = conn;
    this.notifier = notifier;
    this.el = elements;
    this.wantReady = sessionStorage.getItem(READY_KEY) === "1"; // restored after a reload
    this.ready = false;
    this.statusTimer = null;

    this.el.ready.addEventListener("click", () => this.toggleReady());
    conn.on("auth_success", () => this.renderMe());
    conn.on("ready", () => this.setReady(true));
    conn.on("unready", () => this.setReady(false));
    conn.onState((s, info) => this.connState(s, info));
    this.renderReady();
  }

  start() {
    this.pollStatus();
    clearInterval(this.statusTimer);
    this.statusTimer = setInterval(() => this.pollStatus(), STATUS_EVERY);
  }

  /** Signed out: nothing polled, nobody shown, the switch off and forgotten. */
  stop() {
    clearInterval(this.statusTimer);
    sessionStorage.removeItem(READY_KEY);
    this.wantReady = false;
    this.setReady(false);
    clear(this.el.me);
  }

  connState(s, info) {
    const t = this.t;
    const text = this.el.connText;
    this.el.conn.dataset.state = s;
    if (s === "open") {
      text.textContent = t("conn.connected");
      if (this.wantReady) this.conn.setReady(true);
    } else if (s === "connecting") {
      text.textContent = this.conn.resuming ? t("conn.reconnecting") : t("conn.connecting");
    } else if (s === "waiting") {
      text.textContent = t("conn.offline_retry", { s: Math.max(1, Math.round(info.delay / 1000)) });
      this.setReady(false);
    } else if (s === "stopped") {
      this.setReady(false);
      const said = { kickout: t("conn.kicked"), refused: t("conn.refused"), ended: t("conn.disconnected") }[info.reason];
      if (said) text.textContent = said;
    }
  }

  renderMe() {
    const me = this.conn.me;
    clear(this.el.me);
    if (!me) return;
    this.el.me.append(
      avatar(me, "avatar small"),
      h("span", { class: "me-text" }, h("span", { class: "me-name", text: displayName(me) }), h("span", { class: "me-user", text: `@${me.username}` })),
    );
  }

  toggleReady() {
    const want = !this.ready;
    this.wantReady = want;
    sessionStorage.setItem(READY_KEY, want ? "1" : "0");
    if (!this.conn.setReady(want)) this.notifier.toast(this.t("console.offline_switch"));
  }

  setReady(on) {
    this.ready = on;
    this.renderReady();
  }

  renderReady() {
    const t = this.t;
    this.el.ready.setAttribute("aria-checked", String(this.ready));
    this.el.ready.classList.toggle("on", this.ready);
    this.el.readyText.textContent = this.ready ? t("console.ready") : t("console.paused");
    this.el.emptyText.textContent = this.ready ? t("console.empty_ready") : t("console.empty_paused");
  }

  async pollStatus() {
    try {
      const resp = await fetch("/v1/ws/status", { headers: { accept: "application/json" }, cache: "no-store" });
      if (!resp.ok) throw new Error(String(resp.status));
      const body = await resp.json();
      const n = Number(body && body.data && body.data.pending_num) || 0;
      this.el.queueText.textContent = this.t("console.queue", { n });
      this.el.queueChip.classList.toggle("busy", n > 0);
    } catch {
      this.el.queueText.textContent = this.t("console.queue_unknown");
    }
  }
}
