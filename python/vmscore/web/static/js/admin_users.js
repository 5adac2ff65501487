// Administration, users: who may log in, with which role and which cameras and sites; create,
// edit, disable, reset a password, delete. The last login comes from the audit log.
import { del, get, patch, post } from "./api.js";
import { attempt, el, notify } from "./ui.js";
import {
  checklist, confirmDialog, errorBox, fmtNames, fmtWhen, input, row, saving, select, value,
} from "./admin_forms.js";

const ROLES = [
  { value: "viewer", label: "Viewer: watches live and recorded video" },
  { value: "operator", label: "Operator: also handles alarms, bookmarks, exports" },
  { value: "admin", label: "Admin: also changes the station" },
];
const MIN_PASSWORD = 8;
const LOGINS_SCANNED = 1000;

export async function mount(container, params, ctx) {
  const state = { users: [], cameras: [], sites: [], lastLogin: new Map(), editing: null };
  const table = el("table.list.users-table");
  const side = el("aside.side.admin-side", { hidden: true });
  container.append(
    el("div.split",
      el("div.main",
        el("div.toolbar",
          el("button.primary", { dataset: { action: "new-user" }, on: { click: () => openUser(null) } }, "New user"),
          el("button", { on: { click: () => refresh() } }, "Refresh")),
        table),
      side),
  );

  async function load() {
    const [users, cameras, sites, logins] = await Promise.all([
      get("/api/users"),
      get("/api/cameras"),
      get("/api/sites"),
      get(`/api/audit?action=login&limit=${LOGINS_SCANNED}`).catch(() => []),
    ]);
    Object.assign(state, { users: users.sort((a, b) => a.name.localeCompare(b.name)), cameras, sites });
    // The audit log is newest first: the first successful login of each user is the last one.
    state.lastLogin = new Map();
    for (const e of logins) if (e.ok && !state.lastLogin.has(e.user)) state.lastLogin.set(e.user, e.at_us);
  }

  async function refresh() {
    await attempt(load, "Loading the users");
    render();
  }

  function render() {
    table.replaceChildren(
      el("thead", el("tr", ["User", "Role", "Cameras", "Sites", "State", "Last login", "Password changed", "Source"].map((h) => el("th", h)))),
      el("tbody", state.users.map((u) => el("tr", {
        class: state.editing === u.name ? "selected" : null,
        dataset: { user: u.name },
        on: { click: () => openUser(u.name) },
      },
      el("td", el("strong", u.name), u.name === ctx.me.user ? el("span.muted", " (you)") : null, u.display_name ? el("div.muted", u.display_name) : null),
      el("td", u.role),
      el("td", { title: u.cameras.join(", ") }, fmtNames(u.cameras, "all cameras")),
      el("td", { title: u.sites.join(", ") }, fmtNames(u.sites, "all sites")),
      el("td", u.disabled ? el("span.badge.offline", "disabled") : el("span.badge.on", "active")),
      el("td", lastLogin(u) ? fmtWhen(lastLogin(u)) : el("span.muted", "—")),
      el("td", fmtWhen(u.password_changed_us)),
      el("td", { title: u.source === "config" ? "declared in the configuration file: a restart applies the file again" : "created here" }, u.source)))),
    );
  }

  // A login before the user was created was an earlier user's of the same name.
  function lastLogin(u) {
    const at = state.lastLogin.get(u.name);
    return at && at >= u.created_us ? at : null;
  }

  function close() {
    state.editing = null;
    side.hidden = true;
    side.replaceChildren();
    render();
  }

  function openUser(name) {
    const user = name ? state.users.find((u) => u.name === name) : null;
    if (name && !user) return notify(`No user named ${name}`, "error");
    state.editing = name;
    side.hidden = false;
    side.replaceChildren(userForm(user));
    render();
    side.querySelector("input:not([readonly])").focus();
  }

  function userForm(user) {
    const adding = !user;
    const errors = errorBox();
    const everything = !user || user.cameras.includes("*") || user.sites.includes("*");
    const cameraNames = state.cameras.map((c) => c.name).sort();
    const siteNames = state.sites.map((s) => s.name).sort();
    const cams = checklist("cameras", cameraNames, user && !everything ? user.cameras : [], { empty: "no cameras" });
    const sites = checklist("sites", siteNames, user && !everything ? user.sites : [], { empty: "no sites" });
    const scope = el("div.permission-lists", { hidden: everything },
      el("div.form-grid",
        row("Sites", sites, "every camera of these sites, now and later"),
        row("Cameras", cams, "and these cameras")));
    const allRadio = el("input", { type: "radio", name: "scope", value: "all", checked: everything, on: { change: () => { scope.hidden = true; } } });
    const someRadio = el("input", { type: "radio", name: "scope", value: "some", checked: !everything, on: { change: () => { scope.hidden = false; } } });
    const self = user && user.name === ctx.me.user;
    const form = el("form.user-form", { novalidate: true, on: { submit: (ev) => { ev.preventDefault(); save(); } } },
      el("h2", adding ? "New user" : `User ${user.name}`),
      el("div.form-grid",
        row("Name", input("name", user ? user.name : "", { required: true, readOnly: !adding, maxlength: 64, autocomplete: "off" }), adding ? "letters, digits, _ . @ -" : null),
        row("Display name", input("display_name", user ? user.display_name : "", { maxlength: 128, autocomplete: "off" })),
        row("Role", select("role", ROLES, user ? user.role : "operator")),
        adding ? row("Password", input("password", "", { type: "password", autocomplete: "new-password", minlength: MIN_PASSWORD, required: true }), `at least ${MIN_PASSWORD} characters`) : null,
        adding ? row("Repeat password", input("password2", "", { type: "password", autocomplete: "new-password" })) : null),
      el("fieldset", { dataset: { name: "permissions" } }, el("legend", "May see"),
        el("label.check", allRadio, "All cameras and sites"),
        el("label.check", someRadio, "Only the chosen sites and cameras"),
        scope),
      errors,
      el("div.btn-row",
        el("button.primary", { type: "submit", dataset: { action: "save-user" } }, adding ? "Create user" : "Save"),
        user ? el("button", { type: "button", dataset: { action: "reset-password" }, on: { click: resetPassword } }, "Reset password") : null,
        user ? el("button", { type: "button", dataset: { action: "toggle-user" }, disabled: self, title: self ? "You cannot disable yourself" : null, on: { click: toggleDisabled } }, user.disabled ? "Enable" : "Disable") : null,
        el("span.spacer"),
        user ? el("button.danger", { type: "button", dataset: { action: "delete-user" }, disabled: self, title: self ? "You cannot delete yourself" : null, on: { click: remove } }, "Delete") : null,
        el("button", { type: "button", on: { click: close } }, "Close")),
      user && user.source === "config" ? el("p.muted", "This user is declared in the configuration file; a restart of the station applies the file's settings again.") : null);

    function permissions() {
      if (allRadio.checked) return { cameras: ["*"], sites: ["*"] };
      return { cameras: cams.values(), sites: sites.values() };
    }

    async function save() {
      const button = form.querySelector("[data-action=save-user]");
      const password = adding ? form.elements.namedItem("password").value : "";
      if (adding && password.length < MIN_PASSWORD) {
        errors.show({ detail: [{ loc: ["password"], msg: `A password has at least ${MIN_PASSWORD} characters` }] }, form);
        return;
      }
      if (adding && password !== form.elements.namedItem("password2").value) {
        errors.show({ detail: [{ loc: ["password2"], msg: "The passwords differ" }] }, form);
        return;
      }
      const perms = permissions();
      if (!allRadio.checked && !perms.cameras.length && !perms.sites.length) {
        errors.show({ detail: [{ loc: ["permissions"], msg: "Choose at least one site or camera (or all)" }] }, form);
        return;
      }
      await saving(button, errors, form, async () => {
        if (adding) {
          const body = { name: value(form, "name"), password, role: value(form, "role"), display_name: value(form, "display_name"), ...perms };
          await post("/api/users", body);
          notify(`User ${body.name} created`, "ok");
          await refresh();
          openUser(body.name);
          return;
        }
        await patch(`/api/users/${encodeURIComponent(user.name)}`, { role: value(form, "role"), display_name: value(form, "display_name"), ...perms });
        notify(`User ${user.name} saved`, "ok");
        await refresh();
        openUser(user.name);
      });
    }

    async function resetPassword() {
      const dialog = await passwordDialog(user.name);
      if (!dialog) return;
      await saving(form.querySelector("[data-action=reset-password]"), errors, null, async () => {
        await patch(`/api/users/${encodeURIComponent(user.name)}`, { password: dialog });
        notify(`Password of ${user.name} changed; their sessions ended`, "ok");
        await refresh();
      });
    }

    async function toggleDisabled() {
      const disable = !user.disabled;
      if (disable && !(await confirmDialog(`Disable ${user.name}?`, "They are logged out and cannot log in until enabled again.", { ok: "Disable", danger: true }))) return;
      await saving(form.querySelector("[data-action=toggle-user]"), errors, null, async () => {
        await patch(`/api/users/${encodeURIComponent(user.name)}`, { disabled: disable });
        notify(`${user.name} ${disable ? "disabled" : "enabled"}`, "ok");
        await refresh();
        openUser(user.name);
      });
    }

    async function remove() {
      if (!(await confirmDialog(`Delete the user ${user.name}?`, "Their sessions and API tokens end. The audit log keeps their actions.", { ok: "Delete", danger: true }))) return;
      await saving(form.querySelector("[data-action=delete-user]"), errors, null, async () => {
        await del(`/api/users/${encodeURIComponent(user.name)}`);
        notify(`User ${user.name} deleted`, "ok");
        close();
        await refresh();
      });
    }

    return form;
  }

  await refresh();
  if (params[0]) openUser(params[0]);
  return () => {};
}

// Asks for a new password twice; resolves with it, or null when cancelled.
function passwordDialog(name) {
  return new Promise((resolve) => {
    const first = el("input", { type: "password", name: "new", autocomplete: "new-password", minlength: MIN_PASSWORD, required: true, id: "new-password" });
    const second = el("input", { type: "password", name: "again", autocomplete: "new-password", required: true, id: "new-password-again" });
    const problem = el("p.error", { role: "alert" });
    const form = el("form.dialog-form", { method: "dialog" },
      el("h2", `New password for ${name}`),
      el("label", { for: "new-password" }, `Password (at least ${MIN_PASSWORD} characters)`), first,
      el("label", { for: "new-password-again" }, "Repeat it"), second,
      problem,
      el("div.buttons",
        el("button", { type: "button", on: { click: () => dlg.close("cancel") } }, "Cancel"),
        el("button.primary", { type: "submit", value: "ok" }, "Set password")));
    const dlg = el("dialog.modal", form);
    form.addEventListener("submit", (ev) => {
      if (first.value.length < MIN_PASSWORD || first.value !== second.value) {
        ev.preventDefault();
        problem.textContent = first.value.length < MIN_PASSWORD ? `At least ${MIN_PASSWORD} characters.` : "The passwords differ.";
      }
    });
    dlg.addEventListener("close", () => {
      const ok = dlg.returnValue === "ok";
      dlg.remove();
      resolve(ok ? first.value : null);
    });
    document.body.append(dlg);
    dlg.showModal();
    first.focus();
  });
}
