// Alarm sounds made with Web Audio (no sound files to fetch): a pattern per named sound, louder
// and faster for more urgent priorities. Browsers allow sound only after the user has interacted
// with the page, which logging in is.
const PATTERNS = {
  "alarm-critical": { freq: [880, 660], beeps: 6, len: 0.15 },
  "alarm-high": { freq: [740, 560], beeps: 4, len: 0.18 },
  chime: { freq: [660, 880], beeps: 2, len: 0.25 },
};

export class AlarmSound {
  constructor() {
    this.enabled = true;
    this.ctx = null;
    this.played = 0;
  }
  play(name, level = 4) {
    if (!this.enabled || !name) return;
    const p = PATTERNS[name] || PATTERNS.chime;
    try {
      this.ctx = this.ctx || new AudioContext();
      const t0 = this.ctx.currentTime + 0.02;
      for (let i = 0; i < p.beeps; i++) {
        const osc = this.ctx.createOscillator();
        const gain = this.ctx.createGain();
        osc.frequency.value = p.freq[i % p.freq.length];
        gain.gain.value = level <= 2 ? 0.25 : 0.12;
        osc.connect(gain).connect(this.ctx.destination);
        const t = t0 + i * p.len * 1.3;
        osc.start(t);
        osc.stop(t + p.len);
      }
      this.played++;
    } catch {
      /* no audio device: the visual alarm remains */
    }
  }
}
