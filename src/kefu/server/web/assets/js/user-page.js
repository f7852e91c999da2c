// The demo visitor page: takes the token from the URL fragment (#token=...) and
// embeds the widget exactly as a site would, with one script tag.

const params = new URLSearchParams(location.hash.replace(/^#/, ""));
const token = params.get("token");

if (!token) {
  document.getElementById("token-missing").hidden = false;
} else {
  const script = document.createElement("script");
  script.src = "/widget.js";
  script.async = true;
  script.dataset.kefuToken = token;
  script.dataset.kefuTitle = "Northwind support";
  if (params.get("open") === "1") script.dataset.kefuOpen = "true";
  document.body.append(script);
}
