// Live video of one camera: fragmented MP4 over a WebSocket into Media Source Extensions, or JPEG
// stills from keyframes where the browser cannot play the codec (H.265 in Chromium). Reconnects
// by itself and says why a camera is not live. See python/vmscore/web/live.py for the protocol.
import { cameraApi } from "./api.js";
import { el } from "./ui.js";

const MAX_LATENCY_S = 0.8; // behind the newest frame by more: jump forward
const TARGET_LATENCY_S = 0.15;
const KEEP_BUFFER_S = 8; // media kept behind the playhead
const STILL_INTERVAL_MS = 1000;

const REASONS = {
  connecting: "connecting…",
  offline: "camera offline",
  removed: "restarting",
  forbidden: "no permission",
  disabled: "camera disabled",
  unavailable: "not live",
  stopping: "station stopping",
  error: "connection lost",
};
const FINAL = new Set(["forbidden"]);

export class LivePlayer {
  // camera: its name; stream: "sub" (grid tiles) or "main" (an enlarged camera); station: the
  // site station of a camera seen at a central station (its video comes through this one).
  constructor(camera, { station = null, stream = "sub", stillWidth = 640, onState = null } = {}) {
    this.camera = camera;
    this.station = station;
    this.base = cameraApi(camera, station);
    this.stream = stream;
    this.stillWidth = stillWidth;
    this.onState = onState;
    this.video = el("video", { muted: true, autoplay: true, playsInline: true, disablePictureInPicture: true });
    this.video.muted = true;
    this.img = el("img", { alt: "", hidden: true });
    this.statusLine = el("div.live-status");
    const dataset = { camera, state: "connecting", mode: "mse", ...(station ? { station } : {}) };
    this.element = el("div.live", { dataset }, this.video, this.img, this.statusLine);
    this.element.vmsPlayer = this; // for diagnostics and the browser tests
    this.ws = null;
    this.ms = null;
    this.sb = null;
    this.queue = [];
    this.mime = "";
    this.retry = 0;
    this.timer = null;
    this.stillTimer = null;
    this.closed = false;
    this.lastWallUs = 0;
    this.clockAt = 0;
    this.skipped = 0;
    this.bytes = 0;
    this.video.addEventListener("error", () => this.restart("the browser could not decode the video"));
    this.connect();
  }

  setState(state, reason = "") {
    this.state = state;
    this.element.dataset.state = state;
    const text = state === "playing" ? "" : REASONS[state] || state;
    this.statusLine.textContent = reason && state !== "playing" ? `${text}: ${reason}` : text;
    this.statusLine.hidden = !text;
    if (this.onState) this.onState(state, reason);
  }

  // Seconds behind the camera: the age of the newest frame when it arrived plus what the
  // video element holds ahead of what it shows.
  latency() {
    if (!this.clockAt) return null;
    const transit = this.clockAt / 1000 - this.lastWallUs / 1e6;
    const b = this.video.buffered;
    const ahead = b.length ? b.end(b.length - 1) - this.video.currentTime : 0;
    return Math.max(0, transit) + Math.max(0, ahead);
  }

  connect() {
    if (this.closed) return;
    this.setState("connecting");
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${proto}//${location.host}${this.base}/live?stream=${this.stream}`;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let refused = null;
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") {
        const msg = JSON.parse(ev.data);
        if (msg.type === "status") {
          if (["forbidden", "disabled", "unavailable", "stopping", "removed"].includes(msg.state)) refused = msg.state;
          this.setState(msg.state, msg.reason);
        } else if (msg.type === "init") this.onInit(msg);
        else if (msg.type === "clock") {
          this.lastWallUs = msg.wall_us;
          this.clockAt = Date.now();
          this.skipped += msg.skipped;
        }
        return;
      }
      this.bytes += ev.data.byteLength;
      if (this.element.dataset.mode !== "mse") return;
      this.retry = 0;
      // Media means playing, unless the server said otherwise (the last frames before a camera
      // went offline arrive after the news).
      if (this.state === "connecting" || this.state === "error") this.setState("playing");
      this.queue.push(ev.data);
      this.pump();
    };
    ws.onclose = () => {
      if (this.ws !== ws || this.closed) return;
      this.ws = null;
      if (this.element.dataset.mode === "jpeg") return; // stills go on without the socket
      if (refused && FINAL.has(refused)) return;
      if (!refused) this.setState("error");
      // Back off: 1, 2, 4 … 15 s; a refused camera (disabled, not running) is asked less often;
      // a camera restarted with new settings (removed) at once.
      const delay = refused === "removed" ? 300 : refused ? 15000 : Math.min(15000, 1000 * 2 ** this.retry++);
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  onInit(msg) {
    this.element.dataset.codec = msg.codec;
    this.element.dataset.role = msg.role;
    this.element.dataset.size = `${msg.width}x${msg.height}`;
    if (!("MediaSource" in window) || !MediaSource.isTypeSupported(msg.mime)) {
      this.startStills(msg.codec);
      return;
    }
    // A new init segment (the camera changed its parameters, or the server restarted the
    // stream's timeline) gets a fresh MediaSource: nothing of the old timeline can overlap it.
    this.resetMedia();
    this.mime = msg.mime;
    const ms = new MediaSource();
    this.ms = ms;
    this.video.src = URL.createObjectURL(ms);
    ms.addEventListener("sourceopen", () => {
      if (this.ms !== ms) return;
      URL.revokeObjectURL(this.video.src);
      try {
        this.sb = ms.addSourceBuffer(this.mime);
        this.sb.mode = "segments";
        this.sb.addEventListener("updateend", () => this.afterAppend());
        this.sb.addEventListener("error", () => this.restart("the browser refused the stream"));
      } catch (e) {
        this.startStills(msg.codec);
        return;
      }
      this.pump();
    });
  }

  pump() {
    const sb = this.sb;
    if (!sb || sb.updating || !this.queue.length || !this.ms || this.ms.readyState !== "open") return;
    const data = this.queue.shift();
    try {
      sb.appendBuffer(data);
    } catch (e) {
      if (e.name === "QuotaExceededError") {
        this.queue.unshift(data);
        this.trim(true);
      } else this.restart(e.message);
    }
  }

  afterAppend() {
    const v = this.video;
    const b = v.buffered;
    if (b.length) {
      const end = b.end(b.length - 1);
      // Live means the newest frame: start there, and jump forward when behind (after a stall,
      // a hidden tab, or frames the server skipped for a slow connection).
      if (end - v.currentTime > MAX_LATENCY_S || v.currentTime < b.start(b.length - 1) - 0.01) {
        v.currentTime = Math.max(b.start(b.length - 1), end - TARGET_LATENCY_S);
      }
      if (v.paused) v.play().catch(() => {});
    }
    if (!this.trim(false)) this.pump();
  }

  // Drops media well behind the playhead so the buffer stays small; true when a removal runs.
  trim(force) {
    const sb = this.sb;
    const b = this.video.buffered;
    if (!sb || sb.updating || !b.length) return false;
    const before = this.video.currentTime - (force ? 1 : KEEP_BUFFER_S);
    if (b.start(0) < before - (force ? 0 : 2)) {
      sb.remove(0, before);
      return true;
    }
    return false;
  }

  startStills(codec) {
    // The stream stays on the server side; this tile shows a still of the newest keyframe.
    this.element.dataset.mode = "jpeg";
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close();
    }
    this.video.hidden = true;
    this.img.hidden = false;
    const load = () => {
      if (this.closed) return;
      const url = `${this.base}/snapshot.jpg?width=${this.stillWidth}&t=${Date.now()}`;
      const next = new Image();
      next.onload = () => {
        if (this.closed) return;
        this.img.src = next.src;
        this.setState("playing");
        this.statusLine.textContent = `stills: ${codec} cannot be played here`;
        this.statusLine.hidden = false;
        this.element.classList.add("stills");
        this.stillTimer = setTimeout(load, STILL_INTERVAL_MS);
      };
      next.onerror = () => {
        if (this.closed) return;
        this.setState("offline", "no picture");
        this.stillTimer = setTimeout(load, STILL_INTERVAL_MS * 3);
      };
      next.src = url;
    };
    load();
  }

  resetMedia() {
    this.queue = [];
    this.sb = null;
    this.mime = "";
    if (this.ms) {
      this.ms = null;
      this.video.removeAttribute("src");
      this.video.load();
    }
  }

  restart(reason) {
    if (this.closed) return;
    this.resetMedia();
    this.setState("error", reason);
    if (this.ws) this.ws.close(); // onclose reconnects
  }

  // Switches between the sub-stream and the main stream.
  setStream(stream) {
    if (stream === this.stream) return;
    this.stream = stream;
    if (this.element.dataset.mode === "jpeg") return;
    this.resetMedia();
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
    clearTimeout(this.timer);
    this.connect();
  }

  destroy() {
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.stillTimer);
    if (this.ws) this.ws.close();
    this.ws = null;
    this.resetMedia();
    this.element.remove();
  }
}
