"""The ingest engine against the project's camera simulator: every fault it can inject leads to the
right event and a recovery, every known camera quirk is handled, hostile servers are survived, and
nothing of this disturbs the other streams on the same engine."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

import vmscore
from ingest_helpers import Collected, collect, decode_units, digest, rss_kib
from vmscore.sim import CameraServer, EncodedStream, encode_frames, render_scene
from vmscore.sim.files import load_clip  # noqa: F401  (kept for the clip-directory form)

FPS = 15.0


def scene_stream(
    codec: str, seconds: float = 4.0, size: tuple[int, int] = (320, 240)
) -> EncodedStream:
    frames = (
        f.luma
        for f in render_scene(
            "schoolyard", width=size[0], height=size[1], fps=FPS, seconds=seconds, seed=5
        )
    )
    return encode_frames(
        frames,
        codec=codec,
        width=size[0],
        height=size[1],
        fps=FPS,  # type: ignore[arg-type]
        gop=15,
        bitrate_bps=300_000,
    )


@pytest.fixture(scope="module")
def clip_h264() -> EncodedStream:
    return scene_stream("h264")


@pytest.fixture(scope="module")
def clip_h265() -> EncodedStream:
    return scene_stream("h265")


@pytest.fixture
def server(clip_h264: EncodedStream) -> Iterator[CameraServer]:
    with CameraServer(session_timeout_s=60) as s:
        s.add_camera("healthy", clip_h264)
        s.add_camera("cam", clip_h264)
        yield s


def source_digests(stream: EncodedStream) -> list[str]:
    import io

    import av

    data = stream.annexb()
    with av.open(
        io.BytesIO(data), mode="r", format="h264" if stream.codec == "h264" else "hevc"
    ) as c:
        return [digest(f.to_ndarray(format="gray")) for f in c.decode(video=0)]


def assert_contiguous_run(units: list[vmscore.AccessUnit], source: list[str]) -> None:
    ours = [digest(f) for f in decode_units(units)]
    start = source.index(ours[0])
    assert ours == [source[(start + i) % len(source)] for i in range(len(ours))]


def of(stream_id: str, got: Collected) -> list[vmscore.AccessUnit]:
    return [u for u in got.video() if u.stream_id == stream_id]


def events(stream_id: str, got: Collected) -> list[str]:
    return [e.kind for e in got.events if e.stream_id == stream_id]


# ------------------------------------------------------------------------------------------------
# Plain streaming


@pytest.mark.parametrize("codec", ["h264", "h265"])
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_simulated_camera_frames_decode_exactly(
    clip_h264: EncodedStream, clip_h265: EncodedStream, codec: str, transport: str
) -> None:
    clip = clip_h264 if codec == "h264" else clip_h265
    with CameraServer() as s, vmscore.IngestEngine() as engine:
        url = s.add_camera("cam", clip)
        engine.add_stream("cam", url, transport=transport)  # type: ignore[arg-type]
        got = collect(engine, frames=40, seconds=15)
    units = of("cam", got)
    assert len(units) >= 40
    assert units[0].is_keyframe and not any(u.gap for u in units)
    assert_contiguous_run(units, source_digests(clip))
    steps = {b.pts_90k - a.pts_90k for a, b in itertools.pairwise(units)}
    assert steps == {6000}  # continuous timestamps, also across the clip's loop


def test_many_cameras_on_one_engine(clip_h264: EncodedStream) -> None:
    with CameraServer() as s, vmscore.IngestEngine() as engine:
        urls = s.add_cameras(40, clip_h264)
        for i, url in enumerate(urls):
            engine.add_stream(f"cam{i}", url)
        got = collect(engine, seconds=4)
        stats = [engine.stats(f"cam{i}") for i in range(40)]
    per_stream = {sid: len(of(sid, got)) for sid in (f"cam{i}" for i in range(40))}
    assert min(per_stream.values()) >= 30, per_stream  # about 4 s at 15 fps each, minus start-up
    assert all(st.state == "playing" and st.packets_lost == 0 for st in stats)


def test_streams_come_and_go_without_disturbing_the_others(clip_h264: EncodedStream) -> None:
    with CameraServer() as s, vmscore.IngestEngine() as engine:
        urls = s.add_cameras(6, clip_h264)
        engine.add_stream("steady", urls[0])
        got = collect(engine, frames=15, seconds=10)
        for round_ in range(3):
            for i in range(1, 6):
                engine.add_stream(f"extra{round_}-{i}", urls[i])
            collect(engine, seconds=0.7, into=got)
            for i in range(1, 6):
                engine.remove_stream(f"extra{round_}-{i}")
            collect(engine, seconds=0.3, into=got)
        assert engine.streams() == ["steady"]
        collect(engine, seconds=0.5, into=got)
    steady = of("steady", got)
    assert all(b.pts_90k - a.pts_90k == 6000 for a, b in itertools.pairwise(steady))
    assert not any(u.gap for u in steady)
    assert events("steady", got).count("playing") == 1
    removed = [e for e in got.events if e.kind == "removed"]
    assert len(removed) == 15


# ------------------------------------------------------------------------------------------------
# Faults


def test_dropped_connection_reconnects(server: CameraServer) -> None:
    with vmscore.IngestEngine() as engine:
        engine.add_stream("healthy", server.url("healthy"))
        engine.add_stream("cam", server.url("cam"), reconnect_min_s=0.2)
        got = collect(engine, frames=20, seconds=10)
        server.drop_connections("cam")
        collect(engine, seconds=3, into=got)
        stats = engine.stats("cam")
    assert events("cam", got)[-3:] == ["disconnected", "reconnecting", "connecting"] or (
        "reconnecting" in events("cam", got) and events("cam", got).count("playing") == 2
    )
    assert stats.reconnects >= 1 and stats.state == "playing"
    units = of("cam", got)
    after = got.after("cam", "disconnected")
    assert after and after[0].is_keyframe
    # The stream's timeline goes on across the reconnect: time never goes back for the recorder.
    assert all(
        b.pts_90k > a.pts_90k and b.dts_90k > a.dts_90k for a, b in itertools.pairwise(units)
    )
    assert "closed the connection" in stats.last_error
    assert events("healthy", got).count("playing") == 1


def test_stall_is_detected_and_the_session_recovers(server: CameraServer) -> None:
    with vmscore.IngestEngine() as engine:
        engine.add_stream("cam", server.url("cam"), stall_timeout_s=1.0, reconnect_min_s=0.2)
        got = collect(engine, frames=10, seconds=10)
        server.stall("cam", 2.5)
        collect(engine, seconds=6, into=got)
    kinds = events("cam", got)
    assert "stalled" in kinds
    assert kinds.index("stalled") < len(kinds) - 1 and kinds.count("playing") >= 2
    assert (
        of("cam", got)[-1].wall_time_us
        > next(e for e in got.events if e.kind == "stalled").wall_time_us
    )


def test_lost_packets_resume_at_the_next_keyframe(
    server: CameraServer, clip_h264: EncodedStream
) -> None:
    server.lose_packets("cam", 0.03)
    with vmscore.IngestEngine() as engine:
        engine.add_stream("cam", server.url("cam"))
        got = collect(engine, seconds=5)
        stats = engine.stats("cam")
    units = of("cam", got)
    gaps = [u for u in units if u.gap]
    assert gaps and all(u.is_keyframe for u in gaps)
    assert stats.packets_lost > 0 and stats.frames_dropped > 0
    # Everything delivered decodes to frames of the source: nothing corrupt got through.
    source = set(source_digests(clip_h264))
    assert {digest(f) for f in decode_units(units)} <= source


def test_corrupt_packets_never_crash_the_engine(server: CameraServer) -> None:
    server.corrupt_packets("cam", 0.05)
    with vmscore.IngestEngine() as engine:
        engine.add_stream("healthy", server.url("healthy"))
        engine.add_stream("cam", server.url("cam"), reconnect_min_s=0.2)
        got = collect(engine, seconds=5)
        assert engine.stats("healthy").state == "playing"
    assert len(of("healthy", got)) >= 60
    # Corrupt slice data is not detectable in transport; corrupt headers are: either way the
    # engine goes on delivering.
    assert len(of("cam", got)) > 10


@pytest.mark.parametrize("jump", [90000 * 600, -90000 * 30])
def test_timestamp_jumps_keep_the_timeline_monotonic(server: CameraServer, jump: int) -> None:
    with vmscore.IngestEngine() as engine:
        engine.add_stream("cam", server.url("cam"))
        got = collect(engine, frames=10, seconds=10)
        server.timestamp_jump("cam", jump)
        collect(engine, seconds=2, into=got)
        stats = engine.stats("cam")
    units = of("cam", got)
    steps = [b.pts_90k - a.pts_90k for a, b in itertools.pairwise(units)]
    assert all(0 < s <= 2 * 6000 for s in steps), steps
    assert stats.timestamp_discontinuities >= 1


def test_sdp_without_parameter_sets_uses_in_band_ones(server: CameraServer) -> None:
    server.sdp_without_parameter_sets("cam")
    with vmscore.IngestEngine() as engine:
        engine.add_stream("cam", server.url("cam"))
        got = collect(engine, frames=10, seconds=10)
    units = of("cam", got)
    assert units[0].is_keyframe and len(units[0].parameter_sets) == 2


def test_wrong_parameter_sets_in_sdp_are_replaced_by_in_band_ones(server: CameraServer) -> None:
    server.wrong_parameter_sets("cam")
    with vmscore.IngestEngine() as engine:
        engine.add_stream("cam", server.url("cam"))
        got = collect(engine, frames=10, seconds=10)
        stats = engine.stats("cam")
    assert (stats.width, stats.height) == (320, 240)
    sps = vmscore.parse_sps(of("cam", got)[0].parameter_sets[0], "h264")
    assert (sps.width, sps.height) == (320, 240)


def test_slow_and_partial_responses_still_play(server: CameraServer) -> None:
    server.partial_responses("cam", 30)
    with vmscore.IngestEngine() as engine:
        engine.add_stream("cam", server.url("cam"))
        got = collect(engine, frames=5, seconds=15)
    assert len(of("cam", got)) >= 5


def test_a_camera_slower_than_the_timeout_is_retried(server: CameraServer) -> None:
    server.slow_responses("cam", 1500)
    with vmscore.IngestEngine() as engine:
        engine.add_stream("cam", server.url("cam"), connect_timeout_s=0.5, reconnect_min_s=0.3)
        got = collect(engine, seconds=3)
        stats = engine.stats("cam")
    assert "disconnected" in events("cam", got) and "no answer to OPTIONS" in stats.last_error
    assert stats.reconnects >= 1


# ------------------------------------------------------------------------------------------------
# Authentication


def test_digest_authentication_with_url_or_separate_credentials(clip_h264: EncodedStream) -> None:
    with (
        CameraServer(username="operator", password="s3cret!") as s,
        vmscore.IngestEngine() as engine,
    ):
        s.add_camera("cam", clip_h264)
        engine.add_stream("in-url", s.url("cam", with_credentials=True))
        engine.add_stream("separate", s.url("cam"), username="operator", password="s3cret!")
        engine.add_stream("wrong", s.url("cam"), username="operator", password="guess")
        engine.add_stream("none", s.url("cam"))
        got = collect(engine, seconds=4)
        wrong, none = engine.stats("wrong"), engine.stats("none")
    assert len(of("in-url", got)) > 20 and len(of("separate", got)) > 20
    assert not of("wrong", got) and not of("none", got)
    assert "wrong user name or password" in wrong.last_error
    assert "requires credentials" in none.last_error
    assert "error" in events("wrong", got)
    for text in [e.reason for e in got.events] + [wrong.last_error, none.last_error]:
        assert "s3cret" not in text and "guess" not in text  # credentials never leak


# ------------------------------------------------------------------------------------------------
# Camera quirks (engine.md §1.8)


@pytest.mark.parametrize(
    "quirk",
    [
        "rtcp_before_play",
        "bogus_rtp_info",
        "bogus_transport_ssrc",
        "annexb_in_payload",
        "marker_on_sei",
    ],
)
def test_camera_quirks_are_handled(
    server: CameraServer, clip_h264: EncodedStream, quirk: str
) -> None:
    getattr(server, quirk)("cam")
    with vmscore.IngestEngine() as engine:
        engine.add_stream("cam", server.url("cam"))
        got = collect(engine, frames=30, seconds=10)
        stats = engine.stats("cam")
    units = of("cam", got)
    assert len(units) >= 30 and stats.reconnects == 0
    assert not any(u.gap for u in units)
    assert_contiguous_run(units, source_digests(clip_h264))


def test_camera_that_ignores_keepalives_keeps_streaming(clip_h264: EncodedStream) -> None:
    # The session timeout is 10 s, so keepalives go every 5 s; the camera never answers them.
    with CameraServer(session_timeout_s=10) as s, vmscore.IngestEngine() as engine:
        s.add_camera("cam", clip_h264)
        s.ignore_keepalives("cam")
        engine.add_stream("cam", s.url("cam"))
        got = collect(engine, seconds=12)
        stats = engine.stats("cam")
    assert stats.reconnects == 0 and events("cam", got).count("playing") == 1
    assert len(of("cam", got)) >= 150


def test_live555_stale_session_is_waited_out(server: CameraServer) -> None:
    server.live555_tool("cam", stale_s=2.0)
    with vmscore.IngestEngine() as engine:
        engine.add_stream("cam", server.url("cam"), reconnect_min_s=0.1, stale_session_wait_s=2.0)
        got = collect(engine, frames=10, seconds=10)
        server.drop_connections("cam")
        collect(engine, until_event="reconnecting", seconds=10, into=got)
        disconnected = next(e for e in got.events if e.kind == "disconnected")
        reconnecting = next(e for e in got.events if e.kind == "reconnecting")
        collect(engine, frames=len(got.video()) + 10, seconds=10, into=got)
    assert (reconnecting.wall_time_us - disconnected.wall_time_us) / 1e6 >= 1.9
    after = got.after("cam", "reconnecting")
    assert after and after[0].is_keyframe and not any(u.gap for u in after[1:])


# ------------------------------------------------------------------------------------------------
# Hostile servers


@pytest.mark.parametrize(
    ("fault", "arg", "message"),
    [
        ("oversized_headers", 64 * 1024, "header"),
        ("endless_response", True, "header"),
        ("huge_body", 100_000_000, "Content-Length"),
        ("garbage_interleaved", 0.5, ""),
        ("slowloris", 200.0, "no answer"),
    ],
)
def test_hostile_servers_are_bounded_and_survived(
    server: CameraServer, fault: str, arg: float, message: str
) -> None:
    getattr(server, fault)("cam", arg)
    before = rss_kib()
    with vmscore.IngestEngine() as engine:
        engine.add_stream("healthy", server.url("healthy"))
        engine.add_stream("cam", server.url("cam"), connect_timeout_s=1.0, reconnect_min_s=0.2)
        got = collect(engine, seconds=4)
        cam = engine.stats("cam")
    assert "disconnected" in events("cam", got) or "error" in events("cam", got)
    assert message.lower() in cam.last_error.lower()
    assert len(of("healthy", got)) >= 45  # the other camera did not notice
    assert rss_kib() - before < 64 * 1024


def test_memory_stays_flat_over_repeated_reconnects(server: CameraServer) -> None:
    with vmscore.IngestEngine() as engine:
        engine.add_stream("cam", server.url("cam"), reconnect_min_s=0.05, reconnect_max_s=0.05)
        collect(engine, frames=10, seconds=10)
        for _ in range(5):
            server.drop_connections("cam")
            collect(engine, seconds=0.4)
        baseline = rss_kib()
        for _ in range(30):
            server.drop_connections("cam")
            collect(engine, seconds=0.3)
        grown = rss_kib() - baseline
        assert engine.stats("cam").reconnects >= 30
    assert grown < 8 * 1024, f"RSS grew by {grown} KiB over 30 reconnects"


def test_remove_while_connecting_and_closing_with_streams_is_clean(
    clip_h264: EncodedStream,
) -> None:
    with CameraServer() as s:
        s.add_camera("cam", clip_h264)
        s.slow_responses("cam", 500)
        engine = vmscore.IngestEngine()
        engine.add_stream("a", s.url("cam"))
        engine.add_stream("b", "rtsp://127.0.0.1:9/nothing-listens-here", reconnect_min_s=0.1)
        time.sleep(0.2)
        engine.remove_stream("a")
        got = collect(engine, seconds=0.5)
        engine.close()
        engine.close()  # idempotent
    assert "removed" in events("a", got)
    assert (
        "connection refused" in " ".join(e.reason for e in got.events if e.stream_id == "b").lower()
    )


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_removing_a_stream_tears_its_session_down(clip_h264: EncodedStream, transport: str) -> None:
    # A camera limits its clients: a stream we stop must free its session at once, not at the
    # camera's session timeout (60 s here).
    with CameraServer(session_timeout_s=60) as s, vmscore.IngestEngine() as engine:
        s.add_camera("cam", clip_h264)
        engine.add_stream("cam", s.url("cam"), transport=transport)  # type: ignore[arg-type]
        collect(engine, frames=10, seconds=10)
        assert s.stats("cam").clients == 1
        engine.remove_stream("cam")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and s.stats("cam").clients:
            time.sleep(0.05)
        stats = s.stats("cam")
    assert stats.clients == 0 and stats.sessions_timed_out == 0


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_keepalives_hold_a_session_with_a_short_timeout(
    clip_h264: EncodedStream, transport: str
) -> None:
    # The camera ends sessions that say nothing for 3 s (over UDP the media flows the other way
    # and does not count): keepalives at half the timeout keep it.
    with CameraServer(session_timeout_s=3) as s, vmscore.IngestEngine() as engine:
        s.add_camera("cam", clip_h264)
        engine.add_stream("cam", s.url("cam"), transport=transport)  # type: ignore[arg-type]
        got = collect(engine, seconds=8)
        stats = s.stats("cam")
        ours = engine.stats("cam")
    assert stats.sessions_timed_out == 0 and ours.reconnects == 0
    assert len(of("cam", got)) >= 100


def test_basic_authentication(clip_h264: EncodedStream) -> None:
    with (
        CameraServer(username="admin", password="pw", auth="basic") as s,
        vmscore.IngestEngine() as engine,
    ):
        s.add_camera("cam", clip_h264)
        engine.add_stream("ok", s.url("cam"), username="admin", password="pw")
        engine.add_stream("bad", s.url("cam"), username="admin", password="nope")
        got = collect(engine, seconds=3)
        bad = engine.stats("bad")
    assert len(of("ok", got)) > 20 and not of("bad", got)
    assert "wrong user name or password" in bad.last_error
