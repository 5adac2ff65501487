// Administration, rules and time profiles: what starts a rule, when it may fire and what it does,
// each in one line; a structured editor for the common fields and the rule as JSON for the
// rest (the station validates either on save); time profiles with weekly ranges and holidays.
import { del, get, put } from "./api.js";
import { attempt, el, notify } from "./ui.js";
import {
  checkbox, checklist, confirmDialog, errorBox, input, numberInput, row, saving, select, splitList, value,
} from "./admin_forms.js";

const TRIGGERS = [
  { value: "motion", label: "Motion" },
  { value: "tamper", label: "Tampering" },
  { value: "camera_offline", label: "Camera offline" },
  { value: "camera_online", label: "Camera back online" },
  { value: "recording_gap", label: "Recording gap" },
  { value: "disk_trouble", label: "Storage trouble" },
  { value: "external", label: "External event" },
  { value: "schedule", label: "Schedule (a time profile starts or ends)" },
];
const TAMPER = ["too_dark", "too_bright", "covered", "defocused", "scene_changed"];
const PRIORITIES = ["critical", "high", "medium", "low"];
const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const ACTIONS = {
  alarm: { label: "Raise an alarm", make: () => ({ type: "alarm", priority: "high", category: "", title: "", related_cameras: [], close_on_end: false }) },
  record: { label: "Record (event recording)", make: () => ({ type: "record", pre_roll_s: null, post_roll_s: null, cameras: [] }) },
  bookmark: { label: "Bookmark", make: () => ({ type: "bookmark", text: "" }) },
  snapshot: { label: "Snapshot", make: () => ({ type: "snapshot" }) },
  mqtt: { label: "MQTT message", make: () => ({ type: "mqtt", topic: "vmscore/{site}/{camera}/{kind}", payload: "", qos: 1, retain: false }) },
  webhook: { label: "Webhook", make: () => ({ type: "webhook", url: "https://", method: "POST", headers: {}, retries: 3, timeout_s: 5 }) },
  arm: { label: "Arm or disarm sites", make: () => ({ type: "arm", armed: true, sites: [] }) },
};
const HHMM = "([01]\\d|2[0-3]):[0-5]\\d|24:00";

export async function mount(container, params, ctx) {
  const state = { rules: [], profiles: [], cameras: [], sites: [], editing: null };
  const rulesTable = el("table.list.rules-table");
  const profilesTable = el("table.list.profiles-table");
  const side = el("aside.side.admin-side", { hidden: true });
  container.append(
    el("div.split",
      el("div.main",
        el("div.toolbar",
          el("button.primary", { dataset: { action: "new-rule" }, on: { click: () => openRule(null) } }, "New rule"),
          el("button", { dataset: { action: "new-profile" }, on: { click: () => openProfile(null) } }, "New time profile"),
          el("button", { on: { click: () => refresh() } }, "Refresh")),
        el("section.admin-section", el("h2", "Rules"), rulesTable),
        el("section.admin-section", el("h2", "Time profiles"), profilesTable)),
      side),
  );

  async function load() {
    const [rules, profiles, cameras, sites] = await Promise.all([
      get("/api/rules"), get("/api/time-profiles"), get("/api/cameras"), get("/api/sites"),
    ]);
    Object.assign(state, { rules, profiles, cameras, sites });
  }

  async function refresh() {
    await attempt(load, "Loading the rules");
    render();
  }

  const names = {
    cameras: () => state.cameras.map((c) => c.name).sort(),
    sites: () => state.sites.map((s) => s.name).sort(),
    groups: () => [...new Set(state.cameras.map((c) => c.group).filter(Boolean))].sort(),
    profiles: () => state.profiles.map((p) => p.name),
    // The zones of the chosen cameras (of all cameras when none is chosen).
    zones: (cameras) => [...new Set(state.cameras.filter((c) => !cameras.length || cameras.includes(c.name))
      .flatMap((c) => (c.motion.zones || []).filter((z) => z.kind !== "exclude").map((z) => z.name)))].sort(),
  };

  // -- the lists ---------------------------------------------------------------------------

  function render() {
    const editing = state.editing || {};
    rulesTable.replaceChildren(
      el("thead", el("tr", ["Rule", "", "Trigger", "Conditions", "Actions"].map((h) => el("th", h)))),
      el("tbody", state.rules.length ? state.rules.map((r) => el("tr", {
        class: editing.rule === r.name ? "selected" : null,
        dataset: { rule: r.name },
        on: { click: () => openRule(r.name) },
      },
      el("td", el("strong", r.name)),
      el("td", r.enabled ? el("span.badge.on", "on") : el("span.badge.off", "off")),
      el("td", triggerText(r.trigger)),
      el("td", conditionsText(r.conditions)),
      el("td", r.actions.map(actionText).join(" + ")))) : el("tr.static", el("td.muted", { colSpan: 5 }, "No rules: nothing raises alarms."))),
    );
    profilesTable.replaceChildren(
      el("thead", el("tr", ["Time profile", "Time zone", "Active", "Holidays", "Used by"].map((h) => el("th", h)))),
      el("tbody", state.profiles.length ? state.profiles.map((p) => el("tr", {
        class: editing.profile === p.name ? "selected" : null,
        dataset: { profile: p.name },
        on: { click: () => openProfile(p.name) },
      },
      el("td", el("strong", p.name)),
      el("td", p.timezone),
      el("td", p.ranges.map(rangeText).join("; ")),
      el("td", p.except_dates.length ? p.except_dates.join(", ") : el("span.muted", "none")),
      el("td", usedBy(p.name).join(", ") || el("span.muted", "no rule")))) : el("tr.static", el("td.muted", { colSpan: 5 }, "No time profiles."))),
    );
  }

  function usedBy(profile) {
    return state.rules.filter((r) => r.conditions.time_profile === profile
      || r.trigger.details.some((d) => d.startsWith(`${profile}:`))).map((r) => r.name);
  }

  // -- the side panel ----------------------------------------------------------------------

  function close() {
    state.editing = null;
    side.hidden = true;
    side.replaceChildren();
    render();
  }

  function show(form, editing) {
    state.editing = editing;
    side.hidden = false;
    side.replaceChildren(form);
    render();
    const first = form.querySelector("input:not([readonly]),select,textarea");
    if (first) first.focus();
  }

  function openRule(name) {
    const rule = name ? state.rules.find((r) => r.name === name) : null;
    if (name && !rule) return notify(`No rule named ${name}`, "error");
    show(ruleForm(rule), { rule: name || "" });
  }

  function openProfile(name) {
    const profile = name ? state.profiles.find((p) => p.name === name) : null;
    if (name && !profile) return notify(`No time profile named ${name}`, "error");
    show(profileForm(profile), { profile: name || "" });
  }

  // Saves under `name`: a renamed entry is written under its new name, then the old one removed.
  async function store(section, original, name, body) {
    const saved = await put(`/api/${section}/${encodeURIComponent(name)}`, body);
    if (original && original !== name) await del(`/api/${section}/${encodeURIComponent(original)}`);
    return saved;
  }

  async function remove(section, what, name, box) {
    if (!(await confirmDialog(`Delete the ${what} ${name}?`, "This cannot be undone (the configuration history keeps the old version).", { ok: "Delete", danger: true }))) return;
    const button = side.querySelector("[data-action=delete]");
    await saving(button, box, null, async () => {
      await del(`/api/${section}/${encodeURIComponent(name)}`);
      notify(`${what[0].toUpperCase()}${what.slice(1)} ${name} deleted`, "ok");
      close();
      await refresh();
    });
  }

  // -- the rule editor ---------------------------------------------------------------------

  // `stored`: the rule as the station has it (null for a new one); `shown`: what the form
  // starts from (the JSON editor's rule when coming back from it).
  function ruleForm(stored, shown = stored) {
    const original = shown || { name: "", enabled: true, trigger: { kind: "motion" }, conditions: {}, actions: [ACTIONS.alarm.make()] };
    const errors = errorBox();
    const form = el("form.rule-form", { novalidate: true, on: { submit: (ev) => { ev.preventDefault(); save(); } } });
    const triggerBox = el("fieldset.trigger", el("legend", "Trigger"));
    const actionsBox = el("div.actions", { dataset: { list: "actions", name: "actions" } });
    const json = el("textarea.json-editor", { name: "json", rows: 24, spellcheck: "false", hidden: true });
    const structured = el("div.structured");
    const jsonButton = el("button", { type: "button", dataset: { action: "rule-json" }, on: { click: toggleJson } }, "Edit as JSON");
    let editors = [];

    const trigger = { ...original.trigger };
    const conditions = original.conditions || {};
    structured.append(
      el("div.form-grid",
        row("Name", input("name", original.name, { required: true, maxlength: 100, autocomplete: "off" }), "letters, digits, _ . -"),
        row("", checkbox("enabled", original.enabled !== false, "Enabled"))),
      triggerBox,
      el("fieldset.conditions", el("legend", "Conditions"),
        el("div.form-grid",
          row("Time profile", select("time_profile", [{ value: "", label: "Any time" }, ...names.profiles()], conditions.time_profile || ""), "fires only while this profile is active"),
          row("", checkbox("site_armed", conditions.site_armed, "Only while the camera's site is armed")),
          row("Minimum duration (s)", numberInput("min_duration_s", conditions.min_duration_s || 0, { min: 0, max: 86400 }), "the condition must hold this long"),
          row("Cooldown (s)", numberInput("cooldown_s", conditions.cooldown_s || 0, { min: 0, max: 86400 }), "quiet this long after firing (per camera and zone)"))),
      el("fieldset", el("legend", "Actions"),
        actionsBox,
        el("div.btn-row",
          select("add_action", Object.entries(ACTIONS).map(([type, a]) => ({ value: type, label: a.label })), "alarm", { "aria-label": "Action to add" }),
          el("button", { type: "button", dataset: { action: "add-action" }, on: { click: () => addAction(ACTIONS[form.elements.namedItem("add_action").value].make()) } }, "Add action"))),
      el("datalist#alarm-categories", [...new Set(state.rules.flatMap((r) => r.actions.map((a) => a.category)).filter(Boolean))].map((c) => el("option", { value: c }))),
    );
    form.append(
      el("h2", stored ? `Rule ${stored.name}` : "New rule"),
      structured,
      json,
      errors,
      el("div.btn-row",
        el("button.primary", { type: "submit", dataset: { action: "save-rule" } }, "Save"),
        jsonButton,
        el("span.spacer"),
        stored ? el("button.danger", { type: "button", dataset: { action: "delete" }, on: { click: () => remove("rules", "rule", stored.name, errors) } }, "Delete") : null,
        el("button", { type: "button", on: { click: close } }, "Close")),
    );
    renderTrigger();
    for (const a of original.actions || []) addAction(a);

    function renderTrigger() {
      const kind = trigger.kind;
      const details = detailsControl(kind, trigger.details || []);
      triggerBox.replaceChildren(el("legend", "Trigger"),
        el("div.form-grid",
          row("Event", select("kind", TRIGGERS, kind, { on: { change: () => { Object.assign(trigger, readTrigger(), { details: [] }); renderTrigger(); } } })),
          row("Sites", checklist("sites", names.sites(), trigger.sites || [], { empty: "no sites" }), "none ticked: any"),
          row("Camera groups", checklist("groups", names.groups(), trigger.groups || [], { empty: "no groups" }), "none ticked: any"),
          row("Cameras", checklist("cameras", names.cameras(), trigger.cameras || [], { empty: "no cameras" }), "none ticked: any"),
          kind === "motion" ? row("Zones", checklist("zones", names.zones(trigger.cameras || []), trigger.zones || [], { empty: "the cameras have no zones" }), "none ticked: any zone, and motion outside zones") : null,
          details ? row(details.label, details.control, details.hint) : null));
      // The zones offered are those of the cameras ticked.
      const cams = triggerBox.querySelector("[data-name=cameras]");
      if (kind === "motion") {
        cams.addEventListener("change", () => {
          const zones = triggerBox.querySelector("[data-name=zones]");
          zones.replaceWith(checklist("zones", names.zones(cams.values()), zones.values(), { empty: "the cameras have no zones" }));
        });
      }
      const duration = form.elements.namedItem("min_duration_s");
      if (duration) duration.disabled = kind === "schedule";
    }

    function detailsControl(kind, chosen) {
      if (kind === "tamper") return { label: "Tamper kinds", control: checklist("details", TAMPER, chosen), hint: "none ticked: any" };
      if (kind === "schedule") {
        const edges = names.profiles().flatMap((p) => [`${p}:start`, `${p}:end`]);
        return { label: "Profile edges", control: checklist("details", edges, chosen, { empty: "no time profiles yet" }), hint: "when the profile becomes active (start) or inactive (end)" };
      }
      const hints = {
        external: ["Event names", "comma-separated; none: any external event"],
        recording_gap: ["Gap reasons", "comma-separated; none: any"],
        disk_trouble: ["Storage or reason", "storage locations or storage_error, storage_full; none: any"],
      };
      if (!hints[kind]) return null;
      return { label: hints[kind][0], control: input("details", chosen.join(", "), { autocomplete: "off" }), hint: hints[kind][1] };
    }

    function listOf(name) {
      const box = triggerBox.querySelector(`[data-name=${name}]`);
      return box ? box.values() : [];
    }

    function readTrigger() {
      const kind = form.elements.namedItem("kind").value;
      const details = triggerBox.querySelector("[data-name=details]");
      const text = form.elements.namedItem("details");
      return {
        kind,
        sites: listOf("sites"),
        groups: listOf("groups"),
        cameras: listOf("cameras"),
        zones: kind === "motion" ? listOf("zones") : [],
        details: details ? details.values() : text ? splitList(text.value) : [],
      };
    }

    function addAction(action) {
      const editor = actionEditor(action, () => {
        editors = editors.filter((e) => e !== editor);
        editor.element.remove();
      });
      editors.push(editor);
      actionsBox.append(editor.element);
    }

    // The rule the form describes, over the original so that keys the form has no field for
    // are kept.
    function fromForm() {
      return {
        ...original,
        name: value(form, "name"),
        enabled: value(form, "enabled"),
        trigger: { ...original.trigger, ...readTrigger() },
        conditions: {
          ...original.conditions,
          time_profile: value(form, "time_profile") || null,
          site_armed: value(form, "site_armed"),
          min_duration_s: form.elements.namedItem("min_duration_s").disabled ? 0 : value(form, "min_duration_s") ?? 0,
          cooldown_s: value(form, "cooldown_s") ?? 0,
        },
        actions: editors.map((e) => e.value()),
      };
    }

    function fromJson() {
      try {
        return JSON.parse(json.value);
      } catch (e) {
        errors.show({ message: `The JSON is not valid: ${e.message}` });
        return null;
      }
    }

    function toggleJson() {
      errors.clear();
      if (json.hidden) {
        json.value = JSON.stringify(fromForm(), null, 2);
        json.hidden = false;
        structured.hidden = true;
        jsonButton.textContent = "Back to the form";
        json.focus();
        return;
      }
      const parsed = fromJson();
      if (!parsed) return;
      // The form shows the JSON's rule; the station still checks it on save.
      form.replaceWith(ruleForm(stored, { ...parsed, name: parsed.name ?? original.name }));
    }

    async function save() {
      const body = json.hidden ? fromForm() : fromJson();
      if (!body) return;
      const name = String(body.name || "").trim();
      if (!name) {
        errors.show({ detail: [{ loc: ["name"], msg: "A rule needs a name" }] }, form);
        return;
      }
      const before = stored && stored.name;
      if (name !== before && state.rules.some((r) => r.name === name)) {
        errors.show({ detail: [{ loc: ["name"], msg: `Another rule is named ${name}` }] }, form);
        return;
      }
      await saving(form.querySelector("[data-action=save-rule]"), errors, form, async () => {
        await store("rules", before, name, body);
        notify(`Rule ${name} saved`, "ok");
        await refresh();
        openRule(name);
      });
    }

    return form;
  }

  function actionEditor(action, onRemove) {
    const original = { ...action };
    const type = original.type;
    const fields = el("div.form-grid");
    const element = el("fieldset.action", { dataset: { item: "", type } },
      el("legend", ACTIONS[type] ? ACTIONS[type].label : type),
      fields,
      el("div.btn-row", el("span.spacer"), el("button", { type: "button", on: { click: onRemove } }, "Remove action")));
    const lists = {};
    const add = (...rows) => fields.append(...rows.flat().filter(Boolean));
    const text = (k, label, hint, attrs) => add(row(label, input(k, original[k] ?? "", attrs), hint));
    const num = (k, label, hint, attrs) => add(row(label, numberInput(k, original[k], attrs), hint));
    const pick = (k, label, names) => {
      lists[k] = checklist(k, names, original[k] || []);
      add(row(label, lists[k]));
    };
    if (type === "alarm") {
      add(row("Priority", select("priority", PRIORITIES, original.priority || "high")));
      text("category", "Category", "", { list: "alarm-categories" });
      text("title", "Title", "empty: made from the rule and the event", { maxlength: 500 });
      pick("related_cameras", "Related cameras", namesOfCameras());
      add(row("", checkbox("close_on_end", original.close_on_end, "Close the alarm when its condition ends")));
    } else if (type === "record") {
      num("pre_roll_s", "Pre-roll (s)", "empty: the camera's", { min: 0, max: 600 });
      num("post_roll_s", "Post-roll (s)", "empty: the camera's", { min: 0, max: 3600 });
      pick("cameras", "Also record", namesOfCameras());
    } else if (type === "bookmark") {
      text("text", "Text", "");
    } else if (type === "mqtt") {
      text("topic", "Topic", "may use {site}, {camera}, {zone}, {rule}, {kind}, {detail}", { required: true });
      text("payload", "Payload", "empty: the event as JSON");
      add(row("QoS", select("qos", ["0", "1", "2"], String(original.qos ?? 1))));
      add(row("", checkbox("retain", original.retain, "Retained")));
    } else if (type === "webhook") {
      text("url", "URL", "", { required: true, placeholder: "https://example.org/hook" });
      add(row("Method", select("method", ["POST", "PUT", "GET"], original.method || "POST")));
      add(row("Headers", el("textarea", { name: "headers", rows: 3, placeholder: "Authorization: Bearer …", text: Object.entries(original.headers || {}).map(([k, v]) => `${k}: ${v}`).join("\n") }), "one per line, Name: value"));
      num("retries", "Retries", "", { min: 0, max: 20, step: 1 });
      num("timeout_s", "Timeout (s)", "", { min: 0.1, max: 120 });
    } else if (type === "arm") {
      add(row("Do", select("armed", [{ value: "true", label: "Arm" }, { value: "false", label: "Disarm" }], String(original.armed !== false))));
      pick("sites", "Sites", state.sites.map((s) => s.name).sort());
      add(el("small.muted.span", "No site ticked: the event's site."));
    } else if (type !== "snapshot") {
      add(el("p.muted.span", "Edit this action as JSON."));
    }

    function read() {
      const out = { ...original };
      for (const [k, box] of Object.entries(lists)) out[k] = box.values();
      for (const c of fields.querySelectorAll("[name]")) {
        const k = c.name;
        if (k === "headers") out.headers = parseHeaders(c.value);
        else if (k === "armed") out.armed = c.value === "true";
        else if (k === "qos") out.qos = Number(c.value);
        else if (c.type === "checkbox") out[k] = c.checked;
        else if (c.type === "number") out[k] = c.value.trim() === "" ? (k === "pre_roll_s" || k === "post_roll_s" ? null : original[k]) : Number(c.value);
        else out[k] = c.value.trim();
      }
      return out;
    }

    return { element, value: read };
  }

  function namesOfCameras() {
    return state.cameras.map((c) => c.name).sort();
  }

  // -- the time profile editor -------------------------------------------------------------

  function profileForm(profile) {
    const original = profile || { name: "", timezone: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC", ranges: [{ days: DAYS.slice(0, 5), start: "08:00", end: "17:00" }], except_dates: [] };
    const errors = errorBox();
    const ranges = el("div.ranges", { dataset: { list: "ranges", name: "ranges" } });
    const dates = el("div.dates", { dataset: { list: "except_dates", name: "except_dates" } });
    const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
    const form = el("form.profile-form", { novalidate: true, on: { submit: (ev) => { ev.preventDefault(); save(); } } },
      el("h2", profile ? `Time profile ${profile.name}` : "New time profile"),
      el("div.form-grid",
        row("Name", input("name", original.name, { required: true, maxlength: 100, autocomplete: "off" }), "letters, digits, _ . -"),
        row("Time zone", input("timezone", original.timezone, { list: "time-zones", autocomplete: "off" }), "the ranges are local times of this zone")),
      el("datalist#time-zones", zones.map((z) => el("option", { value: z }))),
      el("fieldset", el("legend", "Active"),
        ranges,
        el("div.btn-row", el("button", { type: "button", dataset: { action: "add-range" }, on: { click: () => addRange({ days: [...DAYS], start: "00:00", end: "24:00" }) } }, "Add range")),
        el("small.muted", "An end before the start runs past midnight (18:00 to 07:00); 24:00 is the end of the day.")),
      el("fieldset", el("legend", "Holidays (not active on these dates)"),
        dates,
        el("div.btn-row", el("button", { type: "button", dataset: { action: "add-date" }, on: { click: () => addDate("") } }, "Add date"))),
      errors,
      el("div.btn-row",
        el("button.primary", { type: "submit", dataset: { action: "save-profile" } }, "Save"),
        el("span.spacer"),
        profile ? el("button.danger", { type: "button", dataset: { action: "delete" }, on: { click: () => remove("time-profiles", "time profile", profile.name, errors) } }, "Delete") : null,
        el("button", { type: "button", on: { click: close } }, "Close")));
    for (const r of original.ranges) addRange(r);
    for (const d of original.except_dates) addDate(d);

    function addRange(r) {
      const item = el("div.range", { dataset: { item: "" } },
        el("div.days", { dataset: { name: "days" } }, DAYS.map((d) => el("label.check.day", el("input", { type: "checkbox", value: d, checked: r.days.includes(d) }), d))),
        el("span.times",
          input("start", r.start, { pattern: HHMM, placeholder: "HH:MM", size: 5, "aria-label": "From" }),
          " to ",
          input("end", r.end, { pattern: HHMM, placeholder: "HH:MM", size: 5, "aria-label": "To" }),
          el("button", { type: "button", title: "Remove this range", on: { click: () => item.remove() } }, "Remove")));
      ranges.append(item);
    }

    function addDate(d) {
      const item = el("div.date", { dataset: { item: "" } },
        input("date", d, { type: "date", "aria-label": "Date" }),
        el("button", { type: "button", on: { click: () => item.remove() } }, "Remove"));
      dates.append(item);
      if (!d) item.querySelector("input").focus();
    }

    function fromForm() {
      return {
        ...original,
        name: value(form, "name"),
        timezone: value(form, "timezone"),
        ranges: [...ranges.querySelectorAll(":scope > [data-item]")].map((item) => ({
          days: [...item.querySelectorAll(".days input:checked")].map((i) => i.value),
          start: item.querySelector("[name=start]").value.trim(),
          end: item.querySelector("[name=end]").value.trim(),
        })),
        except_dates: [...dates.querySelectorAll("input")].map((i) => i.value).filter(Boolean),
      };
    }

    async function save() {
      const body = fromForm();
      if (!body.name) {
        errors.show({ detail: [{ loc: ["name"], msg: "A time profile needs a name" }] }, form);
        return;
      }
      if (body.name !== (profile && profile.name) && state.profiles.some((p) => p.name === body.name)) {
        errors.show({ detail: [{ loc: ["name"], msg: `Another time profile is named ${body.name}` }] }, form);
        return;
      }
      await saving(form.querySelector("[data-action=save-profile]"), errors, form, async () => {
        await store("time-profiles", profile && profile.name, body.name, body);
        notify(`Time profile ${body.name} saved`, "ok");
        await refresh();
        openProfile(body.name);
      });
    }

    return form;
  }

  // -- life --------------------------------------------------------------------------------

  await refresh();
  if (params[0]) openRule(params[0]);
  return () => {};
}

function parseHeaders(text) {
  const out = {};
  for (const line of String(text).split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

// -- one-line summaries ---------------------------------------------------------------------

function triggerText(t) {
  const kind = (TRIGGERS.find((k) => k.value === t.kind) || { label: t.kind }).label.replace(/ \(.*\)$/, "");
  const parts = [kind];
  for (const [key, label] of [["sites", "sites"], ["groups", "groups"], ["cameras", "cameras"], ["zones", "zones"], ["details", ""]]) {
    if (t[key] && t[key].length) parts.push(label ? `${label}: ${t[key].join(", ")}` : t[key].join(", "));
  }
  return parts.join(" · ");
}

function conditionsText(c) {
  const parts = [];
  if (c.time_profile) parts.push(`during ${c.time_profile}`);
  if (c.site_armed) parts.push("when armed");
  if (c.min_duration_s) parts.push(`lasting ${c.min_duration_s} s`);
  if (c.cooldown_s) parts.push(`cooldown ${c.cooldown_s} s`);
  return parts.join(" · ") || "always";
}

function actionText(a) {
  switch (a.type) {
    case "alarm": return `alarm (${a.priority}${a.category ? `, ${a.category}` : ""})`;
    case "record": return a.cameras && a.cameras.length ? `record (+${a.cameras.join(", ")})` : "record";
    case "mqtt": return `mqtt ${a.topic}`;
    case "webhook": return `webhook ${a.method} ${a.url}`;
    case "arm": return `${a.armed ? "arm" : "disarm"}${a.sites && a.sites.length ? ` ${a.sites.join(", ")}` : ""}`;
    default: return a.type;
  }
}

function rangeText(r) {
  const days = r.days.length === 7 ? "every day" : r.days.join(" ");
  return `${days} ${r.start}–${r.end}`;
}
