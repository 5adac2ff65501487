// The station's REST API and event stream, as the UI uses them.

let csrf = "";

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
  }
}

export function setCsrf(token) {
  csrf = token || "";
}

// Calls the API; returns parsed JSON (or text, or null for 204). Throws ApiError with the
// server's detail on any error status. A 401 anywhere sends the UI back to its login form.
export async function api(method, path, body, { raw = false } = {}) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET" && method !== "HEAD") opts.headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  if (res.status === 401 && !path.startsWith("/api/auth/login")) {
    window.dispatchEvent(new CustomEvent("vms:logged-out"));
  }
  if (!res.ok) {
    let detail = res.statusText;
    try {
      const j = await res.json();
      detail = j.detail ?? detail;
    } catch {
      /* not JSON */
    }
    throw new ApiError(res.status, detail);
  }
  if (raw) return res;
  if (res.status === 204) return null;
  const type = res.headers.get("content-type") || "";
  return type.includes("json") ? res.json() : res.text();
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body ?? {});
export const put = (path, body) => api("PUT", path, body);
export const patch = (path, body) => api("PATCH", path, body);
export const del = (path) => api("DELETE", path);

// Where a station's API is as this browser reaches it: this station's own, or a site station's
// through the central station (the paths below it are the same; see web/central.py).
export function stationApi(station = null) {
  return station ? `/api/central/stations/${encodeURIComponent(station)}` : "/api";
}

// A camera's paths (live, snapshot.jpg, motion) on its station.
export function cameraApi(camera, station = null) {
  return `${stationApi(station)}/cameras/${encodeURIComponent(camera)}`;
}

// A camera or alarm of a site station in a page's address: "@STATION/NAME" (names never start
// with "@"); the local ones are just "NAME". Hash parameters -> { station, rest }.
export function remoteRef(station, name) {
  return station ? `@${encodeURIComponent(station)}/${encodeURIComponent(name)}` : encodeURIComponent(name);
}
export function parseRef(params) {
  if (params[0] && params[0].startsWith("@")) return { station: params[0].slice(1), rest: params.slice(1) };
  return { station: null, rest: params };
}

// The cameras of a central station's sites (GET /api/central/sites), each with its site and
// station. A camera's media come through its station: one whose station is not known yet has
// none, and is left out.
export function siteCameras(sites) {
  return sites.flatMap((x) => x.cameras.filter((c) => c.station));
}

// An alarm's key in the UI's lists: the id of this station's alarms, "STATION/ID" of a site's
// (each station numbers its alarms on its own).
export function alarmKey(a) {
  return a.station ? `${a.station}/${a.id}` : String(a.id);
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

// One server-sent event stream for the whole UI. Listeners: on(kind, fn) with kind one of
// alarm, camera, motion, tamper, site, station; at a central station also remote_alarm,
// remote_site and remote_camera (the sites'); "open" and "error" for the link state.
class EventStream {
  constructor() {
    this.listeners = new Map();
    this.source = null;
  }
  on(kind, fn) {
    if (!this.listeners.has(kind)) this.listeners.set(kind, new Set());
    this.listeners.get(kind).add(fn);
    return () => this.listeners.get(kind).delete(fn);
  }
  emit(kind, data) {
    for (const fn of this.listeners.get(kind) || []) {
      try {
        fn(data);
      } catch (e) {
        console.error(e);
      }
    }
  }
  start() {
    if (this.source) return;
    // The browser reconnects by itself and resumes with Last-Event-ID (alarm changes).
    this.source = new EventSource("/api/events");
    this.source.onopen = () => this.emit("open", {});
    this.source.onerror = () => this.emit("error", {});
    for (const kind of ["alarm", "camera", "motion", "tamper", "site", "station", "remote_alarm", "remote_site", "remote_camera"]) {
      this.source.addEventListener(kind, (ev) => {
        let data = {};
        try {
          data = JSON.parse(ev.data);
        } catch {
          return;
        }
        this.emit(kind, data);
      });
    }
  }
  stop() {
    if (this.source) this.source.close();
    this.source = null;
  }
}

export const events = new EventStream();
