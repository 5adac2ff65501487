// The operator UI's shell: login, navigation between pages (hash routes), the shared event
// stream, alarm sound and keyboard shortcuts. Pages are ES modules exporting
// `mount(container, params, ctx)`, which returns a function that unmounts them.
import { alarmKey, api, events, get, setCsrf } from "./api.js";
import { el, notify } from "./ui.js";
import { AlarmSound } from "./sound.js";

const pages = {
  overview: () => import("./overview.js"),
  alarms: () => import("./alarms.js"),
  playback: () => import("./playback.js"),
  admin: () => import("./admin.js"),
};

export const ctx = {
  me: null,
  sound: new AlarmSound(),
  openAlarms: new Map(), // alarmKey -> alarm (open ones the user may see, the sites' too)
  central: false, // this station is a central station: the pages show its sites too
  // role at least: viewer < operator < admin
  can(role) {
    const order = { viewer: 0, operator: 1, admin: 2 };
    return ctx.me && order[ctx.me.role] >= order[role];
  },
  navigate(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
};
window.vms = ctx; // for the console and the tests

let unmount = null;
let routing = 0;

async function route() {
  const token = ++routing;
  const [name = "overview", ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const page = pages[name] ? name : "overview";
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === page);
  const mod = await pages[page]();
  if (token !== routing) return;
  if (unmount) {
    try {
      unmount();
    } catch (e) {
      console.error(e);
    }
  }
  const main = document.getElementById("page");
  main.replaceChildren();
  main.className = `page-${page}`;
  unmount = (await mod.mount(main, rest.map(decodeURIComponent), ctx)) || null;
}

async function loadOpenAlarms() {
  const q = "state=new&state=in_progress&state=on_hold&limit=1000";
  const [local, remote] = await Promise.all([
    get(`/api/alarms?${q}`),
    ctx.central ? get(`/api/central/alarms?${q}`).catch(() => []) : [],
  ]);
  ctx.openAlarms = new Map([...local, ...remote].map((a) => [alarmKey(a), a]));
  updateAlarmCount();
}

function updateAlarmCount() {
  const n = [...ctx.openAlarms.values()].filter((a) => a.state === "new").length;
  const badge = document.getElementById("alarm-count");
  badge.textContent = String(n);
  badge.hidden = n === 0;
}

function onAlarm(msg) {
  const a = msg.alarm;
  if (!a) return;
  const key = alarmKey(a);
  const wasKnown = ctx.openAlarms.has(key);
  if (a.state === "closed") ctx.openAlarms.delete(key);
  else ctx.openAlarms.set(key, a);
  updateAlarmCount();
  if (msg.type === "new" || (!wasKnown && a.state === "new")) {
    ctx.sound.play(a.sound, a.priority_level);
    notify(`Alarm: ${a.title}`, "error");
  }
}

async function start(me) {
  ctx.me = me;
  setCsrf(me.csrf_token);
  document.getElementById("login").hidden = true;
  document.getElementById("app").hidden = false;
  document.getElementById("who").textContent = `${me.display_name || me.user} (${me.role})`;
  for (const a of document.querySelectorAll("#nav a[data-role]")) a.hidden = !ctx.can(a.dataset.role);
  // Only a central station answers this (404 elsewhere).
  ctx.central = await get("/api/central/sites").then(() => true, () => false);
  events.on("alarm", onAlarm);
  events.on("remote_alarm", onAlarm);
  const link = document.getElementById("link-state");
  events.on("open", () => {
    link.textContent = "live";
    link.className = "link-state ok";
    loadOpenAlarms().catch(() => {});
  });
  events.on("error", () => {
    link.textContent = "reconnecting";
    link.className = "link-state bad";
  });
  events.start();
  await loadOpenAlarms().catch(() => {});
  window.addEventListener("hashchange", route);
  await route();
}

function showLogin(message = "") {
  events.stop();
  document.getElementById("app").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message;
  document.getElementById("login-user").focus();
}

document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    const me = await api("POST", "/api/auth/login", { user: f.get("user"), password: f.get("password") });
    ev.target.reset();
    await start(me);
  } catch (e) {
    document.getElementById("login-error").textContent = e.status === 429 ? e.message : "Wrong user or password.";
  }
});

document.getElementById("logout").addEventListener("click", async () => {
  await api("POST", "/api/auth/logout").catch(() => {});
  location.hash = "";
  location.reload();
});

document.getElementById("sound-toggle").addEventListener("click", (ev) => toggleSound(ev.currentTarget));
function toggleSound(button = document.getElementById("sound-toggle")) {
  ctx.sound.enabled = !ctx.sound.enabled;
  button.textContent = ctx.sound.enabled ? "Sound on" : "Sound off";
  button.setAttribute("aria-pressed", String(ctx.sound.enabled));
}

window.addEventListener("vms:logged-out", () => showLogin("Your session ended: log in again."));

// Global shortcuts; pages add their own (and list them with registerHelp).
const HELP = [
  ["g", "Overview"],
  ["a", "Alarms"],
  ["p", "Playback"],
  ["m", "Alarm sound on/off"],
  ["?", "This help"],
  ["Esc", "Close / back"],
];
export const pageHelp = [];

document.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement) return;
  if (document.querySelector("dialog[open]")) return;
  const help = document.getElementById("help");
  if (ev.key === "?") {
    help.replaceChildren(el("h2", "Keyboard"), el("table", [...HELP, ...pageHelp].map(([k, d]) => el("tr", el("td", el("kbd", k)), el("td", d)))));
    help.hidden = !help.hidden;
  } else if (ev.key === "Escape" && !help.hidden) {
    help.hidden = true;
  } else if (ev.key === "g") ctx.navigate("#/overview");
  else if (ev.key === "a") ctx.navigate("#/alarms");
  else if (ev.key === "p") ctx.navigate("#/playback");
  else if (ev.key === "m") toggleSound();
  else return;
  ev.preventDefault();
});

(async () => {
  try {
    const me = await get("/api/auth/me");
    await start(me);
  } catch {
    showLogin();
  }
})();
