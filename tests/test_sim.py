"""Tests of vmscore.sim: synthetic scenes, ground truth, camera-like encoding, clip files, CLI.

The motion detector's evaluation, the camera simulator and the demo trust these clips, so each test
names the promise it checks: determinism, truth that matches the pixels, nuisances that really
happen when the truth says so, and streams shaped like a camera's (fixed GOP, in-band parameter
sets, 90 kHz timestamps, target bitrate).
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import vmscore
from vmscore.sim import (
    SCENES,
    Codec,
    EncodedStream,
    Encoder,
    FrameTruth,
    Scene,
    SceneFrame,
    encode_frames,
    load_clip,
    write_clip,
)

W, H = 320, 180


@functools.lru_cache(maxsize=32)
def scene(
    name: str, seconds: float, seed: int = 0, w: int = W, h: int = H, fps: float = 10.0
) -> Scene:
    return Scene(name, width=w, height=h, fps=fps, seconds=seconds, seed=seed)


@functools.lru_cache(maxsize=16)
def frames(
    name: str, seconds: float, seed: int = 0, w: int = W, h: int = H, fps: float = 10.0
) -> tuple[SceneFrame, ...]:
    return tuple(scene(name, seconds, seed, w, h, fps).frames())


def decode(data: bytes, codec: Codec) -> list[av.VideoFrame]:
    fmt = "h264" if codec == "h264" else "hevc"
    with av.open(io.BytesIO(data), mode="r", format=fmt) as c:
        return list(c.decode(video=0))


def luma_of(frame: av.VideoFrame) -> np.ndarray:
    out: np.ndarray = frame.to_ndarray(format="gray")
    return out


def area_down(img: np.ndarray, f: int) -> np.ndarray:
    h, w = img.shape
    out: np.ndarray = img.reshape(h // f, f, w // f, f).astype(np.float64).mean(axis=(1, 3))
    return out


def winding_inside(x: float, y: float, poly: list[tuple[float, float]]) -> bool:
    """Independent point-in-polygon (winding number), to check the generator's zone test."""
    wn = 0
    for (ax, ay), (bx, by) in zip(poly, poly[1:] + poly[:1], strict=True):
        cross = (bx - ax) * (y - ay) - (x - ax) * (by - ay)
        if ay <= y < by and cross > 0:
            wn += 1
        elif by <= y < ay and cross < 0:
            wn -= 1
    return wn != 0


def check_truth_geometry(t: FrameTruth) -> None:
    """Boxes inside the frame and tight around masks; mask non-empty exactly with objects."""
    mask = t.mask()
    assert mask.shape == (t.height, t.width)
    assert mask.any() == bool(t.objects), f"frame {t.index}: mask/objects disagree"
    boxes = {o.id: o for o in t.objects}
    placed = t.masks() if t.objects else []
    assert sorted(pm.id for pm in placed) == sorted(boxes)
    union = np.zeros_like(mask)
    for pm in placed:
        o = boxes[pm.id]
        assert o.x >= 0 and o.y >= 0 and o.x1 <= t.width and o.y1 <= t.height
        assert o.w >= 1 and o.h >= 1
        assert (pm.x, pm.y, pm.mask.shape[1], pm.mask.shape[0]) == (o.x, o.y, o.w, o.h)
        # Tight: the mask touches all four sides of its box.
        assert pm.mask[0].any() and pm.mask[-1].any()
        assert pm.mask[:, 0].any() and pm.mask[:, -1].any()
        union[o.y : o.y1, o.x : o.x1] = True
    assert not (mask & ~union).any(), "mask pixels outside every box"


# ------------------------------------------------------------------------------------------------
# Determinism


def test_same_seed_gives_identical_frames_and_bytes_and_another_seed_differs() -> None:
    def run(seed: int) -> tuple[list[SceneFrame], bytes]:
        sc = Scene("carpark", width=160, height=90, fps=10, seconds=2.0, seed=seed)
        fr = list(sc.frames())
        enc = Encoder(codec="h264", width=160, height=90, fps=10, gop=10, bitrate_bps=300_000)
        aus = []
        for f in fr:
            aus += enc.encode_yuv420(f.luma, f.cb, f.cr)
        aus += enc.flush()
        return fr, b"".join(a.data for a in aus)

    a, abytes = run(7)
    b, bbytes = run(7)
    c, cbytes = run(8)
    assert len(a) == len(b) == 20
    for fa, fb in zip(a, b, strict=True):
        assert np.array_equal(fa.luma, fb.luma)
        assert np.array_equal(fa.cb, fb.cb) and np.array_equal(fa.cr, fb.cr)
        assert fa.truth.objects == fb.truth.objects
    assert abytes == bbytes
    assert any(not np.array_equal(fa.luma, fc.luma) for fa, fc in zip(a, c, strict=True))
    assert abytes != cbytes


def test_render_is_random_access() -> None:
    sc = scene("shake", 6.0)
    seq = frames("shake", 6.0)
    for i in (0, 17, 41, 59):
        one = sc.render(i)
        assert np.array_equal(one.luma, seq[i].luma)
        assert one.truth.objects == seq[i].truth.objects


# ------------------------------------------------------------------------------------------------
# Ground truth


@pytest.mark.parametrize("name", ["carpark", "corridor", "schoolyard", "shake"])
def test_truth_boxes_and_masks_are_consistent(name: str) -> None:
    sc = scene(name, 8.0)
    with_objects = 0
    for i in range(sc.frame_count):
        t = sc.truth(i)
        check_truth_geometry(t)
        with_objects += bool(t.objects)
    # The clip starts quiet (background learning) and then has visitors.
    assert not sc.truth(0).objects
    assert with_objects > 0


def test_truth_marks_the_pixels_that_changed() -> None:
    fr = frames("carpark", 8.0)
    empty = fr[0].luma.astype(int)
    assert not fr[0].truth.objects
    checked = 0
    for f in fr:
        m = f.truth.mask()
        if m.sum() < 30:
            continue
        diff = np.abs(f.luma.astype(int) - empty)
        inside = (diff[m] > 12).mean()
        outside = (diff[~m] > 12).mean()
        assert inside > 0.4, f"frame {f.index}: object pixels barely differ from the background"
        assert outside < 0.01, f"frame {f.index}: pixels outside the mask changed"
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize("name", ["carpark", "schoolyard", "corridor"])
def test_events_match_frame_truth(name: str) -> None:
    sc = scene(name, 8.0)
    truths = [sc.truth(i) for i in range(sc.frame_count)]
    zones = {z.name: z.to_pixels(sc.width, sc.height) for z in sc.zones}
    present = [e for e in sc.events if e.kind == "object_present"]
    zone_ev = [e for e in sc.events if e.kind == "zone_enter"]
    assert present and zone_ev
    for i, t in enumerate(truths):
        for o in t.objects:
            covering = [e for e in present if e.detail["object"] == o.id and e.covers(i)]
            assert len(covering) == 1
            expected = tuple(n for n, poly in zones.items() if winding_inside(*o.foot, poly))
            assert o.zones == expected
            for z in zones:
                ev = [e for e in zone_ev if e.detail == {"object": o.id, "zone": z} and e.covers(i)]
                assert len(ev) == (z in o.zones)
            if o.y > 0 and o.y1 < t.height and o.x > 0 and o.x1 < t.width:
                # Unclipped silhouettes stand on their ground point.
                assert abs(o.y1 - o.foot[1]) <= 0.75
                assert o.x - 1 <= o.foot[0] <= o.x1 + 1
    for e in present:
        oid = e.detail["object"]
        assert all(
            any(o.id == oid for o in truths[i].objects) for i in range(e.start_frame, e.end_frame)
        )
        assert e.start_s == pytest.approx(e.start_frame / sc.fps)
        if e.end_frame < sc.frame_count:
            assert not any(o.id == oid for o in truths[e.end_frame].objects)


def test_parked_vehicle_becomes_background_after_the_grace_time() -> None:
    sc = Scene("carpark", width=W, height=H, fps=5, seconds=24.0, seed=0)
    parker = next(a for a in sc.actors if a.parks)
    present = [
        e for e in sc.events if e.kind == "object_present" and e.detail["object"] == parker.id
    ]
    stopped = [
        e for e in sc.events if e.kind == "object_stopped" and e.detail["object"] == parker.id
    ]
    assert len(present) == 1 and len(stopped) == 1
    grace = round(sc.spec.parked_after_s * sc.fps)
    assert present[0].end_frame == stopped[0].end_frame
    assert abs(present[0].end_frame - stopped[0].start_frame - grace) <= 1
    last = present[0].end_frame - 1
    box = next(o for o in sc.truth(last).objects if o.id == parker.id)
    assert not box.moving
    after = sc.render(present[0].end_frame + 2)
    assert all(o.id != parker.id for o in after.truth.objects)
    # Still there in the picture: only the truth lets go of it.
    first = sc.render(0).luma.astype(int)
    region = (slice(box.y, box.y1), slice(box.x, box.x1))
    assert np.abs(after.luma.astype(int)[region] - first[region]).mean() > 15


# ------------------------------------------------------------------------------------------------
# Nuisances


def test_light_switches_step_the_luma_when_the_truth_says() -> None:
    sc = scene("lights", 8.0)
    fr = frames("lights", 8.0)
    means = np.array([f.luma.mean() for f in fr])
    switches = [e for e in sc.events if e.kind == "light_switch"]
    assert len(switches) == 4
    changing = np.zeros(len(fr), bool)
    for e in switches:
        before, after = means[e.start_frame - 1], means[e.end_frame]
        step = after - before
        assert step > 8 if e.detail["on"] else step < -8, (e, before, after)
        changing[e.start_frame : e.end_frame + 1] = True
        assert "light_switch" in fr[e.start_frame].truth.nuisances
    # Nothing else moves the global level.
    steady = np.abs(np.diff(means))[~changing[1:]]
    assert steady.max() < 1.0


def test_lamp_switching_on_at_night_brightens_the_yard() -> None:
    sc = scene("schoolyard-night", 8.0)
    on = next(e for e in sc.events if e.kind == "light_switch" and e.detail["on"])
    before = sc.render(on.start_frame - 1).luma.mean()
    after = sc.render(on.end_frame).luma.mean()
    assert after > before + 3


@pytest.mark.parametrize(("name", "returns"), [("schoolyard", True), ("carpark-snow", False)])
def test_daylight_change_dims_the_scene(name: str, returns: bool) -> None:
    sc = scene(name, 8.0)
    ev = next(e for e in sc.events if e.kind == "daylight_change")
    assert ev.detail["back"] is returns
    before = sc.render(ev.start_frame - 1).luma.mean()
    middle = sc.render((ev.start_frame + ev.end_frame) // 2).luma.mean()
    last = sc.render(ev.end_frame - 1).luma.mean()
    assert middle < 0.9 * before
    # A passing cloud gives the light back; dusk does not.
    assert (abs(last - before) < 0.03 * before) if returns else (last < middle)


def _temporal_noise(sc: Scene, i: int) -> float:
    a, b = sc.render(i), sc.render(i + 1)
    keep = ~(a.truth.mask() | b.truth.mask())
    keep[: sc.height // 2] = False
    d = a.luma.astype(float) - b.luma.astype(float)
    return float(d[keep].std() / math.sqrt(2))


def test_night_noise_is_stronger_than_day_noise() -> None:
    day = _temporal_noise(scene("empty", 8.0), 5)
    night = _temporal_noise(scene("schoolyard-night", 8.0), 5)
    assert 1.5 < day < 2.6
    assert night > 2.5 * day


def _changed_fraction(fr: tuple[SceneFrame, ...], i: int, thr: int = 15) -> float:
    a, b = fr[i], fr[i + 1]
    keep = ~(a.truth.mask() | b.truth.mask())
    return float((np.abs(b.luma.astype(int) - a.luma.astype(int))[keep] > thr).mean())


@pytest.mark.parametrize(
    ("weather", "calm"), [("schoolyard-rain", "schoolyard"), ("carpark-snow", "carpark")]
)
def test_rain_and_snow_change_pixels_frame_to_frame(weather: str, calm: str) -> None:
    wet = frames(weather, 4.0)
    dry = frames(calm, 4.0)
    kind = "rain" if "rain" in weather else "snow"
    assert all(kind in f.truth.nuisances for f in wet)
    w = float(np.mean([_changed_fraction(wet, i) for i in range(25, 35)]))
    d = float(np.mean([_changed_fraction(dry, i) for i in range(25, 35)]))
    assert w > 0.002
    assert w > 10 * max(d, 1e-4)


def test_wind_moves_the_tree_crowns_and_nothing_else() -> None:
    sc = scene("trees-wind", 4.0)
    fr = frames("trees-wind", 4.0)
    crowns = np.zeros((H, W), bool)
    for t in sc.backdrop.trees:
        crowns[t.y0 : t.y1, max(0, t.x0) : t.x1] |= t.weight > 0.5
    # Sensor noise (sigma 2) almost never moves a pixel by more than 12; moving leaves do.
    big = [np.abs(fr[i + 1].luma.astype(int) - fr[i].luma.astype(int)) > 12 for i in range(10, 30)]
    inside = np.mean([b[crowns].mean() for b in big])
    outside = np.mean([b[~crowns].mean() for b in big])
    assert inside > 0.005
    assert inside > 5 * outside
    assert all("tree_sway" in f.truth.nuisances for f in fr)
    calm = frames("empty", 4.0)
    still = np.mean(
        [
            (np.abs(calm[i + 1].luma.astype(int) - calm[i].luma.astype(int)) > 12).mean()
            for i in range(10, 30)
        ]
    )
    assert still < 0.001


def test_shake_shifts_image_and_truth_by_the_stated_amount() -> None:
    # Shake is 1-3 px at 1080 lines (it scales with the picture), so look at 720p.
    w, h = 1280, 720
    sc = scene("shake", 10.0, 0, w, h)
    ref_i = 5
    assert sc.truth(ref_i).shift_px == (0.0, 0.0)
    ref = sc.render(ref_i).luma.astype(int)
    shake = [e for e in sc.events if e.kind == "shake"]
    assert len(shake) == 2
    tested = boxes_checked = 0
    # Buildings and tree line: detailed, not periodic, and no traffic.
    crop = (slice(40, 230), slice(100, 1180))
    for e in shake:
        for i in range(e.start_frame, e.end_frame):
            t = sc.truth(i)
            dx, dy = t.shift_px
            assert "shake" in t.nuisances
            want = (round(dx), round(dy))
            for o in t.objects:
                if o.y > 4 and o.y1 < h - 4 and o.x > 4 and o.x1 < w - 4:
                    # The box moved with the picture: the soles (or wheels) end on the ground
                    # row, moved by the whole-pixel shift.
                    assert abs(o.y1 - (o.foot[1] + want[1])) <= 0.75
                    boxes_checked += want[1] != 0
            if abs(dx - want[0]) > 0.3 or abs(dy - want[1]) > 0.3 or want == (0, 0):
                continue
            img = sc.render(i).luma.astype(int)
            best = min(
                ((sx, sy) for sx in range(-4, 5) for sy in range(-4, 5)),
                key=lambda s: np.abs(img[crop] - np.roll(ref, s, axis=(1, 0))[crop]).mean(),
            )
            assert best == want, (i, dx, dy)
            tested += 1
    assert tested >= 3
    assert boxes_checked >= 5
    outside = [i for i in range(sc.frame_count) if not any(e.covers(i) for e in shake)]
    assert all(sc.truth(i).shift_px == (0.0, 0.0) for i in outside[::7])


def _sharpness(img: np.ndarray) -> float:
    f = img.astype(float)
    lap = 4 * f[1:-1, 1:-1] - f[:-2, 1:-1] - f[2:, 1:-1] - f[1:-1, :-2] - f[1:-1, 2:]
    return float(np.abs(lap).mean())


def test_tampering_covers_blurs_and_turns_the_view() -> None:
    sc = scene("tamper", 10.0)
    ev = {e.kind: e for e in sc.events}
    assert {"tamper_defocus", "tamper_cover", "tamper_turned"} <= ev.keys()
    clean = sc.render(5)
    assert clean.truth.tamper is None
    mid = {k: (e.start_frame + e.end_frame) // 2 for k, e in ev.items()}
    blurred = sc.render(mid["tamper_defocus"])
    assert blurred.truth.tamper == "defocus"
    assert _sharpness(blurred.luma) < 0.5 * _sharpness(clean.luma)
    covered = sc.render(mid["tamper_cover"])
    assert covered.truth.tamper == "cover"
    assert covered.luma.mean() < 40 and covered.luma.std() < 12
    turned = sc.render(sc.frame_count - 1)
    assert turned.truth.tamper == "turned"
    assert _sharpness(turned.luma) > 0.7 * _sharpness(clean.luma)
    assert np.abs(turned.luma.astype(int) - clean.luma.astype(int)).mean() > 15
    assert ev["tamper_turned"].end_frame == sc.frame_count


# ------------------------------------------------------------------------------------------------
# Encoding


def _gray_frames(n: int, w: int = W, h: int = H) -> list[np.ndarray]:
    return [f.luma for f in frames("carpark", 4.0, 0, w, h)[:n]]


@functools.lru_cache(maxsize=8)
def _stream(codec: Codec, bframes: int) -> EncodedStream:
    return encode_frames(
        _gray_frames(35),
        codec=codec,
        width=W,
        height=H,
        fps=15.0,
        gop=10,
        bitrate_bps=2_000_000,
        bframes=bframes,
    )


CODEC_CASES: list[tuple[Codec, int]] = [("h264", 0), ("h264", 2), ("h265", 0), ("h265", 2)]


@pytest.mark.parametrize(("codec", "bframes"), CODEC_CASES)
def test_keyframes_every_gop_with_parameter_sets_in_band(codec: Codec, bframes: int) -> None:
    s = _stream(codec, bframes)
    assert len(s.frames) == 35
    key_pts = sorted(round(f.pts_90k * 15 / 90000) for f in s.frames if f.is_keyframe)
    assert key_pts == [0, 10, 20, 30]
    needed = {"sps", "pps"} | ({"vps"} if codec == "h265" else set())
    for f in s.frames:
        kinds = [u.kind for u in vmscore.nal_units(f.data, codec)]
        if f.is_keyframe:
            assert "keyframe" in kinds
            first_vcl = kinds.index("keyframe")
            assert needed <= set(kinds[:first_vcl]), kinds
        else:
            assert "keyframe" not in kinds and "sps" not in kinds
    sps = next(u for u in vmscore.nal_units(s.frames[0].data, codec) if u.kind == "sps")
    info = vmscore.parse_sps(s.frames[0].data[sps.offset : sps.offset + sps.size], codec)
    assert info.frame_rate == pytest.approx(15.0)
    if codec == "h264":
        assert info.fixed_frame_rate
    assert (info.width, info.height) == (W, H)


@pytest.mark.parametrize(("codec", "bframes"), CODEC_CASES)
def test_timestamps_are_90khz_and_decode_order(codec: Codec, bframes: int) -> None:
    s = _stream(codec, bframes)
    pts = [f.pts_90k for f in s.frames]
    dts = [f.dts_90k for f in s.frames]
    assert sorted(pts) == [round(i * 90000 / 15) for i in range(35)]
    assert all(b > a for a, b in itertools.pairwise(dts))
    assert all(d <= p for d, p in zip(dts, pts, strict=True))
    if bframes == 0:
        assert pts == dts
    else:
        assert pts != sorted(pts), "B-frames were asked for but frames are not reordered"


@pytest.mark.parametrize(("codec", "bframes"), CODEC_CASES)
def test_streams_decode_to_the_source_frames(codec: Codec, bframes: int) -> None:
    s = _stream(codec, bframes)
    out = decode(s.annexb(), codec)
    assert len(out) == 35
    assert all((f.width, f.height) == (W, H) for f in out)
    src = _gray_frames(35)
    err = [
        np.abs(luma_of(d).astype(int) - s_.astype(int)).mean()
        for d, s_ in zip(out, src, strict=True)
    ]
    assert max(err) < 4.0


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_bitrate_is_near_the_target(codec: Codec) -> None:
    fr = frames("schoolyard-rain", 3.0, 0, W, H, 15.0)
    target = 400_000
    s = encode_frames(
        (f.luma for f in fr),
        codec=codec,
        width=W,
        height=H,
        fps=15.0,
        gop=15,
        bitrate_bps=target,
    )
    assert 0.5 * target < s.achieved_bitrate_bps < 1.6 * target


def test_rgb_frames_are_encoded_with_their_luma() -> None:
    f = frames("schoolyard", 4.0)[3]
    rgb = f.to_rgb()
    s = encode_frames(
        [rgb] * 3, codec="h264", width=W, height=H, fps=10.0, gop=10, bitrate_bps=3_000_000
    )
    out = decode(s.annexb(), "h264")
    assert np.abs(luma_of(out[2]).astype(int) - f.luma.astype(int)).mean() < 4.0


def test_encoder_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="even"):
        Encoder(codec="h264", width=321, height=180, fps=15, gop=15, bitrate_bps=100_000)
    with pytest.raises(ValueError, match="codec"):
        Encoder(codec="vp9", width=320, height=180, fps=15, gop=15, bitrate_bps=100_000)  # type: ignore[arg-type]
    enc = Encoder(codec="h264", width=320, height=180, fps=15, gop=15, bitrate_bps=100_000)
    with pytest.raises(ValueError, match="shape"):
        enc.encode(np.zeros((90, 160), np.uint8))
    enc.flush()
    with pytest.raises(RuntimeError, match="flushed"):
        enc.encode(np.zeros((180, 320), np.uint8))


# ------------------------------------------------------------------------------------------------
# Clips on disk, sub-stream


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clip")
    write_clip(
        out,
        "carpark",
        4.0,
        seed=2,
        main=(W, H),
        sub=(160, 90),
        fps=10.0,
        gop=10,
        codec="h264",
        bitrate=1_500_000,
        sub_bitrate=400_000,
    )
    return out


def test_clip_files_round_trip(clip_dir: Path) -> None:
    clip = load_clip(clip_dir)
    meta = json.loads((clip_dir / "clip.json").read_text())
    assert clip.sub is not None
    assert clip.main.annexb() == (clip_dir / "main.h264").read_bytes()
    assert clip.sub.annexb() == (clip_dir / "sub.h264").read_bytes()
    assert len(clip.main.frames) == len(clip.sub.frames) == 40
    assert clip.main.keyframe_indices == [0, 10, 20, 30] == meta["streams"]["main"]["keyframes"]
    assert [f.pts_90k for f in clip.main.frames] == [i * 9000 for i in range(40)]
    sc = Scene("carpark", width=W, height=H, fps=10.0, seconds=4.0, seed=2)
    assert clip.truth.events == sc.events
    busy = [i for i in range(40) if sc.truth(i).objects]
    assert busy
    for i in (busy[0], busy[-1], 0):
        t = sc.truth(i)
        loaded = clip.truth.frames[i].objects
        assert [(o.id, o.kind, o.x, o.y, o.w, o.h, o.zones, o.moving) for o in loaded] == [
            (o.id, o.kind, o.x, o.y, o.w, o.h, o.zones, o.moving) for o in t.objects
        ]
        for a, b in zip(loaded, t.objects, strict=True):
            assert a.foot == pytest.approx(b.foot, abs=0.01)
        assert np.array_equal(clip.truth.frames[i].mask(), t.mask())
    assert clip.truth.sub_frames is not None
    for t in clip.truth.sub_frames:
        check_truth_geometry(t)


def test_sub_stream_matches_main_geometrically(clip_dir: Path) -> None:
    clip = load_clip(clip_dir)
    assert clip.sub is not None
    main = decode(clip.main.annexb(), "h264")
    sub = decode(clip.sub.annexb(), "h264")
    assert (sub[0].width, sub[0].height) == (160, 90)
    for i in (0, 15, 39):
        down = area_down(luma_of(main[i]), 2)
        assert np.abs(down - luma_of(sub[i]).astype(float)).mean() < 4.0
    assert clip.truth.sub_frames is not None
    for tm, ts in zip(clip.truth.frames, clip.truth.sub_frames, strict=True):
        subs = {o.id: o for o in ts.objects}
        for o in tm.objects:
            if o.w < 4 or o.h < 4:
                continue
            s_ = subs[o.id]
            assert abs(s_.x - o.x / 2) <= 1 and abs(s_.y - o.y / 2) <= 1
            assert abs(s_.x1 - o.x1 / 2) <= 1 and abs(s_.y1 - o.y1 / 2) <= 1


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("vmscore")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from vmscore.cli import main; main()"]


def test_cli_write_produces_streams_ffprobe_reads(tmp_path: Path) -> None:
    out = tmp_path / "clip"
    proc = subprocess.run(
        [
            *_cli(),
            "sim",
            "write",
            "--scene",
            "corridor",
            "--seconds",
            "2",
            "--size",
            "320x180",
            "--sub-size",
            "160x90",
            "--fps",
            "10",
            "--gop",
            "10",
            "--codec",
            "h265",
            "--bitrate",
            "800k",
            "--sub-bitrate",
            "200k",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "main.h265" in proc.stdout and "sub.h265" in proc.stdout
    probe = shutil.which("ffprobe")
    assert probe, "ffprobe is needed for this test"
    for name, size in (("main.h265", (320, 180)), ("sub.h265", (160, 90))):
        res = subprocess.run(
            [
                probe,
                "-v",
                "error",
                "-count_frames",
                "-show_entries",
                "stream=codec_name,width,height,nb_read_frames",
                "-of",
                "json",
                str(out / name),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        s = json.loads(res.stdout)["streams"][0]
        assert s["codec_name"] == "hevc"
        assert (s["width"], s["height"]) == size
        assert int(s["nb_read_frames"]) == 20
    clip = load_clip(out)
    assert clip.main.codec == "h265" and len(clip.main.frames) == 20
    assert clip.truth.scene == "corridor"


def _flat(text: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─┃━]", " ", text).split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scene", "beach"], "unknown scene"),
        (["--size", "321x180"], "even"),
        (["--size", "big"], "WIDTHxHEIGHT"),
        (["--seconds", "0"], "positive"),
        (["--seconds", "-3"], "positive"),
        (["--codec", "vp9"], "h264 or h265"),
        (["--size", "320x180", "--sub-size", "640x360"], "larger"),
        (["--bitrate", "fast"], "bitrate"),
    ],
)
def test_cli_write_rejects_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    from vmscore.cli import app

    res = CliRunner().invoke(
        app, ["sim", "write", *args, str(tmp_path / "x")], env={"COLUMNS": "200"}
    )
    assert res.exit_code == 2
    assert message in _flat(res.output)
    assert not (tmp_path / "x").exists()


def test_cli_lists_the_catalogue() -> None:
    from vmscore.cli import app

    res = CliRunner().invoke(app, ["sim", "scenes"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    for name in SCENES:
        assert name in res.output
    assert {
        "schoolyard",
        "schoolyard-night",
        "corridor",
        "carpark",
        "schoolyard-rain",
        "carpark-snow",
        "trees-wind",
        "shake",
        "lights",
        "tamper",
        "empty",
    } <= set(SCENES)


# ------------------------------------------------------------------------------------------------
# Properties over sizes and seeds


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["schoolyard", "carpark", "corridor", "carpark-night", "shake"]),
    seed=st.integers(0, 10_000),
    w=st.integers(24, 200).map(lambda v: 2 * v),
    h=st.integers(16, 120).map(lambda v: 2 * v),
    frac=st.floats(0.2, 0.99),
    sub=st.sampled_from([2, 3]),
)
def test_truth_invariants_hold_at_any_size(
    name: str, seed: int, w: int, h: int, frac: float, sub: int
) -> None:
    sc = Scene(name, width=w, height=h, fps=5.0, seconds=12.0, seed=seed)
    i = min(sc.frame_count - 1, int(frac * sc.frame_count))
    f = sc.render(i)
    assert f.luma.shape == (h, w) and f.cb.shape == (h // 2, w // 2)
    check_truth_geometry(f.truth)
    sw, sh = 2 * max(8, w // (2 * sub)), 2 * max(8, h // (2 * sub))
    small = f.downscaled(sw, sh)
    assert small.luma.shape == (sh, sw)
    check_truth_geometry(small.truth)
    listed = {e.detail["object"] for e in sc.events if e.kind == "object_present" and e.covers(i)}
    assert listed == {o.id for o in f.truth.objects}
