// Getting the waiter's attention: while the tab is hidden a new customer or
// message flashes the tab title and plays a short tone (after the first click
// or key press on the page, as browsers require); toasts for everything else.

import { h, icon } from "../dom.js";

const FLASH_EVERY = 1000;
const TOAST_FOR = 4200;

export class Notifier {
  /**
   * @param {object} o
   * @param {HTMLElement} o.toasts       where toasts go
   * @param {() => string} o.title        the page title when nothing flashes
   * @param {() => void} o.onVisible      the tab became visible (or got the focus)
   */
  constructor({ toasts, title, onVisible }) {
    this.toasts = toasts;
    this.title = title;
    this.flash = null; // {text, on, timer} while the title flashes
    this.audio = null;
    const visible = () => {
      if (document.visibilityState !== "visible") return;
      this.stopFlash();
      onVisible();
    };
    document.addEventListener("visibilitychange", visible);
    window.addEventListener("focus", visible);
    const unlock = () => this.unlockAudio();
    document.addEventListener("pointerdown", unlock, { once: true });
    document.addEventListener("keydown", unlock, { once: true });
  }

  /** Something happened the waiter should see: if the tab is hidden, flash `text` and beep. */
  attention(text) {
    if (document.visibilityState === "visible") return;
    this.beep();
    if (this.flash) this.flash.text = text;
    else {
      const flash = { text, on: false, timer: null };
      flash.timer = setInterval(() => {
        flash.on = !flash.on;
        document.title = flash.on ? `● ${flash.text}` : this.title();
      }, FLASH_EVERY);
      this.flash = flash;
    }
    document.title = `● ${text}`;
  }

  stopFlash() {
    if (!this.flash) return;
    clearInterval(this.flash.timer);
    this.flash = null;
    document.title = this.title();
  }

  toast(text, kind = "") {
    const el = h("div", { class: `toast ${kind}`.trim() }, icon(kind === "error" ? "alert" : "bell"), h("span", { text }));
    this.toasts.append(el);
    setTimeout(() => el.classList.add("leaving"), TOAST_FOR);
    setTimeout(() => el.remove(), TOAST_FOR + 400);
  }

  unlockAudio() {
    try {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (Ctx && !this.audio) this.audio = new Ctx();
    } catch {
      this.audio = null;
    }
  }

  /** Two short rising tones. */
  beep() {
    const ctx = this.audio;
    if (!ctx) return;
    try {
      if (ctx.state === "suspended") ctx.resume();
      const t = ctx.currentTime;
      for (const [freq, at] of [
        [880, 0],
        [1320, 0.12],
      ]) {
        const osc = ctx.createOscillator();
        const gain = ctx.createGain();
        osc.type = "sine";
        osc.frequency.value = freq;
        gain.gain.setValueAtTime(0.0001, t + at);
        gain.gain.exponentialRampToValueAtTime(0.15, t + at + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, t + at + 0.18);
        osc.connect(gain).connect(ctx.destination);
        osc.start(t + at);
        osc.stop(t + at + 0.2);
      }
    } catch {
      // sound is a nicety
    }
  }
}
