// [ext] `typing` both ways (protocol 4.2): telling the other side, and showing theirs.

import { h } from "./dom.js";

const SEND_EVERY = 3000; // repeat "typing: true" while the person keeps typing
const IDLE_AFTER = 4000; // "typing: false" after this long without a key
const SHOW_FOR = 7000; // hide the other side's indicator if no word comes

/** Sends typing on/off for what this person types; `send(on)` returns false when it could not. */
export class TypingSignal {
  constructor(send) {
    this.send = send;
    this.on = false;
    this.sentAt = 0;
    this.timer = null;
  }

  /** A key was typed. */
  input() {
    const now = Date.now();
    if ((!this.on || now - this.sentAt > SEND_EVERY) && this.send(true)) {
      this.on = true;
      this.sentAt = now;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.stop(), IDLE_AFTER);
  }

  /** The message was sent or the box left alone: "typing: false" if we said true. */
  stop() {
    clearTimeout(this.timer);
    if (!this.on) return;
    this.on = false;
    this.send(false);
  }
}

/** "Wendy is typing…" with three dots, shown until told otherwise or for SHOW_FOR. */
export class TypingIndicator {
  constructor(i18n, { onChange } = {}) {
    this.i18n = i18n;
    this.onChange = onChange || (() => {});
    this.text = h("span", { class: "typing-text" });
    this.element = h(
      "div",
      { class: "typing", hidden: true, "aria-live": "polite" },
      h("span", { class: "dots", "aria-hidden": "true" }, h("i"), h("i"), h("i")),
      this.text,
    );
    this.shown = false;
    this.timer = null;
  }

  show(on, name) {
    clearTimeout(this.timer);
    this.text.textContent = on ? this.i18n.t("msg.typing", { name }) : "";
    this.element.hidden = !on;
    if (on) this.timer = setTimeout(() => this.show(false), SHOW_FOR);
    if (this.shown !== on) {
      this.shown = on;
      this.onChange(on);
    }
  }
}
