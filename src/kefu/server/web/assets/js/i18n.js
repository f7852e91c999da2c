// The pages' words: one catalog per language, and dates and times in that language.
//
// Every string a person sees goes through `t(key, params)`. A catalog value is
// a string with `{name}` holes, or, where the number changes the words, an
// object of plural forms picked by `params.n` ("zero" first when n is 0, then
// Intl.PluralRules' category, then "other").
//
// The language is chosen once when a page starts (an explicit choice, else the
// browser's languages) and an `I18n` made for it is passed to everything that
// draws; switching languages reloads the console.

import en from "./locales/en.js";
import zhCN from "./locales/zh-CN.js";

export const catalogs = Object.freeze({ "zh-CN": zhCN, en });
export const LANGUAGES = Object.freeze(Object.keys(catalogs));
const FALLBACK = "en";

/** "zh", "zh-CN", "zh_Hans", "ZH-tw" -> "zh-CN"; "en", "en-GB" -> "en"; anything else -> null. */
export function normalizeLanguage(value) {
  const tag = String(value || "").trim().toLowerCase().replace(/_/g, "-");
  if (!tag) return null;
  if (tag === "zh" || tag.startsWith("zh-")) return "zh-CN";
  if (tag === "en" || tag.startsWith("en-")) return "en";
  return null;
}

/** The explicit choice if it names a language we have, else the browser's first language. */
export function chooseLanguage(explicit, browserLanguages = navigatorLanguages()) {
  const chosen = normalizeLanguage(explicit);
  if (chosen) return chosen;
  const first = browserLanguages.find((l) => String(l || "").trim());
  return normalizeLanguage(first) === "zh-CN" ? "zh-CN" : FALLBACK;
}

function navigatorLanguages() {
  if (typeof navigator === "undefined") return [];
  if (Array.isArray(navigator.languages) && navigator.languages.length) return [...navigator.languages];
  return navigator.language ? [navigator.language] : [];
}

export class I18n {
  constructor(lang) {
    this.lang = catalogs[lang] ? lang : FALLBACK;
    this.catalog = catalogs[this.lang];
    this.plural = new Intl.PluralRules(this.lang);
    this.timeFmt = new Intl.DateTimeFormat(this.lang, { hour: "2-digit", minute: "2-digit" });
    this.fullFmt = new Intl.DateTimeFormat(this.lang, { dateStyle: "medium", timeStyle: "short" });
    this.dayFmt = new Intl.DateTimeFormat(this.lang, { month: "short", day: "numeric" });
    // Bound, so components can keep `t` on its own.
    this.t = (key, params) => fill(this.pick(key, params), params);
  }

  pick(key, params) {
    let value = this.catalog[key];
    if (value === undefined) {
      console.error(`kefu: no ${this.lang} text for "${key}"`); // the browser tests fail on this
      value = catalogs[FALLBACK][key];
      if (value === undefined) return key;
    }
    if (typeof value === "string") return value;
    const n = Number(params && params.n);
    if (n === 0 && value.zero !== undefined) return value.zero;
    return value[this.plural.select(n)] ?? value.other;
  }

  /**
   * The text of `key` as a list of strings and nodes: `{name}` holes whose
   * param is a Node get that node (e.g. a <code> or <strong>), others text.
   */
  nodes(key, params) {
    const out = [];
    const template = this.pick(key, params);
    let last = 0;
    for (const m of template.matchAll(/\{(\w+)\}/g)) {
      if (m.index > last) out.push(template.slice(last, m.index));
      const value = params ? params[m[1]] : undefined;
      out.push(value === undefined ? m[0] : value instanceof Node ? value : String(value));
      last = m.index + m[0].length;
    }
    if (last < template.length) out.push(template.slice(last));
    return out;
  }

  /**
   * Put the catalog's words into static markup: `data-i18n="key"` sets the text,
   * `data-i18n-label`, `-title`, `-placeholder` and `-alt` the aria-label, title,
   * placeholder and alt.
   */
  apply(root) {
    for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = this.t(el.dataset.i18n);
    const attrs = { i18nLabel: "aria-label", i18nTitle: "title", i18nPlaceholder: "placeholder", i18nAlt: "alt" };
    for (const [data, attr] of Object.entries(attrs)) {
      const name = data.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
      for (const el of root.querySelectorAll(`[data-${name}]`)) el.setAttribute(attr, this.t(el.dataset[data]));
    }
  }

  /** "10:42" */
  time(date) {
    return this.timeFmt.format(date);
  }

  /** "Nov 3, 2026, 10:42 AM" */
  dateTime(date) {
    return this.fullFmt.format(date);
  }

  /** The time today, the day and time otherwise. */
  stamp(date) {
    if (date.toDateString() === new Date().toDateString()) return this.time(date);
    return this.t("time.day_time", { day: this.dayFmt.format(date), time: this.time(date) });
  }
}

function fill(template, params) {
  if (!params) return template;
  return template.replace(/\{(\w+)\}/g, (whole, name) => (params[name] === undefined ? whole : String(params[name])));
}
