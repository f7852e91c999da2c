// The waiter console: sign in, take customers from the queue, chat with several at once.
//
// This module only builds the parts and wires them together; each lives in
// console/ and owns one thing:
//   language.js           which language, and the pickers
//   connection.js         the socket: protocol frames in and out, resume, reconnect
//   conversation-list.js  the current conversations and the frames about them
//   conversation.js       one conversation's pane: log, composer, typing, history
//   past-sessions.js      the tabs, past sessions and read-only history views
//   workspace.js          which pane the main area shows
//   top-bar.js            who is signed in, Ready/Paused, connection, queue length
//   notifications.js      title flash, beep, visibility, toasts
//   sign-in.js            the sign-in form, the token, the kickout dialog

import { icon } from "./dom.js";
import { I18n } from "./i18n.js";
import { bindLanguagePicker, consoleLanguage } from "./console/language.js";
import { Connection } from "./console/connection.js";
import { ConversationList } from "./console/conversation-list.js";
import { Notifier } from "./console/notifications.js";
import { PastSessions } from "./console/past-sessions.js";
import { KickedDialog, SignIn } from "./console/sign-in.js";
import { TopBar } from "./console/top-bar.js";
import { Workspace } from "./console/workspace.js";

const $ = (id) => document.getElementById(id);

function main() {
  const i18n = new I18n(consoleLanguage());
  const { t } = i18n;
  document.documentElement.lang = i18n.lang;
  i18n.apply(document);
  for (const el of document.querySelectorAll("[data-icon]")) el.replaceWith(icon(el.dataset.icon));
  bindLanguagePicker($("lang"), i18n);
  bindLanguagePicker($("signin-lang"), i18n);

  let token = null;
  const conn = new Connection(() => token);
  const workspace = new Workspace({ main: $("main"), empty: $("main-empty") });
  let chats = null;
  const notifier = new Notifier({ toasts: $("toasts"), title: () => t("console.title"), onVisible: () => chats.visible() });
  chats = new ConversationList({
    i18n,
    conn,
    workspace,
    notifier,
    elements: { list: $("chat-list"), count: $("chat-count"), empty: $("chat-empty"), chatsTab: $("tab-chats") },
  });
  const past = new PastSessions({
    i18n,
    conn,
    workspace,
    chats,
    elements: {
      chatsTab: $("tab-chats"),
      pastTab: $("tab-past"),
      chatsPanel: $("chats-panel"),
      pastPanel: $("past-panel"),
      list: $("past-list"),
      empty: $("past-empty"),
    },
  });
  const topBar = new TopBar({
    i18n,
    conn,
    notifier,
    elements: {
      me: $("me"),
      ready: $("ready"),
      readyText: $("ready-text"),
      conn: $("conn"),
      connText: $("conn-text"),
      queueChip: $("queue-chip"),
      queueText: $("queue-text"),
      emptyText: $("chat-empty-text"),
    },
  });
  const signIn = new SignIn({
    i18n,
    elements: {
      screen: $("signin"),
      form: $("signin-form"),
      username: $("username"),
      password: $("password"),
      error: $("signin-error"),
      button: $("signin-button"),
    },
    onSignedIn: (tok) => start(tok),
  });
  const kicked = new KickedDialog({
    elements: { overlay: $("kicked"), reconnect: $("kicked-reconnect"), signOut: $("kicked-signout") },
    onReconnect: () => conn.start(),
    onSignOut: () => signOut(),
  });

  function start(tok) {
    token = tok;
    signIn.hide();
    $("app").hidden = false;
    document.title = t("console.title");
    conn.start();
    topBar.start();
    chats.start();
  }

  function signOut(message) {
    conn.stop("signed-out");
    conn.reset();
    token = null;
    signIn.forget();
    topBar.stop();
    chats.clear();
    past.clear();
    workspace.clear();
    $("app").hidden = true;
    signIn.show(message);
  }

  conn.onState((s, info) => {
    if (s !== "stopped") return;
    if (info.reason === "kickout") {
      conn.stop("kickout-shown");
      kicked.show();
      notifier.attention(t("conn.kicked"));
    } else if (info.reason === "auth-failed") {
      signOut(t("signin.expired"));
    } else if (info.reason === "refused") {
      notifier.toast(t("conn.refused_toast"), "error");
    }
  });
  conn.on("error", (f) => {
    const p = f.payload || {};
    if (chats.failedOp(f)) return;
    if (p.status === 999999) return; // the socket handles auth failures
    if (p.status === 100002 && /socket is for waiters/.test(p.message || "")) {
      signOut(t("signin.not_agent"));
      return;
    }
    notifier.toast(p.message ? capitalize(p.message) : t("console.error"), "error");
  });
  $("signout").addEventListener("click", () => signOut());

  const stored = signIn.storedToken();
  if (stored) start(stored);
  else signIn.show();
}

function capitalize(s) {
  const text = String(s || "");
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

main();
