"""Live view's native hub (``vmscore._core.LiveHub``) against the camera simulator: a viewer
starts at the latest keyframe and gets fragmented MP4 that decodes as it arrives; viewers share
one muxing of a stream; a viewer that does not keep up skips to the newest keyframe instead of
falling behind; nobody watching means nothing is muxed; a removed stream says so."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import av
import pytest

from station_helpers import clip
from vmscore import _core
from vmscore.sim import CameraServer


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_core.LiveHub]:
    c = clip(str(tmp_path_factory.mktemp("live-clips")), "carpark", 3, 12)
    with CameraServer() as cs:
        cs.add_camera("gate", c.directory)
        engine = _core.IngestEngine()
        try:
            engine.add_stream("gate@main", cs.url("gate"))
            live = _core.LiveHub(engine, max_lag=1.0)
            live.add_stream("gate@main")
            deadline = time.monotonic() + 10
            while not any(s.gop_units for s in live.source_stats()):
                assert time.monotonic() < deadline, "no video reached the live hub"
                time.sleep(0.05)
            yield live
            live.remove_stream("gate@main")
        finally:
            engine.close()


def take(
    live: _core.LiveHub, viewers: set[int], seconds: float
) -> dict[int, list[_core.LiveChunk]]:
    """Polls for ``seconds``, acknowledging every chunk at once (a fast viewer)."""
    got: dict[int, list[_core.LiveChunk]] = {v: [] for v in viewers}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for chunk in live.poll(0.1):
            if chunk.viewer in got:
                got[chunk.viewer].append(chunk)
                live.ack(chunk.viewer)
    return got


def decode(chunks: list[_core.LiveChunk]) -> list[av.VideoFrame]:
    data = b"".join((c.init or b"") + c.media for c in chunks)
    with av.open(io.BytesIO(data), format="mp4") as container:
        return list(container.decode(video=0))


def source(live: _core.LiveHub) -> _core.LiveSourceStats:
    (s,) = live.source_stats()
    return s


def test_viewers_start_at_a_keyframe_and_share_one_muxing(hub: _core.LiveHub) -> None:
    a = hub.open("gate@main")
    got = take(hub, {a}, 1.0)
    b = hub.open("gate@main")
    both = take(hub, {a, b}, 2.0)
    got = {a: got[a] + both[a], b: both[b]}
    try:
        for v in (a, b):
            chunks = got[v]
            assert chunks[0].init is not None and chunks[0].codec.startswith("avc1.")
            assert (chunks[0].width, chunks[0].height) == (640, 360)
            assert chunks[0].state == "playing"
            assert sum(c.init is not None for c in chunks) == 1
            frames = decode(chunks)
            assert frames[0].key_frame and len(frames) == sum(c.fragments for c in chunks)
            assert len(frames) >= 10
            assert all(c.skipped == 0 for c in chunks)
        # One fragment per frame, muxed once for both viewers.
        s = source(hub)
        assert s.viewers == 2 and s.muxing and s.mux_errors == 0
        assert hub.viewer_stats(b).fragments <= s.muxed
    finally:
        hub.close(a)
        hub.close(b)
    # Nobody watches: nothing is muxed or kept beyond the references to the latest GOP.
    s = source(hub)
    assert (s.viewers, s.muxing, s.fragments, s.bytes) == (0, False, 0, 0)
    assert s.gop_units > 0


def test_a_slow_viewer_skips_to_the_newest_keyframe(hub: _core.LiveHub) -> None:
    v = hub.open("gate@main")
    try:
        first = take(hub, {v}, 0.5)[v]
        # Now it stops acknowledging (its connection stalls) for longer than max_lag and a GOP.
        waiting = [c for c in hub.poll(0.5) if c.viewer == v]
        time.sleep(3.0)
        assert hub.viewer_stats(v).waiting_for_ack
        hub.ack(v)
        later = take(hub, {v}, 1.0)[v]
        assert later[0].skipped > 0, "a viewer behind by more than max_lag must skip"
        assert hub.viewer_stats(v).skips == 1
        # The skip lands on a keyframe: what follows decodes on its own with the first init.
        frames = decode([first[0], *later]) if first else []
        assert frames and frames[0].key_frame
        # Its latest frame is recent again: under a second behind the stream's newest.
        assert later[-1].last_wall_time_us >= (waiting or later)[0].last_wall_time_us
    finally:
        hub.close(v)


def test_removed_stream_ends_its_viewers(tmp_path_factory: pytest.TempPathFactory) -> None:
    c = clip(str(tmp_path_factory.mktemp("live-clips-2")), "carpark", 3, 12)
    with CameraServer() as cs:
        cs.add_camera("door", c.directory)
        engine = _core.IngestEngine()
        try:
            engine.add_stream("door@sub", cs.url("door", sub=True))
            live = _core.LiveHub(engine)
            live.add_stream("door@sub")
            with pytest.raises(ValueError, match="already"):
                live.add_stream("door@sub")
            with pytest.raises(ValueError, match="no live stream"):
                live.open("nothing@sub")
            v = live.open("door@sub")
            got = take(live, {v}, 2.0)[v]
            assert "playing" in [c.state for c in got] and sum(c.fragments for c in got) > 5
            live.remove_stream("door@sub")
            last = take(live, {v}, 0.5)[v]
            assert [c.state for c in last] == ["removed"]
            live.close(v)
            assert live.source_stats() == []
        finally:
            engine.close()
