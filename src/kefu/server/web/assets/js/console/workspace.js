// The console's main area: which pane is shown (a conversation or a read-only
// history view), the "Pick a conversation" placeholder, and on phones whether
// the pane covers the list.

export class Workspace {
  constructor({ main, empty }) {
    this.main = main;
    this.empty = empty;
    this.panes = new Map(); // key -> pane element
    this.active = null;
    this.listeners = [];
  }

  /** Call `fn(key)` whenever another pane (or none) is shown. */
  onChange(fn) {
    this.listeners.push(fn);
  }

  changed() {
    for (const fn of this.listeners) fn(this.active);
  }

  add(key, pane) {
    pane.hidden = key !== this.active;
    this.panes.set(key, pane);
    this.main.append(pane);
  }

  remove(key) {
    const pane = this.panes.get(key);
    if (pane) pane.remove();
    this.panes.delete(key);
    if (this.active === key) {
      this.active = null;
      this.changed();
    }
  }

  /** Show one pane; `reveal` (phones) swaps the list for it. */
  show(key, { reveal = true } = {}) {
    this.active = key;
    this.empty.hidden = true;
    for (const [k, pane] of this.panes) pane.hidden = k !== key;
    if (reveal) document.body.classList.add("show-pane");
    this.changed();
  }

  isActive(key) {
    return this.active === key;
  }

  /** The placeholder instead of a pane. */
  showEmpty() {
    this.active = null;
    for (const pane of this.panes.values()) pane.hidden = true;
    this.empty.hidden = false;
    document.body.classList.remove("show-pane");
    this.changed();
  }

  /** Phones: back from the pane to the list. */
  showList() {
    document.body.classList.remove("show-pane");
  }

  clear() {
    for (const key of [...this.panes.keys()]) this.remove(key);
    this.showEmpty();
  }
}
