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

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

// One server-sent event stream for the whole UI. Listeners: on(kind, fn) with kind one of
// alarm, camera, motion, tamper, site, station; "open" and "error" for the link state.
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
    for (const kind of ["alarm", "camera", "motion", "tamper", "site", "station"]) {
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
