// The operator's overview: a grid of live cameras (1x1 to 8x8 or automatic), grouped by site or
// camera group, with paging and saved views; badges for offline, motion and alarms; a camera
// enlarged beside the grid (or full screen) on its main stream with digital zoom and pan. At a
// central station the grid has every site's cameras too, under a heading per site with its link
// state; a site's camera is known by its station and name (two sites may both have a "gate").
import { del, events, get, parseRef, put, remoteRef, siteCameras } from "./api.js";
import { pageHelp } from "./app.js";
import { LivePlayer } from "./live.js";
import { attempt, clear, el, formDialog, notify } from "./ui.js";

const LAYOUTS = ["auto", "1x1", "2x2", "3x3", "4x4", "5x5", "6x6", "7x7", "8x8"];
const SITE_STATES = {
  online: "online",
  link_down: "link down",
  station_offline: "station offline",
  stopped: "stopped",
  unknown: "state unknown",
};
const SITES_RELOAD_MS = 500;
const HEADING_PX = 28; // a site's heading in the grid, for the automatic layout's arithmetic
const HELP = [
  ["← ↑ → ↓", "Select a camera"],
  ["Enter", "Enlarge the selected camera"],
  ["Esc", "Close the enlarged camera"],
  ["f", "Full screen (enlarged camera)"],
  ["+ / - / 0", "Zoom in, out, reset (enlarged camera)"],
  ["1 … 8", "Grid of N x N"],
  ["Shift+A", "Automatic grid"],
  ["PageUp / PageDown", "Previous / next page"],
];

export async function mount(container, params, ctx) {
  const view = { layout: "auto", group_by: "site", group: null, cameras: null, page: 0 };
  // Cameras go by key: the name of this station's, "STATION/NAME" of a site's.
  const state = {
    cameras: [], // this station's and the sites', each with its key and station (null: here)
    local: [],
    remote: [],
    sites: new Map(), // at a central station: site name -> the site (state, station, cameras)
    heads: new Map(), // site name -> its heading in the grid
    online: new Map(),
    motion: new Map(), // key -> Set of zones moving
    tiles: new Map(), // key -> { tile, player }
    selected: 0,
    visible: [],
    cols: 1, // of the grid as drawn (arrow keys move by it)
    enlarged: null, // { key, player, box, zoom, x, y }
    views: [],
  };

  const layoutSelect = el("select.layout", { title: "Grid layout", on: { change: () => setLayout(layoutSelect.value) } },
    LAYOUTS.map((l) => el("option", { value: l }, l === "auto" ? "Automatic" : l)));
  const groupBySelect = el("select.group-by", { title: "Group cameras by", on: { change: () => { view.group_by = groupBySelect.value; view.group = null; view.page = 0; render(); } } },
    el("option", { value: "site" }, "By site"), el("option", { value: "group" }, "By camera group"), el("option", { value: "none" }, "Not grouped"));
  const groupSelect = el("select.group", { title: "Show", on: { change: () => { view.group = groupSelect.value || null; view.page = 0; render(); } } });
  const pageLabel = el("span.page-label.muted");
  const prev = el("button", { title: "Previous page (PageUp)", on: { click: () => turn(-1) } }, "◀");
  const next = el("button", { title: "Next page (PageDown)", on: { click: () => turn(1) } }, "▶");
  const viewSelect = el("select.views", { title: "Saved views", on: { change: () => applyView(viewSelect.value) } });
  const grid = el("div.grid");
  const body = el("div.overview-body", grid);
  container.append(
    el("div.overview",
      el("div.toolbar", layoutSelect, groupBySelect, groupSelect, prev, pageLabel, next,
        el("span.spacer"), viewSelect,
        el("button", { on: { click: saveView } }, "Save view"),
        el("button", { on: { click: deleteView } }, "Delete view")),
      body),
  );

  // -- data ---------------------------------------------------------------------------------

  async function load() {
    const [cams, health, views] = await Promise.all([
      get("/api/cameras"),
      get("/api/health").catch(() => ({ cameras: [] })),
      get("/api/views").catch(() => []),
    ]);
    state.local = cams.map((c) => ({ ...c, key: c.name, station: null }));
    for (const c of cams) state.online.set(c.name, !!c.online);
    for (const h of health.cameras || []) state.online.set(h.name ?? h.camera, !!h.online);
    state.views = views;
    await loadSites().catch(() => {});
    state.cameras = [...state.local, ...state.remote];
    renderViews();
  }

  // The sites of a central station with their cameras, state, motion (nothing elsewhere).
  async function loadSites() {
    if (!ctx.central) return;
    const sites = await get("/api/central/sites");
    state.sites = new Map(sites.map((x) => [x.name, x]));
    state.remote = siteCameras(sites).map((c) => ({ ...c, key: `${c.station}/${c.name}` }));
    for (const c of state.remote) {
      state.online.set(c.key, !!c.online);
      state.motion.set(c.key, new Set(c.motion ? [""] : []));
    }
    state.cameras = [...state.local, ...state.remote];
  }

  // A site's changes come as events; what its state is now (its station's availability counts
  // too) and which cameras it has are the server's to say: asked again once they settle.
  let sitesTimer = null;
  let left = false; // the page was left: nothing is drawn (no players started) any more
  function reloadSites() {
    clearTimeout(sitesTimer);
    sitesTimer = setTimeout(async () => {
      await loadSites().catch(() => {});
      if (!left) render();
    }, SITES_RELOAD_MS);
  }

  function cameraOf(key) {
    return state.cameras.find((c) => c.key === key) || null;
  }

  // Headings per site in the grid: at a central station, grouped by site.
  function withHeadings() {
    return ctx.central && view.group_by === "site";
  }

  function groupOf(c) {
    if (view.group_by === "site") return c.site || "";
    if (view.group_by === "group") return c.group || "";
    return "";
  }

  function chosen() {
    let list = [...state.cameras];
    if (view.cameras) {
      const order = new Map(view.cameras.map((n, i) => [n, i]));
      list = list.filter((c) => order.has(c.key)).sort((a, b) => order.get(a.key) - order.get(b.key));
    } else {
      list.sort((a, b) => groupOf(a).localeCompare(groupOf(b)) || a.name.localeCompare(b.name) || a.key.localeCompare(b.key));
    }
    if (view.group !== null && view.group_by !== "none") list = list.filter((c) => groupOf(c) === view.group);
    return list;
  }

  function dims(n) {
    if (view.layout !== "auto") {
      const [c, r] = view.layout.split("x").map(Number);
      return [c, r];
    }
    const cols = Math.min(8, Math.max(1, Math.ceil(Math.sqrt(n))));
    const rows = Math.min(8, Math.max(1, Math.ceil(n / cols)));
    return [cols, rows];
  }

  // -- rendering ------------------------------------------------------------------------------

  function renderGroups() {
    const groups = [...new Set(state.cameras.map(groupOf))].filter(Boolean).sort();
    clear(groupSelect).append(el("option", { value: "" }, "All cameras"),
      ...groups.map((g) => el("option", { value: g, selected: g === view.group }, g)));
    groupSelect.hidden = view.group_by === "none";
  }

  function renderViews() {
    clear(viewSelect).append(el("option", { value: "" }, "Saved views…"),
      ...state.views.map((v) => el("option", { value: v.name }, v.name)));
  }

  function render() {
    layoutSelect.value = view.layout;
    groupBySelect.value = view.group_by;
    renderGroups();
    const list = chosen();
    let [cols, rows] = dims(list.length);
    const per = cols * rows;
    const pages = Math.max(1, Math.ceil(list.length / per));
    view.page = Math.min(view.page, pages - 1);
    pageLabel.textContent = `page ${view.page + 1} of ${pages} · ${list.length} cameras`;
    prev.disabled = view.page === 0;
    next.disabled = view.page >= pages - 1;
    state.visible = list.slice(view.page * per, view.page * per + per);
    const groups = withHeadings() ? sitesShown(view.page === pages - 1) : null;
    if (groups && view.layout === "auto") [cols, rows] = [autoCols([...groups.values()]), 0];
    state.cols = cols;
    grid.style.gridTemplateColumns = `repeat(${cols}, minmax(0, 1fr))`;
    grid.style.gridTemplateRows = `repeat(${rows}, minmax(0, 1fr))`;
    // Tiles of cameras still shown keep their connection; the others are closed.
    const keep = new Set(state.visible.map((c) => c.key));
    for (const [key, t] of state.tiles) {
      if (!keep.has(key)) {
        t.player.destroy();
        state.tiles.delete(key);
      }
    }
    let nodes = state.visible.map((c) => tileFor(c).tile);
    if (groups) nodes = headed(groups, cols, rows);
    else for (let i = state.visible.length; i < per && per <= 64; i++) nodes.push(el("div.tile.empty"));
    grid.replaceChildren(...nodes);
    state.selected = Math.min(state.selected, Math.max(0, state.visible.length - 1));
    for (const c of state.visible) decorate(c.key);
    markSelected();
  }

  // The page's cameras by site; on the last page also the sites that have none to show.
  function sitesShown(last) {
    const bySite = new Map();
    for (const c of state.visible) {
      if (!bySite.has(c.site || "")) bySite.set(c.site || "", []);
      bySite.get(c.site || "").push(c);
    }
    if (last && view.group === null) {
      for (const name of [...state.sites.keys()].sort()) if (!bySite.has(name)) bySite.set(name, []);
    }
    return bySite;
  }

  // The automatic layout under headings: the number of columns that shows the pictures (16:9)
  // largest, each site starting a row of its own.
  function autoCols(groups) {
    const w = grid.clientWidth || 1600;
    const h = Math.max(100, (grid.clientHeight || 900) - HEADING_PX * groups.length);
    let best = 1;
    let size = 0;
    for (let c = 1; c <= 8; c++) {
      const rows = groups.reduce((n, g) => n + Math.ceil(g.length / c), 0);
      const picture = Math.min(w / c, (h / Math.max(1, rows)) * (16 / 9));
      if (picture > size * 1.01) [best, size] = [c, picture];
    }
    return best;
  }

  // The tiles under their sites' headings, each site starting a row. The rows are the
  // headings' height and shares of the rest, at least the layout's number of them (tiles keep
  // the layout's size).
  function headed(bySite, cols, minRows) {
    const nodes = [];
    const rows = [];
    let tileRows = 0;
    for (const [site, cams] of bySite) {
      nodes.push(headingFor(site), ...cams.map((c) => tileFor(c).tile));
      const n = Math.ceil(cams.length / cols);
      rows.push("auto", ...Array(n).fill("minmax(0, 1fr)"));
      tileRows += n;
    }
    for (; tileRows < minRows; tileRows++) rows.push("minmax(0, 1fr)");
    grid.style.gridTemplateRows = rows.join(" ");
    return nodes;
  }

  function headingFor(site) {
    let h = state.heads.get(site);
    if (!h) {
      h = el("div.site-heading", { dataset: { site } });
      state.heads.set(site, h);
    }
    renderHeading(site);
    return h;
  }

  // A site's name, and at a central station where it is: here, or its station and link state.
  function renderHeading(site) {
    const h = state.heads.get(site);
    if (!h) return;
    const remote = state.sites.get(site);
    const count = state.cameras.filter((c) => (c.site || "") === site).length;
    const where = remote
      ? [el(`span.badge.site-state.${remote.state}`, SITE_STATES[remote.state] || remote.state),
        el("span.muted", `station ${remote.station || "not known yet"}`)]
      : [el("span.muted", "this station")];
    // The site's own name for itself and whether it is armed, as the site last said.
    if (remote && remote.armed !== null && remote.armed !== undefined) {
      where.push(el("span.badge", remote.armed ? "armed" : "disarmed"));
    }
    const name = (remote && remote.display_name) || site || "Without a site";
    h.dataset.state = remote ? remote.state : "local";
    h.replaceChildren(el("strong", name), ...where,
      el("span.muted", count ? `${count} camera${count === 1 ? "" : "s"}` : "no cameras"));
  }

  function tileFor(c) {
    let t = state.tiles.get(c.key);
    if (t) return t;
    const badges = el("span.badges");
    const tile = el("div.tile", {
      tabIndex: -1,
      dataset: { camera: c.name, key: c.key, ...(c.station ? { station: c.station } : {}) },
      title: `${c.name} (${c.site || "no site"}${c.station ? `, station ${c.station}` : ""}) — click to enlarge`,
      on: {
        click: () => {
          state.selected = state.visible.findIndex((v) => v.key === c.key);
          markSelected();
          enlarge(c.key);
        },
      },
    });
    const player = new LivePlayer(c.name, { station: c.station, stream: "sub", stillWidth: 480 });
    tile.append(player.element, el("div.label", el("strong", c.name), el("span.site", c.site || ""), badges));
    t = { tile, player, badges };
    state.tiles.set(c.key, t);
    return t;
  }

  // The most urgent open alarm of a camera (an alarm of a site is of its station's cameras).
  function topAlarm(c) {
    let best = null;
    for (const a of ctx.openAlarms.values()) {
      if ((a.station || null) !== c.station) continue;
      if (a.camera !== c.name && !(a.related_cameras || []).includes(c.name)) continue;
      if (!best || a.priority_level < best.priority_level) best = a;
    }
    return best;
  }

  function decorate(key) {
    const t = state.tiles.get(key);
    const c = cameraOf(key);
    if (!t || !c) return;
    const offline = state.online.get(key) === false;
    const moving = (state.motion.get(key) || new Set()).size > 0;
    const alarm = topAlarm(c);
    t.tile.classList.toggle("offline", offline);
    t.tile.classList.toggle("motion", moving);
    t.tile.classList.toggle("alarm", !!alarm);
    if (alarm) t.tile.style.setProperty("--alarm-colour", alarm.colour);
    else t.tile.style.removeProperty("--alarm-colour");
    t.tile.dataset.alarmId = alarm ? String(alarm.id) : "";
    if (c.station) t.tile.dataset.alarmStation = alarm ? c.station : "";
    const badges = [];
    if (offline) badges.push(el("span.badge.offline", "offline"));
    if (moving) badges.push(el("span.badge.motion", "motion"));
    if (alarm) {
      const b = el("span.badge.alarm", { title: alarm.title }, `alarm: ${alarm.priority}`);
      b.style.borderColor = alarm.colour;
      badges.push(b);
    }
    t.badges.replaceChildren(...badges);
  }

  function markSelected() {
    state.visible.forEach((c, i) => {
      const t = state.tiles.get(c.key);
      if (t) t.tile.classList.toggle("selected", i === state.selected);
    });
  }

  // -- enlarged camera ------------------------------------------------------------------------

  // key: a camera's (see state); one not in the list is this station's camera of that name.
  function enlarge(key) {
    if (state.enlarged && state.enlarged.key === key) return;
    closeEnlarged();
    const cam = cameraOf(key) || { name: key, key, station: null };
    const camera = cam.name;
    const player = new LivePlayer(camera, { station: cam.station, stream: "main", stillWidth: 1920 });
    const viewport = el("div.viewport", player.element);
    const zoomLabel = el("span.muted.zoom-label", "100%");
    const where = cam.station ? `${cam.site || ""} · station ${cam.station}` : cam.site || "";
    const box = el("section.enlarged", { dataset: { camera, key, ...(cam.station ? { station: cam.station } : {}) } },
      el("div.bar",
        el("strong", camera), el("span.muted", where), el("span.spacer"),
        el("button", { title: "Zoom out (-)", on: { click: () => zoomBy(1 / 1.5) } }, "−"), zoomLabel,
        el("button", { title: "Zoom in (+)", on: { click: () => zoomBy(1.5) } }, "+"),
        el("button", { title: "Reset zoom (0)", on: { click: () => setZoom(1, 0, 0) } }, "1:1"),
        el("button", { title: "Playback", on: { click: () => ctx.navigate(`#/playback/${remoteRef(cam.station, camera)}`) } }, "Playback"),
        el("button", { title: "Full screen (f)", on: { click: toggleFull } }, "Full screen"),
        el("button", { title: "Close (Esc)", on: { click: closeEnlarged } }, "✕")),
      viewport);
    body.append(box);
    const e = { key, player, box, viewport, zoomLabel, zoom: 1, x: 0, y: 0 };
    state.enlarged = e;
    // Digital zoom: the wheel zooms around the pointer; dragging pans.
    viewport.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const r = viewport.getBoundingClientRect();
      zoomBy(ev.deltaY < 0 ? 1.25 : 0.8, ev.clientX - r.left, ev.clientY - r.top);
    }, { passive: false });
    let drag = null;
    viewport.addEventListener("pointerdown", (ev) => {
      drag = { x: ev.clientX, y: ev.clientY, ox: e.x, oy: e.y };
      viewport.setPointerCapture(ev.pointerId);
    });
    viewport.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      setZoom(e.zoom, drag.ox + ev.clientX - drag.x, drag.oy + ev.clientY - drag.y);
    });
    viewport.addEventListener("pointerup", () => { drag = null; });
    viewport.addEventListener("dblclick", () => setZoom(1, 0, 0));
  }

  function zoomBy(f, cx, cy) {
    const e = state.enlarged;
    if (!e) return;
    const r = e.viewport.getBoundingClientRect();
    cx = cx ?? r.width / 2;
    cy = cy ?? r.height / 2;
    const z = Math.min(16, Math.max(1, e.zoom * f));
    const k = z / e.zoom;
    // Keep the point under (cx, cy) where it is.
    setZoom(z, cx - (cx - e.x) * k, cy - (cy - e.y) * k);
  }

  function setZoom(z, x, y) {
    const e = state.enlarged;
    if (!e) return;
    const r = e.viewport.getBoundingClientRect();
    // The picture never leaves a gap at an edge.
    x = Math.min(0, Math.max(r.width * (1 - z), x));
    y = Math.min(0, Math.max(r.height * (1 - z), y));
    Object.assign(e, { zoom: z, x, y });
    e.player.element.style.transformOrigin = "0 0";
    e.player.element.style.transform = `translate(${x}px, ${y}px) scale(${z})`;
    e.zoomLabel.textContent = `${Math.round(z * 100)}%`;
    e.box.dataset.zoom = String(z);
  }

  // The screen's full size where the browser allows it (a wall monitor), else the window's.
  function toggleFull() {
    const e = state.enlarged;
    if (!e) return;
    if (document.fullscreenElement) {
      document.exitFullscreen().catch(() => {});
      return;
    }
    const on = !e.box.classList.contains("fullscreen");
    e.box.classList.toggle("fullscreen", on);
    if (on && e.box.requestFullscreen) e.box.requestFullscreen().catch(() => {});
  }
  const onFullscreenChange = () => {
    if (!document.fullscreenElement && state.enlarged) state.enlarged.box.classList.remove("fullscreen");
  };
  document.addEventListener("fullscreenchange", onFullscreenChange);

  function closeEnlarged() {
    const e = state.enlarged;
    if (!e) return;
    e.player.destroy();
    e.box.remove();
    state.enlarged = null;
  }

  // -- navigation, views ----------------------------------------------------------------------

  function setLayout(l) {
    view.layout = l;
    view.page = 0;
    render();
  }

  function turn(d) {
    view.page = Math.max(0, view.page + d);
    render();
  }

  async function saveView() {
    const v = await formDialog("Save view", [{ name: "name", label: "Name", required: true, value: viewSelect.value || "" }], { submit: "Save" });
    if (!v) return;
    const name = v.name.trim().replace(/[^A-Za-z0-9_.-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "");
    if (!name) return;
    const ok = await attempt(() => put(`/api/views/${encodeURIComponent(name)}`, { ...view }), "Saving the view");
    if (!ok) return;
    state.views = await get("/api/views");
    renderViews();
    viewSelect.value = name;
    notify(`View ${name} saved`, "ok");
  }

  async function deleteView() {
    const name = viewSelect.value;
    if (!name) return;
    if (!window.confirm(`Delete the view ${name}?`)) return;
    await attempt(() => del(`/api/views/${encodeURIComponent(name)}`), "Deleting the view");
    state.views = await get("/api/views");
    renderViews();
  }

  function applyView(name) {
    const v = state.views.find((x) => x.name === name);
    if (!v) return;
    Object.assign(view, { layout: "auto", group_by: "site", group: null, cameras: null, page: 0 }, v.view);
    render();
  }

  function onKey(ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const t = ev.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement) return;
    if (document.querySelector("dialog[open]")) return;
    const cols = state.cols;
    const n = state.visible.length;
    const move = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -cols, ArrowDown: cols }[ev.key];
    if (move !== undefined && n) {
      state.selected = Math.min(n - 1, Math.max(0, state.selected + move));
      markSelected();
      if (state.enlarged) enlarge(state.visible[state.selected].key);
    } else if (ev.key === "Enter" && n) enlarge(state.visible[state.selected].key);
    else if (ev.key === "Escape") {
      if (state.enlarged && state.enlarged.box.classList.contains("fullscreen")) toggleFull();
      else closeEnlarged();
    } else if (ev.key === "f") toggleFull();
    else if ((ev.key === "+" || ev.key === "=") && state.enlarged) zoomBy(1.5);
    else if (ev.key === "-" && state.enlarged) zoomBy(1 / 1.5);
    else if (ev.key === "0" && state.enlarged) setZoom(1, 0, 0);
    else if (/^[1-8]$/.test(ev.key)) setLayout(`${ev.key}x${ev.key}`);
    else if (ev.key === "A") setLayout("auto");
    else if (ev.key === "PageDown") turn(1);
    else if (ev.key === "PageUp") turn(-1);
    else return;
    ev.preventDefault();
    ev.stopPropagation();
  }

  // -- live updates ---------------------------------------------------------------------------

  const off = [
    events.on("camera", (d) => {
      state.online.set(d.camera, !!d.online);
      decorate(d.camera);
    }),
    events.on("motion", (d) => {
      if (!d.camera) return;
      const zones = state.motion.get(d.camera) || new Set();
      if (d.kind === "motion") zones.add(d.zone || "");
      else zones.delete(d.zone || "");
      state.motion.set(d.camera, zones);
      decorate(d.camera);
    }),
    events.on("alarm", (d) => {
      const a = d.alarm || {};
      for (const c of [a.camera, ...(a.related_cameras || [])]) if (c) decorate(c);
    }),
    events.on("remote_alarm", (d) => {
      const a = d.alarm || {};
      for (const c of [a.camera, ...(a.related_cameras || [])]) if (c) decorate(`${d.station}/${c}`);
    }),
    // A site's camera is named by its site here; the site says which station it is.
    events.on("remote_camera", (d) => {
      const site = state.sites.get(d.site);
      if (!site || !site.station) return;
      const key = `${site.station}/${d.camera}`;
      if (d.status !== undefined) state.online.set(key, d.status === "online");
      if (d.motion !== undefined) state.motion.set(key, new Set(d.motion === "ON" ? [""] : []));
      decorate(key);
    }),
    events.on("remote_site", (d) => {
      const site = state.sites.get(d.site);
      if (site && d.state) {
        Object.assign(site, { state: d.state, link: d.link });
        renderHeading(d.site);
      }
      reloadSites();
    }),
    events.on("station", async (d) => {
      if (!d.config_changed) return;
      await load().catch(() => {});
      render();
    }),
  ];
  document.addEventListener("keydown", onKey, true);
  pageHelp.push(...HELP);

  await load();
  render();
  const ref = parseRef(params);
  if (ref.rest[0]) enlarge(ref.station ? `${ref.station}/${ref.rest[0]}` : ref.rest[0]);

  return () => {
    document.removeEventListener("keydown", onKey, true);
    document.removeEventListener("fullscreenchange", onFullscreenChange);
    pageHelp.splice(0, pageHelp.length);
    for (const f of off) f();
    left = true;
    clearTimeout(sitesTimer);
    closeEnlarged();
    for (const t of state.tiles.values()) t.player.destroy();
    state.tiles.clear();
  };
}
