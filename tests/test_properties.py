"""Property tests of the bitstream parsers and the fMP4 muxer through the public Python API.

The rule under test: every parser is bounded. Random bytes, and real H.264 / H.265 parameter sets
and access units mutated by bit flips, truncation, insertion and deletion, either parse or raise
vmscore.BitstreamError (a ValueError and a VmsError); never another exception, never a crash. Where
a call succeeds its result must be consistent: NAL units inside the buffer and apart, access units
tiling the buffer, Annex-B <-> length-prefixed conversions preserving the units, SPS dimensions
that fit the coded picture, and muxer output that is well-formed ISO BMFF.

Real inputs come from PyAV (libx264 / libx265) in a session fixture: small streams of noise, so
every test sees genuine slices, SEI and parameter sets.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import vmscore
from vmscore import BitstreamError, MuxError, VmsError

CODECS = ("h264", "h265")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
KEYFRAME_FLAGS, NON_KEYFRAME_FLAGS = 0x02000000, 0x01010000

PROPERTY = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(PROPERTY, max_examples=200)


# --- real streams -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Packet:
    data: bytes  # one access unit, Annex-B
    pts: int  # 90 kHz
    dts: int
    keyframe: bool


class Stream:
    """An encoded stream and its parameter sets. A plain class: hypothesis prints the arguments of
    a failing example, and this one's repr stays short."""

    def __init__(
        self, codec: str, width: int, height: int, packets: list[Packet], units: dict[int, bytes]
    ) -> None:
        self.codec, self.width, self.height = codec, width, height
        self.packets = tuple(packets)
        h264 = codec == "h264"
        self.vps: bytes | None = None if h264 else units[32]
        self.sps: bytes = units[7 if h264 else 33]
        self.pps: bytes = units[8 if h264 else 34]

    def __repr__(self) -> str:
        return f"Stream({self.codec}, {self.width}x{self.height}, {len(self.packets)} packets)"

    @property
    def data(self) -> bytes:
        return b"".join(p.data for p in self.packets)

    @property
    def parameter_sets(self) -> list[bytes]:
        return [u for u in (self.vps, self.sps, self.pps) if u is not None]


def split_annexb(data: bytes) -> list[bytes]:
    """Reference Annex-B splitter: the bytes between start codes, trailing zeros dropped."""
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i)
        i = data.find(b"\x00\x00\x01", i + 3)
    units = []
    for k, s in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(data)
        unit = data[s + 3 : end].rstrip(b"\x00")
        if unit:
            units.append(unit)
    return units


def nal_type(codec: str, unit: bytes) -> int:
    return unit[0] & 0x1F if codec == "h264" else (unit[0] >> 1) & 0x3F


def encode_stream(codec: str, width: int, height: int, frames: int = 10) -> Stream:
    encoder = "libx264" if codec == "h264" else "libx265"
    ctx = av.CodecContext.create(encoder, "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, 10)
    ctx.framerate = Fraction(10, 1)
    ctx.gop_size = 5
    ctx.max_b_frames = 2
    if codec == "h264":
        ctx.options = {"x264-params": "log-level=error"}
    else:
        ctx.options = {"x265-params": "log-level=error:repeat-headers=1:keyint=5"}
    rng = np.random.default_rng(20240611)
    packets: list[Packet] = []

    def take(pkts: list[av.Packet]) -> None:
        for p in pkts:
            assert p.pts is not None and p.dts is not None
            packets.append(Packet(bytes(p), p.pts * 9000, p.dts * 9000, p.is_keyframe))

    for i in range(frames):
        plane = rng.integers(0, 256, (height * 3 // 2, width), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(plane, format="yuv420p")
        frame.pts = i
        take(ctx.encode(frame))
    take(ctx.encode(None))

    found: dict[int, bytes] = {}
    for unit in split_annexb(packets[0].data):
        found.setdefault(nal_type(codec, unit), unit)
    return Stream(codec, width, height, packets, found)


@pytest.fixture(scope="session")
def streams() -> dict[str, Stream]:
    return {codec: encode_stream(codec, 64, 64) for codec in CODECS}


@pytest.fixture(scope="session")
def cropped_streams() -> dict[str, Stream]:
    # 66x34 is no multiple of 16 (H.264 macroblocks) or 8 (x265's smallest coding block): the SPS
    # carries a frame cropping / conformance window.
    return {codec: encode_stream(codec, 66, 34, frames=2) for codec in CODECS}


# --- helpers ------------------------------------------------------------------------------------


def expect_bitstream_error_or_result(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Calls fn; returns its result, or None when it raised BitstreamError. Any other exception
    (IndexError, SystemError, RuntimeError, ...) propagates and fails the test."""
    try:
        return fn(*args, **kwargs)
    except BitstreamError as exc:
        error = exc
    assert isinstance(error, ValueError) and isinstance(error, VmsError)
    assert str(error), "a BitstreamError must say what is wrong"
    return None


OPS = ("flip", "truncate", "insert", "delete", "zero_run")
mutations = st.lists(
    st.tuples(st.sampled_from(OPS), st.integers(0, 2**20), st.binary(min_size=1, max_size=8)),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, ops: list[tuple[str, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for op, where, blob in ops:
        at = where % (len(buf) + 1)
        if op == "flip" and buf:
            bit = where % (len(buf) * 8)
            buf[bit // 8] ^= 0x80 >> (bit % 8)
        elif op == "truncate":
            del buf[at:]
        elif op == "insert":
            buf[at:at] = blob
        elif op == "delete":
            del buf[at : at + 1 + blob[0] % 16]
        elif op == "zero_run":  # zero bytes make emulation prevention and start codes appear
            buf[at : at + len(blob)] = bytes(len(blob))
    return bytes(buf)


def wrap_int64(v: int) -> int:
    return (v - INT64_MIN) % 2**64 + INT64_MIN


def check_nal_units(codec: str, data: bytes, length_size: int) -> list[Any] | None:
    units = expect_bitstream_error_or_result(vmscore.nal_units, data, codec, length_size)
    if units is None:
        return None
    prev_end = 0
    for u in units:
        assert u.size > 0
        framing = length_size or 3  # the length field, or at least a 3-byte start code
        assert u.offset >= prev_end + framing, "units overlap or lack framing"
        assert u.offset + u.size <= len(data), "unit runs past the buffer"
        if length_size:
            assert int.from_bytes(data[u.offset - length_size : u.offset], "big") == u.size
        else:
            assert data[u.offset - 3 : u.offset] == b"\x00\x00\x01"
        prev_end = u.offset + u.size
    return units


def check_access_units(codec: str, data: bytes) -> list[tuple[int, int, bool]] | None:
    aus = expect_bitstream_error_or_result(vmscore.access_units, data, codec)
    if aus is None:
        return None
    if not aus:
        assert not split_annexb(data)
        return aus
    at = 0
    for offset, size, _ in aus:
        assert offset == at and size > 0, f"access units do not tile the buffer: {aus}"
        if offset:  # each later access unit begins with its first start code
            head = data[offset : offset + size].lstrip(b"\x00")
            assert head[:1] == b"\x01" and size - len(head) >= 2
        at += size
    assert at == len(data)
    return aus


def check_sps(sps: Any) -> None:
    assert 1 <= sps.width <= sps.coded_width
    assert 1 <= sps.height <= sps.coded_height
    left, right, top, bottom = sps.crop
    assert left + right + sps.width == sps.coded_width
    assert top + bottom + sps.height == sps.coded_height
    assert sps.chroma_format_idc <= 3
    assert 8 <= sps.bit_depth_luma <= 16 and 8 <= sps.bit_depth_chroma <= 16
    assert sps.frame_rate >= 0.0
    assert sps.max_num_reorder_frames >= -1


def to_length_prefixed(annexb: bytes) -> bytes:
    return b"".join(len(u).to_bytes(4, "big") + u for u in split_annexb(annexb))


# --- ISO BMFF -----------------------------------------------------------------------------------

CONTAINERS = {"moov", "trak", "mdia", "minf", "dinf", "stbl", "mvex", "moof", "traf"}


@dataclass(frozen=True)
class Box:
    kind: str
    start: int
    end: int
    header: int = 8

    @property
    def body(self) -> int:
        return self.start + self.header


def walk(buf: bytes, start: int = 0, end: int | None = None) -> list[Box]:
    """The boxes tiling buf[start:end]; asserts that every size is sane and fits."""
    end = len(buf) if end is None else end
    boxes = []
    at = start
    while at < end:
        assert end - at >= 8, f"truncated box header at {at}"
        size = int.from_bytes(buf[at : at + 4], "big")
        kind = buf[at + 4 : at + 8].decode("latin-1")
        assert 8 <= size <= end - at, f"box {kind!r} at {at} has size {size}, {end - at} left"
        boxes.append(Box(kind, at, at + size))
        at += size
    return boxes


def walk_tree(buf: bytes, box: Box) -> None:
    if box.kind in CONTAINERS:
        for child in walk(buf, box.body, box.end):
            walk_tree(buf, child)
    elif box.kind in ("stsd", "dref"):
        for child in walk(buf, box.body + 8, box.end):
            walk_tree(buf, child)
    elif box.kind in ("avc1", "hvc1"):
        names = [c.kind for c in walk(buf, box.body + 78, box.end)]
        assert names[0] == ("avcC" if box.kind == "avc1" else "hvcC")


def u32(buf: bytes, at: int) -> int:
    return int.from_bytes(buf[at : at + 4], "big")


def check_fmp4(codec: str, out: bytes, init: bytes) -> tuple[int, int]:
    """Checks muxer output; returns (fragments, samples)."""
    top = walk(out)
    assert [b.kind for b in top[:2]] == ["ftyp", "moov"]
    assert out[: top[1].end] == init, "the output must begin with the init segment"
    walk_tree(out, top[1])
    rest = top[2:]
    assert [b.kind for b in rest] == ["moof", "mdat"] * (len(rest) // 2)
    samples = 0
    last_tfdt = -1
    for i in range(0, len(rest), 2):
        moof, mdat = rest[i], rest[i + 1]
        walk_tree(out, moof)
        mfhd, traf = walk(out, moof.body, moof.end)
        assert (mfhd.kind, traf.kind) == ("mfhd", "traf")
        assert u32(out, mfhd.body + 4) == i // 2 + 1, "fragment sequence numbers count from 1"
        tfhd, tfdt, trun = walk(out, traf.body, traf.end)
        assert (tfhd.kind, tfdt.kind, trun.kind) == ("tfhd", "tfdt", "trun")
        base = int.from_bytes(out[tfdt.body + 4 : tfdt.body + 12], "big")
        assert base > last_tfdt, "fragment decode times must increase"
        last_tfdt = base
        flags = u32(out, trun.body) & 0xFFFFFF
        assert flags & 0x701 == 0x701, "data offset, duration, size and flags are present"
        entry = 16 if flags & 0x800 else 12
        count = u32(out, trun.body + 4)
        assert count >= 1
        assert trun.end - trun.body == 12 + count * entry, "trun sample count vs its size"
        data_start = moof.start + u32(out, trun.body + 8)
        assert data_start == mdat.body, "data_offset must point at the mdat payload"
        at = data_start
        for k in range(count):
            e = trun.body + 12 + k * entry
            assert u32(out, e) > 0, "sample duration must be positive"
            size = u32(out, e + 4)
            assert u32(out, e + 8) in (KEYFRAME_FLAGS, NON_KEYFRAME_FLAGS)
            assert at + size <= mdat.end, "sample runs past its mdat"
            kinds = [u.kind for u in vmscore.nal_units(out[at : at + size], codec, 4)]
            assert kinds and not {"vps", "sps", "pps", "aud", "filler"} & set(kinds)
            at += size
        assert at == mdat.end, "sample sizes must add up to the mdat payload"
        samples += count
    return len(rest) // 2, samples


# --- the error classes ----------------------------------------------------------------------------


def test_error_classes_are_value_errors_under_vms_error() -> None:
    # Callers catch ValueError for bad data without knowing vmscore; this breaks if the hierarchy
    # in vmscore.errors changes.
    assert issubclass(BitstreamError, ValueError) and issubclass(BitstreamError, VmsError)
    assert issubclass(MuxError, ValueError) and issubclass(MuxError, VmsError)
    assert issubclass(vmscore.ParametersChangedError, MuxError)
    with pytest.raises(BitstreamError):
        vmscore.nal_units(b"\x65\x88", "h264")  # no start code


# --- every parser on random and mutated bytes -----------------------------------------------------


def exercise_all_parsers(codec: str, data: bytes, real: Stream) -> None:
    for length_size in (0, 1, 2, 4):
        check_nal_units(codec, data, length_size)
        expect_bitstream_error_or_result(vmscore.parameter_sets, data, codec, length_size)
    for length_size in (1, 2, 4):
        expect_bitstream_error_or_result(vmscore.annexb_to_avcc, data, length_size)
        expect_bitstream_error_or_result(vmscore.avcc_to_annexb, data, length_size)
    check_access_units(codec, data)
    sps = expect_bitstream_error_or_result(vmscore.parse_sps, data, codec)
    if sps is not None:
        check_sps(sps)
    expect_bitstream_error_or_result(vmscore.codec_string, data, codec)
    expect_bitstream_error_or_result(vmscore.decoder_config_record, codec, [data])
    others = [u for u in real.parameter_sets if u != real.sps]
    expect_bitstream_error_or_result(vmscore.decoder_config_record, codec, [*others, data])
    expect_bitstream_error_or_result(vmscore.init_segment, codec, [*others, data])


@pytest.mark.parametrize("codec", CODECS)
@PROPERTY
@given(
    data=st.one_of(
        st.binary(max_size=400),
        st.binary(max_size=400).map(lambda b: b"\x00\x00\x01" + b),
        st.lists(st.binary(min_size=1, max_size=40), max_size=6).map(
            lambda us: b"".join(b"\x00\x00\x00\x01" + u for u in us)
        ),
    )
)
def test_random_bytes_parse_or_raise_bitstream_error(
    streams: dict[str, Stream], codec: str, data: bytes
) -> None:
    # Breaks when a parser reads out of bounds, crashes, or raises anything but BitstreamError.
    exercise_all_parsers(codec, data, streams[codec])


@pytest.mark.parametrize("codec", CODECS)
@PROPERTY
@given(kind=st.sampled_from(["vps", "sps", "pps"]), ops=mutations)
def test_mutated_parameter_sets_parse_or_raise_bitstream_error(
    streams: dict[str, Stream], codec: str, kind: str, ops: list[tuple[str, int, bytes]]
) -> None:
    # Breaks when a damaged VPS/SPS/PPS makes a parser, the avcC/hvcC writer, the init segment or
    # the muxer constructor fail other than with BitstreamError, or yields an inconsistent SPS.
    real = streams[codec]
    if codec == "h264" and kind == "vps":
        kind = "sps"
    original = {"vps": real.vps, "sps": real.sps, "pps": real.pps}[kind]
    assert original is not None
    unit = mutate(original, ops)
    sets = [unit if u == original else u for u in real.parameter_sets]

    exercise_all_parsers(codec, unit, real)
    if kind == "sps":
        sps = expect_bitstream_error_or_result(vmscore.parse_sps, unit, codec)
        if sps is not None:
            check_sps(sps)
            assert expect_bitstream_error_or_result(vmscore.codec_string, unit, codec)
    record = expect_bitstream_error_or_result(vmscore.decoder_config_record, codec, sets)
    init = expect_bitstream_error_or_result(vmscore.init_segment, codec, sets)
    if init is not None:
        assert record is not None, "an init segment embeds the decoder configuration record"
        top = walk(init)
        assert [b.kind for b in top] == ["ftyp", "moov"]
        walk_tree(init, top[1])
        assert record in init
    annexb = b"".join(b"\x00\x00\x00\x01" + u for u in sets)
    expect_bitstream_error_or_result(vmscore.parameter_sets, annexb, codec)
    muxer = expect_bitstream_error_or_result(vmscore.Fmp4Muxer, codec, sets)
    if muxer is not None:
        assert (muxer.init_segment is None) == (init is None)


@pytest.mark.parametrize("codec", CODECS)
@PROPERTY
@given(index=st.integers(0, 9), ops=mutations)
def test_mutated_access_units_parse_or_raise_bitstream_error(
    streams: dict[str, Stream], codec: str, index: int, ops: list[tuple[str, int, bytes]]
) -> None:
    # Breaks when a damaged access unit (slices, SEI, in-band parameter sets) escapes the
    # BitstreamError contract of the splitters, converters and parameter-set collection.
    real = streams[codec]
    au = mutate(real.packets[index].data, ops)
    for length_size in (0, 4):
        check_nal_units(codec, au, length_size)
        expect_bitstream_error_or_result(vmscore.parameter_sets, au, codec, length_size)
    check_access_units(codec, au)
    converted = expect_bitstream_error_or_result(vmscore.annexb_to_avcc, au)
    if converted is not None:
        assert converted == to_length_prefixed(au)


# --- structure of successful results --------------------------------------------------------------


def escape(payload: bytes) -> bytes:
    """A NAL unit as encoders write it: emulation prevention inserted, never ending in a zero."""
    out = bytearray()
    zeros = 0
    for b in payload:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    if not out or out[-1] == 0:
        out.append(0x80)  # rbsp_stop_one_bit
    return bytes(out)


@PROPERTY
@given(
    # An SEI header byte keeps every unit a valid H.264 NAL unit for nal_units' classification.
    units=st.lists(
        st.binary(max_size=300).map(lambda b: b"\x06" + escape(b)), min_size=1, max_size=8
    ),
    start_codes=st.lists(st.sampled_from([3, 4]), min_size=8, max_size=8),
    trailing_zeros=st.lists(st.integers(0, 3), min_size=8, max_size=8),
    length_size=st.sampled_from([1, 2, 4]),
)
def test_annexb_to_avcc_and_back_preserves_nal_units(
    units: list[bytes], start_codes: list[int], trailing_zeros: list[int], length_size: int
) -> None:
    # Breaks when the framing conversions lose, merge, split or alter NAL units.
    annexb = b"".join(
        (b"\x00" * (sc - 1) + b"\x01") + u + b"\x00" * z
        for u, sc, z in zip(units, start_codes, trailing_zeros, strict=False)
    )
    assert split_annexb(annexb) == units
    found = vmscore.nal_units(annexb, "h264")
    assert [annexb[u.offset : u.offset + u.size] for u in found] == units

    if length_size < 4 and max(len(u) for u in units) >= 1 << (8 * length_size):
        with pytest.raises(BitstreamError):
            vmscore.annexb_to_avcc(annexb, length_size)
        return
    avcc = vmscore.annexb_to_avcc(annexb, length_size)
    assert avcc == b"".join(len(u).to_bytes(length_size, "big") + u for u in units)
    back = vmscore.avcc_to_annexb(avcc, length_size)
    assert back == b"".join(b"\x00\x00\x00\x01" + u for u in units)
    assert split_annexb(back) == units


@pytest.mark.parametrize("codec", CODECS)
@PROPERTY
@given(data=st.binary(max_size=600), length_size=st.sampled_from([0, 1, 2, 4]))
def test_nal_units_lie_inside_the_buffer_without_overlap(
    streams: dict[str, Stream], codec: str, data: bytes, length_size: int
) -> None:
    # Breaks when nal_units reports a range outside the buffer, overlapping another, or not right
    # after its start code / length field.
    check_nal_units(codec, data, length_size)
    check_nal_units(codec, b"\x00\x00\x01" + data, length_size)
    check_nal_units(codec, mutate(streams[codec].packets[0].data[:600], [("insert", 7, data)]), 0)


@pytest.mark.parametrize("codec", CODECS)
@PROPERTY
@given(data=st.binary(max_size=600), ops=mutations)
def test_access_units_tile_the_buffer(
    streams: dict[str, Stream], codec: str, data: bytes, ops: list[tuple[str, int, bytes]]
) -> None:
    # Breaks when access_units leaves gaps, overlaps, or does not end at the end of the data.
    check_access_units(codec, b"\x00\x00\x01" + data)
    stream = streams[codec].data
    start = ops[0][1] % len(stream)
    check_access_units(codec, mutate(stream[start : start + 12000], ops))


@pytest.mark.parametrize("codec", CODECS)
def test_real_streams_split_convert_and_parse_exactly(
    streams: dict[str, Stream], cropped_streams: dict[str, Stream], codec: str
) -> None:
    # Breaks when a genuine encoder stream is split into the wrong access units, loses units in
    # the framing round trip, or its SPS reports the wrong picture size.
    real = streams[codec]
    data = real.data
    aus = check_access_units(codec, data)
    assert aus is not None
    assert [data[o : o + n] for o, n, _ in aus] == [p.data for p in real.packets]
    for (_, _, key), packet in zip(aus, real.packets, strict=True):
        units = split_annexb(packet.data)
        irap = any(
            (nal_type(codec, u) == 5) if codec == "h264" else 16 <= nal_type(codec, u) <= 23
            for u in units
        )
        assert key == irap
    back = vmscore.avcc_to_annexb(vmscore.annexb_to_avcc(data))
    assert split_annexb(back) == split_annexb(data)
    assert vmscore.parameter_sets(data, codec) == real.parameter_sets

    for stream in (real, cropped_streams[codec]):
        sps = vmscore.parse_sps(stream.sps, codec)
        check_sps(sps)
        assert (sps.width, sps.height) == (stream.width, stream.height)
        assert sps.coded_width % 8 == 0 and sps.coded_height % 8 == 0
        assert vmscore.codec_string(stream.sps, codec).startswith(
            "avc1." if codec == "h264" else "hvc1."
        )


@pytest.mark.parametrize("codec", CODECS)
@PROPERTY
@given(ops=mutations)
def test_sps_that_parses_fits_its_coded_picture(
    streams: dict[str, Stream],
    cropped_streams: dict[str, Stream],
    codec: str,
    ops: list[tuple[str, int, bytes]],
) -> None:
    # Breaks when a damaged SPS that is accepted reports a visible size larger than the coded
    # picture, cropping that does not add up, or an impossible bit depth or chroma format.
    for stream in (streams[codec], cropped_streams[codec]):
        sps = expect_bitstream_error_or_result(vmscore.parse_sps, mutate(stream.sps, ops), codec)
        if sps is not None:
            check_sps(sps)


# --- the muxer ----------------------------------------------------------------------------------

timestamps = st.one_of(
    st.tuples(st.just("step"), st.integers(1, 9000)),  # monotonic
    st.tuples(st.just("step"), st.integers(-9000, 9000)),  # maybe repeated or backwards
    st.tuples(st.just("absolute"), st.integers(INT64_MIN, INT64_MAX)),  # anything at all
)
muxer_steps = st.lists(
    st.tuples(
        st.integers(0, 9),  # which real access unit
        timestamps,  # dts
        st.one_of(st.just(0), st.integers(-20000, 20000), st.integers(INT64_MIN, INT64_MAX)),
        st.sampled_from([None, True, False]),  # keyframe flag; None: detected from the NAL units
        st.booleans(),  # flush after it
    ),
    min_size=1,
    max_size=12,
)


def feed_muxer(
    codec: str,
    real: Stream,
    steps: list[Any],
    given_sets: bool,
    annexb: bool,
    fragment_duration: int,
) -> None:
    muxer = vmscore.Fmp4Muxer(
        codec,
        real.parameter_sets if given_sets else [],
        fragment_duration_90k=fragment_duration,
        annexb=annexb,
    )
    out = bytearray()
    taken = 0
    dts = 0
    for index, (mode, value), cto, keyframe, flush in steps:
        dts = value if mode == "absolute" else wrap_int64(dts + value)
        pts = wrap_int64(dts + cto) if abs(cto) <= 20000 else cto
        au = real.packets[index].data
        if not annexb:
            au = to_length_prefixed(au)
        before = muxer.samples + muxer.pending_samples
        try:
            out += muxer.add(au, pts, dts=dts, keyframe=keyframe)
        except (MuxError, BitstreamError):
            assert muxer.samples + muxer.pending_samples == before, "a rejected unit changed state"
        else:
            taken += muxer.samples + muxer.pending_samples - before
        if flush:
            out += muxer.flush()
            assert muxer.pending_samples == 0
    out += muxer.flush()
    assert muxer.bytes_out == len(out)
    event("muxer output: " + ("fragments" if muxer.fragments else "none"))
    if not out:
        assert taken == 0
        return
    assert muxer.init_segment is not None
    fragments, samples = check_fmp4(codec, bytes(out), muxer.init_segment)
    assert (fragments, samples) == (muxer.fragments, muxer.samples)
    assert samples == taken


@pytest.mark.parametrize("codec", CODECS)
@FEW
@given(
    steps=muxer_steps,
    given_sets=st.booleans(),
    annexb=st.booleans(),
    fragment_duration=st.sampled_from([0, 1, 9000]),
)
@example(  # decode times so far apart that their difference does not fit 64 bits
    steps=[(0, ("absolute", INT64_MIN), 0, True, False), (1, ("absolute", 2**62), 0, False, False)],
    given_sets=True,
    annexb=True,
    fragment_duration=0,
)
@example(  # the same at the edge of the muxer's timestamp range
    steps=[
        (0, ("absolute", -(2**62) + 1), 0, True, False),
        (1, ("absolute", 2**62 - 1), 0, False, False),
        (2, ("absolute", -(2**62) + 2), 2**62 - 1, False, False),
    ],
    given_sets=True,
    annexb=True,
    fragment_duration=0,
)
@example(  # pts - dts does not fit 64 bits
    steps=[(0, ("absolute", 1), INT64_MIN, True, False)],
    given_sets=True,
    annexb=True,
    fragment_duration=0,
)
def test_muxer_output_is_valid_iso_bmff_or_the_unit_is_rejected(
    streams: dict[str, Stream],
    codec: str,
    steps: list[Any],
    given_sets: bool,
    annexb: bool,
    fragment_duration: int,
) -> None:
    # Breaks when the muxer accepts a unit it cannot write correctly (zero or wrapped durations,
    # wrong offsets), writes malformed boxes, or fails other than with MuxError / BitstreamError.
    feed_muxer(codec, streams[codec], steps, given_sets, annexb, fragment_duration)


@pytest.mark.parametrize("codec", CODECS)
def test_muxer_real_stream_in_order(streams: dict[str, Stream], codec: str) -> None:
    # Breaks when a genuine stream in decode order does not mux into one fragment per GOP.
    real = streams[codec]
    muxer = vmscore.Fmp4Muxer(codec)
    out = bytearray()
    for p in real.packets:
        out += muxer.add(p.data, p.pts, dts=p.dts)
    out += muxer.flush()
    assert muxer.init_segment is not None
    fragments, samples = check_fmp4(codec, bytes(out), muxer.init_segment)
    assert samples == len(real.packets)
    keyframes = [a[2] for a in vmscore.access_units(real.data, codec)]
    assert fragments == sum(keyframes)


def iter_mutated_stream(real: Stream, ops: list[tuple[str, int, bytes]]) -> Iterator[Packet]:
    for i, p in enumerate(real.packets):
        yield Packet(
            mutate(p.data, ops) if i == ops[0][1] % len(real.packets) else p.data,
            p.pts,
            p.dts,
            p.keyframe,
        )


@pytest.mark.parametrize("codec", CODECS)
@FEW
@given(ops=mutations)
def test_muxer_with_one_damaged_access_unit(
    streams: dict[str, Stream], codec: str, ops: list[tuple[str, int, bytes]]
) -> None:
    # Breaks when one damaged unit in a real stream makes the muxer crash, raise something other
    # than MuxError / BitstreamError, or write invalid output for the units it accepts.
    real = streams[codec]
    muxer = vmscore.Fmp4Muxer(codec, real.parameter_sets)
    out = bytearray()
    for p in iter_mutated_stream(real, ops):
        with contextlib.suppress(MuxError, BitstreamError):
            out += muxer.add(p.data, p.pts, dts=p.dts)
    out += muxer.flush()
    if out:
        assert muxer.init_segment is not None
        check_fmp4(codec, bytes(out), muxer.init_segment)
