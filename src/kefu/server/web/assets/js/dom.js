// Small DOM helpers shared by the widget and the console.
//
// Everything that comes from a person (names, messages, URLs) goes into the
// page as text nodes or attributes set one by one; nothing here ever assigns
// HTML, so a message like `<img src=x onerror=alert(1)>` stays text.

const SVG_NS = "http://www.w3.org/2000/svg";

/** h("div", {class: "x", onclick: fn, "aria-label": "..."}, child, "text", ...) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = String(value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "style" || key === "innerHTML" || key === "outerHTML") {
      throw new Error(`h(): ${key} is not allowed`);
    } else if (key in el && typeof value !== "string" && key !== "list") {
      el[key] = value; // hidden, disabled, checked, value...
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// Icons: 24x24 stroke paths (drawn here, so no icon font or sprite is fetched).
const ICONS = {
  chat: ["M21 12a8 8 0 0 1-11.6 7.1L4 20.5l1.4-4.9A8 8 0 1 1 21 12z"],
  close: ["M6 6l12 12", "M18 6L6 18"],
  minimize: ["M6 9l6 6 6-6"],
  send: ["M4 12l16-8-6 16-2.5-6.5z", "M11.5 13.5L20 4"],
  image: ["M4 5h16v14H4z", "M4 16l5-5 4 4 3-3 4 4", "M15.5 9.5h.01"],
  end: ["M12 3v9", "M6.3 6.3a8 8 0 1 0 11.4 0"],
  star: ["M12 3.5l2.6 5.4 5.9.8-4.3 4.1 1 5.8L12 16.8l-5.2 2.8 1-5.8-4.3-4.1 5.9-.8z"],
  back: ["M15 5l-7 7 7 7"],
  history: ["M3 12a9 9 0 1 0 3-6.7L3 8", "M3 3v5h5", "M12 7v5l3 2"],
  logout: ["M9 4H5v16h4", "M16 8l4 4-4 4", "M20 12H9"],
  check: ["M5 12.5l4.5 4.5L19 7.5"],
  clock: ["M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18z", "M12 7v5l3 2"],
  alert: ["M12 3l10 18H2z", "M12 10v4", "M12 17.5h.01"],
  users: ["M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8z", "M2 21a7 7 0 0 1 14 0", "M16 3.5a4 4 0 0 1 0 7", "M18 14.5a7 7 0 0 1 4 6.5"],
  bell: ["M6 16V11a6 6 0 0 1 12 0v5l2 2H4z", "M10 20a2 2 0 0 0 4 0"],
  globe: ["M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18z", "M3 12h18", "M12 3c2.5 2.5 3.8 5.5 3.8 9s-1.3 6.5-3.8 9c-2.5-2.5-3.8-5.5-3.8-9s1.3-6.5 3.8-9z"],
};

export function icon(name, cls = "icon") {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", cls);
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  for (const d of ICONS[name] || []) {
    const path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

/** The URL if it is an absolute http(s) URL, else null: only those become <img>/<a>. */
export function safeHttpUrl(value) {
  if (typeof value !== "string" || value.length > 2048) return null;
  let url;
  try {
    url = new URL(value);
  } catch {
    return null;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return null;
  if (url.username || url.password) return null;
  return url.href;
}

export function displayName(profile) {
  if (!profile) return "";
  return (profile.nickname && String(profile.nickname).trim()) || profile.username || "";
}

function initials(name) {
  const parts = String(name || "?").trim().split(/\s+/).filter(Boolean);
  const letters = parts.slice(0, 2).map((p) => Array.from(p)[0] || "");
  return (letters.join("") || "?").toUpperCase();
}

/** An avatar: the picture if it is an http(s) URL that loads, else initials on a colour. */
export function avatar(profile, cls = "avatar") {
  const name = displayName(profile);
  const el = h("span", { class: `${cls} hue-${hue(profile && profile.id ? profile.id : name)}`, "aria-hidden": "true" });
  const fallback = () => {
    clear(el);
    el.append(document.createTextNode(initials(name)));
  };
  const src = safeHttpUrl(profile && profile.avatar);
  if (src) {
    const img = h("img", { alt: "", src, loading: "lazy", referrerpolicy: "no-referrer" });
    img.addEventListener("error", fallback, { once: true });
    el.append(img);
  } else {
    fallback();
  }
  return el;
}

function hue(seed) {
  let n = 0;
  for (const ch of String(seed)) n = (n * 31 + ch.codePointAt(0)) >>> 0;
  return n % 8;
}

export function parseDate(value) {
  const d = value ? new Date(value) : new Date();
  return Number.isNaN(d.getTime()) ? new Date() : d;
}

/** "0:42", "12:05", "1:02:05" */
export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

/** Message ids are fixed-width digit strings; compare by length, then text. */
export function compareIds(a, b) {
  if (a === b) return 0;
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : 1;
}

export function maxId(a, b) {
  if (!a) return b || null;
  if (!b) return a;
  return compareIds(a, b) >= 0 ? a : b;
}

export function newOpId() {
  if (globalThis.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Text with http(s) links made clickable; everything stays text nodes. */
export function appendText(el, text) {
  const re = /\bhttps?:\/\/[^\s<>"']+/gi;
  let last = 0;
  for (const match of text.matchAll(re)) {
    let raw = match[0].replace(/[.,;:!?)\]]+$/, "");
    const url = safeHttpUrl(raw);
    if (!url) continue;
    if (match.index > last) el.append(text.slice(last, match.index));
    el.append(h("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: raw }));
    last = match.index + raw.length;
  }
  if (last < text.length) el.append(text.slice(last));
}
