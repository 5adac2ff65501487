// Administration, health: cameras online, per-camera stream, analysis and recording figures,
// storage with a retention forecast, the station's queues and links. Refreshed every 5 s while
// shown; rates are the change since the previous refresh.
import { get } from "./api.js";
import { el, fmtBytes, fmtDuration, fmtTime } from "./ui.js";
import { fmtNumber, fmtRate } from "./admin_forms.js";

const REFRESH_MS = 5000;
const CAMERAS_REFRESH_MS = 60000;
// The camera table's columns: [heading, numeric].
const COLUMNS = [
  ["Camera"], ["Site"], ["State"],
  ["Stream"], ["fps", 1], ["Bitrate", 1], ["Loss", 1], ["Reconnects", 1], ["Dropped", 1],
  ["fps", 1],
  ["ms / frame", 1], ["Skipped", 1], ["Errors", 1],
  ["State"], ["Segments", 1], ["Gaps", 1],
  ["Problem"],
];

export async function mount(container, params, ctx) {
  let previous = null; // {t, storage: name -> bytes_written, skipped: camera -> frames_skipped}
  let timer = 0;
  let onlyProblems = false;
  let ages = null; // {at, byStorage: storage -> the longest max_age_s of its cameras (Infinity: none)}
  const summary = el("div.health-tiles");
  const storage = el("section.admin-section.health-storage");
  const cameras = el("table.list.static.health-cameras");
  const updated = el("span.muted", { role: "status" });
  const problemsBox = el("input", { type: "checkbox", id: "health-problems", on: { change: (ev) => { onlyProblems = ev.target.checked; refresh(); } } });
  container.append(
    el("div.health",
      el("div.toolbar",
        el("label.check", { for: "health-problems" }, problemsBox, "Only cameras with problems"),
        el("span.spacer"), updated),
      summary,
      storage,
      el("section.admin-section", el("h2", "Cameras"), cameras)),
  );

  async function refresh() {
    let h;
    try {
      h = await get("/api/health");
    } catch (e) {
      updated.textContent = `Not updated: ${e.message}`;
      updated.className = "error";
      return;
    }
    const now = performance.now();
    const dt = previous ? (now - previous.t) / 1000 : 0;
    renderSummary(h);
    if (h.storage) await loadAges(h.storage);
    renderStorage(h.storage, dt);
    renderCameras(h.cameras, dt);
    previous = {
      t: now,
      storage: new Map((h.storage || []).map((s) => [s.name, s.bytes_written])),
      skipped: new Map(h.cameras.map((c) => [c.camera, c.analysis ? c.analysis.frames_skipped : 0])),
    };
    updated.textContent = `Updated ${fmtTime(Date.now() * 1000, { date: false })}, every ${REFRESH_MS / 1000} s`;
    updated.className = "muted";
  }

  // -- the station ---------------------------------------------------------------------------

  function renderSummary(h) {
    const alarms = h.alarms_open || {};
    const open = Object.values(alarms).reduce((a, b) => a + b, 0);
    const tiles = [
      tile("Cameras online", `${h.cameras_online} / ${h.cameras_total}`, h.cameras_online < h.cameras_total ? "bad" : "good"),
      tile("Open alarms", String(open), open ? "warn" : "good",
        Object.entries(alarms).filter(([, n]) => n).map(([p, n]) => `${n} ${p}`).join(", ")),
      tile("Event queue", String(h.event_queue), h.event_queue > 1000 ? "warn" : "",
        h.events_dropped ? `${h.events_dropped} events dropped` : "none dropped", h.events_dropped ? "bad" : ""),
      tile("Analysis threads", String(h.analysis_threads)),
      tile("Event streams", String(h.sse_subscribers ?? 0), "", "browsers and clients following events"),
    ];
    if (h.live_viewers !== undefined) tiles.push(liveTile(h.live_viewers));
    if (h.mqtt) {
      const extra = Object.entries(h.mqtt).filter(([k]) => k !== "connected").map(([k, v]) => `${k.replace(/_/g, " ")}: ${v}`).join(" · ");
      tiles.push(tile("MQTT", h.mqtt.connected ? "connected" : "disconnected", h.mqtt.connected ? "good" : "bad", extra));
    } else if (h.mqtt === null) {
      tiles.push(tile("MQTT", "not configured"));
    }
    if (h.started_us) tiles.push(tile("Running for", fmtDuration(Date.now() * 1000 - h.started_us), "", `since ${fmtTime(h.started_us)}`));
    summary.replaceChildren(...tiles);
  }

  // The live view's figures: a number of viewers, or an object of named figures.
  function liveTile(live) {
    if (live && typeof live === "object") {
      const total = live.viewers ?? live.total ?? Object.values(live).find((v) => typeof v === "number") ?? "";
      const rest = Object.entries(live).map(([k, v]) => `${k.replace(/_/g, " ")}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ");
      return tile("Live viewers", String(total), "", rest);
    }
    return tile("Live viewers", String(live));
  }

  function tile(label, text, tone = "", note = "", noteTone = "") {
    return el(`div.health-tile${tone ? `.${tone}` : ""}`,
      el("div.tile-label", label),
      el("div.tile-value", text),
      note ? el(`div.tile-note${noteTone ? `.${noteTone}` : ""}`, note) : null);
  }

  // -- storage and the retention forecast ----------------------------------------------------

  // How long the cameras of each location keep footage by age: the disk stops filling when
  // that age is reached first.
  async function loadAges(storageList) {
    if (ages && performance.now() - ages.at < CAMERAS_REFRESH_MS) return;
    let cams;
    try {
      cams = await get("/api/cameras");
    } catch {
      return;
    }
    const byStorage = new Map();
    for (const c of cams) {
      const where = c.recording.storage || (storageList[0] && storageList[0].name);
      const age = c.recording.max_age_s ?? Infinity;
      byStorage.set(where, Math.max(byStorage.get(where) ?? 0, age));
    }
    ages = { at: performance.now(), byStorage };
  }

  function renderStorage(list, dt) {
    if (!list) {
      storage.replaceChildren(el("h2", "Storage"), el("p.muted", "Storage figures are shown to administrators."));
      return;
    }
    storage.replaceChildren(el("h2", "Storage"),
      el("table.list.static.storage-table",
        el("thead", el("tr",
          el("th", "Location"), el("th", "State"), el("th.num", "Footage"), el("th.num", "Free"), el("th.num", "Floor"),
          el("th", "Disk"), el("th.num", "Writing now"), el("th.num", "Per day"),
          el("th.num", { title: "Days until the free space reaches the floor, after which retention deletes the oldest footage" }, "Floor reached in"),
          el("th.num", { title: "Days of footage the location holds at this rate: footage + free space above the floor" }, "Holds"),
          el("th.num", { title: "The longest time the cameras recording here keep footage (max_age_s)" }, "Kept by age"))),
        el("tbody", list.map((s) => storageRow(s, dt)))),
      el("p.muted.note", "Per day: the recordings of the last 24 hours (or since the station started) over the time they span, recomputed every minute. Writing now: since the previous refresh. The floor is never reached when the footage kept by age fits."));
  }

  function storageRow(s, dt) {
    const before = previous && previous.storage.get(s.name);
    const now = dt > 0 && before !== undefined ? Math.max(0, (s.bytes_written - before) / dt) : null;
    const rate = s.write_bytes_per_day;
    const recorded = s.recorded_bytes ?? 0;
    const capacity = rate && s.free_bytes !== undefined ? (recorded + Math.max(0, s.free_bytes - (s.min_free_bytes || 0))) / rate : null;
    const maxAge = ages ? ages.byStorage.get(s.name) : undefined;
    // Retention by age deletes footage before the disk fills when the age limit fits.
    const ageFirst = capacity !== null && maxAge !== undefined && maxAge !== Infinity && capacity * 86400 > maxAge;
    return el("tr", { dataset: { storage: s.name }, class: s.failing ? "problem" : null },
      el("td", el("strong", s.name), el("div.muted.path", s.path)),
      el("td", s.failing ? el("span.badge.offline", { title: s.last_error }, "failing") : el("span.badge.on", "writing"),
        s.last_error ? el("div.error.small", s.last_error) : null),
      el("td.num", fmtBytes(recorded)),
      el("td.num", s.free_bytes !== undefined ? fmtBytes(s.free_bytes) : "—"),
      el("td.num", fmtBytes(s.min_free_bytes || 0)),
      el("td", meter(recorded, s.free_bytes, s.min_free_bytes || 0)),
      el("td.num", now === null ? "…" : `${fmtBytes(now)}/s`),
      el("td.num", rate ? fmtBytes(rate) : el("span.muted", { title: "Too little footage yet to measure" }, "measuring")),
      el("td.num", ageFirst ? el("span.ok", { title: `Footage older than ${fmtAge(maxAge)} is deleted first` }, "never") : days(s.days_until_floor)),
      el("td.num", days(capacity, ageFirst)),
      el("td.num", maxAge === undefined ? "—" : maxAge === Infinity ? "unlimited" : fmtAge(maxAge)));
  }

  function days(n, calm = false) {
    if (n === null || n === undefined) return el("span.muted", "—");
    const text = n >= 100 ? `${Math.round(n)} days` : n >= 2 ? `${n.toFixed(1)} days` : `${(n * 24).toFixed(1)} hours`;
    return el(calm ? "span" : n < 2 ? "span.error" : n < 7 ? "span.warn" : "span", text);
  }

  function fmtAge(seconds) {
    return seconds >= 2 * 86400 ? `${+(seconds / 86400).toFixed(1)} days` : `${+(seconds / 3600).toFixed(1)} h`;
  }

  // Footage, free space above the floor and the floor, as shares of what the station may use.
  function meter(recorded, free, floor) {
    if (free === undefined) return "";
    const total = recorded + free || 1;
    const part = (cls, bytes, title) => {
      const span = el(`span.${cls}`, { title });
      span.style.width = `${(100 * bytes) / total}%`;
      return span;
    };
    return el("div.meter", part("used", recorded, `footage ${fmtBytes(recorded)}`),
      part("free", Math.max(0, free - floor), `free above the floor ${fmtBytes(Math.max(0, free - floor))}`),
      part("floor", Math.min(free, floor), `floor ${fmtBytes(floor)}`));
  }

  // -- cameras -------------------------------------------------------------------------------

  function renderCameras(list, dt) {
    const rows = list.map((c) => ({ c, problems: problemsOf(c) }))
      .filter((r) => !onlyProblems || r.problems.length)
      .sort((a, b) => (b.problems.length > 0) - (a.problems.length > 0) || a.c.camera.localeCompare(b.c.camera));
    cameras.replaceChildren(
      el("thead",
        el("tr.group-head", el("th", { colSpan: 3 }, ""), el("th", { colSpan: 6 }, "Main stream"), el("th", { colSpan: 1 }, "Sub"), el("th", { colSpan: 3 }, "Analysis"), el("th", { colSpan: 3 }, "Recording"), el("th", "")),
        el("tr", COLUMNS.map(([h, numeric]) => el(numeric ? "th.num" : "th", h)))),
      el("tbody", rows.length ? rows.map((r) => cameraRow(r.c, r.problems, dt)) : el("tr", el("td.muted", { colSpan: COLUMNS.length }, onlyProblems ? "No camera has a problem." : "No cameras."))),
    );
  }

  function problemsOf(c) {
    const out = [];
    if (c.enabled && !c.online) out.push(c.last_error || "offline");
    for (const [role, s] of Object.entries(c.streams || {})) if (s.last_error && s.state !== "playing") out.push(`${role}: ${s.last_error}`);
    if (c.recording && c.recording.last_error) out.push(`recording: ${c.recording.last_error}`);
    if (c.analysis && c.analysis.tamper && c.analysis.tamper.length) out.push(`tamper: ${c.analysis.tamper.join(", ")}`);
    return [...new Set(out)];
  }

  function cameraRow(c, problems, dt) {
    const main = (c.streams || {}).main || {};
    const sub = (c.streams || {}).sub;
    const a = c.analysis;
    const rec = c.recording;
    const before = previous && previous.skipped.get(c.camera);
    const skippedNow = a && dt > 0 && before !== undefined ? a.frames_skipped - before : 0;
    const state = !c.enabled ? el("span.badge.off", "disabled") : c.online ? el("span.badge.on", "online") : el("span.badge.offline", "offline");
    return el("tr", { dataset: { camera: c.camera }, class: problems.length ? "problem" : null },
      el("td", el("a", { href: `#/admin/cameras/${encodeURIComponent(c.camera)}` }, c.camera)),
      el("td", c.site),
      el("td", state),
      el("td.nowrap", main.codec ? `${main.codec.toUpperCase()} ${main.width}×${main.height}` : main.state || "—"),
      el("td.num", main.fps !== undefined ? fmtNumber(main.fps, 1) : "—"),
      el("td.num", main.bitrate_bps !== undefined ? fmtRate(main.bitrate_bps) : "—"),
      el("td.num", main.loss !== undefined ? lossText(main.loss) : "—"),
      el("td.num", String(main.reconnects ?? "—")),
      el("td.num", String(main.frames_dropped ?? "—")),
      el("td.num", sub ? fmtNumber(sub.fps, 1) : "—"),
      el("td.num", a ? fmtNumber(a.decode_ms_per_frame + a.analysis_ms_per_frame, 2) : "—"),
      el("td.num", a ? skippedText(a.frames_skipped, skippedNow) : "—"),
      el("td.num", a ? String(a.decode_errors) : "—"),
      el("td", rec ? (rec.recording ? el("span.badge.on", "recording") : el("span.badge.off", "idle")) : el("span.muted", "—")),
      el("td.num", rec ? String(rec.segments) : "—"),
      el("td.num", rec ? gapText(rec.gaps) : "—"),
      el("td.error-cell", { title: problems.join("\n") }, problems.join("; ")));
  }

  function lossText(loss) {
    const pct = loss * 100;
    return el(pct >= 1 ? "span.error" : pct >= 0.1 ? "span.warn" : "span", `${pct.toFixed(pct && pct < 0.1 ? 3 : 2)} %`);
  }

  // Frames skipped to catch up: the total, and those of the last refresh when analysis lags now.
  function skippedText(total, recent) {
    return recent > 0 ? el("span.warn", { title: `${recent} in the last ${REFRESH_MS / 1000} s: analysis is behind` }, `${total} (+${recent})`) : String(total);
  }

  function gapText(gaps) {
    return gaps ? el("span.warn", String(gaps)) : "0";
  }

  await refresh();
  timer = setInterval(() => {
    if (!document.hidden) refresh();
  }, REFRESH_MS);
  return () => clearInterval(timer);
}
