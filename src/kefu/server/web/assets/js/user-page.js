// The demo visitor page: takes the token from the URL fragment (#token=...) and
// embeds the widget exactly as a site would, with one script tag. `?lang=zh-CN`
// (or `#lang=` beside the token) picks the page's and the widget's language;
// without it both follow the browser.

import { h } from "./dom.js";
import { I18n, chooseLanguage, normalizeLanguage } from "./i18n.js";

const params = new URLSearchParams(location.hash.replace(/^#/, ""));
const explicit = normalizeLanguage(new URLSearchParams(location.search).get("lang") || params.get("lang"));
const i18n = new I18n(chooseLanguage(explicit));
document.documentElement.lang = i18n.lang;
i18n.apply(document);

const token = params.get("token");
if (!token) {
  const missing = document.getElementById("token-missing");
  missing.replaceChildren(...i18n.nodes("demo.no_token", { cmd: h("code", { text: "kefu demo" }), hash: h("code", { text: "#token=…" }) }));
  missing.hidden = false;
} else {
  const script = document.createElement("script");
  script.src = "/widget.js";
  script.async = true;
  script.dataset.kefuToken = token;
  script.dataset.kefuTitle = i18n.t("demo.widget_title");
  if (explicit) script.dataset.kefuLang = explicit;
  if (params.get("open") === "1") script.dataset.kefuOpen = "true";
  document.body.append(script);
}
