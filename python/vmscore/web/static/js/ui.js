// Small DOM helpers shared by the pages: element building, time formatting, notices, dialogs.

// el("div.tile#id", {attrs, on: {click: fn}, dataset: {...}}, ...children)
export function el(spec, attrs, ...children) {
  const m = /^([a-z0-9-]+)?((?:[.#][\w-]+)*)$/i.exec(spec) || [null, spec, ""];
  const node = document.createElement(m[1] || "div");
  for (const part of (m[2] || "").match(/[.#][\w-]+/g) || []) {
    if (part[0] === ".") node.classList.add(part.slice(1));
    else node.id = part.slice(1);
  }
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style" && typeof v === "object") Object.assign(node.style, v);
    else if (k === "text") node.textContent = v;
    else if (k in node && typeof v !== "string") node[k] = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

// Local date and time of a microsecond UTC timestamp: 2026-11-27 21:04:05.
export function fmtTime(us, { date = true, ms = false } = {}) {
  if (!us) return "";
  const d = new Date(us / 1000);
  const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const f = ms ? `.${pad(d.getMilliseconds(), 3)}` : "";
  return date ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${t}${f}` : t + f;
}

// A value for <input type="datetime-local"> and back.
export function toLocalInput(us) {
  const d = new Date(us / 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
export function fromLocalInput(v) {
  return new Date(v).getTime() * 1000;
}

export function fmtDuration(us) {
  const s = Math.round(us / 1e6);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function fmtBytes(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

// A short notice at the bottom right; kind: info, ok, error.
export function notify(text, kind = "info") {
  let box = document.getElementById("notices");
  if (!box) {
    box = el("div#notices", { role: "status", "aria-live": "polite" });
    document.body.append(box);
  }
  const n = el(`div.notice.${kind}`, text);
  box.append(n);
  setTimeout(() => n.remove(), kind === "error" ? 8000 : 4000);
}

// Runs an async action and reports its failure as a notice; returns its result or undefined.
export async function attempt(fn, what) {
  try {
    return await fn();
  } catch (e) {
    notify(`${what}: ${e.message}`, "error");
    return undefined;
  }
}

// A modal dialog with a form; resolves with the form's values (FormData as an object) or null.
export function formDialog(title, fields, { submit = "OK" } = {}) {
  return new Promise((resolve) => {
    const form = el("form.dialog-form", { method: "dialog" });
    form.append(el("h2", title));
    for (const f of fields) {
      const id = `f-${f.name}`;
      let input;
      if (f.type === "select") {
        input = el("select", { id, name: f.name }, f.options.map((o) => el("option", { value: o.value ?? o, selected: (o.value ?? o) === f.value }, o.label ?? o)));
      } else if (f.type === "textarea") {
        input = el("textarea", { id, name: f.name, rows: f.rows || 4, text: f.value ?? "" });
      } else {
        input = el("input", { id, name: f.name, type: f.type || "text", value: f.value ?? "", required: f.required, placeholder: f.placeholder || "" });
      }
      form.append(el("label", { for: id }, f.label), input);
    }
    const dlg = el("dialog.modal", form);
    form.append(
      el("div.buttons",
        el("button", { type: "button", on: { click: () => dlg.close("cancel") } }, "Cancel"),
        el("button.primary", { type: "submit", value: "ok" }, submit)),
    );
    dlg.addEventListener("close", () => {
      const ok = dlg.returnValue === "ok";
      const values = ok ? Object.fromEntries(new FormData(form).entries()) : null;
      dlg.remove();
      resolve(values);
    });
    document.body.append(dlg);
    dlg.showModal();
    const first = form.querySelector("input,select,textarea");
    if (first) first.focus();
  });
}

