// Where a person writes: the text box (Enter sends, Shift+Enter a new line) and
// the image-link form behind its button. The same in the widget and the console.

import { h, icon, safeHttpUrl } from "./dom.js";

export class Composer {
  /**
   * @param {import("./i18n.js").I18n} i18n
   * @param {object} o
   * @param {string} o.placeholder
   * @param {string} [o.label]           the text box's accessible name
   * @param {string} o.sendLabel
   * @param {string} o.sendTitle
   * @param {number} o.maxHeight          the box grows with its text up to this (px)
   * @param {(text: string) => boolean|void} o.onText   false: keep the text in the box
   * @param {(url: string) => void} o.onImage           an absolute http(s) URL
   * @param {() => void} [o.onInput]      a key was typed
   */
  constructor(i18n, o) {
    const { t } = i18n;
    this.o = o;
    this.input = h("textarea", {
      class: "input",
      rows: "1",
      placeholder: o.placeholder,
      "aria-label": o.label,
      maxlength: "4096",
      onkeydown: (e) => {
        if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
          e.preventDefault();
          this.sendText();
        }
      },
      oninput: () => {
        this.autosize();
        if (o.onInput) o.onInput();
      },
    });
    this.imageToggle = h(
      "button",
      {
        type: "button",
        class: "icon-btn",
        "aria-label": t("composer.image_toggle"),
        title: t("composer.image_toggle"),
        "aria-expanded": "false",
        onclick: () => this.toggleImageForm(),
      },
      icon("image"),
    );
    this.sendButton = h("button", { type: "submit", class: "send", "aria-label": o.sendLabel, title: o.sendTitle }, icon("send"));
    this.form = h(
      "form",
      { class: "composer", onsubmit: (e) => (e.preventDefault(), this.sendText()) },
      this.imageToggle,
      this.input,
      this.sendButton,
    );
    this.imageInput = h("input", {
      type: "url",
      class: "image-url",
      placeholder: t("composer.image_placeholder"),
      "aria-label": t("composer.image_url"),
      onkeydown: (e) => {
        if (e.key === "Escape") {
          e.stopPropagation(); // close the form, not the panel around it
          this.toggleImageForm(false);
        }
      },
    });
    this.imageError = h("p", { class: "form-error", role: "alert", hidden: true });
    this.imageForm = h(
      "form",
      { class: "image-form", hidden: true, onsubmit: (e) => (e.preventDefault(), this.sendImage()) },
      h("div", { class: "image-row" }, this.imageInput, h("button", { type: "submit", class: "btn primary small", text: t("composer.send_image") })),
      this.imageError,
    );
    this.badUrl = t("composer.bad_url");
  }

  /** The nodes to put in the page, in order. */
  get elements() {
    return [this.imageForm, this.form];
  }

  sendText() {
    const text = this.input.value;
    if (!text.trim() || this.input.disabled) return;
    if (this.o.onText(text) === false) return;
    this.input.value = "";
    this.autosize();
    this.input.focus();
  }

  sendImage() {
    const url = safeHttpUrl(this.imageInput.value.trim());
    if (!url) {
      this.imageError.textContent = this.badUrl;
      this.imageError.hidden = false;
      this.imageInput.focus();
      return;
    }
    this.imageInput.value = "";
    this.toggleImageForm(false);
    this.o.onImage(url);
  }

  /** Open or close the image-link form (`quiet`: leave the focus where it is). */
  toggleImageForm(show, quiet = false) {
    const open = show === undefined ? this.imageForm.hidden : show;
    this.imageForm.hidden = !open;
    this.imageToggle.setAttribute("aria-expanded", String(open));
    this.imageError.hidden = true;
    if (open) this.imageInput.focus();
    else if (!quiet) this.imageToggle.focus();
  }

  setEnabled(on, placeholder) {
    for (const el of [this.input, this.sendButton, this.imageToggle]) el.disabled = !on;
    if (!on) this.toggleImageForm(false, true);
    if (placeholder !== undefined) this.input.placeholder = placeholder;
  }

  setPlaceholder(text) {
    this.input.placeholder = text;
  }

  focus() {
    this.input.focus();
  }

  autosize() {
    const el = this.input;
    el.style.height = "auto";
    el.style.height = `${Math.min(el.scrollHeight, this.o.maxHeight)}px`;
  }
}
