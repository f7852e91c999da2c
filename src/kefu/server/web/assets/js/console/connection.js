// The console's chat socket: protocol frames in and out (wire protocol: docs/protocol.md).
//
// It wraps a KefuSocket (auth, reconnect with backoff, resume with `last_id`,
// the outbox of unacked frames) and knows the waiter's frames: it hands every
// server frame to the handlers registered for its type, and has one method per
// frame the console sends. It remembers the newest message id seen (for the
// resume) and which conversation (user id) each sent message belongs to.

import { maxId, newOpId } from "../dom.js";
import { KefuSocket, wsUrl } from "../socket.js";

export class Connection {
  /** @param {() => string} token  the waiter's token, asked before every auth */
  constructor(token) {
    this.token = token;
    this.socket = null;
    this.me = null; // the waiter's profile, from auth_success
    this.newestId = null;
    this.ops = new Map(); // op_id of a sent message -> user id
    this.historyFloors = new Map(); // get_history op_id -> oldest id to merge, or null
    this.handlers = new Map(); // frame type -> [fn]
    this.stateListeners = [];
  }

  /** Call `fn(frame)` for every server frame of these types. */
  on(types, fn) {
    for (const type of [].concat(types)) {
      if (!this.handlers.has(type)) this.handlers.set(type, []);
      this.handlers.get(type).push(fn);
    }
  }

  /** Call `fn(state, info)` on every change: connecting, open ({resumed}), waiting ({delay}), stopped ({reason}). */
  onState(fn) {
    this.stateListeners.push(fn);
  }

  /** Connect (again, from scratch: a new socket and an empty outbox). */
  start() {
    if (this.socket) this.socket.stop("replaced");
    this.socket = new KefuSocket({
      url: wsUrl(location.href, "/v1/ws/connect/waiter"),
      token: this.token,
      lastId: () => this.newestId,
      onFrame: (f) => this.dispatch(f),
      onState: (s, info) => this.stateListeners.forEach((fn) => fn(s, info)),
    });
    this.socket.start();
  }

  /** Stop for good (sign-out, kickout shown): no reconnect. */
  stop(reason) {
    if (this.socket) this.socket.stop(reason);
  }

  /** Forget the session (after stop): who we are, what we saw, what we sent. */
  reset() {
    this.socket = null;
    this.me = null;
    this.newestId = null;
    this.ops.clear();
    this.historyFloors.clear();
  }

  get isOpen() {
    return Boolean(this.socket && this.socket.isOpen);
  }

  /** Authenticated at least once on this socket (so a new attempt is a reconnect). */
  get resuming() {
    return Boolean(this.socket && this.socket.sessions);
  }

  /** A message id the console has now: the resume asks for what came after the newest. */
  noteId(id) {
    if (id) this.newestId = maxId(this.newestId, id);
  }

  dispatch(f) {
    if (f.type === "auth_success") this.me = f.payload;
    if (/^message_(text|image)(_success)?$/.test(f.type)) this.noteId(f.id);
    for (const fn of this.handlers.get(f.type) || []) fn(f);
  }

  send(frame) {
    return Boolean(this.socket && this.socket.send(frame));
  }

  // ------------------------------------------------------------------ frames out

  setReady(on) {
    return this.send({ type: on ? "ready" : "unready" });
  }

  /**
   * Send a message that must arrive; it stays in the outbox until `ack`.
   * `target()` gives the customer's socket UUID now, or null to hold it back
   * (the customer is away). Returns its op_id.
   */
  sendMessage(userId, type, payload, target) {
    const opId = this.socket.sendReliable({ type, to: target(), payload }, (frame) => {
      const to = target();
      if (!to) return false;
      frame.to = to;
      return true;
    });
    this.ops.set(opId, userId);
    return opId;
  }

  /** The user id whose conversation a sent message belongs to. */
  userOfOp(opId) {
    return (opId && this.ops.get(opId)) || null;
  }

  /** The message is stored (or given up): out of the outbox. */
  ack(opId) {
    if (!opId) return;
    if (this.socket) this.socket.ack(opId);
    this.ops.delete(opId);
  }

  /** Send again what this customer's conversation still has unacked (after they are back). */
  flushFor(userId) {
    if (this.socket) this.socket.flush((frame) => this.ops.get(frame.op_id) === userId);
  }

  typing(uuid, on) {
    return this.send({ type: "typing", to: uuid, payload: { typing: on } });
  }

  read(uuid, id) {
    return this.send({ type: "read", to: uuid, payload: { id } });
  }

  endChat(uuid) {
    return this.send({ type: "disconnect", payload: { uuid } });
  }

  askRating(uuid) {
    return this.send({ type: "rate", to: uuid });
  }

  /** Ask for a customer's messages; with `floor`, only those from that id on are to be merged. */
  requestHistory(userId, floor = null) {
    const opId = newOpId();
    if (this.send({ type: "get_history", op_id: opId, payload: { user_id: userId, limit: 100 } })) {
      this.historyFloors.set(opId, floor);
    }
  }

  /** The floor a get_history answer was asked with (once). */
  takeHistoryFloor(opId) {
    if (!opId) return null;
    const floor = this.historyFloors.get(opId) ?? null;
    this.historyFloors.delete(opId);
    return floor;
  }

  requestSessions() {
    return this.send({ type: "get_history_session" });
  }
}
