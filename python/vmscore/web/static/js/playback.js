// Recordings: #/playback chooses a camera; #/playback/CAMERA[/START_US] shows its timeline (recorded
// footage, gaps, motion per second, alarms, bookmarks, evidence locks) over a window from one
// minute to seven days, zoomed with the wheel and panned by dragging, and plays the footage from
// wherever the timeline is clicked: MP4s of up to ten minutes from the station, one after the
// other, skipping what was not recorded. Operators bookmark, lock evidence and export ranges.
// At a central station #/playback/@STATION/CAMERA[/START_US] plays a site's camera: its footage,
// motion and alarms come from its station through this one, and exports are made there
// (bookmarks and evidence locks are the site's own business, not offered here).
import { ApiError, cameraApi, del, get, parseRef, post, remoteRef, siteCameras, stationApi } from "./api.js";
import { pageHelp } from "./app.js";
import { el, fmtBytes, fmtDuration, fmtTime, formDialog, fromLocalInput, notify, toLocalInput } from "./ui.js";

const SECOND = 1e6;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const MIN_WINDOW = MINUTE;
const MAX_WINDOW = 7 * DAY;
const DEFAULT_WINDOW = HOUR;
const CHUNK = 10 * MINUTE; // footage per MP4 loaded
const JOIN = 1.5 * SECOND; // recordings closer than this play as one
const MOTION_MAX_WINDOW = 3 * HOUR; // wider windows leave motion out (a row per second of it)
const ALARM_PRE_ROLL = 3 * SECOND; // a jump to an alarm starts this much before it
const MAX_EXPORT = DAY; // the station's bound for one export
const REFRESH_MS = 15000;
const POLL_MS = 500;
const SPEEDS = [0.25, 0.5, 1, 2, 4, 8];
const TICKS = [SECOND, 5 * SECOND, 10 * SECOND, 30 * SECOND, MINUTE, 5 * MINUTE, 10 * MINUTE, 30 * MINUTE,
  HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY];

const HELP = [
  ["Space", "Play / pause"],
  ["← / →", "Back / forward 10 s (Shift: 1 min)"],
  ["+ / -", "Zoom the timeline in / out"],
  ["[ / ]", "Previous / next alarm"],
  [", / .", "Previous / next recording"],
  ["i / o", "Mark the start / end of a range at the playhead"],
  ["Shift+drag", "Mark a range on the timeline"],
  ["b", "Bookmark at the playhead"],
  ["l", "Lock evidence"],
  ["e", "Export a range"],
  ["Esc", "Clear the marked range"],
];

// Export jobs of this browser session, kept across pages so their progress and links remain.
const exportsMade = [];

export async function mount(container, params, ctx) {
  const { station, rest } = parseRef(params);
  if (!rest[0]) return chooser(container, ctx);
  return timeline(container, rest[0], Number(rest[1]) || null, ctx, station);
}

// This station's cameras and, at a central station, the sites' (with their station).
async function allCameras(ctx) {
  const [local, sites] = await Promise.all([
    get("/api/cameras"),
    ctx.central ? get("/api/central/sites").catch(() => []) : [],
  ]);
  return [...local.map((c) => ({ ...c, station: null })), ...siteCameras(sites)];
}

// -- the camera chooser -------------------------------------------------------------------------

async function chooser(container, ctx) {
  const box = el("div.playback-chooser");
  container.append(el("div.toolbar", el("strong", "Playback"), el("span.muted", "Choose a camera")), box);
  const [cameras, sites] = await Promise.all([
    allCameras(ctx).catch((e) => {
      notify(`Cameras: ${e.message}`, "error");
      return [];
    }),
    get("/api/sites").catch(() => []),
  ]);
  const siteNames = new Map(sites.map((s) => [s.name, s.display_name || s.name]));
  const bySite = new Map();
  for (const c of cameras) {
    const key = c.site || "";
    if (!bySite.has(key)) bySite.set(key, []);
    bySite.get(key).push(c);
  }
  if (!cameras.length) box.append(el("p.muted", "You may see no cameras."));
  for (const [site, list] of [...bySite].sort(([a], [b]) => a.localeCompare(b))) {
    const station = list[0].station;
    box.append(el("section.panel", { dataset: { site } },
      el("h2", site ? siteNames.get(site) || site : "Without a site", station ? el("span.muted", ` · station ${station}`) : null),
      el("div.camera-cards", list.map((c) => cameraCard(c, ctx)))));
  }
  return () => {};
}

function cameraCard(c, ctx) {
  const img = el("img", { alt: "", loading: "lazy", src: `${cameraApi(c.name, c.station)}/snapshot.jpg?width=320` });
  img.addEventListener("error", () => img.replaceWith(el("div.no-picture.muted", c.online === false ? "offline" : "no picture")));
  const dataset = { camera: c.name, ...(c.station ? { station: c.station } : {}) };
  return el("button.camera-card", { dataset, title: `Recordings of ${c.name}`, on: { click: () => ctx.navigate(`#/playback/${remoteRef(c.station, c.name)}`) } },
    el("div.thumb", img), el("span", c.display_name || c.name));
}

// -- the timeline page --------------------------------------------------------------------------

// station: the site station of a site's camera at a central station (null: this station's).
async function timeline(container, camera, startUs, ctx, station = null) {
  const canOperate = ctx.can("operator");
  const here = !station; // bookmarks and locks: this station's cameras only
  const api = stationApi(station);
  const ref = remoteRef(station, camera); // the camera in this page's address
  const cam = encodeURIComponent(camera);
  const now = () => Date.now() * 1000;
  const s = {
    windowStart: 0,
    windowEnd: 0,
    playhead: startUs || now(),
    follow: !startUs, // the window's end stays at "now" as time passes
    data: emptyData(),
    fetching: 0,
    clip: null, // { start, end, range } of the MP4 in the video element
    selection: null, // { start, end } marked by the operator
    markIn: null,
    hoverX: null,
    drag: null,
    speed: 1,
    closed: false,
  };
  const timers = [];

  // -- layout -----------------------------------------------------------------------------------

  const button = (action, label, title, onClick) => el("button", { dataset: { action }, title, on: { click: onClick } }, label);
  const cameraSelect = el("select.camera", { title: "Camera", on: { change: () => ctx.navigate(`#/playback/${cameraSelect.value}/${Math.round(s.playhead)}`) } });
  const playButton = button("play", "▶ Play", "Play / pause (Space)", () => togglePlay());
  const speedSelect = el("select.speed", { title: "Speed", on: { change: () => setSpeed(Number(speedSelect.value)) } },
    SPEEDS.map((v) => el("option", { value: String(v), selected: v === 1 }, `${v}x`)));
  const timeLabel = el("span.playhead-time");
  const gotoInput = el("input.goto", { type: "datetime-local", step: "1", title: "Go to a date and time" });
  const windowLabel = el("span.window-label.muted");
  const toolbar = el("div.toolbar.playback-toolbar",
    cameraSelect,
    button("live", "Go live", "Live video of this camera", () => ctx.navigate(`#/overview/${ref}`)),
    button("prev-recording", "|◀ Rec", "Previous recording (,)", () => jumpRecording(-1)),
    button("prev-alarm", "◀ Alarm", "Previous alarm ([)", () => jumpAlarm(-1)),
    playButton,
    button("next-alarm", "Alarm ▶", "Next alarm (])", () => jumpAlarm(1)),
    button("next-recording", "Rec ▶|", "Next recording (.)", () => jumpRecording(1)),
    speedSelect,
    timeLabel,
    el("span.spacer"),
    button("zoom-out", "−", "Zoom out (-)", () => zoom(2)),
    windowLabel,
    button("zoom-in", "+", "Zoom in (+)", () => zoom(0.5)),
    canOperate && here && button("bookmark", "Bookmark", "Bookmark at the playhead (b)", () => addBookmark()),
    canOperate && here && button("lock", "Lock evidence", "Protect a range from deletion (l)", () => addLock()),
    canOperate && button("export", "Export", "Export a signed MP4 of a range (e)", () => startExport()),
  );
  const video = el("video.playback-video", { muted: true, playsInline: true, preload: "auto", disablePictureInPicture: true });
  video.muted = true;
  const overlay = el("div.playback-status");
  const canvas = el("canvas.timeline-canvas", { tabIndex: 0 });
  const legend = el("div.timeline-legend.muted");
  const gotoForm = el("form.goto-form", { on: { submit: (ev) => { ev.preventDefault(); if (gotoInput.value) jumpTo(fromLocalInput(gotoInput.value)); } } },
    gotoInput, el("button", { type: "submit" }, "Go"));
  const sections = el("div.playback-sections");
  const side = el("div.side.playback-side", el("section", el("h3", "Go to"), gotoForm), sections);
  container.append(el("div.playback-page",
    toolbar,
    el("div.playback-body",
      el("div.playback-main", el("div.player", video, overlay), el("div.timeline", canvas), legend),
      side)));

  // -- the window and the playhead --------------------------------------------------------------

  function setWindow(start, end, { userChange = true } = {}) {
    const span = Math.min(MAX_WINDOW, Math.max(MIN_WINDOW, end - start));
    const latest = now() + span * 0.1;
    start = Math.max(0, Math.min(start, latest - span));
    s.windowStart = Math.round(start);
    s.windowEnd = Math.round(start + span);
    if (userChange) s.follow = s.windowEnd >= now() - span * 0.02;
    container.dataset.windowStart = String(s.windowStart);
    container.dataset.windowEnd = String(s.windowEnd);
    windowLabel.textContent = fmtSpan(span);
    scheduleFetch();
    draw();
  }

  function setPlayhead(t) {
    s.playhead = Math.round(t);
    container.dataset.playheadUs = String(s.playhead);
    timeLabel.textContent = fmtTime(s.playhead);
  }

  function zoom(factor, anchor = null) {
    const span = s.windowEnd - s.windowStart;
    const at = anchor ?? (s.playhead >= s.windowStart && s.playhead <= s.windowEnd ? s.playhead : s.windowStart + span / 2);
    const next = Math.min(MAX_WINDOW, Math.max(MIN_WINDOW, span * factor));
    const start = at - ((at - s.windowStart) * next) / span; // the anchor stays where it is
    setWindow(start, start + next);
  }

  // Keeps the playhead in view while playing: the window turns a page.
  function keepInView() {
    const span = s.windowEnd - s.windowStart;
    if (s.drag || (s.playhead >= s.windowStart && s.playhead <= s.windowEnd)) return;
    setWindow(s.playhead - span * 0.1, s.playhead + span * 0.9);
  }

  // -- data -------------------------------------------------------------------------------------

  // While the window is dragged or zoomed, loading waits until it settles for a moment.
  let fetchTimer = null;
  function scheduleFetch() {
    clearTimeout(fetchTimer);
    fetchTimer = setTimeout(() => fetchData(), 150);
  }

  // Loads what the timeline shows for the window and half a window (twenty minutes to a day)
  // either side, unless that is loaded already (or `force`: new footage, alarms, locks since).
  async function fetchData(force = false) {
    const span = s.windowEnd - s.windowStart;
    const d = s.data;
    const wantMotion = span <= MOTION_MAX_WINDOW;
    if (!force && d.from <= s.windowStart && d.to >= s.windowEnd && d.span <= span * 2 && (d.motionLoaded || !wantMotion)) return;
    const token = ++s.fetching;
    const margin = Math.min(DAY, Math.max(span / 2, 2 * CHUNK));
    const from = Math.max(0, Math.round(s.windowStart - margin));
    const to = Math.round(Math.min(s.windowEnd + margin, now() + margin));
    const range = `since_us=${from}&until_us=${to}`;
    try {
      const [rec, alarms, bookmarks, locks, motion] = await Promise.all([
        get(`${api}/recordings?camera=${cam}&${range}`),
        get(`${api}/alarms?camera=${cam}&${range}&sort=newest&limit=1000`).catch(() => []),
        here ? get(`/api/bookmarks?camera=${cam}&${range}`).catch(() => []) : [],
        here ? get(`/api/locks?camera=${cam}`).catch(() => []) : [],
        wantMotion ? get(`${api}/cameras/${cam}/motion?${range}`).catch(() => []) : Promise.resolve([]),
      ]);
      if (token !== s.fetching || s.closed) return;
      s.data = {
        from, to, span,
        ranges: mergeRanges(rec.recordings),
        gaps: rec.gaps,
        alarms,
        bookmarks,
        locks,
        motion: motion.map((m) => ({ t: m.second_us, v: motionLevel(m) })),
        motionLoaded: wantMotion,
      };
      legend.textContent = legendText(wantMotion);
      renderSide();
      draw();
    } catch (e) {
      if (token === s.fetching) notify(`Recordings of ${camera}: ${e.message}`, "error");
    }
  }

  function rangeAt(t) {
    return s.data.ranges.find((r) => t >= r.start && t < r.end) || null;
  }

  // -- playing ----------------------------------------------------------------------------------

  // Plays from t: within the loaded MP4 by seeking, else by loading the next ten minutes of the
  // recording that covers t (or the first one after it).
  function seek(t, { play = true } = {}) {
    setPlayhead(t);
    let range = rangeAt(t);
    if (!range) {
      range = s.data.ranges.find((r) => r.start > t && r.start < s.data.to) || null;
      if (!range) {
        unload(t > now() - 60 * SECOND ? "Not recorded yet: the newest footage follows when its segment is written." : `No recording at ${fmtTime(t)}.`);
        draw();
        return;
      }
      t = range.start;
      setPlayhead(t);
    }
    const c = s.clip;
    if (c && t >= c.start && t < c.end - 0.25 * SECOND && video.readyState > 0) {
      video.currentTime = (t - c.start) / SECOND;
      if (play) startPlaying();
    } else load(range, t, play);
    keepInView();
    draw();
  }

  function load(range, t, play) {
    const end = Math.min(range.end, t + CHUNK);
    s.clip = { start: t, end, range };
    status("Loading…");
    video.src = `${api}/recordings/${cam}/video.mp4?start_us=${Math.floor(t)}&end_us=${Math.ceil(end)}`;
    video.defaultPlaybackRate = s.speed;
    video.playbackRate = s.speed;
    if (play) startPlaying();
  }

  function unload(message) {
    s.clip = null;
    video.pause();
    video.removeAttribute("src");
    video.load();
    status(message);
    updatePlayButton();
  }

  function startPlaying() {
    video.play().catch((e) => {
      if (e.name !== "AbortError") status(`Cannot play: ${e.message}`);
    });
  }

  function togglePlay() {
    if (!s.clip) seek(s.playhead);
    else if (video.paused) startPlaying();
    else video.pause();
  }

  function setSpeed(v) {
    s.speed = v;
    video.defaultPlaybackRate = v;
    video.playbackRate = v;
    speedSelect.value = String(v);
  }

  // The end of an MP4: the next ten minutes of the same recording, else the next recording.
  async function onEnded() {
    const c = s.clip;
    if (!c) return;
    const next = continuation(s.data.ranges, c.end) || continuation(await footageAfter(c.end), c.end);
    if (s.clip !== c) return; // the operator went elsewhere meanwhile
    if (!next) {
      setPlayhead(c.end);
      unload("End of the recorded footage.");
      fetchData(true);
      return;
    }
    if (next.start > c.end + JOIN) notify(`Skipped ${fmtDuration(next.start - c.end)} without recording`);
    const t = Math.max(next.start, c.end);
    setPlayhead(t);
    load(next, t, true);
    keepInView();
  }

  // The recorded range that playback at t goes on with: the one covering t, else the next.
  function continuation(ranges, t) {
    return ranges.find((r) => r.start <= t && r.end > t + 0.5 * SECOND) || ranges.find((r) => r.start > t) || null;
  }

  // The recorded ranges from t on (for up to a day): the timeline's data may end before them.
  async function footageAfter(t) {
    for (const ahead of [CHUNK, DAY]) {
      const until = Math.round(Math.min(t + ahead, now()));
      if (until <= t) break;
      const rec = await get(`${api}/recordings?camera=${cam}&since_us=${Math.round(t)}&until_us=${until}`).catch(() => null);
      const ranges = rec ? mergeRanges(rec.recordings) : [];
      if (continuation(ranges, t)) return ranges;
    }
    return [];
  }

  function onTime() {
    if (!s.clip || video.readyState === 0) return;
    setPlayhead(s.clip.start + video.currentTime * SECOND);
    keepInView();
  }

  function status(text) {
    overlay.textContent = text || "";
    overlay.hidden = !text;
  }

  function updatePlayButton() {
    const playing = !!s.clip && !video.paused && !video.ended;
    playButton.textContent = playing ? "❚❚ Pause" : "▶ Play";
    playButton.classList.toggle("primary", playing);
  }

  video.addEventListener("playing", () => { status(""); updatePlayButton(); });
  video.addEventListener("pause", updatePlayButton);
  video.addEventListener("waiting", () => status("Loading…"));
  video.addEventListener("seeked", () => { if (video.paused) status(""); });
  video.addEventListener("loadeddata", () => { status(""); video.playbackRate = s.speed; });
  video.addEventListener("timeupdate", onTime);
  video.addEventListener("ended", () => onEnded());
  video.addEventListener("error", () => {
    if (!s.clip) return;
    status(`This footage cannot be played here (${video.error ? video.error.message || `error ${video.error.code}` : "error"}).`);
    updatePlayButton();
  });

  // The playhead follows the video smoothly (timeupdate comes only a few times a second).
  let frame = 0;
  let lastDraw = 0;
  function tick(ts) {
    if (s.closed) return;
    frame = requestAnimationFrame(tick);
    if (video.paused || !s.clip || ts - lastDraw < 66) return;
    lastDraw = ts;
    onTime();
    draw();
  }
  frame = requestAnimationFrame(tick);

  // -- jumps ------------------------------------------------------------------------------------

  async function jumpAlarm(dir) {
    const ref = Math.round(s.playhead + ALARM_PRE_ROLL);
    const q = dir < 0 ? `until_us=${ref - SECOND}&sort=newest` : `since_us=${ref + SECOND}&sort=oldest`;
    let found;
    try {
      [found] = await get(`${api}/alarms?camera=${cam}&${q}&limit=1`);
    } catch (e) {
      notify(`Alarms: ${e.message}`, "error");
      return;
    }
    if (!found) {
      notify(dir < 0 ? "No earlier alarm of this camera." : "No later alarm of this camera.");
      return;
    }
    notify(`${found.title} (${fmtTime(found.created_us)})`);
    await jumpTo(found.created_us - ALARM_PRE_ROLL);
  }

  async function jumpRecording(dir) {
    const ranges = await rangesFor(dir);
    const t = s.playhead;
    const here = ranges.find((r) => t >= r.start && t < r.end);
    let target;
    if (dir < 0) {
      target = here && t - here.start > 2 * SECOND ? here : [...ranges].reverse().find((r) => r.start < (here ? here.start : t) - 1);
    } else target = ranges.find((r) => r.start > t && r !== here);
    if (!target) {
      notify(dir < 0 ? "No earlier recording." : "No later recording.");
      return;
    }
    await jumpTo(target.start);
  }

  // The recorded ranges loaded, or with those of the week before / after them when the loaded
  // ones have none to jump to. A range starting where the loaded data starts may begin earlier.
  async function rangesFor(dir) {
    const d = s.data;
    const t = s.playhead;
    const known = (r) => r.start > d.from + JOIN;
    const enough = dir < 0 ? d.ranges.some((r) => r.start < t - 2 * SECOND && known(r)) : d.ranges.some((r) => r.start > t);
    if (enough) return d.ranges;
    const from = dir < 0 ? Math.max(0, d.from - 7 * DAY) : d.to;
    const to = dir < 0 ? d.to : Math.round(Math.min(now(), d.to + 7 * DAY));
    if (to <= from) return d.ranges;
    const rec = await get(`${api}/recordings?camera=${cam}&since_us=${Math.round(from)}&until_us=${Math.round(to)}`).catch(() => null);
    return rec ? mergeRanges([...rec.recordings, ...d.ranges.map((r) => ({ start_us: r.start, end_us: r.end }))]) : d.ranges;
  }

  async function jumpTo(t) {
    const span = s.windowEnd - s.windowStart;
    if (t < s.windowStart || t > s.windowEnd) {
      setWindow(t - span * 0.25, t + span * 0.75);
      await fetchData(); // the recordings around t, to play them
    }
    seek(t);
  }

  // -- drawing ----------------------------------------------------------------------------------

  const g = canvas.getContext("2d");
  const colours = {
    recorded: "#2a6fb0",
    gap: "#b03a3a",
    motion: "#f5b50a",
    bookmark: "#2fbf71",
    lock: "#ff8c1a",
    text: "#e8edf3",
    muted: "#94a0b0",
    line: "#2c3440",
    future: "rgba(0,0,0,0.35)",
    selection: "rgba(63,167,255,0.18)",
  };

  function geometry(h) {
    return { axis: 18, recTop: 20, recH: 14, motionTop: 38, motionH: Math.max(10, h - 38 - 30), markTop: h - 28, lockTop: h - 9 };
  }

  function draw() {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!w || !h) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const span = s.windowEnd - s.windowStart;
    const x = (t) => ((t - s.windowStart) / span) * w;
    const geo = geometry(h);
    drawAxis(w, h, x, span);
    drawFuture(w, h, x);
    drawRecordings(x, w, geo);
    drawMotion(x, w, geo, span);
    drawLocks(x, w, geo);
    drawMarkers(x, w, geo);
    if (s.selection) {
      g.fillStyle = colours.selection;
      const a = x(s.selection.start);
      g.fillRect(a, 0, Math.max(1, x(s.selection.end) - a), h);
    }
    if (s.markIn !== null && !s.selection) line(x(s.markIn), 0, h, colours.text, [2, 3]);
    drawPlayhead(x, h);
    drawHover(w, h, span);
  }

  function line(px, top, bottom, colour, dash = []) {
    g.strokeStyle = colour;
    g.setLineDash(dash);
    g.beginPath();
    g.moveTo(Math.round(px) + 0.5, top);
    g.lineTo(Math.round(px) + 0.5, bottom);
    g.stroke();
    g.setLineDash([]);
  }

  function drawAxis(w, h, x, span) {
    const step = TICKS.find((t) => (t / span) * w >= 90) || DAY;
    const offset = -new Date().getTimezoneOffset() * MINUTE; // ticks at local round times
    g.font = "12px system-ui, sans-serif";
    g.textBaseline = "top";
    for (let t = Math.ceil((s.windowStart + offset) / step) * step - offset; t <= s.windowEnd; t += step) {
      const px = x(t);
      line(px, 12, h, colours.line);
      const d = new Date(t / 1000);
      const midnight = d.getHours() === 0 && d.getMinutes() === 0 && d.getSeconds() === 0;
      const label = step >= DAY || (midnight && step >= HOUR)
        ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`
        : fmtTime(t, { date: false }).slice(0, step < MINUTE ? 8 : 5);
      g.fillStyle = midnight ? colours.text : colours.muted;
      g.fillText(label, px + 3, 1);
    }
  }

  function drawFuture(w, h, x) {
    const px = x(now());
    if (px >= w) return;
    g.fillStyle = colours.future;
    g.fillRect(Math.max(0, px), 0, w, h);
    line(px, 0, h, colours.muted, [4, 4]);
  }

  function drawRecordings(x, w, geo) {
    g.fillStyle = colours.recorded;
    for (const r of s.data.ranges) {
      const a = Math.max(-1, x(r.start));
      const b = Math.min(w + 1, x(r.end));
      if (b >= 0 && a <= w) g.fillRect(a, geo.recTop, Math.max(1, b - a), geo.recH);
    }
    g.fillStyle = colours.gap;
    for (const gap of s.data.gaps) {
      const a = Math.max(-1, x(gap.start_us));
      const b = Math.min(w + 1, x(gap.end_us));
      if (b >= 0 && a <= w) g.fillRect(a, geo.recTop + geo.recH / 3, Math.max(2, b - a), geo.recH / 3);
    }
  }

  // A bar per pixel column (or per second when zoomed in further): the most motion within it.
  function drawMotion(x, w, geo, span) {
    if (!s.data.motion.length) return;
    const perPixel = span / w;
    const bins = new Float32Array(Math.ceil(w) + 1);
    const width = Math.max(1, SECOND / perPixel);
    g.fillStyle = colours.motion;
    for (const m of s.data.motion) {
      const px = x(m.t);
      if (px + width < 0 || px > w) continue;
      if (width > 1.5) {
        const bh = m.v * geo.motionH;
        g.fillRect(px, geo.motionTop + geo.motionH - bh, width - 0.5, bh);
      } else {
        const i = Math.floor(px);
        bins[i] = Math.max(bins[i], m.v);
      }
    }
    if (width > 1.5) return;
    for (let i = 0; i < bins.length; i++) {
      if (!bins[i]) continue;
      const bh = Math.max(1, bins[i] * geo.motionH);
      g.fillRect(i, geo.motionTop + geo.motionH - bh, 1, bh);
    }
  }

  function drawLocks(x, w, geo) {
    g.fillStyle = colours.lock;
    for (const lk of s.data.locks) {
      const a = Math.max(-1, x(lk.start_wall_us));
      const b = Math.min(w + 1, x(lk.end_wall_us));
      if (b >= 0 && a <= w) g.fillRect(a, geo.lockTop, Math.max(2, b - a), 7);
    }
  }

  function drawMarkers(x, w, geo) {
    for (const a of s.data.alarms) {
      const px = x(a.created_us);
      if (px < -6 || px > w + 6) continue;
      line(px, geo.recTop, geo.markTop + 16, a.colour);
      g.fillStyle = a.colour;
      g.beginPath();
      g.moveTo(px - 6, geo.markTop);
      g.lineTo(px + 6, geo.markTop);
      g.lineTo(px, geo.markTop + 10);
      g.closePath();
      g.fill();
    }
    g.fillStyle = colours.bookmark;
    for (const b of s.data.bookmarks) {
      const px = x(b.start_us);
      if (px < -6 || px > w + 6) continue;
      g.fillRect(px - 1, geo.markTop + 4, 2, 14);
      g.beginPath();
      g.moveTo(px + 1, geo.markTop + 4);
      g.lineTo(px + 9, geo.markTop + 8);
      g.lineTo(px + 1, geo.markTop + 12);
      g.closePath();
      g.fill();
    }
  }

  function drawPlayhead(x, h) {
    const px = x(s.playhead);
    if (px < 0 || px > canvas.clientWidth) return;
    g.lineWidth = 2;
    line(px, 0, h, "#ff4d4d");
    g.lineWidth = 1;
  }

  function drawHover(w, h, span) {
    if (s.hoverX === null || s.drag) return;
    const t = s.windowStart + (s.hoverX / w) * span;
    line(s.hoverX, 0, h, "rgba(255,255,255,0.5)");
    const near = nearby(s.hoverX, w, span);
    const text = [fmtTime(t, { date: span > DAY }), ...near].join(" · ");
    g.font = "12px system-ui, sans-serif";
    const tw = g.measureText(text).width + 10;
    const left = Math.min(Math.max(0, s.hoverX + 8), w - tw);
    g.fillStyle = "rgba(14,17,22,0.9)";
    g.fillRect(left, h - 46, tw, 17);
    g.fillStyle = colours.text;
    g.textBaseline = "middle";
    g.fillText(text, left + 5, h - 37);
    g.textBaseline = "top";
  }

  // Names of the alarms and bookmarks within a few pixels of px (for the hover label).
  function nearby(px, w, span) {
    const tol = (6 / w) * span;
    const t = s.windowStart + (px / w) * span;
    return [
      ...s.data.alarms.filter((a) => Math.abs(a.created_us - t) <= tol).map((a) => a.title),
      ...s.data.bookmarks.filter((b) => Math.abs(b.start_us - t) <= tol).map((b) => `Bookmark: ${b.text || b.user}`),
    ].slice(0, 3);
  }

  // -- pointer ----------------------------------------------------------------------------------

  const timeAt = (px) => s.windowStart + (px / canvas.clientWidth) * (s.windowEnd - s.windowStart);
  const localX = (ev) => ev.clientX - canvas.getBoundingClientRect().left;

  canvas.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    zoom(ev.deltaY > 0 ? 1.25 : 0.8, timeAt(localX(ev)));
  }, { passive: false });
  canvas.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0) return;
    canvas.setPointerCapture(ev.pointerId);
    s.drag = { x: localX(ev), start: s.windowStart, end: s.windowEnd, moved: false, select: ev.shiftKey };
  });
  canvas.addEventListener("pointermove", (ev) => {
    s.hoverX = localX(ev);
    const d = s.drag;
    if (d) {
      const dx = s.hoverX - d.x;
      if (Math.abs(dx) > 4) d.moved = true;
      if (d.moved && d.select) {
        const a = timeAt(d.x);
        const b = timeAt(s.hoverX);
        s.selection = { start: Math.round(Math.min(a, b)), end: Math.round(Math.max(a, b)) };
      } else if (d.moved) {
        const shift = (dx / canvas.clientWidth) * (d.end - d.start);
        setWindow(d.start - shift, d.end - shift);
      }
    }
    draw();
  });
  canvas.addEventListener("pointerup", (ev) => {
    const d = s.drag;
    s.drag = null;
    if (!d) return;
    if (!d.moved) seek(timeAt(localX(ev)));
    else if (d.select) renderSide();
    draw();
  });
  canvas.addEventListener("pointerleave", () => {
    s.hoverX = null;
    draw();
  });
  const resize = new ResizeObserver(() => draw());
  resize.observe(canvas);

  // -- the side panel ---------------------------------------------------------------------------

  function renderSide() {
    const d = s.data;
    const inView = (t) => t >= s.windowStart && t <= s.windowEnd;
    const seekButton = (t, label) => el("button.link", { title: "Play from here", on: { click: () => jumpTo(t) } }, label);
    const alarms = d.alarms.filter((a) => inView(a.created_us));
    const bookmarks = d.bookmarks.filter((b) => inView(b.start_us));
    sections.replaceChildren(...[
      el("section",
        el("h3", "Marked range"),
        s.selection
          ? el("div",
            el("p", `${fmtTime(s.selection.start)} – ${fmtTime(s.selection.end, { date: false })} (${fmtDuration(s.selection.end - s.selection.start)})`),
            el("div.btn-row",
              canOperate && here && el("button", { on: { click: () => addLock() } }, "Lock"),
              canOperate && el("button", { on: { click: () => startExport() } }, "Export"),
              el("button", { on: { click: () => clearSelection() } }, "Clear")))
          : el("p.muted", "Shift+drag on the timeline, or i and o at the playhead, to mark a range.")),
      el("section.exports",
        el("h3", "Exports"),
        exportsMade.filter((x) => x.ref === ref).length
          ? el("ul.plain", exportsMade.filter((x) => x.ref === ref).map(exportItem))
          : el("p.muted", canOperate ? "None yet." : "Operators export footage.")),
      el("section",
        el("h3", `Alarms in view (${alarms.length})`),
        alarms.length
          ? el("ul.plain", alarms.slice(0, 50).map((a) => el("li",
            el("span.prio", { style: { background: a.colour } }),
            seekButton(a.created_us - ALARM_PRE_ROLL, fmtTime(a.created_us, { date: false })), " ",
            el("a", { href: `#/alarms/${remoteRef(station, a.id)}`, title: "Open the alarm" }, a.title))))
          : el("p.muted", "None.")),
      ...(here ? [] : [el("section", el("h3", "Bookmarks and evidence locks"), el("p.muted", `Kept at station ${station}.`))]),
      here && el("section",
        el("h3", `Bookmarks in view (${bookmarks.length})`),
        bookmarks.length
          ? el("ul.plain", bookmarks.map((b) => el("li.bookmark", { dataset: { bookmarkId: b.id } },
            seekButton(b.start_us, fmtTime(b.start_us, { date: false })), " ",
            el("span", b.text || "(no note)"), el("span.muted", ` ${b.user}`),
            canOperate && el("button.small", { title: "Delete the bookmark", on: { click: () => deleteBookmark(b) } }, "✕"))))
          : el("p.muted", "None.")),
      here && el("section",
        el("h3", `Evidence locks (${d.locks.length})`),
        d.locks.length
          ? el("ul.plain", d.locks.map((lk) => el("li.lock", { dataset: { lockId: lk.id } },
            seekButton(lk.start_wall_us, `${fmtTime(lk.start_wall_us)} – ${fmtTime(lk.end_wall_us, { date: false })}`),
            el("div", lk.reason),
            el("div.muted", `by ${lk.owner}${lk.expires_wall_us ? `, until ${fmtTime(lk.expires_wall_us)}` : ""}`),
            canOperate && el("button.small", { dataset: { action: "unlock" }, on: { click: () => unlock(lk) } }, "Unlock"))))
          : el("p.muted", "None.")),
    ].filter(Boolean));
  }

  function clearSelection() {
    s.selection = null;
    s.markIn = null;
    renderSide();
    draw();
  }

  function mark(which) {
    if (which === "in") {
      s.markIn = s.playhead;
      s.selection = null;
    } else {
      const a = s.markIn ?? (s.selection ? s.selection.start : null);
      if (a === null || a === s.playhead) {
        notify("Mark the start with i first.");
        return;
      }
      s.selection = { start: Math.min(a, s.playhead), end: Math.max(a, s.playhead) };
      s.markIn = null;
    }
    renderSide();
    draw();
  }

  // -- bookmarks, locks, exports ----------------------------------------------------------------

  async function addBookmark() {
    if (!canOperate) return;
    const at = s.playhead;
    const v = await formDialog(`Bookmark at ${fmtTime(at)}`, [
      { name: "text", label: "Note", type: "textarea", rows: 3 },
    ], { submit: "Add bookmark" });
    if (!v) return;
    try {
      await post("/api/bookmarks", { camera, start_us: Math.round(at), text: v.text });
      notify("Bookmark added", "ok");
      fetchData(true);
    } catch (e) {
      notify(`Bookmark: ${e.message}`, "error");
    }
  }

  async function deleteBookmark(b) {
    if (!(await formDialog(`Delete the bookmark at ${fmtTime(b.start_us)}?`, [], { submit: "Delete" }))) return;
    try {
      await del(`/api/bookmarks/${b.id}`);
      fetchData(true);
    } catch (e) {
      notify(`Bookmark: ${e.message}`, "error");
    }
  }

  // The range an action starts from: the marked one, else five minutes from the playhead.
  function proposedRange() {
    if (s.selection) return s.selection;
    const start = Math.round(s.playhead);
    return { start, end: Math.round(Math.min(start + 5 * MINUTE, Math.max(now(), start + MINUTE))) };
  }

  // A dialog asking for a range and more; resolves with {start, end, ...values} or null.
  async function rangeDialog(title, extra, submit) {
    const r = proposedRange();
    const asked = formDialog(title, [
      { name: "start", label: "From", type: "datetime-local", value: toLocalInput(r.start), required: true },
      { name: "end", label: "To", type: "datetime-local", value: toLocalInput(r.end), required: true },
      ...extra,
    ], { submit });
    // To the second (the inputs step by minutes otherwise and refuse the proposed values).
    for (const input of document.querySelectorAll("dialog.modal input[type=datetime-local]")) input.step = "1";
    const v = await asked;
    if (!v) return null;
    const start = fromLocalInput(v.start);
    const end = fromLocalInput(v.end);
    if (!(end > start)) {
      notify("The range must end after it starts.", "error");
      return null;
    }
    return { ...v, start, end };
  }

  async function addLock() {
    if (!canOperate) return;
    const v = await rangeDialog("Lock evidence", [
      { name: "reason", label: "Reason (case, incident)", required: true },
      { name: "expires", label: "Keep until (empty: until unlocked)", type: "datetime-local" },
    ], "Lock");
    if (!v) return;
    const body = { camera, start_us: v.start, end_us: v.end, reason: v.reason };
    if (v.expires) body.expires_us = fromLocalInput(v.expires);
    try {
      await post("/api/locks", body);
      notify("The range is locked against deletion", "ok");
      fetchData(true);
    } catch (e) {
      notify(`Lock: ${e.message}`, "error");
    }
  }

  async function unlock(lk) {
    const v = await formDialog(`Unlock ${fmtTime(lk.start_wall_us)} – ${fmtTime(lk.end_wall_us, { date: false })}?`, [], { submit: "Unlock" });
    if (!v) return;
    try {
      await del(`/api/locks/${lk.id}`);
      notify("Unlocked", "ok");
      fetchData(true);
    } catch (e) {
      notify(`Unlock: ${e.message}`, "error");
    }
  }

  async function startExport() {
    if (!canOperate) return;
    const v = await rangeDialog("Export a signed MP4", [
      { name: "reason", label: "Reason (case, recipient)" },
    ], "Export");
    if (!v) return;
    if (v.end - v.start > MAX_EXPORT) {
      notify("An export may cover at most 24 hours.", "error");
      return;
    }
    const job = { ref, api, start: v.start, end: v.end, state: "starting", done: 0, total: 0, result: null, error: null, id: null };
    exportsMade.unshift(job);
    renderSide();
    const body = { start_us: v.start, end_us: v.end, reason: v.reason || "" };
    try {
      const started = await post(`${api}/recordings/${cam}/export-jobs`, body);
      job.id = started.id;
      job.state = "running";
      pollExport(job);
    } catch (e) {
      if (here && e instanceof ApiError && (e.status === 405 || (e.status === 404 && e.detail === "Not Found"))) {
        exportSynchronously(job, body); // a station without export jobs
        return;
      }
      finishExport(job, null, e.message);
    }
    renderSide();
  }

  async function exportSynchronously(job, body) {
    job.state = "running";
    renderSide();
    try {
      finishExport(job, await post(`/api/recordings/${cam}/export`, body), null);
    } catch (e) {
      finishExport(job, null, e.message);
    }
  }

  async function pollExport(job) {
    while (job.state === "running" && !s.closed) {
      try {
        const st = await get(`${job.api}/export-jobs/${job.id}`);
        job.done = st.done_bytes;
        job.total = st.total_bytes;
        if (st.state !== "running") finishExport(job, st.result, st.error);
        else updateExportItem(job);
      } catch (e) {
        finishExport(job, null, e.message);
      }
      if (job.state === "running") await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  function finishExport(job, result, error) {
    job.state = error ? "failed" : "done";
    // A site's files are named by the site's paths: fetched here through the central station.
    if (result && job.api !== stationApi()) {
      const file = (name) => `${job.api}/exports/${encodeURIComponent(name)}`;
      result = { ...result, url: file(result.file), manifest_url: file(result.manifest) };
    }
    job.result = result;
    job.error = error;
    if (result) job.done = job.total = result.bytes;
    if (error) notify(`Export: ${error}`, "error");
    else notify(`Export ready: ${result.file}`, "ok");
    if (!s.closed) renderSide();
  }

  function exportItem(job) {
    const range = `${fmtTime(job.start)} – ${fmtTime(job.end, { date: false })}`;
    const item = el("li.export-job", { dataset: { state: job.state, jobId: job.id || "" } }, el("div", range));
    if (job.state === "done") {
      item.append(el("div.btn-row",
        el("a.download", { href: job.result.url, download: job.result.file }, `MP4 (${fmtBytes(job.result.bytes)})`),
        el("a.download", { href: job.result.manifest_url, download: job.result.manifest }, "Signed manifest")));
    } else if (job.state === "failed") {
      item.append(el("div.error", job.error));
    } else {
      item.append(el("progress", { max: "100" }), el("span.muted.export-progress"));
    }
    job.node = item;
    updateExportItem(job);
    return item;
  }

  function updateExportItem(job) {
    const bar = job.node && job.node.querySelector("progress");
    if (!bar) return;
    if (job.total > 0) bar.value = Math.round((100 * job.done) / job.total);
    else bar.removeAttribute("value"); // not known yet: an indeterminate bar
    job.node.querySelector(".export-progress").textContent = job.total > 0 ? ` ${fmtBytes(job.done)} of ${fmtBytes(job.total)}` : " starting…";
  }

  // -- keyboard ---------------------------------------------------------------------------------

  function onKey(ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const t = ev.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement) return;
    if (document.querySelector("dialog[open]")) return;
    const k = ev.key;
    const step = ev.shiftKey ? MINUTE : 10 * SECOND;
    if (k === " ") togglePlay();
    else if (k === "ArrowLeft") seek(s.playhead - step, { play: !video.paused });
    else if (k === "ArrowRight") seek(s.playhead + step, { play: !video.paused });
    else if (k === "+" || k === "=") zoom(0.5);
    else if (k === "-") zoom(2);
    else if (k === "[") jumpAlarm(-1);
    else if (k === "]") jumpAlarm(1);
    else if (k === ",") jumpRecording(-1);
    else if (k === ".") jumpRecording(1);
    else if (k === "i") mark("in");
    else if (k === "o") mark("out");
    else if (k === "b" && canOperate && here) addBookmark();
    else if (k === "l" && canOperate && here) addLock();
    else if (k === "e" && canOperate) startExport();
    else if (k === "Escape" && (s.selection || s.markIn !== null) && document.getElementById("help").hidden) clearSelection();
    else return;
    ev.preventDefault();
    ev.stopPropagation();
  }

  // -- start ------------------------------------------------------------------------------------

  document.addEventListener("keydown", onKey, true);
  pageHelp.push(...HELP);
  timers.push(setInterval(() => {
    const span = s.windowEnd - s.windowStart;
    if (s.follow && !s.drag && video.paused) setWindow(now() + span * 0.02 - span, now() + span * 0.02, { userChange: false });
    fetchData(true);
  }, REFRESH_MS));

  const cameras = await allCameras(ctx).catch(() => []);
  const option = (c) => {
    const value = remoteRef(c.station, c.name);
    const label = c.station ? `${c.display_name || c.name} (${c.site})` : c.display_name || c.name;
    return el("option", { value, selected: value === ref }, label);
  };
  cameraSelect.append(...cameras.map(option));
  if (!cameras.some((c) => remoteRef(c.station, c.name) === ref)) {
    cameraSelect.prepend(el("option", { value: ref, selected: true }, camera));
    status(`No camera "${camera}" (or you may not see it).`);
  }
  setPlayhead(s.playhead);
  renderSide();
  if (startUs) {
    setWindow(startUs - DEFAULT_WINDOW * 0.25, startUs + DEFAULT_WINDOW * 0.75, { userChange: false });
    await fetchData();
    seek(startUs);
  } else {
    setWindow(now() + DEFAULT_WINDOW * 0.02 - DEFAULT_WINDOW, now() + DEFAULT_WINDOW * 0.02, { userChange: false });
    status("Click the timeline to play from there.");
  }
  for (const job of exportsMade) if (job.ref === ref && job.state === "running" && job.id) pollExport(job);

  return () => {
    s.closed = true;
    document.removeEventListener("keydown", onKey, true);
    for (const h of HELP) {
      const i = pageHelp.indexOf(h);
      if (i >= 0) pageHelp.splice(i, 1);
    }
    for (const t of timers) clearInterval(t);
    clearTimeout(fetchTimer);
    cancelAnimationFrame(frame);
    resize.disconnect();
    video.pause();
    video.removeAttribute("src");
    video.load();
    delete container.dataset.windowStart;
    delete container.dataset.windowEnd;
    delete container.dataset.playheadUs;
  };
}

// -- helpers ------------------------------------------------------------------------------------

function emptyData() {
  return { from: Infinity, to: -Infinity, span: 0, ranges: [], gaps: [], alarms: [], bookmarks: [], locks: [], motion: [], motionLoaded: false };
}

// Recordings (segments) joined into the ranges that play without a break.
function mergeRanges(recordings) {
  const out = [];
  for (const r of [...recordings].sort((a, b) => a.start_us - b.start_us)) {
    const last = out[out.length - 1];
    if (last && r.start_us <= last.end + JOIN) last.end = Math.max(last.end, r.end_us);
    else out.push({ start: r.start_us, end: r.end_us });
  }
  return out;
}

// How much of the picture moved in a second: the share of the 16x16 motion grid's cells set,
// scaled up so that a person far away still shows (0..1).
function motionLevel(m) {
  let cells = 0;
  for (let i = 0; i < m.grid.length; i += 2) cells += BITS[parseInt(m.grid.substr(i, 2), 16)];
  const share = Math.max(cells / 256, m.score || 0);
  return share > 0 ? Math.min(1, 0.15 + Math.sqrt(share) * 1.5) : 0;
}

const BITS = Array.from({ length: 256 }, (_, n) => {
  let c = 0;
  for (let v = n; v; v >>= 1) c += v & 1;
  return c;
});

function legendText(withMotion) {
  const motion = withMotion ? "yellow: motion" : "motion: zoom in to 3 hours or less";
  return `Click: play from there · drag: move · wheel: zoom · Shift+drag: mark a range — blue: recorded · red: gap · ${motion} · triangles: alarms · green flags: bookmarks · orange: evidence locks · red line: playhead`;
}

function fmtSpan(us) {
  if (us < HOUR) return `${Math.round(us / MINUTE)} min`;
  if (us < 2 * DAY) return `${+(us / HOUR).toFixed(1)} h`;
  return `${+(us / DAY).toFixed(1)} days`;
}

function pad(n) {
  return String(n).padStart(2, "0");
}
