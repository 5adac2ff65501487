// Administration: cameras, zones, rules and time profiles, users, health. Routes:
// #/admin (cameras), #/admin/cameras/{name}, #/admin/zones/{camera}, #/admin/rules,
// #/admin/users, #/admin/health. Each tab is a module with the pages' mount() contract.
import { el } from "./ui.js";

const TABS = [
  { id: "cameras", label: "Cameras", role: "admin", load: () => import("./admin_cameras.js") },
  { id: "zones", label: "Zones", role: "admin", load: () => import("./admin_zones.js") },
  { id: "rules", label: "Rules & time profiles", role: "admin", load: () => import("./admin_rules.js") },
  { id: "users", label: "Users", role: "admin", load: () => import("./admin_users.js") },
  // The health report is every user's (the API leaves storage out for non-admins).
  { id: "health", label: "Health", role: "operator", load: () => import("./admin_health.js") },
];

export async function mount(container, params, ctx) {
  const [tabId = "cameras", ...rest] = params;
  const tab = TABS.find((t) => t.id === tabId) || TABS[0];
  const allowed = TABS.filter((t) => ctx.can(t.role));
  const body = el("div.admin-body");
  container.append(
    el("div.admin",
      allowed.length ? el("nav.tabs", { "aria-label": "Administration" },
        allowed.map((t) => el("a", { href: `#/admin/${t.id}`, class: t === tab ? "active" : null, "aria-current": t === tab ? "page" : null }, t.label))) : null,
      body),
  );
  if (!ctx.can(tab.role)) {
    body.append(denied(tab, allowed));
    return () => {};
  }
  const mod = await tab.load();
  const unmount = await mod.mount(body, rest, ctx);
  return () => {
    if (unmount) unmount();
  };
}

function denied(tab, allowed) {
  return el("div.panel.denied", { role: "alert" },
    el("h2", `${tab.label}: requires the ${tab.role} role`),
    el("p", `Your account may not change the station's ${tab.label.toLowerCase()}. Ask an administrator.`),
    allowed.length ? el("p", "You may see: ", allowed.map((t, i) => [i ? ", " : "", el("a", { href: `#/admin/${t.id}` }, t.label)])) : null);
}
