// A conversation's messages on screen, in the widget and the console.
//
// Rows are ordered and de-duplicated by message id, so a message replayed after
// a reconnect or returned again by get_history is shown once, in its place.
// Rows this page sent wait at the bottom, under their op_id, until their ack.
// "Seen" goes under the newest of this page's messages the other side has read.

import { compareIds, h, maxId } from "./dom.js";
import { messageRow, setRowSeen, setRowState, stampRow } from "./message-row.js";

const NEAR_BOTTOM = 80;

export class MessageLog {
  /**
   * @param {import("./i18n.js").I18n} i18n
   * @param {object} o
   * @param {object} o.attrs        attributes of the log element (role, aria-label…)
   * @param {string} o.waitingText  under a message held back until the other side is there
   * @param {string} [o.theirImage] alt text of the other side's images
   */
  constructor(i18n, { attrs = {}, waitingText, theirImage }) {
    this.i18n = i18n;
    this.waitingText = waitingText;
    this.theirImage = theirImage;
    this.element = h("div", { class: "log", tabindex: "0", ...attrs });
    this.rows = new Map(); // message id -> row
    this.pending = new Map(); // op_id -> row not yet acked
    this.seenId = null;
    this.seenRow = null;
  }

  has(id) {
    return this.rows.has(id);
  }

  /** The oldest message id shown, or null. */
  oldestId() {
    let oldest = null;
    for (const id of this.rows.keys()) if (!oldest || compareIds(id, oldest) < 0) oldest = id;
    return oldest;
  }

  /** Show a stored message (one with an id) unless it is shown already. */
  add({ id, mine, type, payload, date, who }) {
    if (!id || this.rows.has(id)) return null;
    const row = this.row({ id, mine, type, payload, date, who });
    this.insert(row);
    if (mine && this.seenId && compareIds(id, this.seenId) <= 0) this.markSeen(this.seenId);
    return row;
  }

  /** Show a message this page just sent, before its ack. `held`: waits for the other side. */
  addPending(opId, type, payload, held) {
    const row = this.row({ id: null, mine: true, type, payload, date: null });
    row.dataset.op = opId;
    this.pending.set(opId, row);
    this.setHeld(opId, held);
    this.insert(row);
    this.scrollToEnd();
    return row;
  }

  setHeld(opId, held) {
    const row = this.pending.get(opId);
    if (row) setRowState(row, held ? "waiting" : "sending", held ? this.waitingText : this.i18n.t("msg.sending"));
  }

  /**
   * A `message_*_success`: the pending row gets its id and time (or goes, if
   * that id is shown already); an ack with no pending row (sent from another
   * tab) is shown as a new message of ours.
   */
  acked({ opId, id, type, payload, date }) {
    const row = opId ? this.pending.get(opId) : null;
    if (!row) {
      if (id) this.add({ id, mine: true, type, payload, date });
      return;
    }
    this.pending.delete(opId);
    if (!id) return;
    if (this.rows.has(id)) {
      row.remove(); // already shown (from history or a replay)
      return;
    }
    this.rows.set(id, row);
    stampRow(this.i18n, row, id, date);
    if (this.seenId && compareIds(id, this.seenId) <= 0) this.markSeen(this.seenId);
  }

  /** A pending message will not be sent; returns whether there was one. */
  failed(opId, text) {
    const row = this.pending.get(opId);
    if (!row) return false;
    this.pending.delete(opId);
    setRowState(row, "failed", text || this.i18n.t("msg.not_sent"));
    return true;
  }

  /** The op_ids of rows still waiting for their ack, oldest first. */
  pendingOps() {
    return [...this.pending.keys()];
  }

  isHeld(opId) {
    const row = this.pending.get(opId);
    return Boolean(row && row.dataset.state === "waiting");
  }

  /** A line from the page itself ("… joined the chat"), at the bottom. */
  notice(text, kind = "") {
    const stick = this.nearBottom();
    this.element.append(h("div", { class: `notice ${kind}`.trim(), role: "note" }, h("span", { text })));
    if (stick) this.scrollToEnd();
  }

  /** The other side has read everything up to `id`. */
  markSeen(id) {
    this.seenId = maxId(this.seenId, id);
    let last = null;
    for (const row of this.element.querySelectorAll(".msg.mine[data-id]")) {
      if (compareIds(row.dataset.id, this.seenId) <= 0) last = row;
    }
    if (!last || last === this.seenRow) return;
    if (this.seenRow) setRowSeen(this.i18n, this.seenRow, false);
    this.seenRow = last;
    setRowSeen(this.i18n, last, true);
  }

  /** Empty the log (a read-only view that is filled again). */
  clear() {
    this.element.replaceChildren();
    this.rows.clear();
    this.pending.clear();
    this.seenId = null;
    this.seenRow = null;
  }

  nearBottom() {
    const log = this.element;
    return log.scrollHeight - log.scrollTop - log.clientHeight < NEAR_BOTTOM;
  }

  scrollToEnd() {
    this.element.scrollTop = this.element.scrollHeight;
  }

  row(m) {
    const row = messageRow(this.i18n, {
      ...m,
      theirImage: this.theirImage,
      onImageLoad: () => {
        if (row.isConnected && row === this.element.lastElementChild) this.scrollToEnd();
      },
    });
    return row;
  }

  /** Insert by id; rows without an id (not yet acked) stay at the bottom. */
  insert(row) {
    const log = this.element;
    const id = row.dataset.id;
    if (id) this.rows.set(id, row);
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
    const stick = this.nearBottom();
    if (after) after.after(row);
    else log.prepend(row);
    if (stick) this.scrollToEnd();
  }
}
