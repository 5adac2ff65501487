"""Raster helpers of the scene generator: procedural noise, polygons, resampling, blur, shift.

Pure numpy on float32 planes; no state. Everything a scene draws goes through these, so the same
relative geometry rasterises the same way at any resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]
U8 = npt.NDArray[np.uint8]

Point = tuple[float, float]


def _smooth_axis(n_out: int, n_grid: int) -> tuple[npt.NDArray[np.intp], F32]:
    """Indices and smoothstep weights that interpolate a grid of ``n_grid`` knots onto ``n_out``.

    The knots span the whole axis (first knot at the first pixel centre, last at the last), so the
    same grid gives the same picture at any output size.
    """
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) / n_out * (n_grid - 1)
    i0 = np.minimum(pos.astype(np.intp), n_grid - 2)
    t = pos - i0
    w = (t * t * (3.0 - 2.0 * t)).astype(np.float32)
    return i0, w


def upsample_smooth(grid: npt.NDArray[np.floating], height: int, width: int) -> F32:
    """Smoothly interpolates a small random grid to ``height`` x ``width`` (value noise)."""
    g = np.asarray(grid, dtype=np.float32)
    iy, wy = _smooth_axis(height, g.shape[0])
    ix, wx = _smooth_axis(width, g.shape[1])
    rows = g[iy] * (1.0 - wy)[:, None] + g[iy + 1] * wy[:, None]
    out: F32 = rows[:, ix] * (1.0 - wx)[None, :] + rows[:, ix + 1] * wx[None, :]
    return out


def fractal_noise(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    cells: tuple[int, int],
    octaves: int = 4,
    persistence: float = 0.5,
) -> F32:
    """Fractal value noise, roughly in [-1, 1], whose structure does not depend on the resolution.

    ``cells`` is the (rows, columns) grid of the coarsest octave, in cells per frame; each octave
    doubles it. The random grids are drawn at their own size, so a scene rendered at 640x360 and at
    1920x1080 has the same blotches in the same places; only pixel grain differs.
    """
    out = np.zeros((height, width), np.float32)
    amp, total = 1.0, 0.0
    cy, cx = cells
    for _ in range(octaves):
        grid = rng.uniform(-1.0, 1.0, size=(cy + 1, cx + 1))
        out += np.float32(amp) * upsample_smooth(grid, height, width)
        total += amp
        amp *= persistence
        cy, cx = cy * 2, cx * 2
    out *= np.float32(1.0 / total)
    return out


def polygon_mask(points: Sequence[Point], x0: int, y0: int, x1: int, y1: int) -> Bool:
    """Even-odd fill of a polygon (pixel coordinates) over the window [y0, y1) x [x0, x1).

    A pixel belongs to the polygon when its centre does.
    """
    ys = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5
    inside = np.zeros((y1 - y0, x1 - x0), np.bool_)
    n = len(points)
    for i in range(n):
        ax, ay = points[i]
        bx, by = points[(i + 1) % n]
        if ay == by:
            continue
        # Rows whose centre line crosses this edge (half-open so shared vertices count once).
        crosses = (ys >= min(ay, by)) & (ys < max(ay, by))
        x_at = ax + (ys - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (xs < x_at)
    return inside


def point_in_polygon(x: float, y: float, points: Sequence[Point]) -> bool:
    """Even-odd test of one point against a polygon (any consistent coordinates)."""
    inside = False
    n = len(points)
    for i in range(n):
        ax, ay = points[i]
        bx, by = points[(i + 1) % n]
        if (ay <= y < by or by <= y < ay) and x < ax + (y - ay) * (bx - ax) / (by - ay):
            inside = not inside
    return inside


def _edge_sums(src: npt.NDArray[np.floating], edges: F64, axis: int) -> F32:
    """Sums of ``src`` between fractional ``edges`` along ``axis`` (area integration)."""
    a = np.moveaxis(np.asarray(src, dtype=np.float32), axis, 0)
    n = a.shape[0]
    c = np.empty((n + 1, *a.shape[1:]), np.float64)
    c[0] = 0.0
    np.cumsum(a, axis=0, dtype=np.float64, out=c[1:])
    e = np.clip(edges, 0.0, float(n))
    i = np.minimum(e.astype(np.intp), n - 1)
    frac = (e - i).reshape(-1, *([1] * (a.ndim - 1)))
    # Integral up to a fractional position: whole pixels, plus part of the pixel it falls in.
    integ = c[i] + frac * a[i].astype(np.float64)
    sums = (integ[1:] - integ[:-1]).astype(np.float32)
    return np.moveaxis(sums, 0, axis)


def area_resample(src: npt.NDArray[np.floating], y_edges: F64, x_edges: F64) -> F32:
    """Mean of ``src`` over each output cell, whose borders are fractional source coordinates.

    ``y_edges`` has one more entry than output rows, ``x_edges`` one more than output columns.
    This is exact area averaging (a box filter of the cell's footprint), the way a camera's
    scaler makes its sub-stream.
    """
    rows = _edge_sums(src, y_edges, 0)
    cells = _edge_sums(rows, x_edges, 1)
    area = np.outer(np.diff(y_edges), np.diff(x_edges)).astype(np.float32)
    cells /= np.maximum(area, np.float32(1e-12))
    return cells


def area_resize(src: npt.NDArray[np.floating | np.integer], height: int, width: int) -> F32:
    """Resizes by area averaging; integer factors take a fast reshape path."""
    h, w = src.shape
    if h % height == 0 and w % width == 0:
        fy, fx = h // height, w // width
        blocks = np.asarray(src, dtype=np.float32).reshape(height, fy, width, fx)
        out: F32 = blocks.sum(axis=(1, 3), dtype=np.float32)
        out *= np.float32(1.0 / (fy * fx))
        return out
    y_edges = np.arange(height + 1, dtype=np.float64) * (h / height)
    x_edges = np.arange(width + 1, dtype=np.float64) * (w / width)
    return area_resample(np.asarray(src, dtype=np.float32), y_edges, x_edges)


def box_blur(src: F32, radius: int, out: F32 | None = None) -> F32:
    """Separable box blur of the given radius (window 2r+1), edges replicated."""
    if radius <= 0:
        if out is None:
            return src.copy()
        np.copyto(out, src)
        return out
    res = src
    k = 2 * radius + 1
    for axis in (0, 1):
        n = res.shape[axis]
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius + 1, radius)
        c = np.cumsum(np.pad(res, pad, mode="edge"), axis=axis, dtype=np.float32)
        res = c[k : k + n] - c[:n] if axis == 0 else c[:, k : k + n] - c[:, :n]
        res *= np.float32(1.0 / k)
    if out is None:
        return res
    np.copyto(out, res)
    return out


def shift_bilinear(src: F32, dx: float, dy: float, out: F32) -> F32:
    """``out(y, x) = src(y - dy, x - dx)`` with bilinear interpolation and replicated edges."""
    h, w = src.shape
    ix, iy = int(np.floor(dx)), int(np.floor(dy))
    fx, fy = np.float32(dx - ix), np.float32(dy - iy)
    pad = max(abs(ix), abs(iy)) + 2
    p = np.pad(src, pad, mode="edge")
    # Source rows/columns for the integer part; the fractional part blends with the previous one.
    r0, c0 = pad - iy, pad - ix
    a = p[r0 : r0 + h, c0 : c0 + w]
    b = p[r0 : r0 + h, c0 - 1 : c0 - 1 + w]
    row = a * (np.float32(1.0) - fx) + b * fx
    a2 = p[r0 - 1 : r0 - 1 + h, c0 : c0 + w]
    b2 = p[r0 - 1 : r0 - 1 + h, c0 - 1 : c0 - 1 + w]
    row2 = a2 * (np.float32(1.0) - fx) + b2 * fx
    np.multiply(row, np.float32(1.0) - fy, out=out)
    row2 *= fy
    out += row2
    return out


def to_u8(src: F32, out: U8) -> U8:
    """Rounds, clips to 0..255 and stores into ``out`` (src is modified)."""
    src += np.float32(0.5)
    np.clip(src, 0.0, 255.0, out=src)
    np.copyto(out, src, casting="unsafe")
    return out
