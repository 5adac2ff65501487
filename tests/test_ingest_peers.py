"""The ingest engine against RTSP servers not written here: GStreamer's gst-rtsp-server (H.264 and
H.265, RTP over TCP and UDP). What the engine delivers must decode, with FFmpeg, to exactly the
frames FFmpeg decodes from the source file."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import vmscore
from ingest_helpers import collect, decode_file, decode_units, digest, gst_rtsp_server
from vmscore.sim import write_clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for codec in ("h264", "h265"):
        d = tmp_path_factory.mktemp(f"clip-{codec}")
        write_clip(
            d,
            "schoolyard",
            4,
            seed=3,
            main=(640, 360),
            sub=None,
            fps=15,
            gop=15,
            codec=codec,
            bitrate=600_000,
        )
        out[codec] = d / f"main.{codec}"
    return out


@pytest.fixture(scope="module")
def gst(clips: dict[str, Path]) -> Iterator[str]:
    with gst_rtsp_server(file_h264=clips["h264"], file_h265=clips["h265"]) as url:
        yield url


@pytest.mark.parametrize("codec", ["h264", "h265"])
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_engine_frames_equal_ffmpegs_decode_of_the_source(
    gst: str, clips: dict[str, Path], codec: str, transport: str
) -> None:
    # If this fails, what we record or analyse is not what the camera sent.
    with vmscore.IngestEngine() as engine:
        engine.add_stream("cam", f"{gst}/file-{codec}", transport=transport)  # type: ignore[arg-type]
        got = collect(engine, frames=40, seconds=20)
        time.sleep(0.2)  # statistics are published at every tick (50 ms)
        stats = engine.stats("cam")
    units = got.video()
    assert len(units) >= 40, f"only {len(units)} frames; events: {got.events}"
    assert got.kinds()[:2] == ["connecting", "parameters_changed"] or "playing" in got.kinds()
    assert units[0].is_keyframe and units[0].parameters_changed
    assert all(u.codec == codec for u in units)
    assert all(b.dts_90k > a.dts_90k for a, b in itertools.pairwise(units))
    sps = next(
        p
        for p in units[0].parameter_sets
        if vmscore.nal_units(b"\0\0\1" + p, codec)[0].kind == "sps"
    )  # type: ignore[arg-type]
    assert (vmscore.parse_sps(sps, codec).width, vmscore.parse_sps(sps, codec).height) == (640, 360)  # type: ignore[arg-type]

    source = [digest(f) for f in decode_file(clips[codec].read_bytes(), codec)]
    ours = [digest(f) for f in decode_units(units)]
    assert len(ours) >= 38
    # The stream loops the file: our frames are a contiguous run of the source's, wrapping around.
    start = source.index(ours[0])
    expected = [source[(start + i) % len(source)] for i in range(len(ours))]
    assert ours == expected
    assert stats.frames >= 40 and stats.packets > stats.frames and stats.bytes > 0
    assert stats.codec == codec and (stats.width, stats.height) == (640, 360)


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_live_encoder_streams_play_with_steady_timing(gst: str, codec: str) -> None:
    with vmscore.IngestEngine() as engine:
        engine.add_stream("live", f"{gst}/{codec}")
        got = collect(engine, frames=45, seconds=20)
        stats = engine.stats("live")
    units = got.video()
    assert len(units) >= 45
    steps = {b.pts_90k - a.pts_90k for a, b in itertools.pairwise(units)}
    assert steps <= {6000}  # 15 fps at 90 kHz, no jumps
    assert sum(u.is_keyframe for u in units) >= 2
    assert not any(u.gap for u in units)
    assert stats.fps == pytest.approx(15, abs=3)
    wall = [u.wall_time_us for u in units]
    assert all(b > a for a, b in itertools.pairwise(wall))
    assert abs((wall[-1] - wall[0]) / 1e6 - (units[-1].pts_90k - units[0].pts_90k) / 90000) < 0.2


@pytest.mark.parametrize(
    ("mount", "codec", "clock_rate"), [("h264-aac", "aac", 16000), ("h264-pcmu", "pcmu", 8000)]
)
def test_audio_tracks_pass_through_when_asked(
    gst: str, mount: str, codec: str, clock_rate: int
) -> None:
    with vmscore.IngestEngine() as engine:
        engine.add_stream("with-audio", f"{gst}/{mount}", audio=True)
        engine.add_stream("video-only", f"{gst}/{mount}")
        got = collect(engine, frames=40, seconds=20)
        # GStreamer's server may start a track's packets a little after the other's.
        deadline = time.monotonic() + 10
        while not any(u.kind == "audio" for u in got.units) and time.monotonic() < deadline:
            collect(engine, seconds=0.5, into=got)
    audio = [u for u in got.units if u.kind == "audio"]
    assert audio, "no audio units"
    assert {u.stream_id for u in audio} == {"with-audio"}  # not set up unless asked
    assert all(u.codec == codec and u.clock_rate == clock_rate for u in audio)
    assert all(b.pts_90k > a.pts_90k for a, b in itertools.pairwise(audio))
    assert all(len(u) > 0 for u in audio)
    video = [u for u in got.units if u.kind == "video" and u.stream_id == "with-audio"]
    assert video and video[0].is_keyframe
