"""The RTP layer: packet and RTCP parsing, sequence tracking, the reorder window, H.264 / H.265 /
AAC / G.711 depacketization with the camera quirks it tolerates, the packetizer, and the timeline.

Peers: FFmpeg's RTP muxer (its packets, pushed to a minimal RTSP server in this file with RTP
interleaved over TCP, must depacketize to the original access units), FFmpeg's RTP demuxer (pulling
our packetizer's packets the same way, it must rebuild the original stream) and PyAV's decoder
(depacketized access units decode to the same pictures)."""

from __future__ import annotations

import base64
import itertools
import random
import re
import socket
import struct
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vmscore
from conftest import Codec, decode_luma, encoded, es_format
from vmscore import _core
from vmscore.sim.encode import EncodedStream

PT = 96
FFMPEG = "ffmpeg"


# --------------------------------------------------------------------------------------------
# Helpers


def rtp(
    payload: bytes, seq: int, ts: int, marker: bool = False, pt: int = PT, ssrc: int = 0x1234
) -> bytes:
    """A version-2 RTP packet with no CSRC, extension or padding."""
    return (
        struct.pack(">BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts, ssrc) + payload
    )


def split_rtp(packet: bytes) -> tuple[bytes, bytes]:
    """(12-byte header, payload) of a packet this file built."""
    return packet[:12], packet[12:]


def renumber(packets: Iterable[bytes], first: int = 0) -> list[bytes]:
    out = []
    for i, p in enumerate(packets):
        out.append(p[:2] + struct.pack(">H", (first + i) & 0xFFFF) + p[4:])
    return out


def nal_list(annexb: bytes, codec: Codec) -> list[bytes]:
    return [annexb[u.offset : u.offset + u.size] for u in vmscore.nal_units(annexb, codec)]


def avcc(nals: Iterable[bytes]) -> bytes:
    return b"".join(struct.pack(">I", len(n)) + n for n in nals)


def nal_type(nal: bytes, codec: Codec) -> int:
    return nal[0] & 0x1F if codec == "h264" else (nal[0] >> 1) & 0x3F


def packetize(stream: EncodedStream, max_payload: int = 1200, **kw: object) -> list[bytes]:
    p = _core.RtpPacketizer(stream.codec, max_payload, **kw)  # type: ignore[arg-type]
    return [pkt for f in stream.frames for pkt in p.packetize(f.data, f.pts_90k)]


def depacketize(
    codec: str,
    packets: Iterable[bytes],
    parameter_sets: Iterable[bytes] = (),
    lost: Callable[[int], int] | None = None,
    **kw: object,
) -> tuple[list[_core.RtpAccessUnit], _core.RtpDepacketizer]:
    d = _core.RtpDepacketizer(codec, tuple(parameter_sets), **kw)  # type: ignore[arg-type]
    out: list[_core.RtpAccessUnit] = []
    for i, p in enumerate(packets):
        out += d.push(p, lost(i) if lost else 0)
    return out, d


def expected_units(stream: EncodedStream) -> list[bytes]:
    return [vmscore.annexb_to_avcc(f.data) for f in stream.frames]


def decode_units(codec: Codec, units: Iterable[bytes]) -> list[np.ndarray]:
    return decode_luma(b"".join(vmscore.avcc_to_annexb(u) for u in units), es_format(codec))


def assert_same_pictures(codec: Codec, got: list[bytes], want: list[bytes]) -> None:
    a, b = decode_units(codec, got), decode_units(codec, want)
    assert len(a) == len(b) > 0
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


class RtspConnection:
    """The server side of one RTSP connection with RTP interleaved on it (RFC 2326 §10.12): just
    enough of RTSP to let FFmpeg push (ANNOUNCE, RECORD) or pull (DESCRIBE, PLAY) one stream over
    TCP, which, unlike loopback UDP, never drops a packet on a busy machine."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.file = conn.makefile("rb")

    def read(self) -> tuple[str, dict[str, str], bytes] | tuple[int, bytes] | None:
        """The next request (method, headers, body) or interleaved frame (channel, data)."""
        first = self.file.read(1)
        if not first:
            return None
        if first == b"$":
            channel, size = struct.unpack(">BH", self.file.read(3))
            return channel, self.file.read(size)
        line = first + self.file.readline()
        headers = {}
        while (h := self.file.readline()) not in (b"\r\n", b""):
            key, _, value = h.decode().partition(":")
            headers[key.strip().lower()] = value.strip()
        body = self.file.read(int(headers.get("content-length", "0")))
        return line.split()[0].decode(), headers, body

    def reply(self, headers: dict[str, str], extra: str = "", body: bytes = b"") -> None:
        length = f"Content-Length: {len(body)}\r\n" if body else ""
        head = f"RTSP/1.0 200 OK\r\nCSeq: {headers['cseq']}\r\nSession: 1\r\n{extra}{length}\r\n"
        self.conn.sendall(head.encode() + body)


def ffmpeg_rtsp(args: list[str], serve: Callable[[RtspConnection], None]) -> str:
    """Runs ffmpeg against a one-connection RTSP server on loopback; returns ffmpeg's stderr."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(60)
        url = f"rtsp://127.0.0.1:{server.getsockname()[1]}/stream"
        cmd = [FFMPEG, "-v", "error", *[url if a == "URL" else a for a in args]]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            conn, _ = server.accept()
            with conn:
                serve(RtspConnection(conn))
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return err


def ffmpeg_rtp_capture(args: list[str]) -> tuple[list[bytes], str]:
    """The RTP packets and the SDP of FFmpeg's RTP muxer, pushing `args`' input over RTSP/TCP."""
    packets: list[bytes] = []
    sdp = ""

    def serve(c: RtspConnection) -> None:
        nonlocal sdp
        while (item := c.read()) is not None:
            if len(item) == 2:
                channel, data = item
                if channel == 0:
                    packets.append(data)
                continue
            method, headers, body = item
            if method == "ANNOUNCE":
                sdp = body.decode()
            transport = f"Transport: {headers['transport']}\r\n" if method == "SETUP" else ""
            c.reply(headers, transport)
            if method == "TEARDOWN":
                return

    ffmpeg_rtsp([*args, "-f", "rtsp", "-rtsp_transport", "tcp", "URL"], serve)
    return packets, sdp


def ffmpeg_rtp_receive(packets: list[bytes], sdp_media: str, out_args: list[str]) -> None:
    """FFmpeg's RTP demuxer pulling `packets` from us over RTSP/TCP, writing `out_args`."""

    def serve(c: RtspConnection) -> None:
        while (item := c.read()) is not None:
            if len(item) == 2:
                continue  # RTCP receiver reports
            method, headers, _ = item
            if method == "DESCRIBE":
                sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=vmscore\r\nt=0 0\r\n" + sdp_media
                c.reply(headers, "Content-Type: application/sdp\r\n", sdp.encode())
            elif method == "SETUP":
                c.reply(headers, f"Transport: {headers['transport']}\r\n")
            else:
                c.reply(headers)
            if method == "PLAY":
                for p in packets:
                    c.conn.sendall(struct.pack(">BBH", 0x24, 0, len(p)) + p)
                return  # closing the connection ends the stream

    ffmpeg_rtsp(["-rtsp_transport", "tcp", "-i", "URL", *out_args], serve)


def assert_consecutive(packets: list[bytes]) -> None:
    seqs = [_core.parse_rtp(p).sequence for p in packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))


def sprop_units(sdp: str) -> list[bytes]:
    units = []
    for key in ("sprop-parameter-sets", "sprop-vps", "sprop-sps", "sprop-pps"):
        m = re.search(rf"{key}=([^;\s]+)", sdp)
        if m:
            units += [base64.b64decode(v) for v in m.group(1).split(",") if v]
    return units


def small(codec: Codec) -> EncodedStream:
    return encoded(codec, 320, 240, 30, 10)


# --------------------------------------------------------------------------------------------
# RTP packets


def test_rtp_header_fields_csrc_extension_and_padding_are_parsed() -> None:
    # Breaks the engine's SSRC checks, and depacketizing of senders that add RFC 8285 header
    # extensions, CSRCs or padding.
    ext = struct.pack(">HH", 0xBEDE, 2) + bytes([0x10, 0xAA, 0x21, 0xBB, 0xCC, 0, 0, 0])
    payload = b"\x65hello"
    pkt = (
        struct.pack(">BBHII", 0x80 | 0x20 | 0x10 | 2, 0x80 | 97, 65535, 0xDEADBEEF, 7)
        + struct.pack(">II", 11, 12)
        + ext
        + payload
        + b"\x00\x00\x03"
    )
    p = _core.parse_rtp(pkt)
    assert (p.marker, p.payload_type, p.sequence, p.timestamp, p.ssrc) == (
        True,
        97,
        65535,
        0xDEADBEEF,
        7,
    )
    assert p.csrcs == [11, 12]
    assert p.extension_profile == 0xBEDE and p.extension == ext[4:]
    assert p.padding == 3 and p.payload == payload
    plain = _core.parse_rtp(rtp(b"", 1, 2))
    assert plain.extension is None and plain.extension_profile is None and plain.payload == b""


@pytest.mark.parametrize(
    ("packet", "why"),
    [
        (b"\x80\x60\x00", "shorter"),
        (b"\x40" + bytes(11), "version"),
        (b"\xa0" + bytes(11), "padding"),  # padding count 0
        (b"\xa0" + bytes(10) + b"\x05", "padding"),  # longer than the packet
        (b"\x82" + bytes(11) + b"\x00\x00\x00\x01", "CSRC"),
        (b"\x90" + bytes(11) + b"\xbe\xde\x00\x02\x00\x00\x00\x00", "extension"),
        (b"\x90" + bytes(11) + b"\xbe\xde", "extension"),
    ],
)
def test_malformed_rtp_packets_are_rejected(packet: bytes, why: str) -> None:
    # Breaks if hostile packets are read out of bounds or accepted with a wrong payload.
    with pytest.raises(vmscore.BitstreamError, match=why):
        _core.parse_rtp(packet)


# --------------------------------------------------------------------------------------------
# Round trips with real streams


@pytest.mark.parametrize(
    ("codec", "width", "height", "frames", "gop", "bframes", "max_payload"),
    [
        ("h264", 320, 240, 30, 10, 0, 1200),
        ("h264", 320, 240, 50, 10, 2, 500),
        ("h265", 320, 240, 30, 10, 0, 1200),
        ("h265", 320, 240, 50, 10, 2, 300),
        ("h264", 1920, 1080, 8, 8, 0, 400),
        ("h265", 1920, 1080, 8, 8, 0, 400),
    ],
)
def test_own_packetizer_round_trip_gives_the_original_access_units(
    codec: Codec, width: int, height: int, frames: int, gop: int, bframes: int, max_payload: int
) -> None:
    # Breaks recording of any camera: the depacketized access units must be the encoder's, byte
    # for byte, and decode to the same pictures.
    stream = encoded(codec, width, height, frames, gop, bframes)
    packets = packetize(stream, max_payload)
    assert all(len(p) <= 12 + max_payload for p in packets)
    first = _core.parse_rtp(packets[0]).payload
    aggregate = 24 if codec == "h264" else 48
    assert nal_type(first, codec) == aggregate  # parameter sets (and SEI) share one packet
    fragments = [p for p in packets if nal_type(_core.parse_rtp(p).payload, codec) in (28, 49)]
    if width == 1920:
        key_packets = len(
            _core.RtpPacketizer(codec, max_payload).packetize(stream.frames[0].data, 0)
        )
        assert key_packets > 300  # one 1080p keyframe spans hundreds of fragments
    assert fragments
    units, d = depacketize(codec, packets, payload_type=PT)
    want = expected_units(stream)
    assert [u.data for u in units] == want
    assert [u.rtp_timestamp for u in units] == [f.pts_90k & 0xFFFFFFFF for f in stream.frames]
    assert [u.keyframe for u in units] == [f.is_keyframe for f in stream.frames]
    assert not any(u.gap for u in units)
    assert [u.parameter_sets_changed for u in units] == [i == 0 for i in range(len(units))]
    assert d.stats["errors"] == 0 and d.stats["dropped_frames"] == 0
    assert d.parameter_sets == vmscore.parameter_sets(stream.frames[0].data, codec)
    if width != 1920:
        assert_same_pictures(codec, [u.data for u in units], want)


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_packetizer_modes_single_nal_and_no_aggregation(codec: Codec) -> None:
    # Breaks the simulator's packetization-mode=0 cameras (Hikvision) and the mode-1 fallback.
    stream = small(codec)
    plain = packetize(stream, 1200, aggregate=False)
    assert all(nal_type(_core.parse_rtp(p).payload, codec) not in (24, 48) for p in plain)
    assert [u.data for u in depacketize(codec, plain)[0]] == expected_units(stream)
    big = 1 << 15
    mode0 = packetize(stream, big, single_nal_only=True, aggregate=False)
    kinds = {nal_type(_core.parse_rtp(p).payload, codec) for p in mode0}
    assert not kinds & {24, 28, 48, 49}
    assert [u.data for u in depacketize(codec, mode0)[0]] == expected_units(stream)
    with pytest.raises(vmscore.MuxError, match="single NAL unit mode"):
        _core.RtpPacketizer(codec, 100, single_nal_only=True).packetize(stream.frames[0].data, 0)
    with pytest.raises(ValueError, match="max_payload_size"):
        _core.RtpPacketizer(codec, 4)
    seq = _core.RtpPacketizer(codec, 1200, sequence=65534, ssrc=9, payload_type=100)
    pkts = [_core.parse_rtp(p) for p in seq.packetize(stream.frames[0].data, 77)]
    assert [p.sequence for p in pkts] == [(65534 + i) & 0xFFFF for i in range(len(pkts))]
    assert {(p.ssrc, p.payload_type, p.timestamp) for p in pkts} == {(9, 100, 77)}
    assert [p.marker for p in pkts] == [False] * (len(pkts) - 1) + [True]


@pytest.mark.parametrize(("codec", "size"), [("h264", (1920, 1080)), ("h265", (320, 240))])
def test_ffmpeg_rtp_muxer_packets_depacketize_to_the_original_access_units(
    tmp_path: Path, codec: Codec, size: tuple[int, int]
) -> None:
    # Breaks ingest of real senders: FFmpeg's muxer (STAP-A/AP, FU-A/FU, SDP parameter sets) is an
    # independent implementation of RFC 6184 / RFC 7798.
    width, height = size
    stream = encoded(codec, width, height, 8, 8) if width == 1920 else small(codec)
    es = tmp_path / "in.es"
    es.write_bytes(stream.annexb())
    packets, sdp = ffmpeg_rtp_capture(
        ["-f", es_format(codec), "-framerate", "25", "-i", str(es), "-c", "copy"]
    )
    assert_consecutive(packets)
    kinds = {nal_type(_core.parse_rtp(p).payload, codec) for p in packets}
    assert kinds >= ({24, 28} if codec == "h264" else {48, 49})
    units, d = depacketize(codec, packets, sprop_units(sdp), payload_type=PT)
    want = expected_units(stream)
    assert [u.data for u in units] == want
    assert [u.keyframe for u in units] == [f.is_keyframe for f in stream.frames]
    ts = [u.rtp_timestamp for u in units]
    assert [(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(ts)] == [3600] * (len(ts) - 1)
    assert d.stats["errors"] == 0 and d.stats["sdp_parameter_sets_rejected"] == 0
    # The SDP's parameter sets equal the in-band ones: nothing changes after the first unit.
    assert [u.parameter_sets_changed for u in units] == [i == 0 for i in range(len(units))]
    if width != 1920:
        assert_same_pictures(codec, [u.data for u in units], want)


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_ffmpeg_rtp_demuxer_reads_our_packetizer_back(tmp_path: Path, codec: Codec) -> None:
    # Breaks the camera simulator: an independent receiver must rebuild the stream from our
    # packets (aggregation, fragmentation, markers, timestamps).
    stream = small(codec)
    packets = packetize(stream, 1000)
    name = "H264" if codec == "h264" else "H265"
    media = f"m=video 0 RTP/AVP {PT}\r\na=rtpmap:{PT} {name}/90000\r\na=control:track0\r\n"
    if codec == "h264":
        media += f"a=fmtp:{PT} packetization-mode=1\r\n"
    out = tmp_path / "out.es"
    ffmpeg_rtp_receive(packets, media, ["-c", "copy", "-f", es_format(codec), "-y", str(out)])
    got = out.read_bytes()
    aus = vmscore.access_units(got, codec)
    assert [vmscore.annexb_to_avcc(got[o : o + n]) for o, n, _ in aus] == expected_units(stream)


# --------------------------------------------------------------------------------------------
# Camera quirks


def keyframe_nals(codec: Codec) -> tuple[EncodedStream, list[bytes]]:
    stream = small(codec)
    return stream, nal_list(stream.frames[0].data, codec)


def single(nal: bytes, seq: int, ts: int, marker: bool = False) -> bytes:
    return rtp(nal, seq, ts, marker)


def aggregate(codec: Codec, units: list[bytes]) -> bytes:
    head = bytes([24]) if codec == "h264" else bytes([48 << 1, 1])
    return head + b"".join(struct.pack(">H", len(u)) + u for u in units)


def fragments(codec: Codec, nal: bytes, size: int, type_override: int | None = None) -> list[bytes]:
    """FU-A / FU payloads of one NAL unit, `size` data bytes each."""
    if codec == "h264":
        head, body = nal[:1], nal[1:]
        t = nal[0] & 0x1F if type_override is None else type_override
        ind = bytes([(nal[0] & 0xE0) | 28])
    else:
        head, body = nal[:2], nal[2:]
        t = (nal[0] >> 1) & 0x3F if type_override is None else type_override
        ind = bytes([(nal[0] & 0x81) | (49 << 1), nal[1]])
    del head
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    out = []
    for i, c in enumerate(chunks):
        se = (0x80 if i == 0 else 0) | (0x40 if i == len(chunks) - 1 else 0)
        out.append(ind + bytes([se | t]) + c)
    return out


def rest_of_stream(stream: EncodedStream, first_seq: int) -> list[bytes]:
    p = _core.RtpPacketizer(stream.codec, 1200, sequence=first_seq)
    return [pkt for f in stream.frames[1:] for pkt in p.packetize(f.data, f.pts_90k)]


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_annexb_start_codes_inside_single_aggregated_and_fragmented_payloads(codec: Codec) -> None:
    # V380 and other cameras put Annex-B start codes inside RTP payloads; without splitting them
    # the length-prefixed output holds one bogus NAL unit and no decoder can read the picture.
    stream, nals = keyframe_nals(codec)
    ps, sei, vcl = nals[:-2], nals[-2], nals[-1]
    sc = b"\x00\x00\x00\x01"
    payloads = [b"".join(sc + n for n in ps)]  # a whole Annex-B run in one packet
    payloads += fragments(codec, sei + sc + vcl, 700)  # one fragmented unit holding two
    pkts = [rtp(pl, i, 0, i == len(payloads) - 1) for i, pl in enumerate(payloads)]
    units, d = depacketize(codec, pkts + rest_of_stream(stream, len(pkts)))
    assert [u.data for u in units] == expected_units(stream)
    assert d.stats["annexb_payloads"] == 2 and d.stats["errors"] == 0
    # An aggregation packet whose first unit holds two parameter sets (3-byte start code).
    agg = aggregate(codec, [ps[0] + b"\x00\x00\x01" + ps[1], *ps[2:], sei])
    pkts = [rtp(agg, 0, 0), rtp(vcl, 1, 0, True)]
    units, d = depacketize(codec, pkts)
    assert [u.data for u in units] == [avcc(nals)]
    assert d.stats["annexb_payloads"] == 1 and d.stats["errors"] == 0


def unmarked(header: bytes) -> bytes:
    return header[:1] + bytes([header[1] & 0x7F]) + header[2:]


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_fu_type_changes_reserved_bits_and_empty_fragments_are_tolerated(codec: Codec) -> None:
    # Tiandy cameras change the FU type mid-unit, others set the FU-A reserved bit or send empty
    # fragments: each must still give the original picture (retina 0.4.14, 0.4.17).
    stream = small(codec)
    at = 1 if codec == "h264" else 2  # the FU header's offset in the payload
    mask = 0x1F if codec == "h264" else 0x3F
    out = []
    for p in packetize(stream, 300):
        head, pl = split_rtp(p)
        if nal_type(pl, codec) not in (28, 49):
            out.append(p)
            continue
        fu, body = pl[at], pl[at + 1 :]
        if codec == "h264":
            fu |= 0x20  # the reserved bit
        if not fu & 0x80:
            fu = (fu & ~mask & 0xFF) | (1 if fu & mask != 1 else 5)  # another type
        if fu & 0x80:
            out.append(head + pl[:at] + bytes([fu]) + body)
            out.append(unmarked(head) + pl[:at] + bytes([fu & 0x3F]))  # empty middle fragment
        elif fu & 0x40:
            out.append(unmarked(head) + pl[:at] + bytes([fu & ~0x40 & 0xFF]) + body)
            out.append(head + pl[:at] + bytes([fu]))  # an empty end fragment
        else:
            out.append(head + pl[:at] + bytes([fu]) + body)
    units, d = depacketize(codec, renumber(out))
    assert [u.data for u in units] == expected_units(stream)
    s = d.stats
    assert s["fu_type_changes"] > 0 and s["empty_fragments"] > 0 and s["errors"] == 0
    assert s["fu_reserved_bits"] > 0 or codec == "h265"


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_marker_on_sei_and_parameter_sets_does_not_end_the_access_unit(codec: Codec) -> None:
    # LV-IP22IR40DVBL and others set the marker on SEI / SPS / PPS: ending the access unit there
    # would split one picture into a headless slice and a picture-less "frame".
    stream, nals = keyframe_nals(codec)
    pkts = [single(n, i, 0, marker=True) for i, n in enumerate(nals[:-1])]
    pkts += [rtp(pl, len(pkts) + i, 0) for i, pl in enumerate(fragments(codec, nals[-1], 1000))]
    pkts[-1] = pkts[-1][:1] + bytes([pkts[-1][1] | 0x80]) + pkts[-1][2:]
    pkts += rest_of_stream(stream, len(pkts))
    units, d = depacketize(codec, pkts)
    assert [u.data for u in units] == expected_units(stream)
    assert d.stats["marker_not_at_end"] == len(nals) - 1


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_timestamp_changing_mid_access_unit_extends_it(codec: Codec) -> None:
    # Reolink and others send the parameter sets with another timestamp than the slices of the
    # same picture; the picture keeps the slices' timestamp.
    stream, nals = keyframe_nals(codec)
    pkts = [single(n, i, 0xFFFFF000 + i) for i, n in enumerate(nals[:-1])]
    pkts += [single(nals[-1], len(pkts), 0, marker=True)]
    pkts += rest_of_stream(stream, len(pkts))
    units, d = depacketize(codec, pkts)
    assert [u.data for u in units] == expected_units(stream)
    assert units[0].rtp_timestamp == 0
    assert d.stats["timestamp_changes_mid_au"] == len(nals) - 1


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_new_timestamp_without_marker_completes_the_previous_access_unit(codec: Codec) -> None:
    # Cameras that never set the marker: each unit is delivered when the next one starts.
    stream = small(codec)
    packets = [p[:1] + bytes([p[1] & 0x7F]) + p[2:] for p in packetize(stream)]
    units, _ = depacketize(codec, packets)
    assert [u.data for u in units] == expected_units(stream)[:-1]


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_duplicates_and_other_payload_types_are_dropped(codec: Codec) -> None:
    # Geovision sends payload type 50 packets inside the video stream and networks duplicate
    # packets; neither may reach (or corrupt) the access units.
    stream = small(codec)
    packets = packetize(stream, 500)
    rng = random.Random(3)
    noisy: list[bytes] = []
    junk = 0
    for p in packets:
        noisy.append(p)
        if rng.random() < 0.2:
            noisy.append(p)  # a duplicate
        if rng.random() < 0.1:
            noisy.append(rtp(rng.randbytes(40), rng.randrange(65536), 5, True, pt=50))
            junk += 1
    tracker = _core.SequenceTracker()
    delivered = []
    for p in noisy:
        header = _core.parse_rtp(p)
        if header.payload_type != PT:
            delivered.append((p, 0))  # another stream's packet: the depacketizer filters it
            continue
        event, lost = tracker.update(header.sequence)
        if event in ("first", "in_order", "restart"):
            delivered.append((p, lost))
    d = _core.RtpDepacketizer(codec, payload_type=PT)
    units = [u for p, lost in delivered for u in d.push(p, lost)]
    assert [u.data for u in units] == expected_units(stream)
    assert tracker.duplicates == len(noisy) - len(packets) - junk
    assert d.stats["ignored_packets"] == junk and d.stats["lost_packets"] == 0
    # A duplicate right after its original is dropped even without the tracker.
    units, d = depacketize(codec, noisy, payload_type=PT)
    assert [u.data for u in units] == expected_units(stream)
    assert d.stats["repeated_packets"] == len(noisy) - len(packets) - junk


def test_unsupported_interleaved_packets_are_counted_and_the_stream_recovers() -> None:
    # Breaks clearly (an error count and a message) instead of emitting garbage for cameras in
    # packetization-mode 2, and must not stop the stream that follows.
    stream = small("h264")
    bad = [
        rtp(bytes([t]) + b"\x00\x10" + bytes(16), i, 1, True)
        for i, t in enumerate((25, 26, 27, 29))
    ]
    units, d = depacketize("h264", bad + renumber(packetize(stream), 4))
    assert d.stats["unsupported_packets"] == 4 and "not supported" in d.last_error
    assert [u.data for u in units] == expected_units(stream)
    units, d = depacketize("h265", [rtp(bytes([50 << 1, 1, 0, 0]), 0, 0, True)])
    assert units == [] and d.stats["unsupported_packets"] == 1


# --------------------------------------------------------------------------------------------
# Parameter sets


def strip_parameter_sets(stream: EncodedStream) -> list[bytes]:
    kinds = {"vps", "sps", "pps"}
    out = []
    for f in stream.frames:
        keep = [u for u in vmscore.nal_units(f.data, stream.codec) if u.kind not in kinds]
        out.append(
            b"".join(b"\x00\x00\x00\x01" + f.data[u.offset : u.offset + u.size] for u in keep)
        )
    return out


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_parameter_sets_from_the_sdp_or_in_band_with_in_band_winning(codec: Codec) -> None:
    # Breaks the fMP4 init segment: cameras without in-band parameter sets need the SDP's; cameras
    # whose SDP lies (stale resolution, junk, start codes) need the stream's.
    stream = small(codec)
    truth = vmscore.parameter_sets(stream.frames[0].data, codec)
    bare = strip_parameter_sets(stream)
    p = _core.RtpPacketizer(codec, 1200)
    bare_packets = [
        x for f, data in zip(stream.frames, bare, strict=True) for x in p.packetize(data, f.pts_90k)
    ]

    units, d = depacketize(codec, bare_packets)
    assert units == [] and d.stats["dropped_waiting_parameter_sets"] == len(stream.frames)

    wrapped = [b"\x00\x00\x00\x01" + u for u in truth]
    units, d = depacketize(codec, bare_packets, [b"junk\x80", *wrapped])
    assert [u.data for u in units] == [vmscore.annexb_to_avcc(x) for x in bare]
    assert d.parameter_sets == truth and d.stats["sdp_parameter_sets_rejected"] == 1
    assert units[0].parameter_sets_changed and not any(u.parameter_sets_changed for u in units[1:])

    liar = vmscore.parameter_sets(encoded(codec, 640, 480, 2, 2).frames[0].data, codec)
    units, d = depacketize(codec, packetize(stream), liar)
    assert d.parameter_sets == truth
    assert [u.data for u in units] == expected_units(stream)


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_resolution_change_sets_parameter_sets_changed_once(codec: Codec) -> None:
    # Breaks recording across a camera's resolution change: the engine starts a new fMP4 file
    # (init segment) exactly when the parameter sets change.
    a, b = encoded(codec, 320, 240, 10, 10), encoded(codec, 352, 288, 10, 10)
    p = _core.RtpPacketizer(codec, 1200)
    packets = [x for f in a.frames for x in p.packetize(f.data, f.pts_90k)]
    packets += [x for f in b.frames for x in p.packetize(f.data, f.pts_90k + 36000)]
    units, d = depacketize(codec, packets)
    assert [u.parameter_sets_changed for u in units] == [i in (0, 10) for i in range(20)]
    assert d.parameter_sets == vmscore.parameter_sets(b.frames[0].data, codec)
    old, new = (vmscore.parameter_sets(s.frames[0].data, codec) for s in (a, b))
    assert [u.parameter_sets for u in units] == [old] * 10 + [new] * 10


# --------------------------------------------------------------------------------------------
# Loss, start mid-stream, reordering


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_first_delivered_unit_is_a_keyframe_when_joining_mid_stream(codec: Codec) -> None:
    # Breaks recordings that start with undecodable frames (a UDP session joined mid-GOP).
    stream = small(codec)
    packets = packetize(stream, 400)
    start = len(packets) // 5 + 1  # inside the first GOP, probably inside a fragmented unit
    units, d = depacketize(codec, packets[start:])
    assert units[0].keyframe and not units[0].gap
    first = next(i for i, f in enumerate(stream.frames) if f.pts_90k == units[0].rtp_timestamp)
    assert [u.data for u in units] == expected_units(stream)[first:]
    assert d.stats["dropped_frames"] >= 1


@pytest.mark.parametrize(("codec", "bframes"), [("h264", 0), ("h265", 0), ("h264", 2)])
def test_random_loss_resumes_at_the_next_keyframe_with_gap_and_nothing_corrupt(
    codec: Codec, bframes: int
) -> None:
    # Breaks recordings after packet loss: a unit with a missing packet, or a unit that depends
    # on one, must never be emitted; the next delivered unit is a keyframe marked as a gap.
    stream = encoded(codec, 320, 240, 60, 10, bframes)
    packets = packetize(stream, 300)
    by_ts = {f.pts_90k: (i, vmscore.annexb_to_avcc(f.data)) for i, f in enumerate(stream.frames)}
    # Which frame each packet belongs to.
    owner = [
        i
        for i, f in enumerate(stream.frames)
        for _ in _core.RtpPacketizer(codec, 300).packetize(f.data, 0)
    ]
    rng = random.Random(11)
    # Random loss, plus one sure loss inside the P frames of GOPs 1 and 3, while the keyframes of
    # GOPs 2 and 4 arrive whole: the stream must resume there.
    sure = {owner.index(15) + 1, owner.index(35)}
    safe = {i for i, f in enumerate(owner) if f in (20, 40)} | {0, len(packets) - 1}
    kept = [
        p for i, p in enumerate(packets) if i in safe or (i not in sure and rng.random() > 0.02)
    ]
    tracker = _core.SequenceTracker()
    d = _core.RtpDepacketizer(codec)
    units = []
    for p in kept:
        _, lost = tracker.update(_core.parse_rtp(p).sequence)
        units += d.push(p, lost)
    assert tracker.lost == len(packets) - len(kept)
    assert units and units[0].keyframe
    indices = []
    for u in units:
        index, want = by_ts[u.rtp_timestamp]
        assert u.data == want
        indices.append(index)
        if u.gap:
            assert u.keyframe and (u.lost_packets > 0 or u.dropped_frames > 0)
    assert any(u.gap for u in units)
    assert indices == sorted(indices)
    assert d.stats["lost_packets"] == tracker.lost
    # What was delivered decodes exactly as those pictures decode in the complete stream.
    if bframes == 0:
        full = decode_units(codec, expected_units(stream))
        got = decode_units(codec, [u.data for u in units])
        assert all(np.array_equal(full[i], g) for i, g in zip(indices, got, strict=True))


def test_loss_inside_an_access_unit_drops_it_and_the_rest_of_the_gop() -> None:
    stream = small("h264")
    packets = packetize(stream, 300)
    # Lose the second packet of frame 3 (a P frame): frames 3..9 are dropped, 10 resumes.
    p = _core.RtpPacketizer("h264", 300)
    counts = [len(p.packetize(f.data, 0)) for f in stream.frames]
    drop = sum(counts[:3]) + 1
    assert counts[3] >= 2
    kept = packets[:drop] + packets[drop + 1 :]
    units, d = depacketize("h264", kept, lost=lambda i: 1 if i == drop else 0)
    ts = [u.rtp_timestamp for u in units]
    want = [f.pts_90k for f in stream.frames[:3]] + [f.pts_90k for f in stream.frames[10:]]
    assert ts == want
    resumed = units[3]
    assert resumed.gap and resumed.keyframe and resumed.lost_packets == 1
    assert resumed.dropped_frames == 7
    assert d.stats["dropped_waiting_keyframe"] == 6


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_reorder_window_restores_order_and_skips_gaps_after_the_delay(codec: Codec) -> None:
    # Breaks UDP ingest: reordered packets must be put back; a packet that never comes must not
    # hold the stream back longer than the configured delay.
    stream = small(codec)
    packets = packetize(stream, 300)
    rng = random.Random(5)
    shuffled = list(packets)
    for i in range(0, len(shuffled) - 4, 3):
        window = shuffled[i : i + 4]
        rng.shuffle(window)
        shuffled[i : i + 4] = window
    w = _core.ReorderWindow(capacity=16, max_delay_us=50_000)
    d = _core.RtpDepacketizer(codec)
    units = []
    for n, p in enumerate(shuffled):
        for pkt, lost in w.push(p, n * 100):
            units += d.push(pkt, lost)
    for pkt, lost in w.flush():
        units += d.push(pkt, lost)
    assert [u.data for u in units] == expected_units(stream)
    assert w.stats["reordered"] > 0 and w.stats["lost"] == 0 and w.held == 0

    # One packet of frame 12 never arrives: the packets behind it wait max_delay_us, then go.
    sizer = _core.RtpPacketizer(codec, 300)
    counts = [len(sizer.packetize(f.data, 0)) for f in stream.frames]
    missing = sum(counts[:12])  # the first packet of frame 12
    w = _core.ReorderWindow(capacity=1024, max_delay_us=50_000)
    d = _core.RtpDepacketizer(codec)
    units = []
    released = 0
    for n, pkt in enumerate(packets):
        if n == missing:
            continue
        out = w.push(pkt, 1000 + n)
        released += len(out)
        for x, lost in out:
            units += d.push(x, lost)
    assert (
        w.held == len(packets) - missing - 1 and w.next_deadline_us == 1000 + missing + 1 + 50_000
    )
    assert w.poll(1000 + missing + 50_000) == []
    late = w.poll(1000 + missing + 1 + 50_000)
    assert late[0][1] == 1 and len(late) == len(packets) - missing - 1
    for x, lost in late:
        units += d.push(x, lost)
    assert w.stats["lost"] == 1 and w.next_deadline_us is None
    assert [u.rtp_timestamp for u in units] == [
        f.pts_90k for i, f in enumerate(stream.frames) if i < 12 or i >= 20
    ]
    assert units[12].gap and units[12].keyframe


def test_reorder_window_full_duplicates_late_and_restart() -> None:
    w = _core.ReorderWindow(capacity=4, max_delay_us=10**9)
    seq = [10, 12, 13, 14, 15, 16]  # 11 is missing; the window holds 4, so 16 forces the skip
    out = [r for s in seq for r in w.push(rtp(b"x", s, s), 0)]
    assert [(_core.parse_rtp(p).sequence, lost) for p, lost in out] == [
        (10, 0),
        (12, 1),
        (13, 0),
        (14, 0),
        (15, 0),
        (16, 0),
    ]
    assert w.push(rtp(b"x", 11, 0), 0) == [] and w.stats["late"] == 1
    assert w.push(rtp(b"x", 18, 0), 0) == []
    assert w.push(rtp(b"x", 18, 0), 0) == [] and w.stats["duplicates"] == 1
    # The camera restarts at 500 behind: one stray packet is not enough, two in a row are.
    assert w.push(rtp(b"x", 65000, 0), 0) == []
    restarted = w.push(rtp(b"x", 65001, 0), 0)
    assert [(_core.parse_rtp(p).sequence, lost) for p, lost in restarted] == [(18, 1), (65001, 1)]
    assert w.stats["restarts"] == 1
    with pytest.raises(vmscore.BitstreamError):
        w.push(b"\x00" * 5, 0)


def test_h265_rasl_pictures_after_resuming_at_a_cra_are_dropped(tmp_path: Path) -> None:
    # Breaks recordings that resume at an open-GOP keyframe (CRA): the RASL pictures after it
    # reference pictures before it, which the recording does not have.
    es = tmp_path / "open_gop.hevc"
    params = "keyint=10:min-keyint=10:open-gop=1:bframes=3:b-adapt=0:scenecut=0:repeat-headers=1"
    cmd = [FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=25"]
    cmd += ["-frames:v", "30", "-c:v", "libx265", "-x265-params", f"{params}:log-level=error"]
    subprocess.run([*cmd, "-f", "hevc", "-y", str(es)], check=True, timeout=60)
    data = es.read_bytes()
    aus = [data[o : o + n] for o, n, _ in vmscore.access_units(data, "h265")]
    types = [[u.type for u in vmscore.nal_units(a, "h265")] for a in aus]
    cras = [i for i, t in enumerate(types) if 21 in t]
    assert len(cras) >= 2 and any(8 in t or 9 in t for t in types[cras[0] + 1 :])
    p = _core.RtpPacketizer("h265", 1200)
    packets = [x for i, a in enumerate(aus[cras[0] :]) for x in p.packetize(a, i * 3600)]
    units, d = depacketize("h265", packets)
    got = [[u.type for u in vmscore.nal_units(x.data, "h265", 4)] for x in units]
    rasl = [i for i, t in enumerate(types) if i > cras[0] and (8 in t or 9 in t)]
    resumed = [i for i in range(cras[0], len(aus)) if i not in rasl or i > cras[1]]
    assert got == [types[i] for i in resumed]
    assert d.stats["dropped_waiting_keyframe"] == len([i for i in rasl if i < cras[1]])
    # FFmpeg's decoder skips the same pictures when a stream starts at a CRA.
    want = [vmscore.annexb_to_avcc(a) for a in aus[cras[0] :]]
    assert_same_pictures("h265", [u.data for u in units], want)


# --------------------------------------------------------------------------------------------
# Bounds


def test_oversized_access_units_are_dropped_not_grown() -> None:
    # Breaks memory bounds: a hostile or broken sender must not make an access unit grow forever.
    stream = encoded("h264", 1920, 1080, 8, 8)
    packets = packetize(stream, 1400)
    units, d = depacketize("h264", packets, max_access_unit_bytes=100_000)
    assert units == []
    assert d.stats["oversized_access_units"] == 1 and d.stats["dropped_frames"] == 8
    units, d = depacketize("h264", packets, max_nal_units=3)
    assert units == [] and d.stats["oversized_access_units"] == 1


# --------------------------------------------------------------------------------------------
# Sequence numbers and RTCP


def test_sequence_tracker_wrap_loss_duplicates_late_and_restart() -> None:
    # Breaks loss reporting (the gap flag) and receiver reports.
    t = _core.SequenceTracker()
    assert t.update(65533) == ("first", 0)
    assert t.update(65534) == ("in_order", 0)
    assert t.update(1) == ("in_order", 2)  # wrapped; 65535 and 0 missing
    assert t.update(0) == ("late", 0)
    assert t.update(0) == ("duplicate", 0)
    assert t.update(1) == ("duplicate", 0)
    assert (t.expected, t.received, t.lost) == (5, 6, -1)
    report = t.report(0xABC, 0)
    assert report.highest_sequence == 65536 + 1 and report.fraction_lost == 0
    assert t.update(2 + 1000) == ("in_order", 1000)
    report = t.report(0xABC, 0)
    # 1001 expected since the last report, 1 received: 1000/1001 of 256.
    assert report.fraction_lost == (1000 << 8) // 1001 and report.cumulative_lost == 999
    assert t.update(40000 - 30000) == ("in_order", 10000 - 1003)
    assert t.update(50000) == ("probation", 0)
    assert t.update(50001) == ("restart", 1)
    assert t.restarts == 1 and (t.expected, t.received) == (1, 1)


def test_jitter_follows_rfc_3550_a8() -> None:
    t = _core.SequenceTracker()
    jitter = 0.0
    arrival = 0
    rng = random.Random(1)
    prev_transit = None
    for i in range(200):
        ts = i * 3000
        arrival = ts + 1000 + rng.randrange(0, 900)
        t.update_jitter(ts, arrival)
        transit = arrival - ts
        if prev_transit is not None:
            jitter += (abs(transit - prev_transit) - jitter) / 16
        prev_transit = transit
    assert abs(t.jitter - jitter) <= 2


def sr(
    ssrc: int, ntp: int, rtp_time: int, count: int = 0, blocks: bytes = b"", rc: int = 0
) -> bytes:
    body = struct.pack(">IQIII", ssrc, ntp, rtp_time, count, count * 100) + blocks
    return struct.pack(">BBH", 0x80 | rc, 200, (len(body) + 4) // 4 - 1) + body


def test_rtcp_compound_with_every_packet_type() -> None:
    # Breaks wall-clock mapping (SR), RTT/loss feedback (RR) and source tracking (SDES, BYE).
    block = struct.pack(">IIIIII", 0x77, (12 << 24) | 0xFFFFFE, 70000, 33, 0x1234, 0x4321)
    sdes_body = struct.pack(">I", 0x55) + b"\x01\x04cam1\x02\x01n\x00" + b"\x00\x00"
    sdes = struct.pack(">BBH", 0x81, 202, (len(sdes_body) + 4) // 4 - 1) + sdes_body
    bye_body = struct.pack(">II", 0x55, 0x56) + b"\x03bye"
    bye = struct.pack(">BBH", 0x82, 203, (len(bye_body) + 4) // 4 - 1) + bye_body
    app_body = struct.pack(">I", 0x55) + b"NAME" + b"data"
    app = struct.pack(">BBH", 0x85, 204, (len(app_body) + 4) // 4 - 1) + app_body
    xr = struct.pack(">BBHI", 0x80, 207, 1, 0x55)
    padded_rr = struct.pack(">BBHI", 0xA0, 201, 2, 0x99) + b"\x00\x00\x00\x04"
    data = sr(0x55, 0x1122334455667788, 90000, 10, block, 1) + sdes + bye + app + xr + padded_rr
    c = _core.parse_rtcp(data)
    assert c.packets == 6 and c.other_packets == 1
    (s,) = c.sender_reports
    assert (s.ssrc, s.ntp_time, s.rtp_time, s.packet_count, s.octet_count) == (
        0x55,
        0x1122334455667788,
        90000,
        10,
        1000,
    )
    (r,) = c.reports
    assert (r.reporter_ssrc, r.ssrc, r.fraction_lost, r.cumulative_lost) == (0x55, 0x77, 12, -2)
    assert (r.highest_sequence, r.jitter, r.last_sr, r.delay_since_last_sr) == (
        70000,
        33,
        0x1234,
        0x4321,
    )
    assert c.sdes == [(0x55, 1, b"cam1"), (0x55, 2, b"n")]
    assert c.byes == [0x55, 0x56]
    assert c.apps == [(0x55, 5, b"NAME", b"data")]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\x80\xc8\x00", "truncated"),
        (b"\x40\xc8\x00\x00", "version"),
        (b"\x80\xc8\x00\x06" + bytes(8), "length"),
        (b"\x81\xc9\x00\x01" + bytes(4), "RR shorter"),
        (b"\x80\xc8\x00\x01" + bytes(4), "SR shorter"),
        (b"\xa0\xc9\x00\x01" + bytes(3) + b"\x09", "padding"),
        (b"\x81\xca\x00\x02\x00\x00\x00\x01\x01\x09xx", "SDES"),
        (b"\x82\xcb\x00\x01\x00\x00\x00\x01", "BYE"),
    ],
)
def test_malformed_rtcp_is_rejected(data: bytes, why: str) -> None:
    with pytest.raises(vmscore.BitstreamError, match=why):
        _core.parse_rtcp(data)


def test_receiver_report_is_a_compound_with_cname_and_parses_back() -> None:
    # Breaks cameras that stop sending to receivers that never report (RFC 3550 §6.1 compound).
    t = _core.SequenceTracker()
    for s in (100, 101, 103, 104):
        t.update(s)
    t.on_sender_report(0x0000123456780000, 1_000_000)
    block = t.report(0xCAFE, 1_500_000)
    assert block.last_sr == 0x12345678 and block.delay_since_last_sr == 32768
    data = _core.rtcp_receiver_report(0xBEEF, [block], "vmscore@station")
    assert len(data) % 4 == 0
    c = _core.parse_rtcp(data)
    (r,) = c.reports
    assert (r.reporter_ssrc, r.ssrc, r.cumulative_lost, r.highest_sequence) == (
        0xBEEF,
        0xCAFE,
        1,
        104,
    )
    assert r.fraction_lost == (1 << 8) // 5
    assert c.sdes == [(0xBEEF, 1, b"vmscore@station")]
    assert [p[1] for p in (data[0:2], data[32:34])] == [201, 202]
    neg = _core.rtcp_receiver_report(1, [_core.ReceptionReport(2, cumulative_lost=-5)], "x")
    assert _core.parse_rtcp(neg).reports[0].cumulative_lost == -5
    srp = _core.parse_rtcp(_core.rtcp_sender_report(3, 1 << 63, 4, 5, 6, "cam"))
    assert srp.sender_reports[0].ntp_time == 1 << 63 and srp.sdes == [(3, 1, b"cam")]
    with pytest.raises(ValueError, match="31"):
        _core.rtcp_receiver_report(1, [block] * 32, "x")


def test_ntp_time_conversion() -> None:
    # 2000-01-01T00:00:00.5Z, and RFC 4330's era 1 for timestamps with the top bit clear.
    assert _core.ntp_to_unix_us((3155673600 << 32) | 0x80000000) == 946_684_800_500_000
    assert _core.ntp_to_unix_us(1 << 32) == (2**32 - 2_208_988_800 + 1) * 1_000_000
    for us in (0, 946_684_800_123_456, 1_700_000_000_999_999):
        assert abs(_core.ntp_to_unix_us(_core.unix_us_to_ntp(us)) - us) <= 1


# --------------------------------------------------------------------------------------------
# Timeline


def test_timeline_unwraps_and_absorbs_resets_and_jumps() -> None:
    # Breaks recordings of Tapo and other cameras that reset RTP time: DTS must keep increasing.
    t = _core.Timeline()
    start = 2**32 - 3 * 3000
    got = [t.advance((start + i * 3000) & 0xFFFFFFFF) for i in range(6)]
    assert got == [i * 3000 for i in range(6)] and t.stats["wraps"] == 1
    reset = 0xF0000000  # far behind: the camera restarted its clock
    assert t.advance(reset) == 15000 + 3600 and t.discontinuity
    assert t.advance(reset + 3000) == 21600 and not t.discontinuity
    assert t.advance(reset + 3000 + 20 * 90000) == 25200 and t.discontinuity  # a 20 s jump
    assert t.stats["discontinuities"] == 2
    # A long step the arrival times confirm is a stalled stream, not a jump.
    a = _core.Timeline()
    a.advance(0, 0)
    assert a.advance(20 * 90000, 20_050_000) == 20 * 90000 and not a.discontinuity
    assert a.advance(0, 21_000_000) == 20 * 90000 + 85500 and a.discontinuity
    # B-frames: presentation times step back by less than the allowance.
    b = _core.Timeline(max_backward_ticks=9000)
    assert [b.advance(x) for x in (0, 9000, 3000, 6000, 18000)] == [0, 9000, 3000, 6000, 18000]
    assert b.stats["discontinuities"] == 0
    assert _core.Timeline(8000).advance(5) == 0


def test_wall_clock_from_arrivals_and_sender_reports_slews_at_most_500_ppm() -> None:
    # Breaks timestamps of recordings: wall-clock time must follow the camera's sender reports
    # without jumps, and ignore cameras whose clock is wrong.
    base = 1_700_000_000_000_000
    t = _core.Timeline()
    assert t.wall_clock_us(t.advance(1000), base) == base
    # Jittery arrivals move the mapping by at most 500 ppm of the media time.
    rng = random.Random(2)
    prev = base
    for i in range(1, 50):
        ticks = t.advance(1000 + i * 3000)
        wall = t.wall_clock_us(ticks, base + i * 33_333 + rng.randrange(0, 80_000))
        step = wall - prev
        assert abs(step - 33_333) <= 33_333 * 500e-6 + 2
        prev = wall
    # Settled (past the start-up minute, frames on time): a sender report saying the camera is
    # 1 s ahead moves the mapping there at 500 ppm.
    for k in range(1, 62):
        wall = t.wall_clock_us(t.advance(1000 + 50 * 3000 + k * 90000), prev + k * 1_000_000)
    start = 1000 + 50 * 3000 + 61 * 90000
    now = wall
    t.on_sender_report(_core.unix_us_to_ntp(now + 1_000_000), start)
    for k in range(1, 2100):
        ticks = t.advance((start + k * 90000) & 0xFFFFFFFF)
        wall = t.wall_clock_us(ticks, now + k * 1_000_000)
        media = k * 1_000_000
        ahead = wall - (now + media)
        assert 0 <= ahead <= min(1_000_001, media * 500e-6 + 5)
        if k == 100:
            assert abs(ahead - 50_000) <= 5
    assert abs(ahead - 1_000_000) <= 1 and t.has_sender_report and t.stats["sender_reports"] == 1
    # A camera whose clock is a day off, or sends zero NTP time, is not believed.
    raw = (start + 2100 * 90000) & 0xFFFFFFFF
    t.on_sender_report(_core.unix_us_to_ntp(base - 86_400_000_000), raw)
    t.wall_clock_us(t.advance(raw), now + 2100 * 1_000_000)
    t.on_sender_report(0, raw)
    assert t.stats["sender_reports_ignored"] == 2


def test_wall_clock_of_a_camera_joined_mid_gop_converges_within_seconds_and_never_steps() -> None:
    # Breaks pre-roll and alarm times: a camera joined mid-GOP sends that GOP at once, so the
    # first arrival puts the stream up to a GOP ahead; at 500 ppm that would last for hours.
    base = 1_700_000_000_000_000
    t = _core.Timeline()
    fps, burst = 10, 19  # 1.9 s of a GOP arrive together, at `base`
    captured_at = base - 1_900_000  # the true offset: frame 0 was taken 1.9 s before base
    prev = None
    for i in range(60 * fps):
        arrival = base if i <= burst else captured_at + i * 100_000 + 3_000  # 3 ms network
        wall = t.wall_clock_us(t.advance(1000 + i * 9000), arrival)
        if prev is not None:
            step = wall - prev
            assert 90_000 - 1 <= step <= 100_000 + 1, "slewed at most 10 %, never stepped"
        prev = wall
        error = wall - (captured_at + i * 100_000)
        if i >= 25 * fps:  # 1.9 s corrected at 10 % within 19 s of media
            assert 0 <= error <= 3_000 + 1
    # Settled: the usual 500 ppm from then on.
    t2 = _core.Timeline(startup_s=0)
    for i in range(30 * fps):
        arrival = base if i <= burst else captured_at + i * 100_000
        wall = t2.wall_clock_us(t2.advance(1000 + i * 9000), arrival)
    assert wall - (captured_at + i * 100_000) > 1_800_000


# --------------------------------------------------------------------------------------------
# Audio


SINE = ["-f", "lavfi", "-i", "sine=frequency=440:duration=1:sample_rate=16000"]


def ffmpeg_audio(tmp: Path, codec_args: list[str], fmt: str) -> Path:
    out = tmp / f"audio.{fmt}"
    cmd = [FFMPEG, "-v", "error", *SINE, *codec_args, "-f", fmt, "-y", str(out)]
    subprocess.run(cmd, check=True, timeout=60)
    return out


def test_aac_from_ffmpeg_rtp_muxer_gives_the_original_frames(tmp_path: Path) -> None:
    # Breaks audio recording of AAC cameras (RFC 3640 AAC-hbr, several frames per packet).
    m4a = ffmpeg_audio(tmp_path, ["-c:a", "aac", "-b:a", "32k"], "mp4")
    with av.open(str(m4a)) as container:
        frames = [bytes(p) for p in container.demux(audio=0) if p.size]
    packets, sdp = ffmpeg_rtp_capture(["-i", str(m4a), "-c", "copy"])
    assert "sizelength=13;indexlength=3;indexdeltalength=3" in sdp
    pt = int(re.search(r"m=audio \d+ RTP/AVP (\d+)", sdp).group(1))  # type: ignore[union-attr]
    units, d = depacketize("aac", packets, payload_type=pt)
    assert len(units) >= len(frames) - 3 and any(
        len(_core.parse_rtp(p).payload) > 500 for p in packets
    )
    assert [u.data for u in units] == frames[: len(units)]
    ts = [u.rtp_timestamp for u in units]
    assert all((b - a) & 0xFFFFFFFF == 1024 for a, b in itertools.pairwise(ts))
    assert all(u.kind == "audio" and u.keyframe for u in units) and d.stats["errors"] == 0


def aac_packet(
    frames: list[bytes],
    seq: int,
    ts: int,
    marker: bool = True,
    sizes: list[int] | None = None,
    size_bits: int = 13,
    index_bits: int = 3,
) -> bytes:
    """An RFC 3640 packet: AU-headers-length, one header (size, index 0) per frame, the frames."""
    sizes = sizes or [len(f) for f in frames]
    bits = ""
    for s in sizes:
        bits += format(s, f"0{size_bits}b") + "0" * index_bits
    n = len(bits)
    bits += "0" * (-len(bits) % 8)
    headers = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
    return rtp(struct.pack(">H", n) + headers + b"".join(frames), seq, ts, marker, pt=97)


def test_aac_fragmented_frames_lbr_mode_loss_and_malformed_headers() -> None:
    frame = bytes(range(256)) * 12  # 3072 bytes: one frame over three packets
    parts = [frame[:1000], frame[1000:2000], frame[2000:]]
    pkts = [aac_packet([p], i, 5000, i == 2, [len(frame)]) for i, p in enumerate(parts)]
    pkts.append(aac_packet([b"a" * 10, b"b" * 20], 3, 6024))
    units, d = depacketize("aac", pkts)
    assert [(u.data, u.rtp_timestamp) for u in units] == [
        (frame, 5000),
        (b"a" * 10, 6024),
        (b"b" * 20, 7048),
    ]
    # The middle fragment is lost: the frame is dropped, the next one says so.
    d = _core.RtpDepacketizer("aac")
    assert len(d.push(pkts[3])) == 2
    assert d.push(pkts[0]) == [] and d.push(pkts[2], 1) == []
    (a, b) = d.push(pkts[3])
    assert a.gap and a.lost_packets == 1 and a.dropped_frames == 1 and not b.gap
    # AAC-lbr: 6-bit sizes, 2-bit indexes.
    lbr = aac_packet([b"x" * 7, b"y" * 9], 0, 0, size_bits=6, index_bits=2)
    units, _ = depacketize("aac", [lbr], size_length=6, index_length=2, index_delta_length=2)
    assert [u.data for u in units] == [b"x" * 7, b"y" * 9]
    # Sizes running past the packet, headers past the packet: counted, never raised.
    units, d = depacketize(
        "aac", [aac_packet([b"z"], 0, 0, sizes=[40, 50]), rtp(b"\x00\x40\x01", 1, 0)]
    )
    assert units == [] and d.stats["errors"] == 2


def test_g711_is_passed_through_packet_by_packet(tmp_path: Path) -> None:
    # Breaks audio of the many cameras that only speak G.711.
    for codec, ff, pt in (("pcmu", "pcm_mulaw", 0), ("pcma", "pcm_alaw", 8)):
        raw = ffmpeg_audio(tmp_path, ["-c:a", ff, "-ar", "8000"], "mulaw" if pt == 0 else "alaw")
        packets, sdp = ffmpeg_rtp_capture([*SINE, "-c:a", ff, "-ar", "8000"])
        assert f"RTP/AVP {pt}" in sdp
        units, _ = depacketize(codec, packets, payload_type=pt)
        assert b"".join(u.data for u in units) == raw.read_bytes()
        assert len(units) == len(packets)


# --------------------------------------------------------------------------------------------
# Hostile input (hypothesis)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=200))
def test_parse_rtp_random_bytes(data: bytes) -> None:
    try:
        p = _core.parse_rtp(data)
    except vmscore.BitstreamError:
        return
    assert len(p.payload) + p.padding + 12 + 4 * len(p.csrcs) <= len(data)


@FUZZ
@given(st.binary(max_size=200))
def test_parse_rtcp_random_bytes(data: bytes) -> None:
    try:
        c = _core.parse_rtcp(data)
    except vmscore.BitstreamError:
        return
    assert c.packets >= 1 and len(c.reports) <= 31 * c.packets


def prefixed_units_ok(codec: Codec, data: bytes) -> bool:
    units = vmscore.nal_units(data, codec, 4)
    return sum(4 + u.size for u in units) == len(data) and all(u.size > 0 for u in units)


packet_lists = st.lists(
    st.tuples(
        st.binary(min_size=1, max_size=60), st.booleans(), st.integers(0, 3), st.integers(0, 2)
    ),
    max_size=30,
)


@FUZZ
@given(st.sampled_from(["h264", "h265"]), st.integers(0, 1), packet_lists)
def test_video_depacketizer_random_payloads(
    codec: Codec, don: int, packets: list[tuple[bytes, bool, int, int]]
) -> None:
    # Real parameter sets, so random payloads can complete access units that are then checked.
    ps = vmscore.parameter_sets(small(codec).frames[0].data, codec)
    d = _core.RtpDepacketizer(
        codec, ps, max_don_diff=don, max_access_unit_bytes=4096, max_nal_units=8
    )
    ts = 0
    first = True
    for seq, (payload, marker, step, lost) in enumerate(packets):
        ts += step * 3000
        for u in d.push(rtp(payload, seq, ts, marker), lost):
            assert len(u.data) <= 4096 and prefixed_units_ok(codec, u.data)
            assert len(vmscore.nal_units(u.data, codec, 4)) <= 8
            if first:
                assert u.keyframe and u.parameter_sets_changed and not u.gap
                first = False


@FUZZ
@given(
    st.sampled_from(["h264", "h265"]),
    st.lists(st.integers(0, 2**31), min_size=1, max_size=8),
    st.integers(8, 200),
)
def test_packetizer_round_trips_any_nal_units(codec: Codec, seeds: list[int], mtu: int) -> None:
    # Random NAL units (valid headers, random bodies without start codes) survive packetization.
    stream = small(codec)
    ps = vmscore.parameter_sets(stream.frames[0].data, codec)
    vcl = nal_list(stream.frames[0].data, codec)[-1]
    nals = [*ps, vcl]
    for s in seeds:
        r = random.Random(s)
        body = bytes(r.choice(b"\x01\x02\x03\x80\xff\x10") for _ in range(r.randrange(1, 300)))
        nals.append(vcl[: 2 if codec == "h265" else 1] + body)
    au = avcc(nals)
    units, d = depacketize(codec, _core.RtpPacketizer(codec, mtu).packetize(au, 7, annexb=False))
    assert [u.data for u in units] == [au] and d.stats["errors"] == 0


@FUZZ
@given(st.lists(st.tuples(st.binary(max_size=40), st.booleans(), st.integers(0, 1)), max_size=20))
def test_audio_depacketizers_random_payloads(packets: list[tuple[bytes, bool, int]]) -> None:
    for codec in ("aac", "pcmu"):
        d = _core.RtpDepacketizer(codec)
        for seq, (payload, marker, lost) in enumerate(packets):
            for u in d.push(rtp(payload, seq, seq * 1024, marker), lost):
                assert u.kind == "audio" and len(u.data) <= 8191


@FUZZ
@given(
    st.lists(st.integers(0, 60), min_size=1, max_size=80, unique=True),
    st.randoms(use_true_random=False),
    st.integers(1, 16),
)
def test_reorder_window_releases_in_order_each_packet_at_most_once(
    present: list[int], rng: random.Random, capacity: int
) -> None:
    order = sorted(present)
    for i in range(len(order) - 1):
        if rng.random() < 0.3:
            order[i], order[i + 1] = order[i + 1], order[i]
    w = _core.ReorderWindow(capacity=capacity, max_delay_us=100)
    out = []
    for n, s in enumerate(order):
        out += w.push(rtp(b"p", 1000 + s, 0), n * 10)
    out += w.flush()
    seqs = [_core.parse_rtp(p).sequence - 1000 for p, _ in out]
    assert seqs == sorted(set(seqs))
    assert set(seqs) <= set(present)
    # Every number from the first packet to the last released one was released or skipped.
    assert sum(lost for _, lost in out) == seqs[-1] - seqs[0] + 1 - len(seqs)
    assert seqs[0] == order[0]
    assert w.stats["released"] == len(seqs) and w.stats["late"] + len(seqs) == len(order)
