// Form helpers shared by the administration pages: inputs bound to names, the server's
// validation errors shown next to the form, confirmation and lists of names to pick from.
import { el, fmtTime } from "./ui.js";

// A labelled row of a .form-grid: [label, control]. `hint` is a muted line under the control.
export function row(label, control, hint) {
  const id = control.id || `a-${Math.random().toString(36).slice(2, 9)}`;
  const target = control.matches("input,select,textarea") ? control : control.querySelector("input,select,textarea");
  if (target && !target.id) target.id = id;
  const cell = hint ? el("div.field", control, el("small.muted", hint)) : control;
  return [el("label", { for: target ? target.id : undefined }, label), cell];
}

export function input(name, value, attrs = {}) {
  return el("input", { name, value: value ?? "", ...attrs });
}

export function numberInput(name, value, attrs = {}) {
  return el("input", { name, type: "number", step: "any", value: value ?? "", ...attrs });
}

export function checkbox(name, checked, label) {
  const box = el("input", { name, type: "checkbox", checked: !!checked });
  return label ? el("label.check", box, label) : box;
}

// options: strings or {value, label}; `value` selects one.
export function select(name, options, value, attrs = {}) {
  const s = el("select", { name, ...attrs },
    options.map((o) => el("option", { value: o.value ?? o }, o.label ?? o)));
  if (value !== undefined && value !== null) s.value = String(value);
  return s;
}

// A scrollable list of checkboxes; `.values()` gives the ticked names in the given order.
export function checklist(name, names, chosen = [], { empty = "none" } = {}) {
  const set = new Set(chosen);
  // Names chosen before but no longer known (a removed camera) stay visible and ticked.
  const all = [...names, ...chosen.filter((n) => !names.includes(n))];
  const box = el("div.checklist", { dataset: { name } },
    all.length ? all.map((n) => el("label.check", el("input", { type: "checkbox", value: n, checked: set.has(n) }), n)) : el("span.muted", empty));
  box.values = () => [...box.querySelectorAll("input:checked")].map((i) => i.value);
  return box;
}

// The value of a form control by name: trimmed text, a number or null for an empty number
// field, a boolean for a checkbox.
export function value(form, name) {
  const c = form.elements.namedItem(name);
  if (!c) return undefined;
  if (c.type === "checkbox") return c.checked;
  if (c.type === "number") return c.value.trim() === "" ? null : Number(c.value);
  return c.value.trim();
}

// Comma- or line-separated names as a list.
export function splitList(text) {
  return String(text || "").split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
}

// The box where a form shows the server's answer; `show(error)` fills it, `clear()` empties it.
export function errorBox() {
  const box = el("div.form-errors", { role: "alert", hidden: true });
  box.show = (error, form) => showError(box, error, form);
  box.clear = () => {
    box.hidden = true;
    box.replaceChildren();
  };
  return box;
}

// The problems of an API error as lines "where: what". FastAPI's 422 lists {loc, msg}; the
// station's configuration errors are {message, problems: ["the change: rules[2] (x).y: ..."]}.
export function problems(error) {
  const d = error && error.detail;
  if (Array.isArray(d)) {
    return d.map((p) => {
      const loc = (p.loc || []).filter((x) => x !== "body");
      return { path: loc.join("."), message: p.msg || String(p) };
    });
  }
  if (d && typeof d === "object" && Array.isArray(d.problems)) {
    return d.problems.map((text) => {
      const plain = String(text).replace(/^the change(?::\d+)?: /, "");
      // "cameras[9] (name).main_url: message": the path is up to the first ": " after it.
      const m = /^([\w.[\]() -]*?[\w\])]): (.*)$/s.exec(plain);
      return m ? { path: m[1], message: m[2] } : { path: "", message: plain };
    });
  }
  if (typeof d === "string" && d) return [{ path: "", message: d }];
  return [{ path: "", message: (error && error.message) || String(error) }];
}

function showError(box, error, form) {
  const list = problems(error);
  // Checks made here before sending have no status: only the station's answers are "refused".
  const heading = error && error.status ? `The station refused this (${error.status})` : "Not sent";
  box.replaceChildren(
    el("strong", `${heading}:`),
    el("ul", list.map((p) => el("li", p.path ? [el("code", p.path), ": "] : null, p.message))),
  );
  box.hidden = false;
  if (form) markInvalid(form, list);
  box.scrollIntoView({ block: "nearest" });
}

// Marks the control each problem's path leads to: "actions[1].url" is the control named url in
// the second item of the element with data-list="actions" (items carry data-item); the deepest
// control found along the path is marked.
export function markInvalid(form, list) {
  for (const c of form.querySelectorAll(".invalid")) c.classList.remove("invalid");
  for (const p of list) {
    let scope = form;
    let target = null;
    // "rules[5] (night-alarm).trigger.kind": the parenthesised name is not a key.
    for (const [, key, index] of p.path.replace(/\([^)]*\)/g, "").matchAll(/([A-Za-z_]\w*)(?:\[(\d+)\])?/g)) {
      const named = scope.querySelector(`[name="${CSS.escape(key)}"], [data-name="${CSS.escape(key)}"]`);
      if (named) target = named;
      const items = index !== undefined && scope.querySelector(`[data-list="${CSS.escape(key)}"]`);
      if (items) {
        const item = items.querySelectorAll(":scope > [data-item]")[Number(index)];
        if (item) scope = target = item;
      }
    }
    if (target && target !== form) target.classList.add("invalid");
  }
}

// A modal question; resolves true when confirmed.
export function confirmDialog(title, text, { ok = "OK", danger = false } = {}) {
  return new Promise((resolve) => {
    const dlg = el("dialog.modal.confirm",
      el("form.dialog-form", { method: "dialog" },
        el("h2", title),
        text ? el("p", text) : null,
        el("div.buttons",
          el("button", { type: "submit", value: "cancel" }, "Cancel"),
          el(danger ? "button.danger" : "button.primary", { type: "submit", value: "ok" }, ok))));
    dlg.addEventListener("close", () => {
      dlg.remove();
      resolve(dlg.returnValue === "ok");
    });
    document.body.append(dlg);
    dlg.showModal();
    dlg.querySelector("button[value=ok]").focus();
  });
}

// Runs a save: disables the button while it runs, clears then fills the error box.
export async function saving(button, box, form, fn) {
  button.disabled = true;
  box.clear();
  if (form) markInvalid(form, []);
  try {
    return await fn();
  } catch (e) {
    box.show(e, form);
    return undefined;
  } finally {
    button.disabled = false;
  }
}

export const fmtWhen = (us) => (us ? fmtTime(us) : "—");

// 1.5 MB/s style rates and plain numbers for the tables.
export function fmtRate(bitsPerSecond) {
  if (!bitsPerSecond) return "0";
  const u = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s"];
  let i = 0;
  let v = bitsPerSecond;
  while (v >= 1000 && i < u.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(i ? 1 : 0)} ${u[i]}`;
}

export function fmtNumber(n, digits = 0) {
  return n === null || n === undefined || Number.isNaN(n) ? "—" : Number(n).toFixed(digits);
}

// Names of the permission lists: "*" is everything.
export function fmtNames(list, everything = "all") {
  if (!list || !list.length) return "none";
  if (list.includes("*")) return everything;
  return list.length > 4 ? `${list.slice(0, 4).join(", ")} +${list.length - 4}` : list.join(", ");
}
