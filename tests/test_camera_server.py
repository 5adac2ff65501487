"""Tests of the camera simulator (vmscore.sim.CameraServer): an RTSP server that FFmpeg reads like a
camera, and that misbehaves exactly as told.

The ingest engine's quirk tests, the benchmarks and the demo all stand on it, so each test names
what breaks if it fails: FFmpeg (an independent client) must read and record what it serves,
clients of one camera must see one live timeline at real-time pace, and every fault must put its
effect on the wire, seen here by a plain socket client that trusts nothing the server says.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from urllib.parse import urlsplit

import av
import pytest

import vmscore
from vmscore.sim import FAULTS, CameraServer, EncodedStream

FFPROBE = shutil.which("ffprobe")
FFMPEG = shutil.which("ffmpeg")

# ---------------------------------------------------------------------------------------------
# A plain RTSP client on a socket: it parses what arrives and believes nothing else.


class ConnectionClosedError(Exception):
    pass


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    raw: bytes
    t: float


@dataclass
class Frame:
    t: float
    channel: int
    data: bytes


@dataclass
class Rtp:
    seq: int
    ts: int
    ssrc: int
    marker: bool
    pt: int
    payload: bytes


def parse_rtp(data: bytes) -> Rtp:
    assert len(data) >= 12 and data[0] >> 6 == 2, f"not RTP: {data[:16].hex()}"
    b1 = data[1]
    seq, ts, ssrc = struct.unpack(">HII", data[2:12])
    return Rtp(seq, ts, ssrc, bool(b1 & 0x80), b1 & 0x7F, data[12:])


@dataclass
class RawClient:
    url: str
    rcvbuf: int | None = None
    sock: socket.socket = field(init=False)
    buf: bytearray = field(default_factory=bytearray)
    cseq: int = 0
    session: str | None = None
    frames: list[Frame] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        self.sock.settimeout(5)
        self.sock.connect((parts.hostname or "127.0.0.1", parts.port or 554))

    def close(self) -> None:
        self.sock.close()

    def send(
        self, method: str, url: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.cseq += 1
        hdrs = {"CSeq": str(self.cseq), **(headers or {})}
        if self.session and "Session" not in hdrs:
            hdrs["Session"] = self.session
        text = f"{method} {url or self.url} RTSP/1.0\r\n"
        text += "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        self.sock.sendall(text.encode())

    def _recv(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(262144)
        except TimeoutError:
            return False
        if not data:
            raise ConnectionClosedError
        self.buf += data
        return True

    def _parse(self) -> Frame | Response | None:
        buf = self.buf
        if not buf:
            return None
        if buf[0] == 0x24:
            if len(buf) < 4:
                return None
            n = (buf[2] << 8) | buf[3]
            if len(buf) < 4 + n:
                return None
            frame = Frame(time.monotonic(), buf[1], bytes(buf[4 : 4 + n]))
            del buf[: 4 + n]
            return frame
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = buf[:end].decode("latin-1").split("\r\n")
        m = re.match(r"RTSP/1\.0 (\d{3})", lines[0])
        assert m, f"not an RTSP response: {lines[0]!r}"
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if len(buf) < end + 4 + length:
            return None
        raw = bytes(buf[: end + 4 + length])
        del buf[: end + 4 + length]
        return Response(int(m.group(1)), headers, raw[end + 4 :], raw, time.monotonic())

    def next_item(self, timeout: float) -> Frame | Response | None:
        deadline = time.monotonic() + timeout
        while True:
            item = self._parse()
            if item is not None:
                return item
            if not self._recv(deadline):
                return None

    def request(
        self,
        method: str,
        url: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 5.0,
    ) -> Response:
        self.send(method, url, headers)
        deadline = time.monotonic() + timeout
        while True:
            item = self.next_item(max(0.0, deadline - time.monotonic()))
            if item is None:
                raise TimeoutError(f"no answer to {method} within {timeout} s")
            if isinstance(item, Frame):
                self.frames.append(item)
            else:
                return item

    def describe(self) -> Response:
        r = self.request("DESCRIBE", headers={"Accept": "application/sdp"})
        assert r.status == 200, r.raw
        return r

    def setup_tcp(self, base: str, channel: int = 0) -> Response:
        r = self.request(
            "SETUP",
            base + "trackID=0",
            {"Transport": f"RTP/AVP/TCP;unicast;interleaved={channel}-{channel + 1}"},
        )
        assert r.status == 200, r.raw
        self.session = r.headers["session"].split(";")[0]
        return r

    def play(self, channel: int = 0) -> Response:
        base = self.describe().headers["content-base"]
        self.setup_tcp(base, channel)
        r = self.request("PLAY", base)
        assert r.status == 200, r.raw
        return r

    def collect(self, seconds: float) -> list[Frame]:
        """Frames arriving during `seconds` (responses go to self.responses)."""
        start = len(self.frames)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            item = self.next_item(left)
            if isinstance(item, Frame):
                self.frames.append(item)
            elif isinstance(item, Response):
                self.responses.append(item)
        return self.frames[start:]

    def rtp(self, seconds: float, channel: int = 0) -> list[Rtp]:
        return [parse_rtp(f.data) for f in self.collect(seconds) if f.channel == channel]


def h264_access_units(packets: list[Rtp]) -> list[list[bytes]]:
    """RFC 6184 depacketization (single NAL, STAP-A, FU-A); an access unit ends at the marker."""
    aus: list[list[bytes]] = []
    cur: list[bytes] = []
    fu: bytearray | None = None
    for p in packets:
        pl = p.payload
        kind = pl[0] & 0x1F
        if kind == 24:
            i = 1
            while i + 2 <= len(pl):
                n = (pl[i] << 8) | pl[i + 1]
                cur.append(pl[i + 2 : i + 2 + n])
                i += 2 + n
        elif kind == 28:
            if pl[1] & 0x80:
                fu = bytearray([(pl[0] & 0xE0) | (pl[1] & 0x1F)])
            assert fu is not None, "FU-A continuation without a start"
            fu += pl[2:]
            if pl[1] & 0x40:
                cur.append(bytes(fu))
                fu = None
        else:
            cur.append(pl)
        if p.marker:
            aus.append(cur)
            cur = []
    return aus


def clip_units(stream: EncodedStream) -> list[list[bytes]]:
    codec = stream.codec
    return [
        [f.data[u.offset : u.offset + u.size] for u in vmscore.nal_units(f.data, codec)]
        for f in stream.frames
    ]


def ffprobe_json(url: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    assert FFPROBE, "ffprobe is missing: run scripts/install-test-deps"
    return subprocess.run(
        [FFPROBE, "-v", "error", "-of", "json", *args, url],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def native_threads() -> int:
    return len(os.listdir("/proc/self/task"))


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def clip(encode: Callable[..., EncodedStream]) -> EncodedStream:
    """3 s of 320x240 at 25 fps, a keyframe every second."""
    return encode("h264", 320, 240, 75, 25)


@pytest.fixture(scope="module")
def server() -> Iterator[CameraServer]:
    with CameraServer(seed=7) as s:
        yield s


@pytest.fixture
def camera(
    server: CameraServer, clip: EncodedStream, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh camera named after the test; removed afterwards."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[:100]
    url = server.add_camera(name, clip, start_offset_s=1.5)
    yield url
    server.remove_camera(name)


def name_of(url: str) -> str:
    return urlsplit(url).path.strip("/").split("/")[0]


# ---------------------------------------------------------------------------------------------
# FFmpeg reads what the simulator serves


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_ffprobe_reads_a_camera(camera: str, transport: str) -> None:
    """Broken if the SDP, SETUP/PLAY or RTP packetization is wrong for a real client."""
    proc = ffprobe_json(camera, "-rtsp_transport", transport, "-show_streams")
    assert proc.returncode == 0, proc.stderr
    (stream,) = json.loads(proc.stdout)["streams"]
    assert stream["codec_name"] == "h264"
    assert (stream["width"], stream["height"]) == (320, 240)
    assert stream["r_frame_rate"] == "25/1"


def test_ffprobe_reads_h265_and_the_sub_stream(
    server: CameraServer, encode: Callable[..., EncodedStream]
) -> None:
    """Broken if H.265 (sprop-vps/sps/pps, FU) or the /sub path is wrong."""
    main = encode("h265", 320, 240, 25, 25)
    sub = encode("h265", 160, 120, 25, 25)
    url = server.add_camera("hevc", main, sub)
    try:
        for u, size in ((url, (320, 240)), (url + "/sub", (160, 120))):
            proc = ffprobe_json(u, "-rtsp_transport", "tcp", "-show_streams")
            assert proc.returncode == 0, proc.stderr
            (stream,) = json.loads(proc.stdout)["streams"]
            assert stream["codec_name"] == "hevc"
            assert (stream["width"], stream["height"]) == size
    finally:
        server.remove_camera("hevc")


def test_ffmpeg_records_the_served_frames(camera: str, clip: EncodedStream, tmp_path: Path) -> None:
    """What FFmpeg records (-c copy) decodes to exactly the clip's frames, in order: broken if a
    packet is lost, reordered or mangled, or the stream does not start on a keyframe."""
    assert FFMPEG
    out = tmp_path / "out.mp4"
    proc = subprocess.run(
        [
            FFMPEG,
            "-v",
            "error",
            "-y",
            "-rtsp_transport",
            "tcp",
            "-i",
            camera,
            "-t",
            "3",
            "-c",
            "copy",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    with av.open(str(out), mode="r") as f:
        got = [fr.to_ndarray(format="gray") for fr in f.decode(video=0)]
    with av.open(io.BytesIO(clip.annexb()), mode="r", format="h264") as f:
        ref = [fr.to_ndarray(format="gray") for fr in f.decode(video=0)]
    index = {r.tobytes(): i for i, r in enumerate(ref)}
    positions = [index.get(g.tobytes(), -1) for g in got]
    assert len(got) >= 60, f"only {len(got)} frames in 3 s at 25 fps"
    assert -1 not in positions, "a recorded frame matches no frame of the clip"
    assert clip.frames[positions[0]].is_keyframe, "did not start on a keyframe"
    steps = {(b - a) % len(ref) for a, b in pairwise(positions)}
    assert steps == {1}, f"frames skipped or repeated: steps {sorted(steps)}"


def test_digest_authentication(server: CameraServer, clip: EncodedStream) -> None:
    """Broken if a client with the right credentials is refused or a wrong one let in."""
    url = server.add_camera("locked", clip, username="admin", password="s3cret")
    try:
        ok = ffprobe_json(url.replace("rtsp://", "rtsp://admin:s3cret@"), "-show_streams")
        assert ok.returncode == 0, ok.stderr
        for bad in (url, url.replace("rtsp://", "rtsp://admin:wrong@")):
            proc = ffprobe_json(bad, "-show_streams")
            assert proc.returncode != 0 and "401" in proc.stderr, proc.stderr
        c = RawClient(url)
        r = c.request("DESCRIBE")
        assert r.status == 401
        assert 'Digest realm="' in r.headers["www-authenticate"]
        assert 'qop="auth"' in r.headers["www-authenticate"]
        assert c.request("OPTIONS").status == 200, "OPTIONS must not need credentials"
        c.close()
        assert server.stats("locked").unauthorized >= 3
    finally:
        server.remove_camera("locked")


def test_basic_authentication() -> None:
    """A server set to Basic accepts the user:password token and refuses others."""
    with CameraServer(username="u", password="p", auth="basic") as srv:
        c = RawClient(f"rtsp://127.0.0.1:{srv.port}/nobody")
        assert c.request("DESCRIBE").headers["www-authenticate"].startswith("Basic ")
        good = "Basic " + base64.b64encode(b"u:p").decode()
        bad = "Basic " + base64.b64encode(b"u:x").decode()
        assert c.request("DESCRIBE", headers={"Authorization": bad}).status == 401
        # Credentials come before the path: a stranger cannot probe which cameras exist.
        assert c.request("DESCRIBE", headers={"Authorization": good}).status == 404
        c.close()


# ---------------------------------------------------------------------------------------------
# One live timeline per camera, real-time pace, many cameras


def test_packets_rebuild_the_clip_byte_for_byte(camera: str, clip: EncodedStream) -> None:
    """Every access unit a client receives is one of the clip's, in order, starting at a keyframe:
    broken if the packetization, the marker bit or the start-at-latest-keyframe rule is wrong."""
    c = RawClient(camera)
    c.play()
    aus = h264_access_units(c.rtp(1.5))
    c.close()
    ref = clip_units(clip)
    where = {b"".join(u): i for i, u in enumerate(ref)}
    positions = [where.get(b"".join(a), -1) for a in aus]
    assert len(aus) > 30 and -1 not in positions
    assert clip.frames[positions[0]].is_keyframe
    assert all((b - a) % len(ref) == 1 for a, b in pairwise(positions))


def test_two_clients_of_one_camera_see_the_same_packets(camera: str) -> None:
    """A camera is live: both clients get the same packet under the same sequence number and
    timestamp. Broken if clients get private timelines (a recorder and a viewer would disagree)."""
    a, b = RawClient(camera), RawClient(camera)
    a.play()
    b.play()
    sel = selectors.DefaultSelector()
    for cl in (a, b):
        sel.register(cl.sock, selectors.EVENT_READ, cl)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        for key, _ in sel.select(0.1):
            cl = key.data
            cl.collect(0.01)
    pa = {p.seq: p for p in (parse_rtp(f.data) for f in a.frames if f.channel == 0)}
    pb = {p.seq: p for p in (parse_rtp(f.data) for f in b.frames if f.channel == 0)}
    common = set(pa) & set(pb)
    assert len(common) > 40
    assert all(pa[s].ts == pb[s].ts and pa[s].payload == pb[s].payload for s in common)
    assert {p.ssrc for p in pa.values()} == {p.ssrc for p in pb.values()}
    a.close()
    b.close()


def test_pacing_is_real_time_with_continuous_timestamps(
    server: CameraServer, clip: EncodedStream
) -> None:
    """Over 3 s a client receives 3 s of media (±15%), across the clip's loop point, with
    timestamps rising by one frame and sequence numbers by one: broken if the camera bursts,
    drifts, or resets its timeline when the clip loops."""
    url = server.add_camera("paced", clip, start_offset_s=2.2)  # loops 0.8 s from now
    try:
        c = RawClient(url)
        c.play()
        c.collect(0.4)  # the GOP so far arrives at once; pace is measured after it
        t0 = time.monotonic()
        pkts = c.rtp(3.0)
        elapsed = time.monotonic() - t0
        c.close()
        stamps = sorted({p.ts for p in pkts})
        media = (stamps[-1] - stamps[0]) / 90_000 + 1 / 25
        assert abs(media - elapsed) <= 0.15 * elapsed, (media, elapsed)
        steps = {(b - a) % 2**32 for a, b in pairwise([p.ts for p in pkts])}
        assert steps <= {0, 3600}, f"timestamp steps {sorted(steps)}"
        seq_steps = {(b.seq - a.seq) % 65536 for a, b in pairwise(pkts)}
        assert seq_steps == {1}
    finally:
        server.remove_camera("paced")


def test_fifty_cameras_at_once(server: CameraServer, clip: EncodedStream) -> None:
    """50 cameras from one clip on one server thread, each read by its own client: broken if the
    server cannot carry an ingest test's fleet or cameras interfere."""
    urls = server.add_cameras(50, clip, prefix="fleet")
    clients = [RawClient(u) for u in urls]
    try:
        for c in clients:
            c.play()
        sel = selectors.DefaultSelector()
        for c in clients:
            sel.register(c.sock, selectors.EVENT_READ, c)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            for key, _ in sel.select(0.1):
                key.data.collect(0.001)
        ssrcs = set()
        for c in clients:
            pkts = [parse_rtp(f.data) for f in c.frames if f.channel == 0]
            assert len({p.ts for p in pkts}) >= 30, "a camera delivered less than 1.2 s of video"
            ssrcs |= {p.ssrc for p in pkts}
        assert len(ssrcs) == 50, "cameras must have their own SSRCs"
        stats = server.all_stats()
        assert all(stats[f"fleet{i}"].clients == 1 for i in range(50))
    finally:
        for c in clients:
            c.close()
        for i in range(50):
            server.remove_camera(f"fleet{i}")


def test_slow_tcp_client_is_dropped_to_keyframes_and_others_are_not_slowed(
    encode: Callable[..., EncodedStream],
) -> None:
    """A client that stops reading gets its frames dropped until a keyframe; another client of the
    same camera keeps real-time pace. Broken if one slow viewer stalls a camera for everyone."""
    stream = encode("h264", 640, 360, 50, 25)
    with CameraServer(client_queue_bytes=64 * 1024, send_buffer_bytes=16 * 1024) as srv:
        url = srv.add_camera("busy", stream)
        slow = RawClient(url, rcvbuf=4096)
        slow.play()
        fast = RawClient(url)
        fast.play()
        fast.collect(0.3)
        t0 = time.monotonic()
        pkts = fast.rtp(3.0)
        elapsed = time.monotonic() - t0
        stamps = sorted({p.ts for p in pkts})
        assert (stamps[-1] - stamps[0]) / 90_000 >= 0.85 * elapsed - 0.05
        assert srv.stats("busy").frames_dropped > 0
        fast.close()
        # Frames are dropped whole, never cut inside a packet, and a gap ends at a keyframe (the
        # STAP-A with SPS and PPS that opens each one), so the slow client sees a clean GOP.
        pkts = slow.rtp(1.5)
        slow.close()
        gaps = [b for a, b in pairwise(pkts) if (b.seq - a.seq) % 65536 != 1]
        assert gaps, "the slow client must have missed frames"
        assert all(b.payload[0] & 0x1F == 24 and b.payload[3] & 0x1F == 7 for b in gaps)


def test_udp_session_times_out_without_rtcp_and_lives_with_it(
    encode: Callable[..., EncodedStream],
) -> None:
    """UDP clients that send neither requests nor RTCP are torn down after the session timeout;
    one that sends receiver reports keeps streaming. Broken if dead UDP clients are fed forever."""
    stream = encode("h264", 320, 240, 75, 25)
    with CameraServer(session_timeout_s=1) as srv:
        url = srv.add_camera("udp", stream)
        receivers = []
        for keepalive in (False, True):
            rtp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rtp_sock.bind(("127.0.0.1", 0))
            rtcp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rtcp_sock.bind(("127.0.0.1", 0))
            p1, p2 = rtp_sock.getsockname()[1], rtcp_sock.getsockname()[1]
            c = RawClient(url)
            base = c.describe().headers["content-base"]
            r = c.request(
                "SETUP", base + "trackID=0", {"Transport": f"RTP/AVP;unicast;client_port={p1}-{p2}"}
            )
            assert r.status == 200, r.raw
            assert "server_port=" in r.headers["transport"]
            c.session = r.headers["session"].split(";")[0]
            assert r.headers["session"].endswith("timeout=1")
            assert c.request("PLAY", base).status == 200
            receivers.append((keepalive, rtp_sock, rtcp_sock, c))
        server_rtcp = srv.udp_rtp_port + 1
        # Packets per client in the first 0.8 s and after 2.2 s (the timeout is 1 s).
        early = {False: 0, True: 0}
        late = {False: 0, True: 0}
        start = time.monotonic()
        while (now := time.monotonic()) < start + 3.0:
            for keepalive, rtp_sock, rtcp_sock, _ in receivers:
                rtp_sock.setblocking(False)
                try:
                    while rtp_sock.recv(2048):
                        if now < start + 0.8:
                            early[keepalive] += 1
                        elif now > start + 2.2:
                            late[keepalive] += 1
                except BlockingIOError:
                    pass
                if keepalive:  # an empty RTCP receiver report from the client's RTCP port
                    rtcp_sock.sendto(bytes.fromhex("80c9000100000001"), ("127.0.0.1", server_rtcp))
            time.sleep(0.05)
        assert early[False] > 0 and late[False] == 0, (early, late)
        assert early[True] > 0 and late[True] > 0, (early, late)
        assert srv.stats("udp").sessions_timed_out == 1
        for _, a, b, c in receivers:
            a.close()
            b.close()
            c.close()


def test_clean_shutdown_leaves_no_thread_and_no_socket(clip: EncodedStream) -> None:
    """close() ends the server thread and closes the listener and every client connection:
    broken if tests leak threads or a port stays taken."""
    before = native_threads()
    srv = CameraServer()
    assert native_threads() == before + 1
    url = srv.add_camera("bye", clip)
    c = RawClient(url)
    c.play()
    port = srv.port
    srv.close()
    srv.close()  # idempotent
    assert native_threads() == before
    assert not srv.is_running
    with pytest.raises(ConnectionClosedError):
        c.collect(2.0)
    c.close()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass
    with pytest.raises(RuntimeError, match="closed"):
        srv.cameras()


def test_remove_camera_closes_its_clients(server: CameraServer, clip: EncodedStream) -> None:
    url = server.add_camera("gone", clip)
    c = RawClient(url)
    c.play()
    server.remove_camera("gone")
    with pytest.raises(ConnectionClosedError):
        c.collect(2.0)
    c.close()
    c2 = RawClient(url)
    assert c2.request("DESCRIBE").status == 404
    c2.close()
    with pytest.raises(KeyError):
        server.remove_camera("gone")


def test_fault_api_rejects_what_it_cannot_do(
    server: CameraServer, camera: str, clip: EncodedStream
) -> None:
    name = name_of(camera)
    assert set(FAULTS) >= {"stall", "lose_packets", "live555_tool", "slowloris"}
    with pytest.raises(ValueError, match="unknown fault"):
        server.set_fault(name, "explode")
    with pytest.raises(ValueError, match="rate"):
        server.lose_packets(name, 1.5)
    with pytest.raises(ValueError, match="no camera"):
        server.stall("nobody", 1)
    with pytest.raises(ValueError, match="exists"):
        server.add_camera(name, clip)


# ---------------------------------------------------------------------------------------------
# Faults: each one's effect on the wire


def test_drop_connections_closes_the_socket(server: CameraServer, camera: str) -> None:
    c = RawClient(camera)
    c.play()
    c.collect(0.2)
    server.drop_connections(name_of(camera))
    with pytest.raises(ConnectionClosedError):
        c.collect(2.0)
    c.close()


def test_stall_stops_media_but_keeps_the_connection(server: CameraServer, camera: str) -> None:
    c = RawClient(camera)
    c.play()
    c.collect(0.3)
    server.stall(name_of(camera), 1.2)
    frames = c.collect(2.0)
    arrivals = [c.frames[-len(frames) - 1].t] + [f.t for f in frames]
    gap = max(b - a for a, b in pairwise(arrivals))
    assert 1.0 <= gap <= 1.6, gap
    assert c.request("GET_PARAMETER", camera).status == 200
    c.close()


def test_lose_packets_leaves_sequence_gaps(server: CameraServer, camera: str) -> None:
    c = RawClient(camera)
    c.play()
    c.collect(0.3)
    server.lose_packets(name_of(camera), 0.2)
    pkts = c.rtp(2.5)
    c.close()
    span = (pkts[-1].seq - pkts[0].seq) % 65536 + 1
    lost = 1 - len(pkts) / span
    assert 0.08 <= lost <= 0.35, lost
    assert server.stats(name_of(camera)).packets_lost > 0


def test_corrupt_packets_changes_payload_bytes(
    server: CameraServer, camera: str, clip: EncodedStream
) -> None:
    c = RawClient(camera)
    c.play()
    c.collect(0.3)  # the GOP burst, sent clean
    server.corrupt_packets(name_of(camera), 1.0)
    aus = h264_access_units(c.rtp(1.0))
    c.close()
    exact = {b"".join(u) for u in clip_units(clip)}
    assert len(aus) >= 20 and all(b"".join(a) not in exact for a in aus[1:])
    assert server.stats(name_of(camera)).packets_corrupted > 0


def test_timestamp_jump_moves_rtp_time(server: CameraServer, camera: str) -> None:
    name = name_of(camera)
    c = RawClient(camera)
    c.play()
    c.collect(0.3)
    server.timestamp_jump(name, 900_000)
    c.collect(0.5)
    server.timestamp_jump(name, -2_000_000)
    c.collect(0.5)
    c.close()
    pkts = [parse_rtp(f.data) for f in c.frames if f.channel == 0]
    steps = [(b.ts - a.ts) % 2**32 for a, b in pairwise(pkts)]
    assert 900_000 + 3600 in steps
    assert (3600 - 2_000_000) % 2**32 in steps


def test_sdp_without_and_with_wrong_parameter_sets(server: CameraServer, camera: str) -> None:
    name = name_of(camera)
    c = RawClient(camera)
    sdp = c.describe().body.decode()
    assert "sprop-parameter-sets=" in sdp and "packetization-mode=1" in sdp
    server.sdp_without_parameter_sets(name)
    assert "sprop-parameter-sets" not in c.describe().body.decode()
    server.sdp_without_parameter_sets(name, False)
    wrong = server.wrong_parameter_sets(name, size=(176, 144))
    sdp = c.describe().body.decode()
    sprop = re.search(r"sprop-parameter-sets=([^;\r\n]+)", sdp)
    assert sprop
    units = [base64.b64decode(u) for u in sprop.group(1).split(",")]
    assert units == wrong
    sps = vmscore.parse_sps(units[0], "h264")
    assert (sps.width, sps.height) == (176, 144)
    c.close()


def test_slow_and_partial_responses(server: CameraServer, camera: str) -> None:
    name = name_of(camera)
    c = RawClient(camera)
    normal = c.request("OPTIONS")
    server.slow_responses(name, 300)
    t0 = time.monotonic()
    assert c.request("OPTIONS").status == 200
    assert time.monotonic() - t0 >= 0.28
    server.slow_responses(name, 0)
    server.partial_responses(name, 30)
    c.send("OPTIONS")
    pieces = []
    start = time.monotonic()
    while not bytes(c.buf).endswith(b"\r\n\r\n"):
        assert c._recv(start + 5)
        pieces.append(time.monotonic())
    r = c._parse()
    assert isinstance(r, Response)
    assert r.headers["public"] == normal.headers["public"]
    assert len(pieces) >= 5 and pieces[-1] - start >= 0.1, "must arrive in pieces over time"
    c.close()


@pytest.mark.parametrize(("fault", "value"), [("slow_responses", 700), ("partial_responses", 25)])
def test_rtp_info_names_the_first_packet_even_when_play_is_answered_slowly(
    server: CameraServer, camera: str, fault: str, value: int
) -> None:
    """RTP-Info's seq and rtptime are those of the first packet the client gets, a keyframe's, even
    when a keyframe passes while the answer is on its way: broken if a slow camera's clients see
    phantom loss at start."""
    c = RawClient(camera)
    base = c.describe().headers["content-base"]
    c.setup_tcp(base)
    server.set_fault(name_of(camera), fault, value)
    r = c.request("PLAY", base, timeout=10)
    m = re.search(r"seq=(\d+);rtptime=(\d+)$", r.headers["rtp-info"])
    assert m, r.headers["rtp-info"]
    first = parse_rtp(c.collect(0.3)[0].data)
    c.close()
    assert (first.seq, first.ts) == (int(m.group(1)), int(m.group(2)))
    assert first.payload[0] & 0x1F == 24 and first.payload[3] & 0x1F == 7  # STAP-A: SPS, PPS


def test_rtcp_before_play(server: CameraServer, camera: str) -> None:
    server.rtcp_before_play(name_of(camera))
    c = RawClient(camera)
    base = c.describe().headers["content-base"]
    c.setup_tcp(base)
    c.send("PLAY", base)
    first = c.next_item(2.0)
    assert isinstance(first, Frame) and first.channel == 1 and first.data[1] == 200
    while not isinstance(item := c.next_item(2.0), Response):
        assert item is not None
    assert item.status == 200
    c.close()


def test_bogus_rtp_info_and_transport_ssrc(server: CameraServer, camera: str) -> None:
    name = name_of(camera)
    server.bogus_rtp_info(name)
    server.bogus_transport_ssrc(name)
    c = RawClient(camera)
    base = c.describe().headers["content-base"]
    setup = c.setup_tcp(base)
    m = re.search(r"ssrc=([0-9A-Fa-f]+)", setup.headers["transport"])
    assert m
    claimed = int(m.group(1), 16)
    play = c.request("PLAY", base)
    assert play.headers["rtp-info"].endswith("seq=0;rtptime=-1")
    pkts = c.rtp(0.5)
    c.close()
    assert pkts[0].seq != 0 and {p.ssrc for p in pkts} != {claimed}


def test_annexb_start_codes_inside_payloads(
    server: CameraServer, camera: str, clip: EncodedStream
) -> None:
    server.annexb_in_payload(name_of(camera))
    c = RawClient(camera)
    c.play()
    pkts = c.rtp(1.2)
    c.close()
    assert any(b"\x00\x00\x01" in p.payload for p in pkts)
    # Splitting the depacketized units at their start codes gives back the clip's NAL units.
    ref = {b"".join(u) for u in clip_units(clip)}
    for au in h264_access_units(pkts):
        nals = re.split(b"\x00\x00\x00?\x01", b"".join(au))
        assert b"".join(nals) in ref


def test_marker_on_sei_ends_packets_mid_frame(server: CameraServer, camera: str) -> None:
    server.marker_on_sei(name_of(camera))
    c = RawClient(camera)
    c.play()
    pkts = c.rtp(1.2)
    c.close()
    early = [a for a, b in pairwise(pkts) if a.marker and a.ts == b.ts]
    assert early and all(a.payload[0] & 0x1F == 24 for a in early)  # the SPS+PPS aggregate


def test_ignore_keepalives_after_play(server: CameraServer, camera: str) -> None:
    server.ignore_keepalives(name_of(camera))
    c = RawClient(camera)
    assert c.request("GET_PARAMETER").status == 200  # before PLAY it still answers
    c.play()
    for method in ("GET_PARAMETER", "OPTIONS"):
        with pytest.raises(TimeoutError):
            c.request(method, timeout=0.8)
    assert c.frames, "media keeps flowing"
    c.close()


def test_live555_stale_session_leaks_into_the_next_connection(
    server: CameraServer, camera: str
) -> None:
    name = name_of(camera)
    server.live555_tool(name, stale_s=5)
    a = RawClient(camera)
    assert "a=tool:LIVE555 Streaming Media v2013.04.08" in a.describe().body.decode()
    a.play()
    own_ssrc = {parse_rtp(f.data).ssrc for f in a.collect(0.3) if f.channel == 0}
    old_session = a.session
    a.sock.close()  # gone without TEARDOWN
    time.sleep(0.2)
    b = RawClient(camera)
    assert b.request("OPTIONS").status == 200
    leaked = b.collect(0.6)
    assert leaked, "the stale session's packets must arrive before any SETUP"
    assert {f.channel for f in leaked} == {0}
    assert {parse_rtp(f.data).ssrc for f in leaked}.isdisjoint(own_ssrc)
    assert server.stats(name).stale_sessions == 1
    assert b.request("TEARDOWN", camera, {"Session": old_session or ""}).status == 200
    b.collect(0.1)
    assert not b.collect(0.5), "TEARDOWN of the stale session must stop it"
    b.close()


def test_oversized_headers(server: CameraServer, camera: str) -> None:
    server.oversized_headers(name_of(camera), 70_000)
    c = RawClient(camera)
    r = c.request("OPTIONS")
    assert r.status == 200 and len(r.raw) >= 70_000
    assert r.headers["public"].startswith("OPTIONS")
    c.close()


def test_endless_response(server: CameraServer, camera: str) -> None:
    server.endless_response(name_of(camera))
    c = RawClient(camera)
    c.send("OPTIONS")
    deadline = time.monotonic() + 5
    while len(c.buf) < 100_000:
        assert c._recv(deadline)
    head = bytes(c.buf)
    assert head.startswith(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n")
    assert b"\r\n\r\n" not in head
    c.close()


def test_huge_body(server: CameraServer, camera: str) -> None:
    server.huge_body(name_of(camera))
    c = RawClient(camera)
    c.send("OPTIONS")
    deadline = time.monotonic() + 5
    while len(c.buf) < 20_000:
        assert c._recv(deadline)
    head, _, body = bytes(c.buf).partition(b"\r\n\r\n")
    assert b"Content-Length: 100000000" in head
    assert body and set(body) == {ord("x")}
    c.close()


def test_garbage_interleaved(server: CameraServer, camera: str) -> None:
    server.garbage_interleaved(name_of(camera), 1.0)
    c = RawClient(camera)
    c.play()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        c._recv(deadline)
    data = bytes(c.buf)
    c.close()
    kinds = set()
    i = 0
    while i + 4 <= len(data):
        if data[i] != 0x24:
            kinds.add("not framing")
            j = data.find(b"$", i)
            if j < 0:
                break
            i = j
            continue
        ch, n = data[i + 1], (data[i + 2] << 8) | data[i + 3]
        if ch >= 100:
            kinds.add("unknown channel")
        elif n < 12:
            kinds.add("too short for RTP")
        i += 4 + n
    assert kinds == {"not framing", "unknown channel", "too short for RTP"}, kinds


def test_slowloris(server: CameraServer, camera: str) -> None:
    server.slowloris(name_of(camera), 40)
    c = RawClient(camera)
    c.send("OPTIONS")
    times = []
    deadline = time.monotonic() + 5
    while len(c.buf) < 12:
        assert c._recv(deadline)
        times.append(time.monotonic())
    c.close()
    assert bytes(c.buf[:12]) == b"RTSP/1.0 200"
    assert len(times) >= 10 and times[-1] - times[0] >= 0.3, "one byte at a time, slowly"


# ---------------------------------------------------------------------------------------------
# vmscore sim serve


def test_cli_serve_prints_urls_serves_and_stops_on_sigint(tmp_path: Path) -> None:
    """'vmscore sim serve' prints one URL per camera (no credentials in them), serves FFmpeg,
    and exits 0 on Ctrl-C: broken if the demo or a benchmark cannot start or stop cameras."""
    args = ["sim", "serve", "--cameras", "3", "--seconds", "2", "--size", "320x240"]
    args += ["--port", "0", "--auth", "admin:pw"]
    with (
        open(tmp_path / "stderr.txt", "w+") as err,
        subprocess.Popen(
            [sys.executable, "-c", "from vmscore.cli import main; main()", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        ) as proc,
    ):
        try:
            assert proc.stdout is not None
            urls: list[str] = []
            notes: list[str] = []
            while not any("Ctrl-C" in n for n in notes):
                line = proc.stdout.readline()
                assert line, (tmp_path / "stderr.txt").read_text()
                (urls if line.startswith("rtsp://") else notes).append(line.strip())
            assert len(urls) == 3 and all("@" not in u for u in urls)
            assert any("admin" in n for n in notes)
            probe = ffprobe_json(urls[1].replace("rtsp://", "rtsp://admin:pw@"), "-show_streams")
            assert probe.returncode == 0, probe.stderr
            assert json.loads(probe.stdout)["streams"][0]["width"] == 320
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0, (tmp_path / "stderr.txt").read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_served_clip_directory(tmp_path: Path, server: CameraServer) -> None:
    """A clip written by 'vmscore sim write' is served with its sub-stream."""
    from vmscore.sim import write_clip

    write_clip(tmp_path / "c", "corridor", 1.0, main=(160, 96), sub=(96, 64), fps=10)
    url = server.add_camera("fromdir", tmp_path / "c")
    try:
        proc = ffprobe_json(url + "/sub", "-show_streams")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["streams"][0]["width"] == 96
    finally:
        server.remove_camera("fromdir")


def test_start_offsets_spread_cameras(server: CameraServer, clip: EncodedStream) -> None:
    """add_cameras spreads cameras over the clip, so their keyframes do not leave together."""
    urls = server.add_cameras(4, clip, prefix="spread")
    try:
        firsts = []
        for u in urls:
            c = RawClient(u)
            c.play()
            pkts = c.rtp(0.2)
            c.close()
            firsts.append(len(h264_access_units(pkts)))
        assert len(set(firsts)) == 4, firsts  # different GOP positions: different burst sizes
    finally:
        for i in range(4):
            server.remove_camera(f"spread{i}")
