// Signing in to the console and the token that comes of it.
//
// A username and password go to POST /v1/auth/login; a token may also come in
// the address (`/console#token=…`, then removed from it). The token is kept for
// the tab (sessionStorage). The "signed in somewhere else" dialog (kickout) is
// here too: it asks whether this tab should take the session back.

const TOKEN_KEY = "kefu.console.token";

export class SignIn {
  /**
   * @param {object} o
   * @param {import("../i18n.js").I18n} o.i18n
   * @param {Record<string, HTMLElement>} o.elements  screen, form, username, password, error, button
   * @param {(token: string) => void} o.onSignedIn
   */
  constructor({ i18n, elements, onSignedIn }) {
    this.t = i18n.t;
    this.el = elements;
    this.onSignedIn = onSignedIn;
    this.el.form.addEventListener("submit", (e) => this.submit(e));
  }

  /** The token from the address (kept, and taken out of it) or the one kept for this tab. */
  storedToken() {
    const fromHash = new URLSearchParams(location.hash.replace(/^#/, "")).get("token");
    if (fromHash) {
      sessionStorage.setItem(TOKEN_KEY, fromHash);
      history.replaceState(null, "", location.pathname + location.search);
    }
    return fromHash || sessionStorage.getItem(TOKEN_KEY);
  }

  forget() {
    sessionStorage.removeItem(TOKEN_KEY);
  }

  show(message) {
    this.el.screen.hidden = false;
    this.el.error.hidden = !message;
    this.el.error.textContent = message || "";
    document.title = this.t("signin.page_title");
    this.el.username.focus();
  }

  hide() {
    this.el.screen.hidden = true;
  }

  async submit(event) {
    event.preventDefault();
    const t = this.t;
    const { username: userBox, password: passBox, error, button } = this.el;
    const username = userBox.value.trim();
    const password = passBox.value;
    if (!username || !password) {
      error.textContent = t("signin.missing");
      error.hidden = false;
      return;
    }
    button.disabled = true;
    button.textContent = t("signin.busy");
    try {
      const resp = await fetch("/v1/auth/login", {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify({ username, password }),
      });
      const body = await resp.json().catch(() => ({}));
      if (!resp.ok) throw new Error(this.failure(resp.status, body.message));
      if (body.role && body.role !== "waiter" && body.role !== "admin") throw new Error(t("signin.not_agent"));
      passBox.value = "";
      sessionStorage.setItem(TOKEN_KEY, body.token);
      this.onSignedIn(body.token);
    } catch (e) {
      error.textContent = e instanceof TypeError ? t("signin.unreachable") : e.message;
      error.hidden = false;
    } finally {
      button.disabled = false;
      button.textContent = t("signin.submit");
    }
  }

  /** What to say about a refused sign-in: our words for the answers we know, else the server's. */
  failure(status, message) {
    if (status === 401) return this.t("signin.wrong");
    if (status === 429) return this.t("signin.too_many");
    return message ? capitalize(message) : this.t("signin.failed_http", { status });
  }
}

/** "You signed in somewhere else": stay signed out here, or take the session back. */
export class KickedDialog {
  constructor({ elements, onReconnect, onSignOut }) {
    this.el = elements;
    this.el.reconnect.addEventListener("click", () => {
      this.el.overlay.hidden = true;
      onReconnect();
    });
    this.el.signOut.addEventListener("click", () => {
      this.el.overlay.hidden = true;
      onSignOut();
    });
  }

  show() {
    this.el.overlay.hidden = false;
    this.el.reconnect.focus();
  }
}

function capitalize(s) {
  const text = String(s || "");
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}
