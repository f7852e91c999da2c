// One message row, the same in the widget and the console (styles: css/message.css).
//
//   <div class="msg mine|theirs" data-id="…" data-state="sending|waiting|failed|sent">
//     <span class="who">…</span>            (only where the sender is named)
//     <div class="bubble [image]">text with links, or <a><img></a></div>
//     <div class="meta"><time class="time"></time><span class="state"></span></div>
//   </div>
//
// A row sent by this page starts without an id ("sending" or "waiting" until the
// server's ack); `stampRow` gives it its id and time. Everything from a person
// is put in as text (see dom.js).

import { appendText, h, parseDate, safeHttpUrl } from "./dom.js";

/**
 * @param {import("./i18n.js").I18n} i18n
 * @param {object} m
 * @param {string|null} m.id          the stored message id, or null while unacked
 * @param {boolean} m.mine            sent by the person using this page
 * @param {string} m.type             "message_text" or "message_image"
 * @param {object} m.payload          {text} or {image}
 * @param {string|null} m.date        RFC 3339, with the id
 * @param {string} [m.who]            a name shown above the bubble
 * @param {string} [m.theirImage]     the alt text of the other side's images
 * @param {() => void} [m.onImageLoad]
 */
export function messageRow(i18n, { id, mine, type, payload, date, who, theirImage, onImageLoad }) {
  const { t } = i18n;
  const row = h("div", { class: `msg ${mine ? "mine" : "theirs"}` });
  if (who) row.append(h("span", { class: "who", text: who }));
  const bubble = h("div", { class: "bubble" });
  if (type === "message_image") {
    const raw = payload && payload.image;
    const url = safeHttpUrl(raw);
    if (url) {
      const alt = mine ? t("msg.image_mine") : theirImage || t("msg.image");
      const img = h("img", { src: url, alt, loading: "lazy", referrerpolicy: "no-referrer" });
      if (onImageLoad) img.addEventListener("load", onImageLoad, { once: true });
      img.addEventListener("error", () => img.replaceWith(document.createTextNode(url)), { once: true });
      bubble.classList.add("image");
      bubble.append(h("a", { href: url, target: "_blank", rel: "noopener noreferrer", "aria-label": t("msg.open_image") }, img));
    } else {
      bubble.append(String(raw || ""));
    }
  } else {
    appendText(bubble, String((payload && payload.text) || ""));
  }
  row.append(bubble, h("div", { class: "meta" }, h("time", { class: "time" }), h("span", { class: "state" })));
  if (id) stampRow(i18n, row, id, date);
  return row;
}

/** The server stored the message: its id, its time, state "sent". */
export function stampRow(i18n, row, id, date) {
  const d = parseDate(date);
  row.dataset.id = id;
  const time = row.querySelector("time");
  time.dateTime = d.toISOString();
  time.textContent = i18n.time(d);
  time.title = i18n.dateTime(d);
  setRowState(row, "sent", "");
}

/** "sending", "waiting" (held back until the other side is there), "failed" or "sent", with its words. */
export function setRowState(row, state, text) {
  row.dataset.state = state;
  row.classList.remove("seen");
  row.querySelector(".state").textContent = text || "";
}

/** Mark a sent row as read by the other side, or take the mark off. */
export function setRowSeen(i18n, row, seen) {
  row.classList.toggle("seen", seen);
  if (row.dataset.state === "sent") row.querySelector(".state").textContent = seen ? i18n.t("msg.seen") : "";
}

/** One line for a list: the text, squeezed and cut, or "Image". */
export function messagePreview(i18n, type, payload) {
  if (type === "message_image") return i18n.t("msg.preview_image");
  const text = String((payload && payload.text) || "").replace(/\s+/g, " ").trim();
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}
