// The console's language: `?lang=zh-CN|en` in the address, else the one picked
// before (localStorage), else the browser's. The pickers (sign-in card, top bar)
// remember the choice and reload the page in it: what is on screen then comes
// back from the server, as after any reload.

import { LANGUAGES, chooseLanguage, normalizeLanguage } from "../i18n.js";

const LANG_KEY = "kefu.console.lang";

/** The language to draw the console in; an explicit `?lang=` is remembered. */
export function consoleLanguage() {
  const fromUrl = normalizeLanguage(new URLSearchParams(location.search).get("lang"));
  if (fromUrl) remember(fromUrl);
  return chooseLanguage(fromUrl || stored());
}

function stored() {
  try {
    return localStorage.getItem(LANG_KEY);
  } catch {
    return null; // storage may be off; the browser's language then
  }
}

function remember(lang) {
  try {
    localStorage.setItem(LANG_KEY, lang);
  } catch {
    // not remembered: `?lang=` still works for this visit
  }
}

/** Fill a <select> with the languages (each named in itself) and switch on change. */
export function bindLanguagePicker(select, i18n) {
  const names = { "zh-CN": i18n.t("lang.name_zh"), en: i18n.t("lang.name_en") };
  select.replaceChildren(
    ...LANGUAGES.map((lang) => {
      const option = document.createElement("option");
      option.value = lang;
      option.lang = lang;
      option.textContent = names[lang];
      option.selected = lang === i18n.lang;
      return option;
    }),
  );
  select.addEventListener("change", () => {
    const lang = normalizeLanguage(select.value);
    if (!lang || lang === i18n.lang) return;
    remember(lang);
    const url = new URL(location.href);
    url.searchParams.set("lang", lang);
    location.replace(url.href);
  });
}
