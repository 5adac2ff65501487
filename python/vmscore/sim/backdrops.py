"""Procedural static backgrounds: a school yard, a car park, a corridor, a garden.

A backdrop is drawn once per scene at the output resolution from geometry given in relative image
coordinates and ground-plane metres (through :class:`GroundCamera`), so the same scene looks the
same at 640x360 and 1920x1080. Textures come from seeded noise fields whose random grids do not
depend on the resolution. Besides the picture, a backdrop returns what the renderer animates: lamps
(a light pool and glowing parts, switched on the timeline), tree crowns (warped when the wind
blows) and the ground camera that places actors.

The world may be wider than the view (``world_width > 1``): a camera turned away by a tamperer
then looks at another part of the same place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vmscore.sim._raster import F32, Bool, area_resize, box_blur, fractal_noise, polygon_mask
from vmscore.sim.actors import YCC, rgb

__all__ = ["Backdrop", "GroundCamera", "LampLight", "TreeCrown", "build_backdrop"]

ASPECT = 16.0 / 9.0
"""Relative geometry assumes this picture shape; other output shapes stretch it."""


@dataclass(frozen=True, slots=True)
class GroundCamera:
    """A pinhole camera above a flat ground: maps ground metres to relative image coordinates.

    ``horizon`` is the image row (0..1) of the horizon, ``height_m`` the camera height and
    ``focal`` the focal length in frame heights (an object ``s`` metres tall at depth ``Z`` is
    ``focal * s / Z`` frame heights tall).
    """

    horizon: float
    height_m: float
    focal: float

    def to_image(self, x_m: float, z_m: float, up_m: float = 0.0) -> tuple[float, float]:
        """Relative (x, y) of a point ``up_m`` above the ground point (x_m, z_m)."""
        return (
            0.5 + self.focal * x_m / (z_m * ASPECT),
            self.horizon + self.focal * (self.height_m - up_m) / z_m,
        )

    def to_ground(self, x: float, y: float) -> tuple[float, float]:
        """Ground point (x_m, z_m) seen at relative image position (x, y) below the horizon."""
        z = self.focal * self.height_m / (y - self.horizon)
        return (x - 0.5) * ASPECT * z / self.focal, z

    def px_per_m(self, z_m: float, frame_height: int) -> float:
        """Image scale (pixels per metre) at depth ``z_m``."""
        return self.focal * frame_height / z_m

    def ground_polygon(self, pts: Sequence[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
        """Projects a ground polygon (metres) to relative image coordinates."""
        return tuple(self.to_image(x, z) for x, z in pts)


@dataclass(frozen=True, slots=True)
class LampLight:
    """A switchable light: what it adds to the picture at full power, over a window."""

    name: str
    x0: int
    y0: int
    add: F32
    """Luma added at level 1 (light pool on the albedo, plus glowing parts)."""
    pool: F32
    """Illumination factor at level 1 (for actors walking through the pool)."""


@dataclass(frozen=True, slots=True)
class TreeCrown:
    """A tree crown that sways: its window in world pixels and the row it bends from."""

    x0: int
    y0: int
    x1: int
    y1: int
    base_y: int
    phase: float
    weight: F32
    """How much each pixel of the window belongs to the crown (0..1)."""


@dataclass
class Backdrop:
    """The static picture of a place and what moves on it."""

    layout: str
    camera: GroundCamera
    world_width: int
    """Width in pixels of the whole world (the view is ``width`` pixels of it)."""
    albedo: F32
    """Luma of the scene in full daylight (or with the room lights as they are by default)."""
    cb: F32
    """Half-resolution Cb - 128."""
    cr: F32
    """Half-resolution Cr - 128."""
    night_light: F32
    """Illumination of the scene at night without lamps (infrared illuminator plus moonlight)."""
    lamps: dict[str, LampLight] = field(default_factory=dict)
    trees: list[TreeCrown] = field(default_factory=list)


class _Canvas:
    """Full-resolution Y, Cb, Cr planes in world pixels, with shared texture fields."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, world: float) -> None:
        self.h = height
        self.vw = width
        self.ww = 2 * round(width * world / 2)
        self.world = world
        shape = (self.h, self.ww)
        self.y = np.zeros(shape, np.float32)
        self.cb = np.zeros(shape, np.float32)
        self.cr = np.zeros(shape, np.float32)
        cx = max(2, round(8 * world))
        self.blotch = fractal_noise(rng, *shape, cells=(5, cx), octaves=3)
        self.detail = fractal_noise(rng, *shape, cells=(45, round(45 * ASPECT * world)), octaves=2)
        self.grain = rng.standard_normal(shape, dtype=np.float32)
        self.grain *= np.float32(0.6)
        self.rng = rng

    def px(self, x: float, y: float) -> tuple[float, float]:
        return x * self.vw, y * self.h

    def _win(self, xs: Sequence[float], ys: Sequence[float]) -> tuple[int, int, int, int] | None:
        x0 = max(0, math.floor(min(xs)))
        x1 = min(self.ww, math.ceil(max(xs)) + 1)
        y0 = max(0, math.floor(min(ys)))
        y1 = min(self.h, math.ceil(max(ys)) + 1)
        if x1 <= x0 or y1 <= y0:
            return None
        return x0, y0, x1, y1

    def paint(
        self,
        mask: Bool,
        x0: int,
        y0: int,
        color: YCC,
        tex: tuple[float, float, float] = (6.0, 3.0, 3.0),
        vgrad: tuple[float, float] | None = None,
        alpha: float = 1.0,
    ) -> None:
        h, w = mask.shape
        sl = (slice(y0, y0 + h), slice(x0, x0 + w))
        val = (
            np.float32(color[0])
            + np.float32(tex[0]) * self.blotch[sl]
            + np.float32(tex[1]) * self.detail[sl]
            + np.float32(tex[2]) * self.grain[sl]
        )
        if vgrad is not None:
            g = np.linspace(vgrad[0], vgrad[1], h, dtype=np.float32)[:, None]
            val *= g
        for plane, v in ((self.y, val), (self.cb, color[1]), (self.cr, color[2])):
            region = plane[sl]
            if alpha >= 1.0:
                region[mask] = v[mask] if isinstance(v, np.ndarray) else v
            else:
                target = v[mask] if isinstance(v, np.ndarray) else np.float32(v)
                region[mask] = region[mask] * np.float32(1 - alpha) + target * np.float32(alpha)

    def poly(self, pts: Sequence[tuple[float, float]], color: YCC, **kw: object) -> Bool | None:
        p = [self.px(x, y) for x, y in pts]
        win = self._win([a for a, _ in p], [b for _, b in p])
        if win is None:
            return None
        x0, y0, x1, y1 = win
        m = polygon_mask(p, x0, y0, x1, y1)
        self.paint(m, x0, y0, color, **kw)  # type: ignore[arg-type]
        return m

    def rect(self, x0: float, y0: float, x1: float, y1: float, color: YCC, **kw: object) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], color, **kw)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, color: YCC, **kw: object) -> None:
        px, py = self.px(cx, cy)
        prx, pry = rx * self.vw, ry * self.h
        win = self._win([px - prx, px + prx], [py - pry, py + pry])
        if win is None or prx <= 0 or pry <= 0:
            return
        x0, y0, x1, y1 = win
        xs = (np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - px) / prx
        ys = (np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - py) / pry
        self.paint(xs * xs + ys * ys <= 1.0, x0, y0, color, **kw)  # type: ignore[arg-type]

    def pattern(
        self,
        pts: Sequence[tuple[float, float]],
        fn: Callable[[F32, F32], Bool],
        color: YCC,
        alpha: float = 1.0,
        tex: tuple[float, float, float] = (2.0, 1.0, 2.0),
    ) -> None:
        """Paints ``color`` where ``fn(x_px, y_px)`` holds inside a polygon."""
        p = [self.px(x, y) for x, y in pts]
        win = self._win([a for a, _ in p], [b for _, b in p])
        if win is None:
            return
        x0, y0, x1, y1 = win
        xs = np.arange(x0, x1, dtype=np.float32)[None, :]
        ys = np.arange(y0, y1, dtype=np.float32)[:, None]
        m = polygon_mask(p, x0, y0, x1, y1) & fn(xs, ys)
        self.paint(m, x0, y0, color, tex=tex, alpha=alpha)


# Materials (daylight albedo as full-range YCbCr).
ASPHALT = rgb(104, 104, 108)
PAVING = rgb(150, 146, 140)
PAINT = rgb(225, 225, 220)
GRASS = rgb(88, 125, 60)
BRICK = rgb(150, 85, 65)
MORTAR = rgb(185, 180, 170)
GLASS = rgb(55, 65, 75)
FRAME = rgb(200, 200, 200)
LEAVES = rgb(55, 85, 40)
BARK = rgb(80, 62, 45)
METAL = rgb(70, 72, 75)
SKY = rgb(185, 205, 230)


def _tree(
    cv: _Canvas,
    cam: GroundCamera,
    x_m: float,
    z_m: float,
    height_m: float,
    rng: np.random.Generator,
) -> TreeCrown | None:
    crown_r = 0.3 * height_m
    crown_c = height_m - crown_r
    trunk_w = 0.05 * height_m
    bx0, by0 = cam.to_image(x_m - trunk_w, z_m, 0.0)
    bx1, by1 = cam.to_image(x_m + trunk_w, z_m, crown_c)
    cv.rect(bx0, by1, bx1, by0, BARK, tex=(4, 6, 4))
    cx, cy = cam.to_image(x_m, z_m, crown_c)
    rx = cam.focal * crown_r / (z_m * ASPECT)
    ry = cam.focal * crown_r / z_m
    x0, y0 = cv.px(cx - 1.2 * rx, cy - 1.2 * ry)
    x1, y1 = cv.px(cx + 1.2 * rx, cy + 1.2 * ry)
    win = cv._win([x0, x1], [y0, y1])
    blobs = [
        (
            cx + d * rx * math.cos(a),
            cy + d * ry * math.sin(a) * 0.8,
            s * rx,
            s * ry,
            shade,
        )
        for a, d, s, shade in (
            (
                2 * math.pi * k / 9 + rng.uniform(-0.3, 0.3),
                rng.uniform(0.25, 0.55),
                rng.uniform(0.45, 0.7),
                rng.uniform(0.8, 1.15),
            )
            for k in range(9)
        )
    ]
    blobs.append((cx, cy, 0.6 * rx, 0.6 * ry, 0.9))
    for bx, by, brx, bry, shade in blobs:
        cv.ellipse(
            bx, by, brx, bry, (LEAVES[0] * shade, LEAVES[1], LEAVES[2]), tex=(8.0, 26.0, 9.0)
        )
    if win is None:
        return None
    wx0, wy0, wx1, wy1 = win
    xs = (np.arange(wx0, wx1, dtype=np.float32)[None, :] + 0.5) / cv.vw
    ys = (np.arange(wy0, wy1, dtype=np.float32)[:, None] + 0.5) / cv.h
    crown = np.zeros((wy1 - wy0, wx1 - wx0), np.bool_)
    for bx, by, brx, bry, _ in blobs:
        crown |= ((xs - bx) / brx) ** 2 + ((ys - by) / bry) ** 2 <= 1.0
    # Soft weight: full inside the crown, fading over a few pixels so the warp has no seam.
    weight = box_blur(crown.astype(np.float32), max(1, round(cv.h / 270)))
    base = cv.px(0.0, cam.to_image(x_m, z_m, crown_c - 0.9 * crown_r)[1])[1]
    return TreeCrown(wx0, wy0, wx1, wy1, int(base), float(rng.uniform(0, 2 * math.pi)), weight)


def _lamp_post(
    cv: _Canvas, cam: GroundCamera, x_m: float, z_m: float, height_m: float
) -> tuple[float, float, float, float]:
    """Draws a pole with its head; returns the lamp's position (x, z, height) and head size."""
    w = 0.08
    x0, y0 = cam.to_image(x_m - w, z_m, 0.0)
    x1, y1 = cam.to_image(x_m + w, z_m, height_m)
    cv.rect(x0, y1, x1, y0, METAL, tex=(2, 1, 2))
    hx0, hy0 = cam.to_image(x_m - 0.35, z_m, height_m + 0.1)
    hx1, hy1 = cam.to_image(x_m + 0.35, z_m, height_m - 0.12)
    cv.rect(hx0, hy0, hx1, hy1, rgb(60, 60, 60), tex=(1, 1, 1))
    return x_m, z_m, height_m, 0.35


def _car_front(
    cv: _Canvas, cam: GroundCamera, x_m: float, z_m: float, color: YCC, rear: bool
) -> None:
    """A parked car seen from the front or the back."""

    def r(ax: float, az: float, bx: float, bz: float, c: YCC, **kw: object) -> None:
        x0, y0 = cam.to_image(x_m + ax, z_m, bz)
        x1, y1 = cam.to_image(x_m + bx, z_m, az)
        cv.rect(x0, y0, x1, y1, c, **kw)

    r(-0.85, 0.0, -0.55, 0.38, rgb(20, 20, 22), tex=(1, 1, 1))
    r(0.55, 0.0, 0.85, 0.38, rgb(20, 20, 22), tex=(1, 1, 1))
    r(-0.9, 0.22, 0.9, 0.9, color, tex=(3, 2, 2), vgrad=(1.1, 0.85))
    tl = cam.to_image(x_m - 0.65, z_m, 1.45)
    tr = cam.to_image(x_m + 0.65, z_m, 1.45)
    br = cam.to_image(x_m + 0.82, z_m, 0.9)
    bl = cam.to_image(x_m - 0.82, z_m, 0.9)
    cv.poly([tl, tr, br, bl], color, tex=(3, 2, 2))
    g = [
        cam.to_image(x_m + dx, z_m, up)
        for dx, up in ((-0.58, 1.38), (0.58, 1.38), (0.74, 0.97), (-0.74, 0.97))
    ]
    cv.poly(g, GLASS, tex=(3, 6, 2), vgrad=(1.3, 0.8))
    lamp = rgb(200, 40, 40) if rear else rgb(230, 230, 220)
    r(-0.82, 0.62, -0.55, 0.76, lamp, tex=(1, 1, 1))
    r(0.55, 0.62, 0.82, 0.76, lamp, tex=(1, 1, 1))
    r(-0.25, 0.35, 0.25, 0.47, rgb(235, 235, 235), tex=(1, 1, 1))


def _pool(
    bd_shape: tuple[int, int],
    cam: GroundCamera,
    vw: int,
    lx: float,
    lz: float,
    lh: float,
    radius_m: float,
) -> tuple[int, int, F32]:
    """Light pool of a lamp at (lx, lz) ``lh`` high on the ground: (1 + d^2/r^2)^-1.5 of the
    distance from the lamp's foot."""
    h, ww = bd_shape
    reach = radius_m * 5.0
    xa, _ = cam.to_image(lx - reach, max(lz - reach, 1.0))
    xb, _ = cam.to_image(lx + reach, max(lz - reach, 1.0))
    xa2, _ = cam.to_image(lx - reach, lz + reach)
    xb2, _ = cam.to_image(lx + reach, lz + reach)
    ya = cam.to_image(lx, lz + reach)[1]
    x0, x1 = max(0, int(min(xa, xa2) * vw)), min(ww, math.ceil(max(xb, xb2) * vw) + 1)
    y0, y1 = max(0, int(ya * h)), h
    if x1 <= x0 or y1 <= y0:
        return 0, 0, np.zeros((0, 0), np.float32)
    ys = (np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5) / h
    xs = (np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5) / vw
    f, hc = np.float32(cam.focal), np.float32(cam.height_m)
    # Every pixel is taken as the ground point it would show: walls and crowns behind a lamp's
    # pool then get little of its light, which is what a pool on the ground looks like.
    below = np.maximum(ys - np.float32(cam.horizon), np.float32(1e-3))
    z = f * hc / below
    x = (xs - np.float32(0.5)) * np.float32(ASPECT) * z / f
    d2 = (x - np.float32(lx)) ** 2 + (z - np.float32(lz)) ** 2 + np.float32(lh * lh)
    # Normalised so the ground right under the lamp gets 1.
    d2 -= np.float32(lh * lh)
    pool = np.float32(1.0) + np.maximum(d2, np.float32(0.0)) / np.float32(radius_m**2)
    pool = pool ** np.float32(-1.5)
    pool[pool < 0.004] = 0.0
    return x0, y0, pool.astype(np.float32)


def _finish(
    cv: _Canvas,
    layout: str,
    cam: GroundCamera,
    night_light: F32,
    lamps: list[
        tuple[str, list[tuple[float, float, float, float]], list[tuple[Bool, int, int, float]]]
    ],
    trees: list[TreeCrown],
) -> Backdrop:
    """Turns the painted canvas into a backdrop and the lamp descriptions into light layers."""
    albedo = cv.y
    np.clip(albedo, 0.0, 255.0, out=albedo)
    cb = area_resize(cv.cb, cv.h // 2, cv.ww // 2)
    cr = area_resize(cv.cr, cv.h // 2, cv.ww // 2)
    lights: dict[str, LampLight] = {}
    for name, heads, glows in lamps:
        # Union window of every pool and glow of this lamp.
        parts: list[tuple[int, int, F32, bool]] = []
        for lx, lz, lh, r in heads:
            x0, y0, pool = _pool(albedo.shape, cam, cv.vw, lx, lz, lh, r)
            if pool.size:
                parts.append((x0, y0, pool, True))
        for m, gx, gy, val in glows:
            parts.append((gx, gy, m.astype(np.float32) * np.float32(val), False))
        if not parts:
            continue
        wx0 = min(p[0] for p in parts)
        wy0 = min(p[1] for p in parts)
        wx1 = max(p[0] + p[2].shape[1] for p in parts)
        wy1 = max(p[1] + p[2].shape[0] for p in parts)
        pool_sum = np.zeros((wy1 - wy0, wx1 - wx0), np.float32)
        glow_sum = np.zeros_like(pool_sum)
        for x0, y0, arr, is_pool in parts:
            tgt = pool_sum if is_pool else glow_sum
            tgt[y0 - wy0 : y0 - wy0 + arr.shape[0], x0 - wx0 : x0 - wx0 + arr.shape[1]] += arr
        pool_sum *= np.float32(1.1)
        add = albedo[wy0:wy1, wx0:wx1] * pool_sum + glow_sum
        lights[name] = LampLight(name, wx0, wy0, add, pool_sum)
    return Backdrop(
        layout=layout,
        camera=cam,
        world_width=cv.ww,
        albedo=albedo,
        cb=cb,
        cr=cr,
        night_light=night_light,
        lamps=lights,
        trees=trees,
    )


def _night_light(cv: _Canvas, cam: GroundCamera, moon: float = 0.07, ir: float = 0.42) -> F32:
    """An infrared illuminator on the camera: strong near the camera, fading with distance."""
    ys = (np.arange(cv.h, dtype=np.float32)[:, None] + 0.5) / cv.h
    xs = (np.arange(cv.ww, dtype=np.float32)[None, :] + 0.5) / cv.vw
    near = np.clip((ys - np.float32(cam.horizon)) / np.float32(1.0 - cam.horizon), 0.0, 1.0)
    spot = np.float32(1.0) - np.float32(1.6) * (xs - np.float32(0.5)) ** 2
    out = np.float32(moon) + np.float32(ir) * near**2 * np.clip(spot, 0.3, 1.0)
    res: F32 = out.astype(np.float32)
    return res


LampSpec = tuple[str, list[tuple[float, float, float, float]], list[tuple[Bool, int, int, float]]]


def _glow_rect(
    cv: _Canvas, x0: float, y0: float, x1: float, y1: float, val: float
) -> tuple[Bool, int, int, float]:
    a, b = cv.px(x0, y0)
    c, d = cv.px(x1, y1)
    win = cv._win([a, c], [b, d])
    if win is None:
        return np.zeros((0, 0), np.bool_), 0, 0, 0.0
    wx0, wy0, wx1, wy1 = win
    m = polygon_mask([(a, b), (c, b), (c, d), (a, d)], wx0, wy0, wx1, wy1)
    return m, wx0, wy0, val


# --------------------------------------------------------------------------------------------------
# School yard: a brick school across an asphalt yard with a painted court, a fence with a gate on
# the left, trees and lamp posts.

SCHOOLYARD_CAMERA = GroundCamera(horizon=0.02, height_m=6.0, focal=1.5)
SCHOOL_WALL_Z = 24.0
SCHOOL_DOOR_X = 1.5
FENCE_X = -8.5
GATE_Z = (15.0, 18.0)


def _schoolyard(cv: _Canvas, rng: np.random.Generator) -> Backdrop:
    cam = SCHOOLYARD_CAMERA
    wr = cv.world
    y_base = cam.to_image(0.0, SCHOOL_WALL_Z)[1]
    # Ground and building wall.
    cv.rect(0, y_base, wr, 1.0, ASPHALT, tex=(9, 3, 4))
    cv.rect(0, -0.01, wr, y_base, BRICK, tex=(6, 4, 3))
    bh = cam.focal * 0.075 / SCHOOL_WALL_Z * cv.h
    bw = bh * 3.2

    def mortar(xs: F32, ys: F32) -> Bool:
        row = np.floor(ys / bh)
        off = (row % 2) * (bw / 2)
        m: Bool = ((ys % bh) < max(1.0, bh * 0.2)) | (((xs + off) % bw) < max(1.0, bw * 0.06))
        return m

    cv.pattern([(0, 0), (wr, 0), (wr, y_base), (0, y_base)], mortar, MORTAR, alpha=0.6)
    x_left = (0 - 0.5) * ASPECT * SCHOOL_WALL_Z / cam.focal
    x_right = (wr - 0.5) * ASPECT * SCHOOL_WALL_Z / cam.focal
    glows: list[tuple[Bool, int, int, float]] = []
    k = math.floor(x_left / 3.6)
    while k * 3.6 < x_right:
        wx = k * 3.6 + 0.9
        if abs(wx + 0.8 - SCHOOL_DOOR_X) > 1.8:
            for lo, hi in ((1.0, 2.4), (3.8, 5.2)):
                x0, y0 = cam.to_image(wx, SCHOOL_WALL_Z, hi)
                x1, y1 = cam.to_image(wx + 1.6, SCHOOL_WALL_Z, lo)
                cv.rect(x0, y0, x1, y1, FRAME, tex=(2, 1, 2))
                ex = cam.to_image(0.08, SCHOOL_WALL_Z, 0.0)[0]
                pad_x, pad_y = ex - 0.5, cam.focal * 0.08 / SCHOOL_WALL_Z
                cv.rect(
                    x0 + pad_x,
                    y0 + pad_y,
                    x1 - pad_x,
                    y1 - pad_y,
                    GLASS,
                    tex=(4, 8, 2),
                    vgrad=(1.4, 0.8),
                )
                if lo < 2 and rng.random() < 0.5:
                    glows.append(
                        _glow_rect(cv, x0 + pad_x, y0 + pad_y, x1 - pad_x, y1 - pad_y, 150.0)
                    )
        k += 1
    # Entrance door with a canopy.
    x0, y0 = cam.to_image(SCHOOL_DOOR_X - 0.9, SCHOOL_WALL_Z, 2.3)
    x1, y1 = cam.to_image(SCHOOL_DOOR_X + 0.9, SCHOOL_WALL_Z, 0.0)
    cv.rect(x0, y0, x1, y1, rgb(40, 70, 110), tex=(2, 2, 2))
    cv.rect(x0 + 0.003, y0 + 0.01, x1 - 0.003, y0 + (y1 - y0) * 0.55, GLASS, tex=(2, 5, 2))
    cx0, cy0 = cam.to_image(SCHOOL_DOOR_X - 1.5, SCHOOL_WALL_Z, 2.75)
    cx1, cy1 = cam.to_image(SCHOOL_DOOR_X + 1.5, SCHOOL_WALL_Z, 2.5)
    cv.rect(cx0, cy0, cx1, cy1, rgb(210, 210, 205), tex=(1, 1, 2))
    door_glow = _glow_rect(cv, x0, y0, x1, y1, 90.0)
    # Court: a reddish surface with white lines.
    court = [(-6.0, 11.5), (6.0, 11.5), (6.0, 20.5), (-6.0, 20.5)]
    cv.poly(cam.ground_polygon(court), rgb(150, 90, 75), tex=(6, 3, 3))
    lw = 0.08
    for (ax, az), (bx, bz) in zip(court, court[1:] + court[:1], strict=True):
        if ax == bx:
            quad = [(ax - lw, az), (ax + lw, az), (bx + lw, bz), (bx - lw, bz)]
        else:
            quad = [(ax, az - lw), (bx, bz - lw), (bx, bz + lw), (ax, az + lw)]
        cv.poly(cam.ground_polygon(quad), PAINT, tex=(2, 1, 3))
    cv.poly(
        cam.ground_polygon([(-6, 16.0 - lw), (6, 16.0 - lw), (6, 16.0 + lw), (-6, 16.0 + lw)]),
        PAINT,
        tex=(2, 1, 3),
    )
    ring_o = [
        (1.8 * math.cos(a), 16.0 + 1.8 * math.sin(a))
        for a in np.linspace(0, 2 * math.pi, 40, endpoint=False)
    ]
    ring_i = [
        (1.64 * math.cos(a), 16.0 + 1.64 * math.sin(a))
        for a in np.linspace(0, 2 * math.pi, 40, endpoint=False)
    ]
    cv.poly(cam.ground_polygon(ring_o), PAINT, tex=(2, 1, 3))
    cv.poly(cam.ground_polygon(ring_i), rgb(150, 90, 75), tex=(6, 3, 3))
    # Lawn on the right, and a strip along the building.
    gx1 = (wr - 0.5) * ASPECT * 9 / cam.focal + 40
    cv.poly(
        cam.ground_polygon([(8.0, 8.0), (gx1, 8.0), (gx1, 23.0), (8.0, 23.0)]),
        GRASS,
        tex=(10, 14, 7),
    )
    cv.poly(
        cam.ground_polygon([(-40.0, 22.8), (gx1, 22.8), (gx1, 24.0), (-40.0, 24.0)]),
        GRASS,
        tex=(10, 14, 7),
    )
    # Pavement outside the fence, then the fence with its gate.
    cv.poly(
        cam.ground_polygon([(-60.0, 4.0), (FENCE_X, 4.0), (FENCE_X, 24.0), (-60.0, 24.0)]),
        PAVING,
        tex=(7, 3, 4),
    )
    fence_h = 2.0

    def lattice(xs: F32, ys: F32) -> Bool:
        p = max(3.0, cv.h / 150)
        return ((xs + ys) % p < 1.0) | ((xs - ys) % p < 1.0)

    for z0, z1 in ((5.0, GATE_Z[0]), (GATE_Z[1], SCHOOL_WALL_Z)):
        quad = [
            cam.to_image(FENCE_X, z0, 0.0),
            cam.to_image(FENCE_X, z1, 0.0),
            cam.to_image(FENCE_X, z1, fence_h),
            cam.to_image(FENCE_X, z0, fence_h),
        ]
        cv.pattern(quad, lattice, rgb(170, 175, 170), alpha=0.55)
        z = z0
        while z <= z1 + 1e-6:
            a = cam.to_image(FENCE_X, z, fence_h)
            b = cam.to_image(FENCE_X, z, 0.0)
            wpx = max(0.0012, cam.focal * 0.06 / (z * ASPECT))
            cv.rect(a[0] - wpx, a[1], a[0] + wpx, b[1], METAL, tex=(1, 1, 1))
            z += 2.5
        top = [
            cam.to_image(FENCE_X, z0, fence_h),
            cam.to_image(FENCE_X, z1, fence_h),
            cam.to_image(FENCE_X, z1, fence_h - 0.06),
            cam.to_image(FENCE_X, z0, fence_h - 0.06),
        ]
        cv.poly(top, METAL, tex=(1, 1, 1))
    # Benches by the wall.
    for bx in (-4.5, 4.5):
        a = cam.to_image(bx - 1.0, 22.3, 0.45)
        b = cam.to_image(bx + 1.0, 22.3, 0.0)
        cv.rect(a[0], a[1], b[0], b[1], rgb(120, 80, 50), tex=(3, 6, 3))
    # Trees, far to near.
    trees: list[TreeCrown] = []
    spots = [(10.5, 22.0, 8.0), (-13.0, 26.0, 9.0), (8.5, 13.0, 6.5)]
    xr = (wr - 0.5) * ASPECT * 20 / cam.focal
    extra = 18.0
    while extra < xr:
        spots.append((extra, 21.0, 8.5))
        extra += 9.0
    spots.sort(key=lambda s: -s[1])
    for x_m, z_m, hgt in spots:
        t = _tree(cv, cam, x_m + rng.uniform(-0.5, 0.5), z_m, hgt * rng.uniform(0.9, 1.1), rng)
        if t is not None:
            trees.append(t)
    # The posts stand clear of the crowns, so drawing them last keeps the depth order.
    lamp_heads = [_lamp_post(cv, cam, -4.0, 19.5, 5.0), _lamp_post(cv, cam, 5.0, 12.0, 5.0)]
    lamp_glows = [_glow_rect(cv, *_head_box(cam, h), 255.0) for h in lamp_heads]
    lamps: list[LampSpec] = [
        (
            "yard-lamp-1",
            [(lamp_heads[0][0], lamp_heads[0][1], lamp_heads[0][2], 6.0)],
            [lamp_glows[0]],
        ),
        (
            "yard-lamp-2",
            [(lamp_heads[1][0], lamp_heads[1][1], lamp_heads[1][2], 6.0)],
            [lamp_glows[1]],
        ),
        ("hall-windows", [], glows),
        ("entrance-light", [(SCHOOL_DOOR_X, SCHOOL_WALL_Z - 0.5, 2.8, 3.0)], [door_glow]),
    ]
    return _finish(cv, "schoolyard", cam, _night_light(cv, cam), lamps, trees)


def _head_box(
    cam: GroundCamera, head: tuple[float, float, float, float]
) -> tuple[float, float, float, float]:
    x, z, h, r = head
    a = cam.to_image(x - r, z, h + 0.05)
    b = cam.to_image(x + r, z, h - 0.1)
    return a[0], a[1], b[0], b[1]


# --------------------------------------------------------------------------------------------------
# Car park: rows of bays with parked cars, an aisle and a lane with drop-off bays, a tree line and
# buildings beyond, lamp posts.

CARPARK_CAMERA = GroundCamera(horizon=0.12, height_m=7.0, focal=1.13)


def _carpark(cv: _Canvas, rng: np.random.Generator) -> Backdrop:
    cam = CARPARK_CAMERA
    wr = cv.world
    # Sky and distant buildings.
    cv.rect(0, -0.01, wr, 0.3, SKY, tex=(10, 2, 1), vgrad=(0.9, 1.08))
    bx = -0.02
    while bx < wr:
        w = rng.uniform(0.06, 0.16)
        top = rng.uniform(0.04, 0.11)
        shade = rng.uniform(0.7, 1.1)
        cv.rect(bx, top, bx + w, 0.2, (140 * shade, 2.0, 4.0), tex=(4, 4, 3))

        def win_dots(xs: F32, ys: F32) -> Bool:
            p = max(3.0, cv.h / 110)
            return ((xs % p) < p * 0.5) & ((ys % p) < p * 0.45)

        cv.pattern(
            [(bx, top + 0.01), (bx + w, top + 0.01), (bx + w, 0.2), (bx, 0.2)],
            win_dots,
            rgb(60, 70, 80),
            alpha=0.5,
        )
        bx += w + rng.uniform(0.0, 0.05)
    z_far = 36.0
    y_far = cam.to_image(0, z_far)[1]
    cv.rect(0, y_far, wr, 1.0, ASPHALT, tex=(9, 3, 4))
    # Tree line (a hedge of crowns) beyond the car park.
    hx = -0.02
    while hx < wr:
        r = rng.uniform(0.02, 0.045)
        cv.ellipse(
            hx,
            y_far - rng.uniform(0.02, 0.06),
            r,
            r * 2.2,
            (LEAVES[0] * rng.uniform(0.7, 1.0), LEAVES[1], LEAVES[2]),
            tex=(6, 20, 8),
        )
        hx += r * 0.9
    cv.rect(
        0, y_far - 0.02, wr, y_far + 0.004, (LEAVES[0] * 0.8, LEAVES[1], LEAVES[2]), tex=(5, 18, 6)
    )
    x_lo = (0 - 0.5) * ASPECT * z_far / cam.focal - 5
    x_hi = (wr - 0.5) * ASPECT * z_far / cam.focal + 5
    lw = 0.07

    def line(ax: float, az: float, bx_: float, bz: float) -> None:
        if ax == bx_:
            q = [(ax - lw, az), (ax + lw, az), (bx_ + lw, bz), (bx_ - lw, bz)]
        else:
            q = [(ax, az - lw), (bx_, bz - lw), (bx_, bz + lw), (ax, az + lw)]
        cv.poly(cam.ground_polygon(q), PAINT, tex=(2, 1, 3))

    rows = ((29.5, 34.5), (16.0, 21.0))
    for z0, z1 in rows:
        x = math.floor(x_lo / 2.6) * 2.6
        while x < x_hi:
            line(x, z0, x, z1)
            x += 2.6
        line(x_lo, z1 if z0 > 30 else z0, x_hi, z1 if z0 > 30 else z0)
    # Drop-off bays along the lane.
    line(x_lo, 10.0, x_hi, 10.0)
    x = math.floor(x_lo / 6.0) * 6.0
    while x < x_hi:
        line(x, 10.0, x, 11.8)
        x += 6.0
    cv.poly(
        cam.ground_polygon([(x_lo, 5.0), (x_hi, 5.0), (x_hi, 9.8), (x_lo, 9.8)]),
        PAVING,
        tex=(7, 3, 4),
    )
    # Parked cars, far row first.
    for (z0, z1), rear in zip(rows, (False, True), strict=True):
        x = math.floor(x_lo / 2.6) * 2.6
        cars = []
        while x < x_hi:
            if rng.random() < 0.6:
                cars.append(x + 1.3 + rng.uniform(-0.15, 0.15))
            x += 2.6
        for cx in cars:
            col = (
                rgb(235, 235, 235),
                rgb(170, 172, 178),
                rgb(25, 25, 28),
                rgb(160, 20, 25),
                rgb(30, 60, 140),
                rgb(80, 85, 90),
            )[int(rng.integers(6))]
            _car_front(cv, cam, cx, (z0 + z1) / 2, col, rear)
    trees: list[TreeCrown] = []
    lamp_heads: list[tuple[float, float, float, float]] = []
    for lx in np.arange(-20.0, x_hi * 0.75, 12.0):
        lamp_heads.append(_lamp_post(cv, cam, float(lx), 21.5, 6.0))
    for tx in (-12.0, 7.0, 24.0, 41.0):
        if tx < x_hi:
            t = _tree(cv, cam, tx, 37.0, 9.0, rng)
            if t is not None:
                trees.append(t)
    lamps: list[LampSpec] = [
        (
            "carpark-lights",
            [(x, z, h, 7.0) for x, z, h, _ in lamp_heads],
            [_glow_rect(cv, *_head_box(cam, h), 255.0) for h in lamp_heads],
        )
    ]
    return _finish(cv, "carpark", cam, _night_light(cv, cam), lamps, trees)


# --------------------------------------------------------------------------------------------------
# Corridor: ray-cast box with a tiled floor, doors on both walls, ceiling light panels and a glazed
# door at the far end.

CORRIDOR_CAMERA = GroundCamera(horizon=0.38, height_m=2.4, focal=1.2)
CORRIDOR_HALF_W = 1.5
CORRIDOR_CEIL = 2.8
CORRIDOR_LEN = 30.0
CORRIDOR_DOORS = (("left", 8.0), ("right", 14.0), ("left", 21.0))
CORRIDOR_PANELS = (3.0, 7.0, 11.0, 15.0, 19.0, 23.0, 27.0)


def _corridor(cv: _Canvas, rng: np.random.Generator) -> Backdrop:
    cam = CORRIDOR_CAMERA
    h, ww = cv.h, cv.ww
    ys = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h
    xs = (np.arange(ww, dtype=np.float32)[None, :] + 0.5) / cv.vw
    dx = (xs - 0.5) * np.float32(ASPECT / cam.focal)
    dy = (ys - np.float32(cam.horizon)) / np.float32(cam.focal)
    dx, dy = np.broadcast_arrays(dx, dy)
    big = np.float32(1e6)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(dy > 0, np.float32(cam.height_m) / dy, big)
        t_ceil = np.where(dy < 0, np.float32(cam.height_m - CORRIDOR_CEIL) / dy, big)
        t_wall = np.where(dx != 0, np.float32(CORRIDOR_HALF_W) / np.abs(dx), big)
    t = np.minimum(np.minimum(t_floor, t_ceil), np.minimum(t_wall, np.float32(CORRIDOR_LEN)))
    surf = np.full((h, ww), 3, np.int8)  # 0 floor, 1 ceiling, 2 wall, 3 end wall
    surf[t == t_floor] = 0
    surf[t == t_ceil] = 1
    surf[t == t_wall] = 2
    px = dx * t  # lateral metres
    pz = t  # depth metres
    pu = np.float32(cam.height_m) - dy * t  # height above the floor
    y = np.empty((h, ww), np.float32)
    cb = np.zeros((h, ww), np.float32)
    cr = np.zeros((h, ww), np.float32)
    # Floor: 0.6 m tiles with grout lines that fade where they would alias.
    tile = 0.6
    ix = np.floor(px / tile)
    iz = np.floor(pz / tile)
    tone = np.sin(ix * 12.9898 + iz * 78.233) * 43758.5453
    tone = (tone - np.floor(tone)) * 14.0 - 7.0
    px_per_tile = cam.focal * tile * h / np.maximum(pz, 0.1)
    grout = ((px / tile - ix) < 0.04) | ((pz / tile - iz) < 0.04)
    grout_amp = np.clip(px_per_tile / 12.0, 0.0, 1.0) * 40.0
    floor_y = 128.0 + tone - grout * grout_amp
    # Walls: painted, skirting board, doors.
    wall_y = np.full((h, ww), 160.0, np.float32)
    wall_cb = np.full((h, ww), -6.0, np.float32)
    wall_cr = np.full((h, ww), 6.0, np.float32)
    wall_y[pu < 0.12] = 80.0
    for side, z0 in CORRIDOR_DOORS:
        sgn = -1.0 if side == "left" else 1.0
        on = (np.sign(px) == sgn) & (pz >= z0) & (pz <= z0 + 1.1) & (pu <= 2.1)
        frame = on & ((pz < z0 + 0.07) | (pz > z0 + 1.03) | (pu > 2.03))
        wall_y[on] = 95.0
        wall_cb[on] = -12.0
        wall_cr[on] = 14.0
        wall_y[frame] = 200.0
        wall_cb[frame] = 0.0
        wall_cr[frame] = 0.0
        handle = on & (np.abs(pz - (z0 + 0.95)) < 0.04) & (np.abs(pu - 1.0) < 0.03)
        wall_y[handle] = 220.0
    board = (px < 0) & (pz >= 12.0) & (pz <= 13.5) & (pu >= 1.1) & (pu <= 1.9)
    wall_y[board] = 120.0
    wall_cb[board] = 20.0
    wall_cr[board] = -10.0
    ext = (px > 0) & (np.abs(pz - 10.0) < 0.12) & (pu >= 0.3) & (pu <= 0.85)
    wall_y[ext] = 80.0
    wall_cb[ext] = -20.0
    wall_cr[ext] = 90.0
    # Ceiling with light panels.
    ceil_y = np.full((h, ww), 175.0, np.float32)
    panels = np.zeros((h, ww), np.bool_)
    for zc in CORRIDOR_PANELS:
        panels |= (surf == 1) & (np.abs(px) <= 0.3) & (np.abs(pz - zc) <= 0.6)
    ceil_y[panels] = 215.0
    # End wall with a glazed double door to daylight.
    end_y = np.full((h, ww), 160.0, np.float32)
    door = (np.abs(px) <= 0.9) & (pu <= 2.2)
    glass = door & (np.abs(px) <= 0.82) & (np.abs(px) >= 0.05) & (pu >= 0.9) & (pu <= 2.1)
    end_y[door] = 110.0
    end_y[glass] = 245.0
    np.copyto(y, floor_y, where=surf == 0)
    np.copyto(y, ceil_y, where=surf == 1)
    np.copyto(y, wall_y, where=surf == 2)
    np.copyto(y, end_y, where=surf == 3)
    np.copyto(cb, wall_cb, where=surf == 2)
    np.copyto(cr, wall_cr, where=surf == 2)
    np.copyto(cb, np.float32(4.0), where=surf == 0)
    np.copyto(cr, np.float32(-3.0), where=surf == 0)
    y += np.float32(3.0) * cv.blotch + np.float32(2.0) * cv.grain
    # Distance haze: far surfaces flatten towards mid grey.
    haze = np.clip(pz / 60.0, 0.0, 0.35)
    cv.y[...] = y * (1 - haze) + np.float32(150.0) * haze
    cv.cb[...] = cb
    cv.cr[...] = cr
    # Lights: two switchable sections of ceiling panels. Their pools light everything in reach.
    near_panels = [z for z in CORRIDOR_PANELS if z < 13]
    far_panels = [z for z in CORRIDOR_PANELS if z >= 13]
    albedo = cv.y
    lamps_out: dict[str, LampLight] = {}
    for name, zs in (("lights-near", near_panels), ("lights-far", far_panels)):
        pool = np.zeros((h, ww), np.float32)
        for zc in zs:
            d2 = px**2 + (pz - np.float32(zc)) ** 2 + (np.float32(CORRIDOR_CEIL) - pu) ** 2
            pool += np.float32(2.2) / (np.float32(1.0) + d2 / np.float32(6.0))
        pool = np.minimum(pool, np.float32(1.6))
        glow = np.zeros((h, ww), np.float32)
        for zc in zs:
            glow[(surf == 1) & (np.abs(px) <= 0.3) & (np.abs(pz - zc) <= 0.6)] = 250.0
        add = albedo * pool * np.float32(0.5) + glow
        lamps_out[name] = LampLight(name, 0, 0, add.astype(np.float32), pool * np.float32(0.5))
    # Daylight through the end door only: most light comes from the panels.
    base = np.float32(0.18) + np.float32(0.3) * np.clip(
        np.float32(1.0) - np.abs(pz - np.float32(CORRIDOR_LEN)) / np.float32(8.0), 0.0, 1.0
    )
    lit: F32 = np.where(glass & (surf == 3), np.float32(1.0), base).astype(np.float32)
    return Backdrop(
        layout="corridor",
        camera=cam,
        world_width=ww,
        albedo=albedo,
        cb=area_resize(cv.cb, h // 2, ww // 2),
        cr=area_resize(cv.cr, h // 2, ww // 2),
        night_light=lit,
        lamps=lamps_out,
        trees=[],
    )


# --------------------------------------------------------------------------------------------------
# Garden: lawn, hedge, a shed and big trees against the sky.

GARDEN_CAMERA = GroundCamera(horizon=0.38, height_m=3.0, focal=1.0)


def _garden(cv: _Canvas, rng: np.random.Generator) -> Backdrop:
    cam = GARDEN_CAMERA
    wr = cv.world
    cv.rect(0, -0.01, wr, 0.6, SKY, tex=(18, 3, 2), vgrad=(0.88, 1.08))
    y_hedge = cam.to_image(0, 25.0)[1]
    cv.rect(
        0,
        y_hedge - 0.08,
        wr,
        y_hedge + 0.002,
        (LEAVES[0] * 0.75, LEAVES[1], LEAVES[2]),
        tex=(8, 24, 8),
    )
    cv.rect(0, y_hedge, wr, 1.0, GRASS, tex=(12, 16, 8))
    # A paved path from the bottom to the shed.
    path = [(-0.6, 4.0), (0.6, 4.0), (-4.4, 18.0), (-5.6, 18.0)]
    cv.poly(cam.ground_polygon(path), PAVING, tex=(6, 6, 4))
    # Shed.
    a = cam.to_image(-8.0, 19.0, 2.4)
    b = cam.to_image(-4.5, 19.0, 0.0)
    cv.rect(a[0], a[1], b[0], b[1], rgb(120, 90, 60), tex=(4, 10, 4))
    r1 = cam.to_image(-8.3, 19.0, 2.4)
    r2 = cam.to_image(-4.2, 19.0, 2.4)
    r3 = cam.to_image(-6.25, 19.0, 3.1)
    cv.poly([r1, r2, r3], rgb(70, 50, 45), tex=(3, 6, 3))
    d0 = cam.to_image(-6.7, 19.0, 2.0)
    d1 = cam.to_image(-5.8, 19.0, 0.0)
    cv.rect(d0[0], d0[1], d1[0], d1[1], rgb(80, 60, 40), tex=(3, 6, 3))
    trees: list[TreeCrown] = []
    spots = [(-2.0, 27.0, 11.0), (6.0, 19.0, 9.0), (-7.5, 13.0, 7.5), (4.5, 9.0, 5.5)]
    xr = (wr - 0.5) * ASPECT * 15 / cam.focal
    extra = 12.0
    while extra < xr:
        spots.append((extra, 16.0, 8.0))
        extra += 7.0
    for x_m, z_m, hgt in sorted(spots, key=lambda s: -s[1]):
        t = _tree(cv, cam, x_m, z_m, hgt, rng)
        if t is not None:
            trees.append(t)
    return _finish(cv, "garden", cam, _night_light(cv, cam), [], trees)


_BUILDERS: dict[str, Callable[[_Canvas, np.random.Generator], Backdrop]] = {
    "schoolyard": _schoolyard,
    "carpark": _carpark,
    "corridor": _corridor,
    "garden": _garden,
}

CAMERAS: dict[str, GroundCamera] = {
    "schoolyard": SCHOOLYARD_CAMERA,
    "carpark": CARPARK_CAMERA,
    "corridor": CORRIDOR_CAMERA,
    "garden": GARDEN_CAMERA,
}


def build_backdrop(
    layout: str, rng: np.random.Generator, width: int, height: int, world: float = 1.0
) -> Backdrop:
    """Draws the ``layout`` backdrop for a ``width`` x ``height`` view; ``world`` >= 1 is the
    width of the whole place in view widths."""
    cv = _Canvas(rng, height, width, world)
    return _BUILDERS[layout](cv, rng)
