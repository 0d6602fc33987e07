// The jobs panel's front end (an anywidget ES module: no build step).
// The kernel sends rows as data: {t:"full"} when this view starts, {t:"diff"} per tick,
// {t:"details"} for the open job and {t:"history"} for stored jobs. This view keeps every row
// but draws only those in view; each row is a CSS grid whose bar column has a fixed width, so
// bars line up across rows and never move. Clicks go back as {t: action, id} messages.

const ROW = 28; // px per row: the list is windowed, so rows have one fixed height
const MAX_HEIGHT = 420; // px of list before it scrolls
const OVERSCAN = 6; // rows drawn beyond the visible ones, for smooth scrolling
const PAUSE = 1, RESUME = 2, CANCEL = 4, RESTART = 8; // row flags, as in rowdata.py
const STATES = [["", "all states"], ["interrupted", "interrupted"], ["failed", "failed"],
  ["cancelled", "cancelled"], ["completed", "completed"]];

function node(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined) el.textContent = text;
  return el;
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function button(cls, label, action) {
  const el = node("button", cls, label);
  el.type = "button";
  el.dataset.action = action;
  return el;
}

// Icons as inline SVG: symbol glyphs such as U+23F8 are missing from many fonts.
const SVG = (body) => `<svg viewBox="0 0 12 12" width="12" height="12" aria-hidden="true">${body}</svg>`;
const ICONS = {
  pause: SVG('<rect x="2" y="1.5" width="3" height="9" fill="currentColor"/><rect x="7" y="1.5" width="3" height="9" fill="currentColor"/>'),
  resume: SVG('<path d="M3 1.5 L10.5 6 L3 10.5 Z" fill="currentColor"/>'),
  cancel: SVG('<path d="M2.5 2.5 L9.5 9.5 M9.5 2.5 L2.5 9.5" stroke="currentColor" stroke-width="2"/>'),
};

function setIcon(el, name) {
  if (el.dataset.icon === name) return;
  el.dataset.icon = name;
  el.innerHTML = ICONS[name];
}

/** One row element: [title+item, status, bar, figures, speed, controls]. */
function makeRow(id) {
  const el = node("div", "ipyjobs-row");
  el.dataset.id = id;
  const title = node("div", "ipyjobs-cell ipyjobs-title");
  const name = node("span", "ipyjobs-name");
  const item = node("span", "ipyjobs-item");
  title.append(name, item);
  const status = node("div", "ipyjobs-cell ipyjobs-status");
  const bar = node("div", "ipyjobs-bar");
  const fill = node("div", "ipyjobs-fill");
  bar.append(fill);
  const figures = node("div", "ipyjobs-cell ipyjobs-figures");
  const speed = node("div", "ipyjobs-cell ipyjobs-speed");
  const controls = node("div", "ipyjobs-controls");
  const toggle = button("ipyjobs-toggle", "", "pause");
  const cancel = button("ipyjobs-cancel", "", "cancel");
  setIcon(toggle, "pause");
  setIcon(cancel, "cancel");
  cancel.title = "Cancel this job (and the jobs it owns)";
  controls.append(toggle, cancel);
  el.append(title, status, bar, figures, speed, controls);
  el._parts = { title, name, item, status, fill, figures, speed, toggle, cancel };
  el._last = null;
  return el;
}

function updateRow(el, row, depth) {
  const key = JSON.stringify(row) + depth;
  if (el._last === key) return;
  el._last = key;
  const [title, status, fraction, figures, speed, item, waiters, flags, errors] = row;
  const p = el._parts;
  let name = (depth ? "└ " : "") + title;
  if (waiters > 1) name += ` · shared, ${waiters} waiting`;
  if (errors) name += ` · ${errors} item error${errors > 1 ? "s" : ""}`;
  setText(p.name, name);
  p.title.style.paddingLeft = `${depth * 1.2}em`;
  p.title.title = name + (item ? ` — ${item}` : "");
  setText(p.item, item ? ` ${item}` : "");
  setText(p.status, status);
  el.dataset.status = status;
  p.fill.style.width = fraction === null ? "0%" : `${(fraction * 100).toFixed(1)}%`;
  p.fill.parentElement.classList.toggle("ipyjobs-unknown", fraction === null);
  setText(p.figures, figures);
  setText(p.speed, speed);
  const t = p.toggle;
  if (flags & PAUSE) {
    t.dataset.action = "pause"; setIcon(t, "pause"); t.title = "Pause (resume later)";
  } else if (flags & (RESUME | RESTART)) {
    t.dataset.action = "resume"; setIcon(t, "resume");
    t.title = flags & RESTART ? "Resume from its last checkpoint" : "Resume";
  }
  t.style.visibility = flags & (PAUSE | RESUME | RESTART) ? "visible" : "hidden";
  p.cancel.style.visibility = flags & CANCEL ? "visible" : "hidden";
}

class PanelView {
  constructor(model, el) {
    this.model = model;
    this.el = el;
    this.order = [];
    this.rows = new Map();
    this.drawn = new Map(); // id -> row element currently in the list
    this.history = [];
    this.details = null;
    this.ready = false;
    this.pending = false;
    this.build();
    this.onMessage = (msg) => this.receive(msg);
    this.onChange = () => this.schedule();
    model.on("msg:custom", this.onMessage);
    model.on("change", this.onChange);
    model.send({ t: "hello" });
  }

  build() {
    const el = this.el;
    el.classList.add("ipyjobs-root");
    const head = node("div", "ipyjobs-head");
    this.summary = node("span", "ipyjobs-summary");
    this.resumeAll = button("ipyjobs-resume-all", "", "resume_all");
    this.resumeAll.title = "Resume the jobs an earlier kernel left unfinished";
    const clear = button("ipyjobs-clear", "Clear finished", "clear");
    clear.title = "Hide ended jobs (the history keeps them)";
    const history = node("label", "ipyjobs-history-toggle");
    this.historyBox = node("input");
    this.historyBox.type = "checkbox";
    this.historyBox.addEventListener("change", () => this.save("show_history", this.historyBox.checked));
    history.append(this.historyBox, " History");
    this.notice = node("span", "ipyjobs-notice");
    this.trouble = node("span", "ipyjobs-trouble");
    this.where = node("a", "ipyjobs-where");
    this.where.target = "_blank";
    head.append(node("b", "", "Jobs"), this.summary, this.resumeAll, clear, history, this.notice,
      this.where, this.trouble);
    this.list = node("div", "ipyjobs-list");
    this.spacer = node("div", "ipyjobs-spacer");
    this.list.append(this.spacer);
    this.list.addEventListener("scroll", () => this.schedule());
    this.empty = node("div", "ipyjobs-empty", "No jobs yet.");
    this.detailsEl = node("div", "ipyjobs-details");
    this.historyEl = this.buildHistory();
    el.append(head, this.empty, this.list, this.detailsEl, this.historyEl);
    el.addEventListener("click", (event) => this.click(event));
  }

  buildHistory() {
    const box = node("div", "ipyjobs-history");
    const bar = node("div", "ipyjobs-head");
    this.stateSelect = node("select", "ipyjobs-history-state");
    for (const [value, label] of STATES) {
      const option = node("option", "", label);
      option.value = value;
      this.stateSelect.append(option);
    }
    this.stateSelect.addEventListener("change", () => this.save("history_state", this.stateSelect.value));
    this.limitInput = node("input", "ipyjobs-history-limit");
    this.limitInput.type = "number";
    this.limitInput.min = "1";
    this.limitInput.max = "1000";
    this.limitInput.addEventListener("change", () => {
      const value = Math.max(1, Math.min(1000, parseInt(this.limitInput.value, 10) || 50));
      this.save("history_limit", value);
    });
    bar.append(node("b", "", "History of this data folder"), this.stateSelect, "last", this.limitInput);
    this.historyList = node("div", "ipyjobs-history-list");
    box.append(bar, this.historyList);
    return box;
  }

  save(name, value) {
    this.model.set(name, value);
    this.model.save_changes();
  }

  send(t, id) {
    this.model.send(id === undefined ? { t } : { t, id });
  }

  click(event) {
    const target = event.target;
    const action = target.closest("[data-action]");
    if (action && this.el.contains(action)) {
      const row = action.closest(".ipyjobs-row");
      this.send(action.dataset.action, row ? row.dataset.id : undefined);
      event.stopPropagation();
      return;
    }
    const row = target.closest(".ipyjobs-row");
    if (row) this.send("open", this.model.get("selected") === row.dataset.id ? "" : row.dataset.id);
    else if (target.closest(".ipyjobs-details-close")) this.send("open", "");
  }

  receive(msg) {
    if (msg.t === "full") {
      this.order = msg.order;
      this.rows = new Map(Object.entries(msg.rows));
      this.ready = true;
    } else if (msg.t === "diff") {
      if (!this.ready) return; // a full snapshot is on its way
      if (msg.order) {
        this.order = msg.order;
        const live = new Set(msg.order.map((entry) => entry[0]));
        for (const id of this.rows.keys()) if (!live.has(id)) this.rows.delete(id);
      }
      for (const [id, row] of Object.entries(msg.rows || {})) this.rows.set(id, row);
    } else if (msg.t === "details") {
      this.details = msg.d;
    } else if (msg.t === "history") {
      this.history = msg.rows;
    }
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  draw() {
    const m = this.model;
    setText(this.summary, m.get("summary"));
    setText(this.notice, m.get("notice"));
    setText(this.trouble, m.get("trouble"));
    const dashboard = m.get("dashboard");
    setText(this.where, dashboard ? `${m.get("where")} (dashboard)` : "");
    this.where.title = dashboard ? "Open the Dask dashboard" : "";
    if (dashboard) this.where.href = dashboard;
    else this.where.removeAttribute("href");
    const interrupted = m.get("interrupted");
    this.resumeAll.style.display = interrupted ? "" : "none";
    setText(this.resumeAll, `Resume ${interrupted} interrupted job${interrupted === 1 ? "" : "s"}`);
    this.historyBox.checked = m.get("show_history");
    this.drawList();
    this.drawDetails();
    this.drawHistory();
  }

  drawList() {
    const count = this.order.length;
    this.empty.style.display = this.ready && count === 0 ? "" : "none";
    this.list.style.height = `${Math.min(count * ROW, MAX_HEIGHT)}px`;
    this.spacer.style.height = `${count * ROW}px`;
    const top = this.list.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(count, Math.ceil((top + MAX_HEIGHT) / ROW) + OVERSCAN);
    const selected = this.model.get("selected");
    const wanted = new Set();
    for (let index = first; index < last; index++) {
      const [id, depth] = this.order[index];
      const row = this.rows.get(id);
      if (!row) continue;
      wanted.add(id);
      let el = this.drawn.get(id);
      if (!el) {
        el = makeRow(id);
        this.drawn.set(id, el);
        this.spacer.append(el);
      }
      el.style.top = `${index * ROW}px`;
      el.classList.toggle("ipyjobs-selected", id === selected);
      updateRow(el, row, depth);
    }
    for (const [id, el] of this.drawn) {
      if (!wanted.has(id)) {
        el.remove();
        this.drawn.delete(id);
      }
    }
  }

  drawDetails() {
    const d = this.details;
    const box = this.detailsEl;
    if (!d || d.id !== this.model.get("selected")) {
      box.style.display = "none";
      box.replaceChildren();
      return;
    }
    const key = JSON.stringify(d);
    if (box._last === key && box.style.display !== "none") return;
    box._last = key;
    box.style.display = "";
    const head = node("div", "ipyjobs-details-head");
    const close = node("button", "ipyjobs-details-close", "×");
    close.type = "button";
    close.title = "Close the details";
    head.append(node("b", "", d.title), ` ${d.kind} · ${d.status} · ${d.id} `, close);
    const parts = [head];
    if (d.error) parts.push(node("div", "ipyjobs-error", d.error));
    const section = (title, lines, cls) => {
      if (!lines.length) return;
      parts.push(node("div", "ipyjobs-section", title));
      parts.push(node("pre", cls, lines.join("\n")));
    };
    section("Warnings", d.warnings, "ipyjobs-warnings");
    const more = d.error_count > d.item_errors.length ? [`… and ${d.error_count - d.item_errors.length} more`] : [];
    section(`Item errors (${d.error_count})`, [...d.item_errors.map(([item, why]) => `${item}: ${why}`), ...more], "ipyjobs-item-errors");
    section("Output", d.output, "ipyjobs-output");
    section("Timings", d.timings, "ipyjobs-timings");
    section("Log", d.log, "ipyjobs-log");
    box.replaceChildren(...parts);
  }

  drawHistory() {
    const shown = this.model.get("show_history");
    this.historyEl.style.display = shown ? "" : "none";
    if (!shown) return;
    if (this.stateSelect.value !== this.model.get("history_state")) this.stateSelect.value = this.model.get("history_state");
    if (document.activeElement !== this.limitInput) this.limitInput.value = String(this.model.get("history_limit"));
    const key = JSON.stringify(this.history) + this.model.get("selected");
    if (this.historyList._last === key) return;
    this.historyList._last = key;
    const rows = this.history.map(([id, row]) => {
      const el = makeRow(id);
      el.classList.add("ipyjobs-static");
      el.classList.toggle("ipyjobs-selected", id === this.model.get("selected"));
      updateRow(el, row, 0);
      return el;
    });
    if (!rows.length) rows.push(node("div", "ipyjobs-empty", "No earlier jobs."));
    this.historyList.replaceChildren(...rows);
  }

  dispose() {
    this.model.off("msg:custom", this.onMessage);
    this.model.off("change", this.onChange);
  }
}

function render({ model, el }) {
  const view = new PanelView(model, el);
  return () => view.dispose();
}

export default { render };
