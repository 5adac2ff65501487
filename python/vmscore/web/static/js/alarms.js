// The alarm manager: a live list of alarms (kept current by the event stream) with filters and
// sorting, and beside it the chosen alarm: snapshot, recorded clip, its cameras live, history and
// the operator's actions (acknowledge, assign, hold, resume, close, reopen, comment, priority).
// #/alarms/ID opens an alarm directly. At a central station the sites' alarms are in the list
// too (#/alarms/@STATION/ID): their actions go to the site through the central station, and
// their media come through it.
import { alarmKey, ApiError, events, get, parseRef, post, remoteRef, siteCameras, stationApi } from "./api.js";
import { pageHelp } from "./app.js";
import { LivePlayer } from "./live.js";
import { attempt, el, fmtDuration, fmtTime, formDialog, notify } from "./ui.js";

const OPEN_STATES = ["new", "in_progress", "on_hold"];
const STATE_LABEL = { new: "New", in_progress: "In progress", on_hold: "On hold", closed: "Closed" };
// Used when the station does not offer /api/alarm-settings.
const FALLBACK_SETTINGS = {
  priorities: [
    { name: "critical", level: 1, colour: "#d32f2f" },
    { name: "high", level: 2, colour: "#f57c00" },
    { name: "medium", level: 3, colour: "#fbc02d" },
    { name: "low", level: 4, colour: "#1976d2" },
  ],
  categories: ["False alarm", "Intrusion", "Fire", "Vandalism", "Technical", "Test"],
};
const LIST_LIMIT = 500;
const CLIP_GUESS_US = 30e6; // the clip shown while the recording has no end yet
const CLIP_RETRY_MS = 10000;
const CLIP_RETRIES = 6;
const MAX_LIVE = 4; // live players in the detail (the alarm's camera first)
const PLAYBACK_PRE_ROLL_US = 5e6;
const AGE_REFRESH_MS = 10000;

const HELP = [
  ["j / ↓, k / ↑", "Next / previous alarm"],
  ["Enter", "Open the selected alarm"],
  ["Esc", "Close the alarm"],
  ["c", "Acknowledge"],
  ["t", "Assign to me (take)"],
  ["h", "Put on hold"],
  ["r", "Resume"],
  ["x", "Close the alarm (comment, category)"],
  ["o", "Reopen"],
  ["n", "Comment"],
  ["v", "View in playback"],
  ["/", "Search"],
];

// Which actions an alarm's state allows (the alarm manager refuses the others); `remote`: a
// central station sends it to a site (see web/central.py).
const ACTIONS = [
  { action: "acknowledge", label: "Acknowledge", key: "c", when: (a) => a.state === "new", primary: true, remote: true },
  { action: "assign-me", label: "Assign to me", key: "t", when: (a, me) => a.state !== "closed" && !owns(a, me), remote: true },
  { action: "assign", label: "Assign…", when: (a) => a.state !== "closed", remote: true },
  { action: "hold", label: "Put on hold…", key: "h", when: (a) => a.state === "new" || a.state === "in_progress", remote: true },
  { action: "resume", label: "Resume", key: "r", when: (a) => a.state === "on_hold" },
  { action: "close", label: "Close…", key: "x", when: (a) => a.state !== "closed", danger: true, remote: true },
  { action: "reopen", label: "Reopen…", key: "o", when: (a) => a.state === "closed" },
  { action: "comment", label: "Comment…", key: "n", when: () => true, remote: true },
  { action: "priority", label: "Priority…", when: (a) => a.state !== "closed" },
];

// Whether the action may be taken on the alarm now (from here: a site's alarm by `remote` only).
function possible(spec, a, me) {
  return spec.when(a, me) && (!a.station || spec.remote);
}

// Whether the user owns the alarm. A site names an operator at a central station
// "USER@CENTRAL" (after "mqtt:" when the command came over its broker).
function owns(a, user) {
  if (!a.station) return a.owner === user;
  return !!a.owner && a.owner.replace(/^mqtt:/, "").split("@")[0] === user;
}

// A site's camera as the camera filter names it.
function cameraKey(a) {
  return a.station && a.camera ? `${a.station}/${a.camera}` : a.camera;
}

// The station (null: this one) and id of an alarm's key (see alarmKey).
function splitKey(key) {
  const i = key.indexOf("/");
  return i < 0 ? { station: null, id: key } : { station: key.slice(0, i), id: key.slice(i + 1) };
}

export async function mount(container, params, ctx) {
  const me = ctx.me.user;
  const canAct = ctx.can("operator");
  const filters = { state: "open", priority: "", site: "", camera: "", text: "", mine: false, sort: "priority" };
  const state = {
    alarms: new Map(), // alarmKey -> alarm, those the filters match
    order: [], // keys as listed
    selected: null, // key of the highlighted row
    detail: null, // the open alarm: its sections, live players and timers (see openAlarm)
    settings: FALLBACK_SETTINGS,
    sites: new Map(), // name -> display name
    cameras: [],
    loading: 0,
    fresh: new Set(), // keys of alarms raised since the list was drawn (they flash once)
    closed: false, // the page was left
  };
  const timers = [];

  // -- layout -----------------------------------------------------------------------------------

  const filterSelect = (cls, title, options, key) =>
    el(`select.${cls}`, { title, on: { change: (ev) => setFilter(key, ev.target.value) } },
      options.map(([value, label]) => el("option", { value }, label)));
  const stateSelect = filterSelect("f-state", "State", [
    ["open", "Open alarms"], ["new", "New"], ["in_progress", "In progress"], ["on_hold", "On hold"],
    ["closed", "Closed"], ["all", "All states"],
  ], "state");
  const prioritySelect = filterSelect("f-priority", "Priority", [["", "All priorities"]], "priority");
  const siteSelect = filterSelect("f-site", "Site", [["", "All sites"]], "site");
  const cameraSelect = filterSelect("f-camera", "Camera", [["", "All cameras"]], "camera");
  const sortSelect = filterSelect("f-sort", "Sort", [["priority", "Most urgent first"], ["newest", "Newest first"], ["oldest", "Oldest first"]], "sort");
  let textTimer = null;
  const search = el("input.f-text", {
    type: "search", placeholder: "Search title, camera, owner…", title: "Search (/)",
    on: { input: () => { clearTimeout(textTimer); textTimer = setTimeout(() => setFilter("text", search.value.trim()), 300); } },
  });
  const mine = el("input.f-mine", { type: "checkbox", on: { change: () => setFilter("mine", mine.checked) } });
  const countLabel = el("span.muted.alarm-total");
  const tbody = el("tbody");
  const table = el("table.list.alarm-list",
    el("thead", el("tr", ["Priority", "Alarm", "Camera", "Site", "State", "Owner", "Age", "Count"].map((h) => el("th", h)))),
    tbody);
  const empty = el("p.muted.empty-list", { hidden: true }, "No alarms match the filters.");
  const side = el("div.side.alarm-side", el("p.muted.placeholder", "Choose an alarm to see it here."));
  container.append(
    el("div.alarms-page",
      el("div.toolbar", stateSelect, prioritySelect, siteSelect, cameraSelect, search,
        el("label.mine", mine, " Mine"), sortSelect, el("span.spacer"), countLabel),
      el("div.split", el("div.main", table, empty), side)),
  );

  // -- data -------------------------------------------------------------------------------------

  async function loadChoices() {
    const [settings, sites, cameras, remoteSites] = await Promise.all([
      get("/api/alarm-settings").catch(() => FALLBACK_SETTINGS),
      get("/api/sites").catch(() => []),
      get("/api/cameras").catch(() => []),
      ctx.central ? get("/api/central/sites").catch(() => []) : [],
    ]);
    state.settings = settings;
    state.sites = new Map(sites.map((s) => [s.name, s.display_name || s.name]));
    state.cameras = cameras;
    const remoteCameras = siteCameras(remoteSites);
    prioritySelect.append(...settings.priorities.map((p) => el("option", { value: p.name }, capital(p.name))));
    siteSelect.append(...sites.map((s) => el("option", { value: s.name }, s.display_name || s.name)),
      ...remoteSites.filter((s) => !state.sites.has(s.name)).map((s) => el("option", { value: s.name }, s.name)));
    cameraSelect.append(...cameras.map((c) => el("option", { value: c.name }, c.display_name || c.name)),
      ...remoteCameras.map((c) => el("option", { value: `${c.station}/${c.name}` }, `${c.display_name || c.name} (${c.site})`)));
  }

  function states() {
    return filters.state === "open" ? OPEN_STATES : filters.state === "all" ? [] : [filters.state];
  }

  function listQuery() {
    const q = new URLSearchParams({ sort: filters.sort, limit: String(LIST_LIMIT) });
    for (const s of states()) q.append("state", s);
    if (filters.priority) q.set("priority", filters.priority);
    if (filters.site) q.set("site", filters.site);
    if (filters.camera) q.set("camera", filters.camera);
    if (filters.text) q.set("text", filters.text);
    if (filters.mine) q.set("owner", me);
    return `/api/alarms?${q}`;
  }

  // The sites' alarms at a central station: by state and site there, the rest of the filters
  // (matches) here.
  function centralQuery() {
    const q = new URLSearchParams({ limit: String(LIST_LIMIT) });
    for (const s of states()) q.append("state", s);
    if (filters.site) q.set("site", filters.site);
    return `/api/central/alarms?${q}`;
  }

  async function loadList() {
    const token = ++state.loading;
    // A site's camera (STATION/NAME) has no alarms here, one of this station's none at a site.
    const remoteCamera = filters.camera.includes("/");
    const lists = await attempt(() => Promise.all([
      remoteCamera ? [] : get(listQuery()),
      ctx.central && (!filters.camera || remoteCamera) ? get(centralQuery()) : [],
    ]), "Loading the alarms");
    if (!lists || token !== state.loading) return;
    const [local, remote] = lists;
    state.alarms = new Map([...local, ...remote.filter(matches)].map((a) => [alarmKey(a), a]));
    renderList();
  }

  function setFilter(key, value) {
    filters[key] = value;
    loadList();
  }

  // Whether an alarm belongs in the list (the server's filters, applied to live changes).
  function matches(a) {
    const f = filters;
    if (f.state === "open" ? !OPEN_STATES.includes(a.state) : f.state !== "all" && a.state !== f.state) return false;
    if ((f.priority && a.priority !== f.priority) || (f.site && a.site !== f.site) || (f.camera && cameraKey(a) !== f.camera)) return false;
    if (f.mine && !owns(a, me)) return false;
    if (f.text) {
      const hay = [a.title, a.camera, a.site, a.station, a.zone, a.rule, a.category, a.owner].filter(Boolean).join("\n").toLowerCase();
      if (!hay.includes(f.text.toLowerCase())) return false;
    }
    return true;
  }

  function compare(a, b) {
    if (filters.sort === "oldest") return a.created_us - b.created_us || a.id - b.id;
    if (filters.sort === "priority" && a.priority_level !== b.priority_level) return a.priority_level - b.priority_level;
    return b.created_us - a.created_us || b.id - a.id;
  }

  function onAlarmEvent(msg) {
    const a = msg.alarm;
    if (!a) return;
    const key = alarmKey(a);
    const current = latest(key);
    if (current && current.version > a.version) return; // older than what is shown
    const known = state.alarms.has(key);
    if (matches(a)) state.alarms.set(key, a);
    else state.alarms.delete(key);
    if (msg.type === "new") state.fresh.add(key);
    if (known || state.alarms.has(key)) scheduleRender();
    if (state.detail && state.detail.key === key) showAlarm(a);
  }

  // -- the list ---------------------------------------------------------------------------------

  // Changes coming in quickly (a flapping condition re-triggers every second) draw the list once.
  let renderFrame = 0;
  function scheduleRender() {
    if (!renderFrame) renderFrame = requestAnimationFrame(() => {
      renderFrame = 0;
      renderList();
    });
  }

  function renderList() {
    const list = [...state.alarms.values()].sort(compare);
    state.order = list.map(alarmKey);
    tbody.replaceChildren(...list.map((a) => row(a, state.fresh.has(alarmKey(a)))));
    state.fresh.clear();
    empty.hidden = list.length > 0;
    countLabel.textContent = list.length >= LIST_LIMIT ? `first ${LIST_LIMIT} alarms` : `${list.length} alarm${list.length === 1 ? "" : "s"}`;
    markSelected(false);
  }

  function row(a, fresh) {
    const key = alarmKey(a);
    const dataset = { alarmId: a.id, key, ...(a.station ? { station: a.station } : {}) };
    const tr = el(`tr.alarm-${a.state}`, { dataset, on: { click: () => { selectRow(key); openAlarm(key); } } },
      el("td.priority", el("span.prio", { style: { background: a.colour } }), capital(a.priority)),
      el("td.title", a.title),
      el("td", a.camera || "—"),
      el("td.site", siteName(a), a.station ? el("span.muted.station", ` · ${a.station}`) : null),
      el("td", el(`span.badge.state-${a.state}`, STATE_LABEL[a.state] || a.state)),
      el("td", a.owner || ""),
      el("td.age", { title: fmtTime(a.created_us), dataset: { created: a.created_us } }, age(a.created_us)),
      el("td.triggers", String(a.count)));
    tr.style.setProperty("--alarm-colour", a.colour);
    if (fresh) tr.classList.add("fresh");
    return tr;
  }

  function refreshAges() {
    for (const td of tbody.querySelectorAll("td.age")) td.textContent = age(Number(td.dataset.created));
  }

  function siteName(a) {
    return a.site ? state.sites.get(a.site) || a.site : "—";
  }

  function selectRow(key) {
    state.selected = key;
    markSelected(true);
  }

  function markSelected(scroll) {
    for (const tr of tbody.children) {
      const on = tr.dataset.key === state.selected;
      tr.classList.toggle("selected", on);
      if (on && scroll) tr.scrollIntoView({ block: "nearest" });
    }
  }

  function move(step) {
    if (!state.order.length) return;
    const i = state.order.indexOf(state.selected);
    const next = i < 0 ? (step > 0 ? 0 : state.order.length - 1) : Math.min(state.order.length - 1, Math.max(0, i + step));
    selectRow(state.order[next]);
  }

  // -- the detail -------------------------------------------------------------------------------

  let opening = 0;
  async function openAlarm(key) {
    if (state.detail && state.detail.key === key) return;
    const token = ++opening;
    const { station, id } = splitKey(key);
    const url = station ? `/api/central/alarms/${encodeURIComponent(station)}/${id}` : `/api/alarms/${id}`;
    const alarm = state.alarms.get(key) || (await attempt(() => get(url), `Alarm ${key}`));
    if (!alarm || token !== opening || state.closed) return; // another alarm was chosen meanwhile
    closeDetail(false);
    const d = {
      key,
      id: alarm.id,
      station, // the site station of a site's alarm, whose API serves its media and history
      alarm: null,
      head: el("div.alarm-head"),
      actions: el("div.btn-row.alarm-actions"),
      clipBox: el("div.alarm-clip-box"),
      mediaBox: el("div.related"),
      history: el("div.alarm-history"),
      players: [],
      clipKey: null,
      tries: new Map(), // clip range -> failed loads
      snapshotKey: null,
      historyTimer: null,
      retryTimer: null,
    };
    state.detail = d;
    side.replaceChildren(
      el("div.alarm-detail", { dataset: { alarmId: alarm.id, key } }, d.head, d.actions,
        el("h3", "Recording"), d.clipBox,
        el("h3", "Snapshot and live"), d.mediaBox,
        el("h3", "History"), d.history));
    side.scrollTop = 0;
    history.replaceState(null, "", `#/alarms/${remoteRef(station, alarm.id)}`);
    showAlarm(alarm);
    startLive(alarm);
  }

  function closeDetail(updateHash = true) {
    const d = state.detail;
    if (!d) return;
    state.detail = null;
    clearTimeout(d.historyTimer);
    clearTimeout(d.retryTimer);
    for (const p of d.players) p.destroy();
    for (const v of side.querySelectorAll("video")) {
      v.pause();
      v.removeAttribute("src");
      v.load();
    }
    side.replaceChildren(el("p.muted.placeholder", "Choose an alarm to see it here."));
    if (updateHash) history.replaceState(null, "", "#/alarms");
  }

  // Shows the alarm's current state; the clip, snapshot and history follow its changes, the
  // live players stay as they are.
  function showAlarm(a) {
    const d = state.detail;
    if (!d || d.key !== alarmKey(a)) return;
    const changed = !d.alarm || d.alarm.version !== a.version;
    d.alarm = a;
    renderHead(d, a);
    renderActions(d, a);
    renderClip(d, a);
    renderSnapshot(d, a);
    if (changed) {
      clearTimeout(d.historyTimer);
      d.historyTimer = setTimeout(() => loadHistory(d), 200);
    }
  }

  function renderHead(d, a) {
    const fact = (label, value) => (value === null || value === undefined || value === "" ? null : [el("dt", label), el("dd", value)]);
    const ended = a.ended_us ? fmtTime(a.ended_us) : null;
    d.head.replaceChildren(
      el("h2", el("span.prio", { style: { background: a.colour } }), a.title),
      el("div.btn-row",
        el(`span.badge.state-${a.state}`, STATE_LABEL[a.state] || a.state),
        el("span.badge", `${capital(a.priority)} priority`),
        el("span.badge", a.category),
        el("span.muted", `#${a.id}`)),
      el("dl.facts",
        fact("Camera", a.camera),
        fact("Site", a.site ? siteName(a) : null),
        fact("Station", a.station),
        fact("Zone", a.zone),
        fact("Rule", a.rule),
        fact("Owner", a.owner || "nobody"),
        fact("Raised", `${fmtTime(a.created_us)} (${age(a.created_us)} ago)`),
        fact("Triggers", a.count > 1 ? String(a.count) : null),
        fact("Condition ended", ended),
        fact("Closed", a.closed_us ? fmtTime(a.closed_us) : null),
        fact("Related cameras", a.related_cameras.length ? a.related_cameras.join(", ") : null)),
    );
  }

  function renderActions(d, a) {
    const allowed = canAct ? ACTIONS.filter((x) => possible(x, a, me)) : [];
    const buttons = allowed.map((x) =>
      el(`button${x.primary ? ".primary" : ""}${x.danger ? ".danger" : ""}`, {
        dataset: { action: x.action },
        title: x.key ? `${x.label.replace("…", "")} (${x.key})` : x.label.replace("…", ""),
        on: { click: () => act(x.action, d.key) },
      }, x.label));
    if (a.camera) {
      buttons.push(el("button", { dataset: { action: "playback" }, title: "View in playback (v)", on: { click: () => toPlayback(a) } }, "Playback"));
    }
    if (!canAct) buttons.push(el("span.muted", "Operators act on alarms; you may watch them."));
    d.actions.replaceChildren(...buttons);
  }

  // The recorded range: [record_start, record_end), or while it is still being recorded the
  // first 30 s (or up to now).
  function clipRange(a) {
    if (!a.camera || !a.record_start_us) return null;
    if (a.record_end_us) return { start: a.record_start_us, end: a.record_end_us, open: false };
    const guess = Math.max(a.created_us, a.record_start_us) + CLIP_GUESS_US;
    return { start: a.record_start_us, end: Math.min(guess, Date.now() * 1000), open: true };
  }

  function renderClip(d, a) {
    const r = clipRange(a);
    // An open range keeps its clip until the recording's end is known (not a reload per update).
    const key = !r ? "none" : r.open ? `${r.start}-open` : `${r.start}-${r.end}`;
    if (key === d.clipKey) return;
    const old = d.clipBox.querySelector("video.alarm-clip");
    if (old && !old.paused && !old.ended) return; // not while the operator watches it
    d.clipKey = key;
    clearTimeout(d.retryTimer);
    if (old) {
      old.pause();
      old.removeAttribute("src");
      old.load();
    }
    if (!r) {
      d.clipBox.replaceChildren(el("p.muted", a.camera ? "Nothing was recorded for this alarm." : "This alarm has no camera."));
      return;
    }
    if (r.end - r.start < 1e6) {
      d.clipBox.replaceChildren(el("p.muted", "The recording has just started: the clip follows shortly."));
      d.retryTimer = setTimeout(() => { d.clipKey = null; renderClip(d, d.alarm); }, 5000);
      return;
    }
    const src = `${stationApi(d.station)}/recordings/${encodeURIComponent(a.camera)}/video.mp4?start_us=${r.start}&end_us=${Math.round(r.end)}`;
    const status = el("p.clip-status.muted");
    const video = el("video.alarm-clip", { controls: true, muted: true, playsInline: true, preload: "auto", src });
    video.muted = true;
    const retry = () => {
      d.clipKey = null;
      renderClip(d, d.alarm);
    };
    video.addEventListener("error", () => {
      // Footage is listed once its segment is finished: the newest seconds come a little later.
      const again = d.tries.get(key) || 0;
      d.tries.set(key, again + 1);
      status.className = "clip-status error";
      status.replaceChildren(
        again < CLIP_RETRIES
          ? "The clip is not available yet (its footage may still be being written); trying again shortly. "
          : "The clip cannot be played. ",
        el("button", { on: { click: retry } }, "Try again"));
      clearTimeout(d.retryTimer);
      if (again < CLIP_RETRIES) d.retryTimer = setTimeout(retry, CLIP_RETRY_MS);
    });
    const range = `${fmtTime(r.start)} – ${fmtTime(r.end, { date: false })} (${fmtDuration(r.end - r.start)})`;
    status.textContent = r.open
      ? `Still recording: showing ${range}; the full clip follows when the recording ends.`
      : range;
    d.clipBox.replaceChildren(video, status);
  }

  function renderSnapshot(d, a) {
    const key = a.has_snapshot ? "snapshot" : "none";
    if (key === d.snapshotKey) return;
    d.snapshotKey = key;
    let snap = d.mediaBox.querySelector(".alarm-snapshot");
    if (!snap) {
      snap = el("figure.alarm-snapshot");
      d.mediaBox.prepend(snap);
    }
    snap.replaceChildren(
      a.has_snapshot
        ? el("img", { src: `${stationApi(d.station)}/alarms/${a.id}/snapshot.jpg`, alt: `Snapshot of alarm ${a.id}` })
        : el("div.no-snapshot.muted", "No snapshot"),
      el("figcaption", "Snapshot at the alarm"));
  }

  function startLive(a) {
    const d = state.detail;
    const names = [...new Set([a.camera, ...(a.related_cameras || [])].filter(Boolean))].slice(0, MAX_LIVE);
    for (const name of names) {
      const player = new LivePlayer(name, { station: d.station, stream: "sub" });
      d.players.push(player);
      const box = el("figure.live-box",
        el("div.live-frame", player.element),
        el("figcaption", el("a", { href: `#/overview/${remoteRef(d.station, name)}`, title: "Open in the overview" }, name),
          name === a.camera ? el("span.muted", " live, alarm camera") : el("span.muted", " live, related")));
      d.mediaBox.append(box);
    }
  }

  async function loadHistory(d) {
    const entries = await get(`${stationApi(d.station)}/alarms/${d.id}/history`).catch((e) => {
      d.history.replaceChildren(el("p.error", `History: ${e.message}`));
      return null;
    });
    if (!entries || state.detail !== d) return;
    d.history.replaceChildren(
      el("table.list.history",
        el("thead", el("tr", ["When", "Who", "What", ""].map((h) => el("th", h)))),
        el("tbody", entries.slice().reverse().map((h) =>
          el("tr",
            el("td", { title: fmtTime(h.at_us, { ms: true }) }, fmtTime(h.at_us)),
            el("td", h.user),
            el("td", describe(h)),
            el("td.muted", h.comment || ""))))));
  }

  // -- actions ----------------------------------------------------------------------------------

  // The alarm as last seen (the list, or the detail when the filters leave it out of the list).
  function latest(key) {
    return state.alarms.get(key) || (state.detail && state.detail.key === key ? state.detail.alarm : null);
  }

  async function act(action, key) {
    const a = latest(key);
    if (!canAct || !a) return;
    const spec = ACTIONS.find((x) => x.action === action);
    if (spec && !possible(spec, a, me)) {
      const why = a.station && spec.when(a, me) ? "not for a site's alarm here" : `not possible for an alarm that is ${STATE_LABEL[a.state].toLowerCase()}`;
      notify(`${spec.label.replace("…", "")}: ${why}.`, "error");
      return;
    }
    const request = await actionRequest(action, a);
    if (!request) return;
    const [path, body, what] = request;
    if (a.station) {
      await actRemote(a, path, body, what);
      return;
    }
    // The version shown when the operator confirmed: re-triggers while a dialog was open are
    // seen, another operator's action in the last instant is refused (409).
    const version = (latest(key) || a).version;
    try {
      const updated = await post(`/api/alarms/${a.id}/${path}?expect_version=${version}`, body);
      if (updated) applyUpdate(updated);
      notify(`${what}: ${updated ? updated.title : a.title}`, "ok");
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) {
        notify(`${what}: ${e.message}`, "error");
        const fresh = await get(`/api/alarms/${a.id}`).catch(() => null);
        if (fresh) applyUpdate(fresh);
      } else notify(`${what}: ${e.message}`, "error");
    }
  }

  // A site's alarm: the central station sends the action to its site (202); the change
  // comes back as an event (remote_alarm) once the site has applied it.
  async function actRemote(a, path, body, what) {
    try {
      const r = await post(`/api/central/alarms/${encodeURIComponent(a.station)}/${a.id}/${path}`, body);
      notify(r.broker_connected ? `${what}: sent to ${r.site}` : `${what}: sent to ${r.site} once the broker is reachable again`, "ok");
    } catch (e) {
      notify(`${what}: ${e.message}`, "error");
    }
  }

  // The request for an action: [path, body, description], after asking for what it needs.
  // A site assigns a central operator's alarm to "USER@CENTRAL" when no user is named.
  async function actionRequest(action, a) {
    const comment = (title, required = false) =>
      formDialog(title, [{ name: "comment", label: "Comment", type: "textarea", required }], { submit: title.replace("…", "") });
    switch (action) {
      case "acknowledge":
        return ["acknowledge", {}, "Acknowledged"];
      case "assign-me":
        return ["assign", a.station ? {} : { to: me }, "Assigned to you"];
      case "assign": {
        const label = a.station ? "User at the site (empty: you)" : "User (empty: nobody)";
        const v = await formDialog("Assign the alarm", [
          { name: "to", label, value: a.owner || "", placeholder: "user name" },
        ], { submit: "Assign" });
        const nobody = a.station ? "Assigned to you" : "Unassigned";
        return v && ["assign", { to: v.to.trim() || null }, v.to.trim() ? `Assigned to ${v.to.trim()}` : nobody];
      }
      case "hold": {
        const v = await comment("Put on hold…");
        return v && ["hold", { comment: v.comment }, "On hold"];
      }
      case "resume":
        return ["resume", {}, "Resumed"];
      case "close": {
        const cats = state.settings.categories;
        const v = await formDialog("Close the alarm", [
          { name: "category", label: "Category", type: "select", options: cats, value: cats.includes(a.category) ? a.category : cats[0] },
          { name: "comment", label: "Comment", type: "textarea" },
        ], { submit: "Close alarm" });
        return v && ["close", { comment: v.comment, category: v.category }, "Closed"];
      }
      case "reopen": {
        const v = await comment("Reopen…");
        return v && ["reopen", { comment: v.comment }, "Reopened"];
      }
      case "comment": {
        const v = await comment("Comment…", true);
        return v && v.comment.trim() && ["comment", { comment: v.comment }, "Comment added"];
      }
      case "priority": {
        const v = await formDialog("Change the priority", [
          { name: "priority", label: "Priority", type: "select", value: a.priority,
            options: state.settings.priorities.map((p) => ({ value: p.name, label: capital(p.name) })) },
        ], { submit: "Change" });
        return v && v.priority !== a.priority && ["priority", { priority: v.priority }, `Priority ${v.priority}`];
      }
      default:
        return null;
    }
  }

  // An alarm as an action answered it (the event stream brings the same change, maybe later).
  function applyUpdate(a) {
    onAlarmEvent({ type: "update", alarm: a });
  }

  // Playback from the recording's start, or a little before the alarm when a re-trigger has
  // moved the recorded range past it.
  function toPlayback(a) {
    if (!a.camera) return;
    const start = Math.min(a.record_start_us || Infinity, a.created_us - PLAYBACK_PRE_ROLL_US);
    ctx.navigate(`#/playback/${remoteRef(a.station, a.camera)}/${start}`);
  }

  // -- keyboard ---------------------------------------------------------------------------------

  function target() {
    return latest(state.detail ? state.detail.key : state.selected);
  }

  function onKey(ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const t = ev.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement) return;
    if (document.querySelector("dialog[open]")) return;
    const key = ev.key;
    const spec = ACTIONS.find((x) => x.key === key);
    if (key === "j" || key === "ArrowDown") move(1);
    else if (key === "k" || key === "ArrowUp") move(-1);
    else if (key === "Enter" && state.selected !== null) openAlarm(state.selected);
    else if (key === "Escape" && state.detail && document.getElementById("help").hidden) closeDetail();
    else if (key === "/") search.focus();
    else if (key === "v" && target()) toPlayback(target());
    else if (spec && canAct && target()) act(spec.action, alarmKey(target()));
    else return;
    ev.preventDefault();
    ev.stopPropagation();
  }

  // -- start ------------------------------------------------------------------------------------

  const off = [
    events.on("alarm", onAlarmEvent),
    events.on("remote_alarm", onAlarmEvent),
    events.on("open", () => loadList()), // after a reconnect: whatever the stream missed
  ];
  document.addEventListener("keydown", onKey, true);
  pageHelp.push(...HELP);
  timers.push(setInterval(refreshAges, AGE_REFRESH_MS));

  await loadChoices();
  await loadList();
  const ref = parseRef(params);
  const wanted = ref.rest[0];
  if (wanted && /^[0-9]+$/.test(wanted)) {
    const key = ref.station ? `${ref.station}/${wanted}` : wanted;
    selectRow(key);
    await openAlarm(key);
  }

  return () => {
    document.removeEventListener("keydown", onKey, true);
    for (const h of HELP) {
      const i = pageHelp.indexOf(h);
      if (i >= 0) pageHelp.splice(i, 1);
    }
    for (const f of off) f();
    for (const t of timers) clearInterval(t);
    clearTimeout(textTimer);
    cancelAnimationFrame(renderFrame);
    state.loading++; // a list still loading is dropped
    state.closed = true;
    closeDetail(false);
  };
}

function capital(s) {
  return s ? s[0].toUpperCase() + s.slice(1) : "";
}

function age(us) {
  return fmtDuration(Math.max(0, Date.now() * 1000 - us));
}

const ACTION_WORDS = {
  raised: "Raised",
  retriggered: "Triggered again",
  acknowledged: "Acknowledged",
  assigned: "Assigned",
  on_hold: "Put on hold",
  resumed: "Resumed",
  commented: "Comment",
  closed: "Closed",
  reopened: "Reopened",
  condition_ended: "Condition ended",
  auto_closed: "Closed automatically",
  priority_changed: "Priority changed",
};

function describe(h) {
  const what = ACTION_WORDS[h.action] || h.action;
  if (h.action === "assigned") return h.detail ? `${what} to ${h.detail}` : "Unassigned";
  const change = h.from_state && h.from_state !== h.to_state ? ` (${STATE_LABEL[h.from_state]} → ${STATE_LABEL[h.to_state]})` : "";
  return h.detail ? `${what}: ${h.detail}${change}` : `${what}${change}`;
}
