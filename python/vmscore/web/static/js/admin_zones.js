// Administration, zones: a camera's snapshot with its motion zones and masks drawn over it.
// Polygons are kept in coordinates relative to the image (0..1), as the station stores them.
// Draw: "New zone" or "New mask", then click points; double-click, Enter or a click on the first
// point closes the polygon, Backspace removes the last point, Esc cancels. Drag a point to move
// it, drag inside the selected polygon to move it all, double-click its edge to add a point.
import { get, put } from "./api.js";
import { pageHelp } from "./app.js";
import { attempt, el, notify } from "./ui.js";
import { confirmDialog, errorBox, input, numberInput, problems, row, saving, select } from "./admin_forms.js";

const SNAPSHOT_WIDTH = 1280;
const HANDLE_PX = 9; // how near (CSS pixels) a point must be to be grabbed
// Zones take the colours in turn (overlapping ones stay apart); masks are red and dashed.
const ZONE_COLOURS = ["#3fa7ff", "#2fbf71", "#f5b50a", "#c77dff", "#36d1c4", "#ff8c42"];
const MASK_COLOUR = "#ff4d4d";
const HELP = [
  ["n", "New zone"],
  ["Enter / double-click", "Close the polygon being drawn"],
  ["Backspace", "Remove the last point drawn"],
  ["Esc", "Cancel drawing / unselect"],
  ["Delete", "Delete the selected zone or mask"],
];
const KINDS = [
  { value: "include", label: "Zone (motion is reported)" },
  { value: "exclude", label: "Mask (never analysed)" },
];

export async function mount(container, params, ctx) {
  const state = {
    cameras: [],
    camera: null, // the camera's JSON as loaded
    zones: [], // working copy: {name, kind, polygon: [[x, y]...], sensitivity, ...}
    selected: -1,
    drawing: null, // {kind, points} while a polygon is being drawn
    pointer: null, // last pointer position (relative) for the rubber band
    drag: null, // {zone, point (index or -1 for the whole polygon), from, original}
    dirty: false,
  };

  const cameraSelect = el("select.zone-camera", { title: "Camera", on: { change: () => switchCamera(cameraSelect.value) } });
  // Drawing starts once a camera is loaded (its zones would replace a shape begun before).
  const newZone = el("button", { dataset: { action: "new-zone" }, disabled: true, title: "Draw a zone where motion is reported (n)", on: { click: () => startDrawing("include") } }, "New zone");
  const newMask = el("button", { dataset: { action: "new-mask" }, disabled: true, title: "Draw a mask: an area never analysed (a road, a tree)", on: { click: () => startDrawing("exclude") } }, "New mask");
  const saveButton = el("button.primary", { dataset: { action: "save-zones" }, on: { click: save } }, "Save");
  const revertButton = el("button", { dataset: { action: "revert-zones" }, on: { click: revert } }, "Revert");
  const snapButton = el("button", { title: "Take a new snapshot", on: { click: () => loadSnapshot() } }, "New snapshot");
  const status = el("span.zone-status.muted", { role: "status" });
  const image = el("img.zone-image", { alt: "Camera snapshot", draggable: false });
  const canvas = el("canvas.zone-canvas", { tabIndex: 0, "aria-label": "Zones of the camera: click to draw points" });
  const editor = el("div.zone-editor", image, canvas);
  const imageNote = el("p.muted.zone-note");
  const stage = el("div.main.zone-stage", editor, imageNote);
  const list = el("ul.zone-list");
  const details = el("div.zone-details");
  const errors = errorBox();
  container.append(
    el("div.zones-page",
      el("div.toolbar", el("label", { for: "zone-camera" }, "Camera"), cameraSelect, newZone, newMask, el("span.sep"), saveButton, revertButton, snapButton, el("span.spacer"), status),
      el("div.split",
        stage,
        el("aside.side.admin-side",
          el("h2", "Zones and masks"),
          list,
          details,
          errors,
          el("h3", "Drawing"),
          el("ul.help-list",
            el("li", "New zone / New mask, then click the points of the polygon."),
            el("li", "Double-click, ", el("kbd", "Enter"), " or click the first point to close it."),
            el("li", el("kbd", "Backspace"), " removes the last point, ", el("kbd", "Esc"), " cancels."),
            el("li", "Drag a point to move it; drag inside the selected shape to move it all."),
            el("li", "Double-click an edge of the selected shape to add a point; ", el("kbd", "Delete"), " removes the shape."),
            el("li", "Changes apply when saved.")))),
    ),
  );
  cameraSelect.id = "zone-camera";

  // -- loading -----------------------------------------------------------------------------

  async function loadCameras() {
    state.cameras = (await get("/api/cameras")).sort((a, b) => a.name.localeCompare(b.name));
    cameraSelect.replaceChildren(...state.cameras.map((c) => el("option", { value: c.name }, c.display_name ? `${c.name} — ${c.display_name}` : c.name)));
  }

  async function loadCamera(name) {
    const cam = await get(`/api/cameras/${encodeURIComponent(name)}`);
    state.camera = cam;
    state.zones = (cam.motion.zones || []).map((z) => ({ ...z, polygon: z.polygon.map((p) => [...p]) }));
    state.selected = Math.min(state.selected, state.zones.length - 1);
    state.drawing = null;
    state.drag = null;
    setDirty(false);
    newZone.disabled = newMask.disabled = false;
    cameraSelect.value = cam.name;
    history.replaceState(null, "", `#/admin/zones/${encodeURIComponent(cam.name)}`);
    renderSide();
    draw();
  }

  function loadSnapshot() {
    const cam = state.camera;
    if (!cam) return;
    imageNote.textContent = "";
    editor.classList.remove("no-picture");
    image.src = `/api/cameras/${encodeURIComponent(cam.name)}/snapshot.jpg?width=${SNAPSHOT_WIDTH}&t=${Date.now()}`;
  }

  image.addEventListener("load", () => fitCanvas());
  image.addEventListener("error", () => {
    // Zones can still be drawn on a camera that shows no picture (offline, not yet keyed).
    editor.classList.add("no-picture");
    image.removeAttribute("src");
    imageNote.textContent = "No picture from this camera right now: zones are drawn on an empty 16:9 frame.";
    fitCanvas();
  });

  async function switchCamera(name) {
    if (state.camera && name === state.camera.name) return;
    if (state.dirty && !(await confirmDialog("Discard the changes?", `The zones of ${state.camera.name} have unsaved changes.`, { ok: "Discard", danger: true }))) {
      cameraSelect.value = state.camera.name;
      return;
    }
    state.selected = -1;
    errors.clear();
    await attempt(() => loadCamera(name), "Loading the camera");
    loadSnapshot();
  }

  async function revert() {
    if (!state.camera) return;
    errors.clear();
    await attempt(() => loadCamera(state.camera.name), "Loading the camera");
  }

  async function save() {
    if (!state.camera) return;
    if (state.drawing) finishDrawing();
    const name = state.camera.name;
    const body = state.zones.map(zoneBody);
    const saved = await saving(saveButton, errors, null, () => put(`/api/cameras/${encodeURIComponent(name)}/zones`, body));
    if (saved === undefined) {
      pointAtProblem();
      return;
    }
    notify(`Zones of ${name} saved`, "ok");
    const keep = state.zones[state.selected] && state.zones[state.selected].name;
    // What the station kept, not what was sent.
    await attempt(() => loadCamera(name), "Loading the camera");
    state.selected = state.zones.findIndex((z) => z.name === keep);
    renderSide();
    draw();
  }

  function zoneBody(z) {
    const round = (v) => Math.round(v * 10000) / 10000;
    return {
      name: z.name,
      kind: z.kind,
      polygon: z.polygon.map(([x, y]) => [round(x), round(y)]),
      sensitivity: z.sensitivity ?? null,
      min_area: z.min_area ?? null,
      min_fraction: z.min_fraction ?? 0,
      persistence: z.persistence ?? null,
    };
  }

  // Selects the zone the station complained about ("...motion.zones[2].name: ...").
  function pointAtProblem() {
    const box = errors.querySelector("code");
    const text = box ? box.textContent : "";
    const m = /zones\[(\d+)\](?:\.(\w+))?/.exec(text);
    if (!m) return;
    selectZone(Number(m[1]));
    const field = m[2] && details.querySelector(`[name="${m[2]}"]`);
    if (field) field.classList.add("invalid");
  }

  function setDirty(on) {
    state.dirty = on;
    saveButton.disabled = !on;
    revertButton.disabled = !on;
    updateStatus();
  }

  // -- the side panel ----------------------------------------------------------------------

  function selectZone(i) {
    state.selected = i;
    renderSide();
    draw();
  }

  function renderSide() {
    renderList();
    renderDetails();
  }

  function renderList() {
    list.replaceChildren(...state.zones.map((z, i) => el("li", {
      class: i === state.selected ? "selected" : null,
      dataset: { zone: z.name, kind: z.kind },
      tabIndex: 0,
      on: { click: () => selectZone(i), keydown: (ev) => { if (ev.key === "Enter") selectZone(i); } },
    },
    el("span.swatch", { style: { background: colourOf(i) } }),
    el("span.zone-name", z.name),
    z.kind === "exclude" ? el("span.badge.mask", "mask") : el("span.badge", "zone"),
    el("span.muted", `${z.polygon.length} points`))));
    if (!state.zones.length) list.append(el("li.muted.empty", "No zones: motion anywhere in the picture counts."));
  }

  function renderDetails() {
    const z = state.zones[state.selected];
    if (!z) {
      details.replaceChildren(el("p.muted", state.zones.length ? "Select a zone to change it." : ""));
      return;
    }
    const m = state.camera.motion;
    const mask = z.kind === "exclude";
    const set = (key, parse) => (ev) => {
      const v = parse(ev.target.value);
      if (v === undefined) return;
      z[key] = v;
      setDirty(true);
      if (key === "name") {
        renderList();
        heading.textContent = `${mask ? "Mask" : "Zone"} ${z.name}`;
      } else if (key === "kind") {
        // The fields a mask has not are disabled.
        renderSide();
        details.querySelector("[name=kind]").focus();
      }
      draw();
    };
    const number = (v) => (v.trim() === "" ? null : Number(v));
    const rename = (v) => {
      const name = v.trim();
      const taken = state.zones.some((o) => o !== z && o.name === name);
      if (!name || taken) {
        notify(name ? `Another zone is named ${name}` : "A zone needs a name", "error");
        return undefined;
      }
      return name;
    };
    const heading = el("h3", `${mask ? "Mask" : "Zone"} ${z.name}`);
    details.replaceChildren(
      heading,
      el("div.form-grid",
        row("Name", input("name", z.name, { maxlength: 100, on: { change: set("name", rename) } })),
        row("Kind", select("kind", KINDS, z.kind, { on: { change: set("kind", (v) => v) } })),
        row("Sensitivity", numberInput("sensitivity", z.sensitivity, { min: 0, max: 1, step: 0.05, disabled: mask, placeholder: `camera's: ${m.sensitivity}`, on: { change: set("sensitivity", number) } }), "0 to 1; empty: the camera's"),
        row("Minimum area", numberInput("min_area", z.min_area, { min: 0, max: 0.99, step: 0.0005, disabled: mask, placeholder: `camera's: ${m.min_area}`, on: { change: set("min_area", number) } }), "smallest moving object, as a fraction of the image"),
        row("Zone fraction", numberInput("min_fraction", z.min_fraction || "", { min: 0, max: 1, step: 0.01, disabled: mask, placeholder: "0", on: { change: set("min_fraction", (v) => number(v) ?? 0) } }), "part of the zone that must change (0: any)"),
        row("Persistence", numberInput("persistence", z.persistence, { min: 1, max: 1000, step: 1, disabled: mask, placeholder: `camera's: ${m.persistence}`, on: { change: set("persistence", number) } }), "analysed frames with motion before it counts")),
      el("div.btn-row",
        el("button.danger", { dataset: { action: "delete-zone" }, on: { click: () => deleteSelected() } }, mask ? "Delete mask" : "Delete zone")),
    );
  }

  function deleteSelected() {
    if (state.selected < 0) return;
    const [gone] = state.zones.splice(state.selected, 1);
    state.selected = -1;
    setDirty(true);
    notify(`${gone.name} deleted (save to apply)`);
    renderSide();
    draw();
  }

  function updateStatus() {
    if (state.drawing) {
      const n = state.drawing.points.length;
      status.textContent = `Drawing a ${state.drawing.kind === "exclude" ? "mask" : "zone"}: ${n} point${n === 1 ? "" : "s"}${n >= 3 ? " — double-click or Enter to close" : " — click to add points"}; Esc cancels`;
    } else {
      status.textContent = state.dirty ? "Unsaved changes" : "";
    }
    status.classList.toggle("warn", state.dirty && !state.drawing);
  }

  // -- drawing -----------------------------------------------------------------------------

  function startDrawing(kind) {
    state.drawing = { kind, points: [] };
    state.selected = -1;
    renderSide();
    canvas.focus();
    canvas.classList.add("drawing");
    updateStatus();
    draw();
  }

  function cancelDrawing() {
    state.drawing = null;
    canvas.classList.remove("drawing");
    updateStatus();
    draw();
  }

  function finishDrawing() {
    const d = state.drawing;
    if (!d) return;
    if (d.points.length < 3) {
      notify("A zone needs at least 3 points");
      return;
    }
    const base = d.kind === "exclude" ? "mask" : "zone";
    let n = 1;
    while (state.zones.some((z) => z.name === `${base}-${n}`)) n++;
    state.zones.push({ name: `${base}-${n}`, kind: d.kind, polygon: d.points, sensitivity: null, min_area: null, min_fraction: 0, persistence: null });
    state.drawing = null;
    canvas.classList.remove("drawing");
    state.selected = state.zones.length - 1;
    setDirty(true);
    renderSide();
    draw();
    // Naming it is the next thing to do.
    const name = details.querySelector("[name=name]");
    if (name) {
      name.focus();
      name.select();
    }
  }

  // The picture as large as the stage allows at its own aspect ratio (a 640x360 camera is
  // drawn on as comfortably as a 4K one), and the canvas' pixels matched to it.
  function fitCanvas() {
    const aspect = image.naturalWidth && image.naturalHeight ? image.naturalWidth / image.naturalHeight : 16 / 9;
    const style = getComputedStyle(stage);
    const availW = stage.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const availH = stage.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom) - imageNote.offsetHeight;
    const width = Math.max(160, Math.min(availW, availH * aspect));
    editor.style.width = `${Math.floor(width)}px`;
    editor.style.height = `${Math.floor(width / aspect)}px`;
    const rect = canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.round(rect.width * dpr));
    canvas.height = Math.max(1, Math.round(rect.height * dpr));
    draw();
  }

  function draw() {
    const g = canvas.getContext("2d");
    const w = canvas.width;
    const h = canvas.height;
    const dpr = window.devicePixelRatio || 1;
    g.clearRect(0, 0, w, h);
    g.lineJoin = "round";
    const px = ([x, y]) => [x * w, y * h];
    state.zones.forEach((z, i) => drawZone(g, z, colourOf(i), i === state.selected, px, dpr));
    if (state.drawing) drawOpen(g, state.drawing, px, dpr);
  }

  // The colour of zone i: its place among the zones, or the masks' red.
  function colourOf(i) {
    const z = state.zones[i];
    if (z.kind === "exclude") return MASK_COLOUR;
    const n = state.zones.slice(0, i).filter((o) => o.kind !== "exclude").length;
    return ZONE_COLOURS[n % ZONE_COLOURS.length];
  }

  function drawZone(g, z, colour, selected, px, dpr) {
    g.beginPath();
    z.polygon.forEach((p, i) => (i ? g.lineTo(...px(p)) : g.moveTo(...px(p))));
    g.closePath();
    g.fillStyle = colour;
    g.globalAlpha = selected ? 0.35 : z.kind === "exclude" ? 0.25 : 0.15;
    g.fill();
    g.globalAlpha = 1;
    g.setLineDash(z.kind === "exclude" ? [8 * dpr, 5 * dpr] : []);
    g.strokeStyle = colour;
    g.lineWidth = (selected ? 3 : 2) * dpr;
    g.stroke();
    g.setLineDash([]);
    if (selected) for (const p of z.polygon) handle(g, px(p), dpr, "#fff");
    label(g, z, px, dpr, colour);
  }

  function drawOpen(g, d, px, dpr) {
    if (!d.points.length) return;
    const colour = d.kind === "exclude" ? MASK_COLOUR : "#fff";
    g.beginPath();
    d.points.forEach((p, i) => (i ? g.lineTo(...px(p)) : g.moveTo(...px(p))));
    g.strokeStyle = colour;
    g.lineWidth = 2 * dpr;
    g.stroke();
    if (state.pointer) {
      g.setLineDash([6 * dpr, 4 * dpr]);
      g.beginPath();
      g.moveTo(...px(d.points[d.points.length - 1]));
      g.lineTo(...px(state.pointer));
      if (d.points.length >= 2) g.lineTo(...px(d.points[0]));
      g.stroke();
      g.setLineDash([]);
    }
    d.points.forEach((p, i) => handle(g, px(p), dpr, i === 0 ? "#f5b50a" : colour));
  }

  function handle(g, [x, y], dpr, colour) {
    const s = 4 * dpr;
    g.fillStyle = colour;
    g.strokeStyle = "#000";
    g.lineWidth = dpr;
    g.fillRect(x - s, y - s, 2 * s, 2 * s);
    g.strokeRect(x - s, y - s, 2 * s, 2 * s);
  }

  function label(g, z, px, dpr, colour) {
    const pts = z.polygon.map(px);
    let [x, y] = pts.reduce(([ax, ay], [bx, by]) => [ax + bx / pts.length, ay + by / pts.length], [0, 0]);
    g.font = `${13 * dpr}px system-ui, sans-serif`;
    const text = z.kind === "exclude" ? `${z.name} (mask)` : z.name;
    const tw = g.measureText(text).width + 8 * dpr;
    const th = 18 * dpr;
    // Kept inside the picture even when the zone reaches past its edge.
    x = Math.min(Math.max(x, tw / 2), canvas.width - tw / 2);
    y = Math.min(Math.max(y, th / 2), canvas.height - th / 2);
    g.fillStyle = "rgba(0, 0, 0, 0.7)";
    g.fillRect(x - tw / 2, y - th / 2, tw, th);
    g.fillStyle = colour;
    g.textAlign = "center";
    g.textBaseline = "middle";
    g.fillText(text, x, y);
  }

  // -- pointer and keys --------------------------------------------------------------------

  function relative(ev) {
    const r = canvas.getBoundingClientRect();
    return [(ev.clientX - r.left) / r.width, (ev.clientY - r.top) / r.height];
  }

  // Distance in CSS pixels between two relative points.
  function distance(a, b) {
    const r = canvas.getBoundingClientRect();
    return Math.hypot((a[0] - b[0]) * r.width, (a[1] - b[1]) * r.height);
  }

  function vertexAt(p) {
    const order = state.selected >= 0 ? [state.selected, ...state.zones.keys()] : [...state.zones.keys()];
    for (const zi of order) {
      const z = state.zones[zi];
      const pi = z.polygon.findIndex((q) => distance(p, q) <= HANDLE_PX);
      if (pi >= 0) return { zone: zi, point: pi };
    }
    return null;
  }

  function zoneAt(p) {
    for (let i = state.zones.length - 1; i >= 0; i--) if (inside(p, state.zones[i].polygon)) return i;
    return -1;
  }

  function onPointerDown(ev) {
    if (ev.button !== 0) return;
    canvas.focus();
    const p = relative(ev);
    if (state.drawing) {
      const pts = state.drawing.points;
      if (pts.length >= 3 && distance(p, pts[0]) <= HANDLE_PX) finishDrawing();
      else pts.push(p);
      updateStatus();
      draw();
      return;
    }
    const v = vertexAt(p);
    // On the selected shape's edge counts as on the shape (its double-click adds a point).
    const sel = state.zones[state.selected];
    const onEdge = sel && nearestEdge(p, sel.polygon).distance <= HANDLE_PX;
    const zi = v ? v.zone : onEdge ? state.selected : zoneAt(p);
    if (zi !== state.selected) selectZone(zi);
    if (zi < 0) return;
    state.drag = { zone: zi, point: v ? v.point : -1, from: p, original: state.zones[zi].polygon.map((q) => [...q]), moved: false };
    canvas.setPointerCapture(ev.pointerId);
  }

  function onPointerMove(ev) {
    const p = relative(ev);
    if (state.drawing) {
      state.pointer = p;
      draw();
      return;
    }
    const d = state.drag;
    if (!d) {
      canvas.style.cursor = vertexAt(p) ? "grab" : zoneAt(p) >= 0 ? "move" : "crosshair";
      return;
    }
    const clamp = (v) => Math.min(1, Math.max(0, v));
    const z = state.zones[d.zone];
    if (d.point >= 0) {
      z.polygon[d.point] = [clamp(p[0]), clamp(p[1])];
    } else {
      // The whole shape moves, kept from leaving the picture by more than it already did.
      const xs = d.original.map((q) => q[0]);
      const ys = d.original.map((q) => q[1]);
      const within = (delta, lo, hi) => Math.min(Math.max(delta, Math.min(0, lo) - lo), Math.max(1, hi) - hi);
      const dx = within(p[0] - d.from[0], Math.min(...xs), Math.max(...xs));
      const dy = within(p[1] - d.from[1], Math.min(...ys), Math.max(...ys));
      z.polygon = d.original.map(([x, y]) => [x + dx, y + dy]);
    }
    d.moved = true;
    draw();
  }

  function onPointerUp(ev) {
    if (!state.drag) return;
    if (state.drag.moved) {
      setDirty(true);
      renderSide();
    }
    state.drag = null;
    if (canvas.hasPointerCapture(ev.pointerId)) canvas.releasePointerCapture(ev.pointerId);
  }

  function onDoubleClick(ev) {
    ev.preventDefault();
    if (state.drawing) {
      // The double-click's two clicks each added a point at the same place: keep one.
      const pts = state.drawing.points;
      while (pts.length >= 2 && distance(pts[pts.length - 1], pts[pts.length - 2]) <= HANDLE_PX / 2) pts.pop();
      finishDrawing();
      return;
    }
    const z = state.zones[state.selected];
    if (!z) return;
    const p = relative(ev);
    const edge = nearestEdge(p, z.polygon);
    if (edge && edge.distance <= HANDLE_PX) {
      z.polygon.splice(edge.index + 1, 0, edge.point);
      setDirty(true);
      renderSide();
      draw();
    }
  }

  function nearestEdge(p, poly) {
    let best = null;
    poly.forEach((a, i) => {
      const b = poly[(i + 1) % poly.length];
      const q = closestOnSegment(p, a, b);
      const dist = distance(p, q);
      if (!best || dist < best.distance) best = { index: i, point: q, distance: dist };
    });
    return best;
  }

  function onKey(ev) {
    const t = ev.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement) return;
    if (document.querySelector("dialog[open]") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (state.drawing) {
      if (ev.key === "Enter") finishDrawing();
      else if (ev.key === "Backspace") {
        state.drawing.points.pop();
        updateStatus();
        draw();
      } else if (ev.key === "Escape") cancelDrawing();
      else return;
    } else if ((ev.key === "Delete" || (ev.key === "Backspace" && t === canvas)) && state.selected >= 0) {
      deleteSelected();
    } else if (ev.key === "Escape" && state.selected >= 0) {
      selectZone(-1);
    } else if (ev.key === "n" && state.camera) {
      startDrawing("include");
    } else {
      return;
    }
    ev.preventDefault();
    ev.stopPropagation();
  }

  canvas.addEventListener("pointerdown", onPointerDown);
  canvas.addEventListener("pointermove", onPointerMove);
  canvas.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("pointercancel", onPointerUp);
  canvas.addEventListener("pointerleave", () => {
    state.pointer = null;
    if (state.drawing) draw();
  });
  canvas.addEventListener("dblclick", onDoubleClick);
  document.addEventListener("keydown", onKey);
  const resize = new ResizeObserver(() => fitCanvas());
  resize.observe(stage);
  pageHelp.push(...HELP);

  // -- start -------------------------------------------------------------------------------

  await attempt(loadCameras, "Loading the cameras");
  const first = params[0] && state.cameras.some((c) => c.name === params[0]) ? params[0] : state.cameras[0] && state.cameras[0].name;
  if (params[0] && first !== params[0]) notify(`No camera named ${params[0]}`, "error");
  if (first) {
    await attempt(() => loadCamera(first), "Loading the camera");
    loadSnapshot();
  } else {
    imageNote.textContent = "No cameras yet: add one on the Cameras tab.";
  }

  return () => {
    document.removeEventListener("keydown", onKey);
    resize.disconnect();
    pageHelp.splice(0, pageHelp.length);
  };
}

// Whether relative point p lies inside the polygon (even-odd rule).
function inside([x, y], poly) {
  let hit = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i];
    const [xj, yj] = poly[j];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) hit = !hit;
  }
  return hit;
}

function closestOnSegment(p, a, b) {
  const dx = b[0] - a[0];
  const dy = b[1] - a[1];
  const len = dx * dx + dy * dy;
  const t = len ? Math.min(1, Math.max(0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len)) : 0;
  return [a[0] + t * dx, a[1] + t * dy];
}
