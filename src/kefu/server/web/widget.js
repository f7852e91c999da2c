/* kefu visitor widget: the one script a site adds.
 *
 *   <script src="https://kefu.example.com/widget.js" data-kefu-token="..." async></script>
 *   <script src="https://kefu.example.com/widget.js" data-kefu-token-url="/kefu-token" async></script>
 *
 * Optional: data-kefu-open="true" opens the panel at once; data-kefu-title="..."
 * names the panel; data-kefu-lang="zh-CN" or "en" picks the language (else the
 * browser's). It loads the widget's ES modules and stylesheets from the same
 * server as this script and talks to that server's WebSocket.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.src) {
    var found = document.querySelectorAll("script[src*='widget.js'][data-kefu-token], script[src*='widget.js'][data-kefu-token-url]");
    script = found.length ? found[found.length - 1] : null;
  }
  if (!script || window.__kefuWidgetLoaded) return;
  window.__kefuWidgetLoaded = true;
  var base = new URL(".", script.src).href;
  var options = {
    base: base,
    token: script.getAttribute("data-kefu-token") || "",
    tokenUrl: script.getAttribute("data-kefu-token-url") || "",
    open: script.getAttribute("data-kefu-open") === "true",
    title: script.getAttribute("data-kefu-title") || "",
    lang: script.getAttribute("data-kefu-lang") || "",
  };
  import(new URL("static/js/widget.js", base).href)
    .then(function (mod) {
      mod.mount(options);
    })
    .catch(function (err) {
      console.error("kefu widget failed to load:", err);
    });
})();
