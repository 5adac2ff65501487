// The operator's overview: a grid of live cameras (1x1 to 8x8 or automatic), grouped by site or
// camera group, with paging and saved views; badges for offline, motion and alarms; a camera
// enlarged beside the grid (or full screen) on its main stream with digital zoom and pan.
import { del, events, get, put } from "./api.js";
import { pageHelp } from "./app.js";
import { LivePlayer } from "./live.js";
import { attempt, clear, el, formDialog, notify } from "./ui.js";

const LAYOUTS = ["auto", "1x1", "2x2", "3x3", "4x4", "5x5", "6x6", "7x7", "8x8"];
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
  const state = {
    cameras: [],
    online: new Map(),
    motion: new Map(), // camera -> Set of zones moving
    tiles: new Map(), // camera -> { tile, player }
    selected: 0,
    visible: [],
    enlarged: null, // { camera, player, box, zoom, x, y }
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
    state.cameras = cams;
    for (const c of cams) state.online.set(c.name, !!c.online);
    for (const h of health.cameras || []) state.online.set(h.name ?? h.camera, !!h.online);
    state.views = views;
    renderViews();
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
      list = list.filter((c) => order.has(c.name)).sort((a, b) => order.get(a.name) - order.get(b.name));
    } else {
      list.sort((a, b) => groupOf(a).localeCompare(groupOf(b)) || a.name.localeCompare(b.name));
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
    const [cols, rows] = dims(list.length);
    const per = cols * rows;
    const pages = Math.max(1, Math.ceil(list.length / per));
    view.page = Math.min(view.page, pages - 1);
    pageLabel.textContent = `page ${view.page + 1} of ${pages} · ${list.length} cameras`;
    prev.disabled = view.page === 0;
    next.disabled = view.page >= pages - 1;
    state.visible = list.slice(view.page * per, view.page * per + per);
    grid.style.gridTemplateColumns = `repeat(${cols}, minmax(0, 1fr))`;
    grid.style.gridTemplateRows = `repeat(${rows}, minmax(0, 1fr))`;
    // Tiles of cameras still shown keep their connection; the others are closed.
    const keep = new Set(state.visible.map((c) => c.name));
    for (const [name, t] of state.tiles) {
      if (!keep.has(name)) {
        t.player.destroy();
        state.tiles.delete(name);
      }
    }
    const nodes = state.visible.map((c) => tileFor(c).tile);
    for (let i = state.visible.length; i < per && per <= 64; i++) nodes.push(el("div.tile.empty"));
    grid.replaceChildren(...nodes);
    state.selected = Math.min(state.selected, Math.max(0, state.visible.length - 1));
    for (const c of state.visible) decorate(c.name);
    markSelected();
  }

  function tileFor(c) {
    let t = state.tiles.get(c.name);
    if (t) return t;
    const badges = el("span.badges");
    const tile = el("div.tile", {
      tabIndex: -1,
      dataset: { camera: c.name },
      title: `${c.name} (${c.site || "no site"}) — click to enlarge`,
      on: {
        click: () => {
          state.selected = state.visible.findIndex((v) => v.name === c.name);
          markSelected();
          enlarge(c.name);
        },
      },
    });
    const player = new LivePlayer(c.name, { stream: "sub", stillWidth: 480 });
    tile.append(player.element, el("div.label", el("strong", c.name), el("span.site", c.site || ""), badges));
    t = { tile, player, badges };
    state.tiles.set(c.name, t);
    return t;
  }

  function topAlarm(camera) {
    let best = null;
    for (const a of ctx.openAlarms.values()) {
      if (a.camera !== camera && !(a.related_cameras || []).includes(camera)) continue;
      if (!best || a.priority_level < best.priority_level) best = a;
    }
    return best;
  }

  function decorate(camera) {
    const t = state.tiles.get(camera);
    if (!t) return;
    const offline = state.online.get(camera) === false;
    const moving = (state.motion.get(camera) || new Set()).size > 0;
    const alarm = topAlarm(camera);
    t.tile.classList.toggle("offline", offline);
    t.tile.classList.toggle("motion", moving);
    t.tile.classList.toggle("alarm", !!alarm);
    if (alarm) t.tile.style.setProperty("--alarm-colour", alarm.colour);
    else t.tile.style.removeProperty("--alarm-colour");
    t.tile.dataset.alarmId = alarm ? String(alarm.id) : "";
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
      const t = state.tiles.get(c.name);
      if (t) t.tile.classList.toggle("selected", i === state.selected);
    });
  }

  // -- enlarged camera ------------------------------------------------------------------------

  function enlarge(camera) {
    if (state.enlarged && state.enlarged.camera === camera) return;
    closeEnlarged();
    const player = new LivePlayer(camera, { stream: "main", stillWidth: 1920 });
    const viewport = el("div.viewport", player.element);
    const zoomLabel = el("span.muted.zoom-label", "100%");
    const cam = state.cameras.find((c) => c.name === camera) || { name: camera };
    const box = el("section.enlarged", { dataset: { camera } },
      el("div.bar",
        el("strong", camera), el("span.muted", cam.site || ""), el("span.spacer"),
        el("button", { title: "Zoom out (-)", on: { click: () => zoomBy(1 / 1.5) } }, "−"), zoomLabel,
        el("button", { title: "Zoom in (+)", on: { click: () => zoomBy(1.5) } }, "+"),
        el("button", { title: "Reset zoom (0)", on: { click: () => setZoom(1, 0, 0) } }, "1:1"),
        el("button", { title: "Playback", on: { click: () => ctx.navigate(`#/playback/${encodeURIComponent(camera)}`) } }, "Playback"),
        el("button", { title: "Full screen (f)", on: { click: toggleFull } }, "Full screen"),
        el("button", { title: "Close (Esc)", on: { click: closeEnlarged } }, "✕")),
      viewport);
    body.append(box);
    const e = { camera, player, box, viewport, zoomLabel, zoom: 1, x: 0, y: 0 };
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
    const [cols] = dims(chosen().length);
    const n = state.visible.length;
    const move = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -cols, ArrowDown: cols }[ev.key];
    if (move !== undefined && n) {
      state.selected = Math.min(n - 1, Math.max(0, state.selected + move));
      markSelected();
      if (state.enlarged) enlarge(state.visible[state.selected].name);
    } else if (ev.key === "Enter" && n) enlarge(state.visible[state.selected].name);
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
  if (params[0]) enlarge(params[0]);

  return () => {
    document.removeEventListener("keydown", onKey, true);
    document.removeEventListener("fullscreenchange", onFullscreenChange);
    pageHelp.splice(0, pageHelp.length);
    for (const f of off) f();
    closeEnlarged();
    for (const t of state.tiles.values()) t.player.destroy();
    state.tiles.clear();
  };
}
