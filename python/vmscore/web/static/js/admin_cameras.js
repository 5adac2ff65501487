// Administration, cameras: the table of cameras with their live figures, and the side panel
// that adds one (by ONVIF probe or by RTSP URL), edits, tests, enables, disables or removes one.
import { del, events, get, patch, post } from "./api.js";
import { attempt, el, notify } from "./ui.js";
import {
  checkbox, confirmDialog, errorBox, fmtRate, input, numberInput, row, saving, select, value,
} from "./admin_forms.js";

const MODES = [
  { value: "continuous", label: "Continuous" },
  { value: "continuous_events", label: "Continuous, event footage kept longer" },
  { value: "event", label: "Events only (with pre- and post-roll)" },
];
const TRANSPORTS = [{ value: "tcp", label: "TCP (interleaved)" }, { value: "udp", label: "UDP" }];
const HEALTH_REFRESH_MS = 10000;

export async function mount(container, params, ctx) {
  const state = { cameras: [], health: new Map(), sites: [], panel: null, timer: 0 };
  const table = el("table.list.cameras-table");
  const side = el("aside.side.admin-side", { hidden: true });
  const count = el("span.muted");
  container.append(
    el("div.split",
      el("div.main",
        el("div.toolbar",
          el("button.primary", { dataset: { action: "add-camera" }, on: { click: () => openAdd() } }, "Add camera"),
          el("button", { on: { click: () => refresh() } }, "Refresh"),
          count),
        table),
      side),
  );

  async function load() {
    const [cams, sites, health] = await Promise.all([
      get("/api/cameras"),
      get("/api/sites"),
      get("/api/health").catch(() => ({ cameras: [] })),
    ]);
    state.cameras = cams.sort((a, b) => a.site.localeCompare(b.site) || a.name.localeCompare(b.name));
    state.sites = sites;
    state.health = new Map((health.cameras || []).map((h) => [h.camera, h]));
  }

  async function refresh() {
    await attempt(load, "Loading the cameras");
    render();
  }

  // -- the table ---------------------------------------------------------------------------

  function render() {
    count.textContent = `${state.cameras.length} cameras, ${state.cameras.filter((c) => c.online).length} online`;
    table.replaceChildren(
      el("thead", el("tr", ["Camera", "Site", "Group", "Enabled", "Online", "Main stream", "Sub stream", "Last error", ""].map((h) => el("th", h)))),
      el("tbody", state.cameras.map(cameraRow)),
    );
  }

  function cameraRow(c) {
    const h = state.health.get(c.name) || {};
    const streams = h.streams || {};
    const selected = state.panel && state.panel.camera === c.name;
    const error = c.last_error || h.last_error || "";
    return el("tr", {
      class: selected ? "selected" : null,
      dataset: { camera: c.name },
      on: { click: () => openEdit(c.name) },
    },
    el("td", el("strong", c.name), c.display_name ? el("div.muted", c.display_name) : null),
    el("td.nowrap", c.site),
    el("td", c.group || el("span.muted", "—")),
    el("td", c.enabled ? el("span.badge.on", "enabled") : el("span.badge.off", "disabled")),
    el("td", !c.enabled ? el("span.muted", "—") : c.online ? el("span.badge.on", "online") : el("span.badge.offline", "offline")),
    el("td.nowrap", streamSummary(streams.main)),
    el("td.nowrap", streamSummary(streams.sub)),
    el("td.error-cell", { title: error }, error),
    el("td.row-actions", { on: { click: (ev) => ev.stopPropagation() } },
      el("a.button", { href: `#/admin/zones/${encodeURIComponent(c.name)}`, title: "Draw zones and masks" }, "Zones"),
      el("button", { on: { click: () => setEnabled(c, !c.enabled) } }, c.enabled ? "Disable" : "Enable"),
      el("button", { on: { click: () => openEdit(c.name, { test: true }) } }, "Test")));
  }

  function streamSummary(s) {
    if (!s || !s.codec) return el("span.muted", s ? s.state || "—" : "—");
    return `${s.codec.toUpperCase()} ${s.width}×${s.height} · ${s.fps.toFixed(1)} fps`;
  }

  async function setEnabled(c, on) {
    const done = await attempt(() => post(`/api/cameras/${encodeURIComponent(c.name)}/${on ? "enable" : "disable"}`), on ? "Enabling" : "Disabling");
    if (done) notify(`${c.name} ${on ? "enabled" : "disabled"}`, "ok");
    await refresh();
    if (state.panel && state.panel.camera === c.name) openEdit(c.name);
  }

  // -- the side panel ----------------------------------------------------------------------

  function closePanel() {
    state.panel = null;
    side.hidden = true;
    side.replaceChildren();
    history.replaceState(null, "", "#/admin/cameras");
    render();
  }

  function openAdd() {
    state.panel = { camera: null };
    side.hidden = false;
    side.replaceChildren(cameraForm(null));
    history.replaceState(null, "", "#/admin/cameras");
    render();
    side.querySelector("input").focus();
  }

  function openEdit(name, { test = false } = {}) {
    const cam = state.cameras.find((c) => c.name === name);
    if (!cam) {
      notify(`No camera named ${name}`, "error");
      return;
    }
    state.panel = { camera: name };
    side.hidden = false;
    const form = cameraForm(cam);
    side.replaceChildren(form);
    history.replaceState(null, "", `#/admin/cameras/${encodeURIComponent(name)}`);
    render();
    if (test) form.runTest();
  }

  function cameraForm(cam) {
    const adding = !cam;
    const errors = errorBox();
    const report = el("div.test-report");
    const siteNames = state.sites.map((s) => ({ value: s.name, label: s.display_name ? `${s.display_name} (${s.name})` : s.name }));
    const groups = [...new Set(state.cameras.map((c) => c.group).filter(Boolean))].sort();
    const groupList = el("datalist#camera-groups", groups.map((g) => el("option", { value: g })));
    const rec = (cam && cam.recording) || {};
    const form = el("form.camera-form", { novalidate: true, on: { submit: (ev) => { ev.preventDefault(); save(); } } });
    const password = input("password", "", {
      type: "password",
      autocomplete: "new-password",
      placeholder: cam && cam.has_password ? "unchanged (a password is stored)" : "none",
    });
    const removePassword = cam && cam.has_password ? checkbox("remove_password", false, "Remove the stored password") : null;

    form.append(...[
      el("h2", adding ? "Add a camera" : `Camera ${cam.name}`),
      adding ? onvifSection(form) : null,
      el("div.form-grid",
        row("Name", input("name", cam ? cam.name : "", { required: true, readOnly: !adding, pattern: "[A-Za-z0-9][A-Za-z0-9_.\\-]*", maxlength: 64, autocomplete: "off" }), adding ? "letters, digits, _ . - (cannot be changed later)" : null),
        row("Display name", input("display_name", cam ? cam.display_name : "")),
        row("Site", select("site", siteNames, cam ? cam.site : siteNames[0] && siteNames[0].value)),
        row("Group", input("group", cam ? cam.group : "", { list: "camera-groups", autocomplete: "off" })),
        row("Main stream URL", input("main_url", cam ? cam.main_url : "", { required: true, placeholder: "rtsp://host:554/stream1", spellcheck: "false" }), "recorded; credentials go in the fields below"),
        row("Sub stream URL", input("sub_url", cam ? cam.sub_url : "", { placeholder: "optional: rtsp://host:554/stream2", spellcheck: "false" }), "analysed and shown in the grid when given"),
        row("User", input("username", cam ? cam.username : "", { autocomplete: "off" })),
        row("Password", el("div.field", password, removePassword), cam ? "leave empty to keep the current one" : null),
        row("Transport", select("transport", TRANSPORTS, cam ? cam.transport : "tcp")),
        row("Recording", select("mode", adding ? [{ value: "", label: "Station default" }, ...MODES] : MODES, adding ? "" : rec.mode)),
        row("Pre-roll (s)", numberInput("pre_roll_s", rec.pre_roll_s, { min: 0, max: 600, placeholder: "station default" })),
        row("Post-roll (s)", numberInput("post_roll_s", rec.post_roll_s, { min: 0, max: 3600, placeholder: "station default" })),
        row("", checkbox("analysis", cam ? cam.analysis : true, "Motion analysis")),
        row("", checkbox("enabled", cam ? cam.enabled : true, "Enabled")),
      ),
      groupList,
      errors,
      el("div.btn-row",
        el("button.primary", { type: "submit", dataset: { action: "save-camera" } }, adding ? "Add camera" : "Save"),
        el("button", { type: "button", dataset: { action: "test-camera" }, on: { click: () => runTest() } }, "Test"),
        cam ? el("a.button", { href: `#/admin/zones/${encodeURIComponent(cam.name)}` }, "Zones…") : null,
        el("span.spacer"),
        cam ? el("button.danger", { type: "button", dataset: { action: "remove-camera" }, on: { click: () => remove(cam) } }, "Remove") : null,
        el("button", { type: "button", on: { click: closePanel } }, "Close")),
      report,
    ].filter(Boolean));
    form.runTest = runTest;

    // The body of a new camera: only what was filled in (the station's defaults do the rest).
    function newCamera() {
      const body = {};
      for (const k of ["name", "display_name", "site", "group", "main_url", "sub_url", "username", "password", "transport", "onvif_address"]) {
        const v = value(form, k);
        if (v !== "" && v !== undefined) body[k] = v;
      }
      body.enabled = value(form, "enabled");
      body.analysis = value(form, "analysis");
      const recording = {};
      if (value(form, "mode")) recording.mode = value(form, "mode");
      for (const k of ["pre_roll_s", "post_roll_s"]) if (value(form, k) !== null) recording[k] = value(form, k);
      if (Object.keys(recording).length) body.recording = recording;
      return body;
    }

    // Only what changed: the camera's recording settings shown are merged over the station's
    // defaults, and sending them all back would pin the defaults into the camera.
    function changes() {
      const out = {};
      for (const k of ["display_name", "site", "group", "main_url", "sub_url", "username", "transport"]) {
        const v = value(form, k);
        if (v !== (cam[k] ?? "")) out[k] = v === "" && (k === "sub_url" || k === "username") ? null : v;
      }
      for (const k of ["enabled", "analysis"]) if (value(form, k) !== cam[k]) out[k] = value(form, k);
      if (removePassword && value(form, "remove_password")) out.password = null;
      else if (value(form, "password")) out.password = value(form, "password");
      const recording = {};
      if (value(form, "mode") !== rec.mode) recording.mode = value(form, "mode");
      for (const k of ["pre_roll_s", "post_roll_s"]) {
        const v = value(form, k);
        if (v !== null && v !== rec[k]) recording[k] = v;
      }
      if (Object.keys(recording).length) out.recording = recording;
      return out;
    }

    async function save() {
      const button = form.querySelector("[data-action=save-camera]");
      await saving(button, errors, form, async () => {
        if (adding) {
          const created = await post("/api/cameras", newCamera());
          notify(`Camera ${created.name} added`, "ok");
          await refresh();
          openEdit(created.name);
          return;
        }
        const body = changes();
        if (!Object.keys(body).length) {
          notify("Nothing changed");
          return;
        }
        await patch(`/api/cameras/${encodeURIComponent(cam.name)}`, body);
        notify(`Camera ${cam.name} saved`, "ok");
        await refresh();
        openEdit(cam.name);
      });
    }

    async function runTest() {
      const button = form.querySelector("[data-action=test-camera]");
      report.replaceChildren(el("p.muted", "Testing the streams (a few seconds)…"));
      await saving(button, errors, form, async () => {
        let result;
        let warning = null;
        // The stored camera is tested with its stored password when its connection settings are
        // unchanged; otherwise the form's values are.
        const connection = cam && ["main_url", "sub_url", "username", "password", "transport"].some((k) => k in changes());
        if (cam && !connection) {
          result = await post(`/api/cameras/${encodeURIComponent(cam.name)}/test`);
          result.snapshot_url = `/api/cameras/${encodeURIComponent(cam.name)}/snapshot.jpg?width=640&t=${Date.now()}`;
        } else {
          const test = { main_url: value(form, "main_url"), transport: value(form, "transport") };
          if (value(form, "sub_url")) test.sub_url = value(form, "sub_url");
          if (value(form, "username")) test.username = value(form, "username");
          if (value(form, "password")) test.password = value(form, "password");
          if (cam && cam.has_password && !test.password && !(removePassword && value(form, "remove_password"))) {
            warning = el("p.warn", "The station never sends the stored password back: type it to test changed settings.");
          }
          result = await post("/api/cameras/test", test);
        }
        report.replaceChildren(...[testReport(result), warning].filter(Boolean));
        report.scrollIntoView({ block: "nearest" });
      });
      if (!errors.hidden) report.replaceChildren();
    }

    async function remove(c) {
      const ok = await confirmDialog(`Remove camera ${c.name}?`,
        "It is no longer recorded or analysed. Its recordings stay until retention deletes them. Rules that name it must be changed first.",
        { ok: "Remove", danger: true });
      if (!ok) return;
      const button = form.querySelector("[data-action=remove-camera]");
      await saving(button, errors, null, async () => {
        await del(`/api/cameras/${encodeURIComponent(c.name)}`);
        notify(`Camera ${c.name} removed`, "ok");
        closePanel();
        await refresh();
      });
    }

    return form;
  }

  // ONVIF: discover or name a device, probe it, pick its main and sub profiles.
  function onvifSection(form) {
    const host = input("onvif_host", "", { placeholder: "192.0.2.10", autocomplete: "off" });
    const port = numberInput("onvif_port", 80, { min: 1, max: 65535 });
    const user = input("onvif_user", "", { autocomplete: "off" });
    const pass = input("onvif_password", "", { type: "password", autocomplete: "new-password" });
    const errors = errorBox();
    const result = el("div.onvif-result");
    const found = el("div.onvif-found");
    const probeButton = el("button", { type: "button", dataset: { action: "onvif-probe" }, on: { click: probe } }, "Probe");
    const discoverButton = el("button", { type: "button", on: { click: discover } }, "Discover");
    const box = el("details.onvif", { open: true },
      el("summary", "By ONVIF address (fills the stream URLs)"),
      el("div.form-grid",
        ...row("Host", host),
        ...row("Port", port),
        ...row("User", user),
        ...row("Password", pass)),
      el("div.btn-row", probeButton, discoverButton),
      found, errors, result);

    async function probe() {
      result.replaceChildren(el("p.muted", "Asking the camera…"));
      await saving(probeButton, errors, null, async () => {
        const dev = await post("/api/onvif/probe", {
          host: host.value.trim(), port: Number(port.value) || 80, username: user.value, password: pass.value,
        });
        result.replaceChildren(deviceReport(dev));
      });
      if (!errors.hidden) result.replaceChildren();
    }

    async function discover() {
      found.replaceChildren(el("p.muted", "Listening for cameras (2 s)…"));
      const list = await attempt(() => post("/api/onvif/discover", { timeout_s: 2 }), "Discovery");
      if (!list) return found.replaceChildren();
      found.replaceChildren(list.length
        ? el("ul.plain", list.map((d) => el("li", el("button", { type: "button", on: { click: () => useDevice(d) } }, d.name || d.address), " ", el("span.muted", [d.hardware, d.xaddrs[0]].filter(Boolean).join(" · ")))))
        : el("p.muted", "No camera answered."));
    }

    function useDevice(d) {
      try {
        const u = new URL(d.xaddrs[0]);
        host.value = u.hostname;
        port.value = u.port || (u.protocol === "https:" ? 443 : 80);
      } catch {
        host.value = d.address;
      }
      user.focus();
    }

    function deviceReport(dev) {
      const usable = dev.profiles.filter((p) => p.rtsp_uri);
      const choose = (role, uri) => {
        const target = form.elements.namedItem(role === "main" ? "main_url" : "sub_url");
        target.value = uri || "";
      };
      const pick = (role, p) => el("input", {
        type: "radio", name: `onvif_${role}`, value: p.token,
        checked: p.rtsp_uri === (role === "main" ? dev.main_uri : dev.sub_uri),
        on: { change: () => choose(role, p.rtsp_uri) },
      });
      // The probe's choice (largest H.264/H.265 as main, smallest as sub) fills the form at once.
      choose("main", dev.main_uri);
      choose("sub", dev.sub_uri);
      form.elements.namedItem("username").value = user.value;
      form.elements.namedItem("password").value = pass.value;
      let address = form.elements.namedItem("onvif_address");
      if (!address) {
        address = el("input", { type: "hidden", name: "onvif_address" });
        form.append(address);
      }
      address.value = `${host.value.trim()}:${Number(port.value) || 80}`;
      const name = form.elements.namedItem("display_name");
      if (!name.value) name.value = [dev.manufacturer, dev.model].filter(Boolean).join(" ");
      return el("div",
        el("p", el("strong", [dev.manufacturer, dev.model].filter(Boolean).join(" ") || dev.host), " ",
          el("span.muted", [dev.firmware && `firmware ${dev.firmware}`, dev.serial && `serial ${dev.serial}`,
            dev.clock_skew_s !== null && Math.abs(dev.clock_skew_s) > 2 ? `clock off by ${dev.clock_skew_s.toFixed(0)} s` : ""].filter(Boolean).join(" · "))),
        el("table.list.compact",
          el("thead", el("tr", ["Main", "Sub", "Profile", "Codec", "Size", "fps", "kbit/s"].map((h) => el("th", h)))),
          el("tbody", dev.profiles.map((p) => el("tr", { title: p.rtsp_uri || "no RTSP stream" },
            el("td", p.rtsp_uri ? pick("main", p) : ""),
            el("td", p.rtsp_uri ? pick("sub", p) : ""),
            el("td", p.name || p.token),
            el("td", p.encoding),
            el("td", `${p.width}×${p.height}`),
            el("td", p.fps ?? "—"),
            el("td", p.bitrate_kbps ?? "—"))))),
        usable.length ? el("p.muted", "The stream URLs below were filled in; pick other profiles above to change them.") : el("p.error", "The camera offers no RTSP stream."));
    }

    return box;
  }

  function testReport(result) {
    const snap = result.snapshot_jpeg_base64 ? `data:image/jpeg;base64,${result.snapshot_jpeg_base64}` : result.snapshot_url;
    return el("div",
      el("h3", result.ok ? el("span.ok", "Test passed") : el("span.error", "Test failed")),
      el("table.list.compact",
        el("thead", el("tr", ["Stream", "", "Codec", "Size", "fps", "Bitrate", "Keyframes", "Problem"].map((h) => el("th", h)))),
        el("tbody", result.streams.map((s) => el("tr", { title: s.url },
          el("td", s.role),
          el("td", s.ok ? el("span.ok", "ok") : el("span.error", "failed")),
          el("td", s.codec || "—"),
          el("td", s.width ? `${s.width}×${s.height}` : "—"),
          el("td", s.fps ? s.fps.toFixed(1) : "—"),
          el("td", s.bitrate_bps ? fmtRate(s.bitrate_bps) : "—"),
          el("td", s.keyframe_interval_s ? `every ${s.keyframe_interval_s.toFixed(1)} s` : "—"),
          el("td.error", s.error || ""))))),
      snap && (result.has_snapshot || result.snapshot_url) ? el("img.test-snapshot", { src: snap, alt: "Snapshot from the main stream" }) : null);
  }

  // -- life --------------------------------------------------------------------------------

  const offCamera = events.on("camera", (msg) => {
    const c = state.cameras.find((x) => x.name === msg.camera);
    if (!c) return;
    c.online = !!msg.online;
    c.last_error = msg.error || "";
    render();
  });
  const offStation = events.on("station", (msg) => {
    // Another admin changed the configuration: the table follows (an open form stays).
    if (msg.config_changed) refresh();
  });
  state.timer = setInterval(() => {
    if (!document.hidden) refresh();
  }, HEALTH_REFRESH_MS);

  await refresh();
  if (params[0]) openEdit(params[0]);

  return () => {
    clearInterval(state.timer);
    offCamera();
    offStation();
  };
}
