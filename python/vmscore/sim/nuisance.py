"""Nuisances and tampering of synthetic scenes: the timeline and the per-frame image effects.

Every nuisance is an :class:`Episode` on the scene's timeline (seconds); the renderer asks each
one for its effect at a frame's time, and the ground truth turns each into an event. The effects
are the classic sources of motion false alarms (see the false-alarm table of the motion notes):
light switching and slow daylight change, rain and snow, swaying trees, camera shake, and the
tampering a camera must report (lens covered, defocused, camera turned away).

All randomness is drawn at construction from the scene's seeded generator; evaluating an effect at
a time is a pure function, so any frame can be rendered on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from vmscore.sim._raster import F32, fractal_noise
from vmscore.sim.truth import EventKind

__all__ = ["Episode", "Particles", "Shake", "progress"]

Param = str | float | bool


@dataclass(frozen=True, slots=True)
class Episode:
    """One nuisance or tampering on a scene's timeline, from ``start_s`` to ``end_s``.

    Parameters by kind:

    - ``light_switch``: ``lamp`` (name), ``on`` (bool), ramp = ``end_s - start_s`` (0 for a step).
    - ``daylight_change``: ``to`` (gain factor reached), ``back`` (return to 1 by the end).
    - ``rain`` / ``snow``: ``intensity`` (1 is a steady shower).
    - ``tree_sway``: ``amplitude`` (pixels at 1080 lines, at the crown top).
    - ``shake``: ``amplitude`` (pixels at 1080 lines).
    - ``tamper_cover`` / ``tamper_defocus`` / ``tamper_turned``: ``ramp`` (seconds to full effect).
    """

    kind: EventKind
    start_s: float
    end_s: float
    params: dict[str, Param] = field(default_factory=dict)

    def num(self, key: str, default: float) -> float:
        """A numeric parameter."""
        v = self.params.get(key, default)
        return float(v)

    def active(self, t: float, frame_s: float) -> bool:
        """True when the episode affects the frame shown at time ``t``.

        A light switch is active from the switch until the first frame at full new level.
        """
        if self.kind == "light_switch":
            return self.start_s <= t < self.end_s + frame_s
        return self.start_s <= t < self.end_s


def progress(t: float, start: float, end: float, ramp: float, releases: bool) -> float:
    """0..1 strength of a tamper: ramps up over ``ramp`` seconds, holds, and ramps back down
    before ``end`` when ``releases``."""
    if t < start or t >= end:
        return 0.0
    p = min(1.0, (t - start) / ramp) if ramp > 0 else 1.0
    if releases and ramp > 0:
        p = min(p, max(0.0, (end - t) / ramp))
    return p * p * (3.0 - 2.0 * p)


def light_level(t: float, initial: float, switches: list[Episode]) -> float:
    """Level of one lamp at time ``t`` given its switching episodes (sorted by start)."""
    level = initial
    for ep in switches:
        if t < ep.start_s:
            break
        target = 1.0 if ep.params.get("on", True) else 0.0
        ramp = ep.end_s - ep.start_s
        f = 1.0 if ramp <= 0 else min(1.0, (t - ep.start_s) / ramp)
        level = level + (target - level) * f
    return level


def daylight_gain(t: float, episodes: list[Episode]) -> float:
    """Product of the daylight factors of the episodes at ``t``."""
    g = 1.0
    for ep in episodes:
        to = ep.num("to", 1.0)
        span = max(ep.end_s - ep.start_s, 1e-9)
        u = min(1.0, max(0.0, (t - ep.start_s) / span))
        # "back": up and down again (a cloud passing); otherwise a steady drift (dusk).
        f = 1.0 - abs(2.0 * u - 1.0) if ep.params.get("back", False) else u
        f = f * f * (3.0 - 2.0 * f)
        g *= 1.0 + (to - 1.0) * f
    return g


class Shake:
    """Camera shake of one episode: a mix of a pole's sway and higher-frequency jitter."""

    def __init__(self, ep: Episode, rng: np.random.Generator, scale: float) -> None:
        self.ep = ep
        self.amp = ep.num("amplitude", 2.0) * scale
        self.f = rng.uniform([3.0, 6.0, 2.5, 5.5], [5.0, 9.0, 4.5, 8.5])
        self.ph = rng.uniform(0.0, 2.0 * math.pi, size=4)

    def offset(self, t: float) -> tuple[float, float]:
        """(dx, dy) in pixels at time ``t``."""
        ep = self.ep
        if not ep.start_s <= t < ep.end_s:
            return 0.0, 0.0
        env = min(1.0, (t - ep.start_s) / 0.15, (ep.end_s - t) / 0.15)
        w = 2.0 * math.pi * t
        dx = 0.7 * math.sin(w * self.f[0] + self.ph[0]) + 0.3 * math.sin(w * self.f[1] + self.ph[1])
        dy = 0.7 * math.sin(w * self.f[2] + self.ph[2]) + 0.3 * math.sin(w * self.f[3] + self.ph[3])
        return self.amp * env * dx, 0.6 * self.amp * env * dy


class Particles:
    """Rain streaks or snow flakes in front of the camera, in relative coordinates.

    The same seed gives the same weather at any resolution; sizes scale with the frame height.
    """

    def __init__(
        self, kind: str, ep: Episode, rng: np.random.Generator, width: int, height: int
    ) -> None:
        self.kind = kind
        self.ep = ep
        self.w, self.h = width, height
        s = height / 1080.0
        intensity = ep.num("intensity", 1.0)
        n = max(1, round((1100 if kind == "rain" else 1400) * intensity))
        self.n = n
        self.x0 = rng.uniform(0.0, 1.0, n)
        self.y0 = rng.uniform(0.0, 1.0, n)
        self.depth = rng.uniform(0.3, 1.0, n)
        self.order = rng.permutation(n)
        if kind == "rain":
            self.v = rng.uniform(1.3, 2.5, n) * (0.5 + 0.5 * self.depth)
            self.slope = 0.12 + rng.normal(0.0, 0.02, n)
            length = np.clip(self.v * height / 45.0 * self.depth, max(2.0, 4 * s), 48 * s)
            self.lmax = int(np.ceil(length.max()))
            k = np.arange(self.lmax)[None, :]
            self.on = k < length[:, None]
            self.k = np.broadcast_to(k, self.on.shape)
            # Streaks are about 1.3 px wide at 1080 lines; thinner ones are fainter, as they
            # would be after the scaler.
            self.amp = (26.0 + 22.0 * self.depth) * min(1.0, 1.3 * s)
        else:
            self.v = rng.uniform(0.05, 0.16, n) * (0.4 + 0.6 * self.depth)
            self.sway_f = rng.uniform(0.3, 0.9, n)
            self.sway_ph = rng.uniform(0.0, 2.0 * math.pi, n)
            self.drift = rng.normal(0.01, 0.01, n)
            r = np.clip(np.round(self.depth * 3.0 * s), 0, 3).astype(int)
            self.radius = r
            self.alpha = 0.55 + 0.35 * self.depth

    def fraction(self, t: float) -> float:
        """Share of particles shown at ``t`` (weather fades in and out over two seconds)."""
        ep = self.ep
        if not ep.start_s <= t < ep.end_s:
            return 0.0
        return float(min(1.0, (t - ep.start_s) / 2.0 + 0.05, (ep.end_s - t) / 2.0 + 0.05))

    def apply(self, img: F32, t: float) -> None:
        """Draws the particles of time ``t`` onto ``img`` (H x W, in place)."""
        frac = self.fraction(t)
        if frac <= 0.0:
            return
        sel = self.order[: max(1, int(self.n * frac))]
        h, w = self.h, self.w
        if self.kind == "rain":
            fall = self.v[sel] * t
            y = ((self.y0[sel] + fall) % 1.3 - 0.15) * h
            x = ((self.x0[sel] + self.slope[sel] * fall * h / w) % 1.0) * w
            ys = (y[:, None] - self.k[sel]).astype(np.intp)
            xs = (x[:, None] - self.k[sel] * self.slope[sel][:, None]).astype(np.intp)
            ok = self.on[sel] & (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
            amp = np.broadcast_to(self.amp[sel][:, None], ok.shape)[ok]
            flat = ys[ok] * w + xs[ok]
            view = img.reshape(-1)
            view[flat] += amp.astype(np.float32)
            return
        y = ((self.y0[sel] + self.v[sel] * t) % 1.1 - 0.05) * h
        x = (
            (
                self.x0[sel]
                + self.drift[sel] * t
                + 0.012 * np.sin(2.0 * math.pi * self.sway_f[sel] * t + self.sway_ph[sel])
            )
            % 1.0
        ) * w
        view = img.reshape(-1)
        for r in range(4):
            m = self.radius[sel] == r
            if not m.any():
                continue
            dy, dx = _disc(r)
            ys = (y[m][:, None] + dy[None, :]).astype(np.intp)
            xs = (x[m][:, None] + dx[None, :]).astype(np.intp)
            ok = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
            a = np.broadcast_to(self.alpha[sel][m][:, None], ok.shape)[ok].astype(np.float32)
            flat = ys[ok] * w + xs[ok]
            cur = view[flat]
            view[flat] = cur + a * (np.float32(238.0) - cur)


def _disc(r: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Pixel offsets of a disc of radius ``r`` (one pixel for r = 0)."""
    g = np.arange(-r, r + 1, dtype=np.float64)
    yy, xx = np.meshgrid(g, g, indexing="ij")
    m = yy * yy + xx * xx <= r * r + 0.5
    return yy[m], xx[m]


class Sway:
    """Wind in the tree crowns: a bend growing towards the crown top plus leaf flutter."""

    def __init__(
        self,
        episodes: list[Episode],
        rng: np.random.Generator,
        crowns: list[tuple[int, int, int, int, int, float, F32]],
        scale: float,
    ) -> None:
        self.episodes = episodes
        self.scale = scale
        self.gust_ph = rng.uniform(0.0, 2.0 * math.pi, size=3)
        self.freq = rng.uniform(0.55, 0.9, size=len(crowns))
        self.fields: list[tuple[F32, F32, F32]] = []
        for x0, y0, x1, y1, base, _, weight in crowns:
            h, w = y1 - y0, x1 - x0
            # Leaf clusters: about 14 across a crown, whatever the resolution.
            cells = (max(2, round(14 * h / max(h, w))), max(2, round(14 * w / max(h, w))))
            f1 = fractal_noise(rng, h, w, cells=cells, octaves=2)
            f2 = fractal_noise(rng, h, w, cells=cells, octaves=2)
            ys = np.arange(y0, y1, dtype=np.float32)[:, None]
            bend = np.clip((np.float32(base) - ys) / np.float32(max(1, base - y0)), 0.0, 1.0)
            bend = (bend ** np.float32(1.5)).astype(np.float32)
            self.fields.append((f1 * weight, f2 * weight, bend * weight))

    def amplitude(self, t: float) -> float:
        """Sway amplitude in pixels at ``t`` (0 outside the wind episodes)."""
        a = 0.0
        for ep in self.episodes:
            if ep.start_s <= t < ep.end_s:
                ramp = min(1.0, (t - ep.start_s) / 1.0 + 0.2, (ep.end_s - t) / 1.0 + 0.2)
                a = max(a, ep.num("amplitude", 2.0) * ramp)
        if a == 0.0:
            return 0.0
        gust = (
            0.65
            + 0.25 * math.sin(2 * math.pi * 0.11 * t + self.gust_ph[0])
            + 0.15 * math.sin(2 * math.pi * 0.31 * t + self.gust_ph[1])
        )
        return a * gust * self.scale

    def displacement(self, index: int, t: float, phase: float, amp: float) -> F32:
        """Horizontal displacement (pixels) of crown ``index`` at ``t``."""
        f1, f2, bend = self.fields[index]
        main = np.float32(amp * math.sin(2 * math.pi * self.freq[index] * t + phase))
        w = 2 * math.pi * 2.3 * t + phase
        flutter_a = np.float32(0.6 * amp * math.sin(w))
        flutter_b = np.float32(0.6 * amp * math.cos(w))
        out: F32 = bend * main + f1 * flutter_a + f2 * flutter_b
        return out
