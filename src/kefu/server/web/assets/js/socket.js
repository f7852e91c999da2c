// A kefu WebSocket that authenticates, reconnects by itself and resends what was not acked.
//
// Protocol section 10: after a drop the client opens a new socket and sends
// `auth` again with `last_id` (the newest message id it has); the server then
// re-sends its queue place or conversation and the messages it missed.
// Frames sent with `sendReliable` stay in an outbox under their `op_id` until
// the app calls `ack(op_id)`; after a reconnect the app calls `flush()` and
// they go out again with the same `op_id`, which the server stores only once.

import { newOpId } from "./dom.js";

const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000];
const MIN_DELAY_MS = 100;
const AUTH_FAILED = 999999;

// Close codes (protocol section 10) after which we do not reconnect on our own.
const CLOSE_NORMAL = 1000;
const CLOSE_POLICY = 1008;
const CLOSE_TOO_BIG = 1009;
const CLOSE_KICKOUT = 4409;
const CLOSE_REVOKED = 4403; // [ext] the account was disabled, signed out or erased

export class KefuSocket {
  /**
   * @param {object} o
   * @param {string} o.url          ws(s):// URL of /v1/ws/connect/user or /waiter
   * @param {() => Promise<string>|string} o.token   called before every auth
   * @param {() => string|null} o.lastId             newest message id the app has
   * @param {(frame: object) => void} o.onFrame      every server frame
   * @param {(state: string, info: object) => void} o.onState
   */
  constructor({ url, token, lastId, onFrame, onState }) {
    this.url = url;
    this.getToken = token;
    this.getLastId = lastId || (() => null);
    this.onFrame = onFrame;
    this.onState = onState || (() => {});
    this.ws = null;
    this.state = "idle"; // idle | connecting | open | waiting | stopped
    this.authed = false;
    this.attempt = 0;
    this.sessions = 0; // successful auths so far
    this.timer = null;
    this.outbox = new Map(); // op_id -> {frame, prepare, hold}
    this.uuid = null;
    this._onOnline = () => this.reconnectNow();
    this._onVisible = () => {
      if (document.visibilityState === "visible") this.reconnectNow();
    };
  }

  start() {
    window.addEventListener("online", this._onOnline);
    document.addEventListener("visibilitychange", this._onVisible);
    this._open();
  }

  /** Stop for good (sign-out, kickout): no more reconnects. */
  stop(reason = "stopped", info = {}) {
    clearTimeout(this.timer);
    window.removeEventListener("online", this._onOnline);
    document.removeEventListener("visibilitychange", this._onVisible);
    const ws = this.ws;
    this.ws = null;
    this.authed = false;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000);
    this._setState("stopped", { reason, ...info });
  }

  /** Reconnect now if waiting for a retry, or after a stop that allows it (e.g. idle). */
  reconnectNow() {
    if (this.state === "waiting") {
      clearTimeout(this.timer);
      this._open();
    }
  }

  /** Start again after `stop` (the person asked for it). */
  restart() {
    if (this.state !== "stopped" && this.state !== "idle") return;
    this.attempt = 0;
    this.start();
  }

  get isOpen() {
    return this.authed && this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Send now if authenticated; returns false (and drops the frame) otherwise. */
  send(frame) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /**
   * Send a frame that must arrive: it gets an op_id and stays in the outbox
   * until `ack(op_id)`. `prepare(frame)` may refresh it before each try and
   * return false to hold it back for now (a waiter whose user is away).
   */
  sendReliable(frame, prepare) {
    const opId = frame.op_id || newOpId();
    const entry = { frame: { ...frame, op_id: opId }, prepare: prepare || null };
    this.outbox.set(opId, entry);
    this._try(entry);
    return opId;
  }

  ack(opId) {
    return this.outbox.delete(opId);
  }

  pending(opId) {
    return this.outbox.has(opId);
  }

  /** Resend every unacked frame (those `filter` accepts), oldest first. */
  flush(filter) {
    for (const entry of this.outbox.values()) {
      if (!filter || filter(entry.frame)) this._try(entry);
    }
  }

  _try(entry) {
    if (!this.isOpen) return;
    if (entry.prepare && entry.prepare(entry.frame) === false) return;
    this.ws.send(JSON.stringify(entry.frame));
  }

  _setState(state, info = {}) {
    this.state = state;
    this.onState(state, info);
  }

  async _open() {
    clearTimeout(this.timer);
    this._setState("connecting", { attempt: this.attempt });
    let token;
    try {
      token = await this.getToken();
    } catch (err) {
      this._retry({ reason: "token", error: String(err && err.message ? err.message : err) });
      return;
    }
    if (this.state !== "connecting") return; // stopped meanwhile
    if (!token) {
      this.stop("no-token");
      return;
    }
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this._retry({ reason: "open" });
      return;
    }
    this.ws = ws;
    this.authed = false;
    ws.addEventListener("open", () => {
      if (this.ws !== ws) return;
      const payload = { token };
      const lastId = this.sessions > 0 ? this.getLastId() : null;
      if (lastId) payload.last_id = lastId;
      ws.send(JSON.stringify({ type: "auth", payload }));
    });
    ws.addEventListener("message", (event) => {
      if (this.ws !== ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (!frame || typeof frame !== "object") return;
      if (frame.to) this.uuid = frame.to;
      if (frame.type === "auth_success") {
        this.authed = true;
        this.attempt = 0;
        this.resumed = this.sessions > 0;
        this.sessions += 1;
        this._setState("open", { resumed: this.resumed });
      } else if (!this.authed && frame.type === "error" && frame.payload && frame.payload.status === AUTH_FAILED) {
        this.onFrame(frame);
        this.stop("auth-failed", { message: frame.payload.message });
        return;
      } else if (frame.type === "kickout") {
        this.onFrame(frame);
        this.stop("kickout");
        return;
      }
      this.onFrame(frame);
    });
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.authed = false;
      const code = event.code;
      if (code === CLOSE_KICKOUT) this.stop("kickout", { code });
      else if (code === CLOSE_REVOKED) this.stop("auth-failed", { code });
      else if (code === CLOSE_POLICY || code === CLOSE_TOO_BIG) this.stop("refused", { code });
      else if (code === CLOSE_NORMAL && this.sessions > 0) this.stop("ended", { code });
      else this._retry({ reason: "closed", code });
    });
  }

  _retry(info) {
    if (this.state === "stopped") return;
    // Full jitter: after a server restart every page reconnects at once; spread over
    // the whole step (not a few percent around it), they do not all land together.
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    const delay = Math.round(MIN_DELAY_MS + Math.random() * base);
    this.attempt += 1;
    this._setState("waiting", { ...info, delay, at: Date.now() + delay });
    this.timer = setTimeout(() => this._open(), delay);
  }
}

/** ws(s):// URL for a path on the kefu server at `base` (an http(s) URL). */
export function wsUrl(base, path) {
  const url = new URL(path, base);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}
