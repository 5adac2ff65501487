"""Segment files read back: scan_segment finds the init segment, the metadata box and every
complete fragment, and after a crash (a file cut anywhere, or garbage at the end) says where the
last complete fragment ends, so that start-up recovery can trim the file to a playable one.

Checked against an independent box reader (tests/isobmff.py), the muxer's own fragment records and
FFmpeg (PyAV) decoding the trimmed files; hypothesis mutates real segments to prove the scanner
bounded.
"""

from __future__ import annotations

import errno
import io
import os
import random
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import vmscore
from conftest import Codec, decode_luma, encoded
from isobmff import parse, tfdt, trun
from segments import metadata_box, metadata_text, segment_bytes, write_segment
from test_properties import PROPERTY, expect_bitstream_error_or_result, mutate, mutations

START_US = 1_764_169_445_123_000


def init_size_of(data: bytes) -> int:
    ftyp, moov = parse(data)[:2]
    assert (ftyp.type, moov.type) == (b"ftyp", b"moov")
    return ftyp.size + moov.size


def fragment_ends(data: bytes) -> list[int]:
    return [b.offset + b.size for b in parse(data) if b.type == b"mdat"]


def expected_samples(data: bytes) -> list[tuple[int, int, int, int, int, bool]]:
    """(offset, size, dts, duration, composition offset, keyframe) per sample, from isobmff.py."""
    out = []
    boxes = [b for b in parse(data) if b.type in (b"moof", b"mdat")]
    for moof in boxes[::2]:
        run = trun(moof.find("traf/trun"))
        assert run.data_offset is not None
        at = moof.offset + run.data_offset
        dts = tfdt(moof.find("traf/tfdt"))
        offsets = run.cts_offsets or [0] * len(run.sizes)
        for size, duration, flags, cto in zip(
            run.sizes, run.durations, run.sample_flags, offsets, strict=True
        ):
            out.append((at, size, dts, duration, cto, not flags & 0x00010000))
            at += size
            dts += duration
    return out


def scanned_samples(scan: vmscore.SegmentScan) -> list[tuple[int, int, int, int, int, bool]]:
    return [
        (s.offset, s.size, s.dts_90k, s.duration_90k, s.composition_offset_90k, s.keyframe)
        for s in scan.samples
    ]


def fragment_rows(fragments: list[vmscore.FragmentInfo], shift: int = 0) -> list[tuple[int, ...]]:
    return [
        (
            f.sequence,
            f.offset + shift,
            f.size,
            f.base_dts_90k,
            f.duration_90k,
            f.samples,
            f.starts_with_keyframe,
        )
        for f in fragments
    ]


@pytest.mark.parametrize(("codec", "bframes"), [("h264", 0), ("h265", 2)])
def test_scan_finds_the_init_segment_metadata_and_every_fragment(
    tmp_path: Path, codec: Codec, bframes: int
) -> None:
    # The recovery and export code rely on every field here; the muxer's own records and an
    # independent box reader must agree with the scan.
    stream = encoded(codec, 160, 96, 40, 8, bframes)
    text = metadata_text("cam1", START_US, "x")
    data, infos = segment_bytes(codec, stream.frames, metadata=text)
    path = tmp_path / "segment.mp4"
    path.write_bytes(data)

    scan = vmscore.scan_segment(path, samples=True)
    assert scan.file_size == scan.valid_end == len(data)
    assert scan.problem is None
    assert scan.metadata == text
    assert scan.init_size == init_size_of(data)
    assert scan.codec == codec
    assert (scan.width, scan.height) == (160, 96)
    muxer = vmscore.Fmp4Muxer(codec)
    muxer.add(stream.frames[0].data, 0)
    assert scan.codec_string == muxer.codec_string
    assert scan.parameter_sets == vmscore.parameter_sets(stream.frames[0].data, codec)
    assert fragment_rows(scan.fragments) == fragment_rows(infos, len(metadata_box(text)))
    assert len(scan.fragments) == 5 and all(f.starts_with_keyframe for f in scan.fragments)
    assert scan.frames == 40
    assert scan.duration_90k == 40 * 3600

    assert scanned_samples(scan) == expected_samples(data)
    first_dts = stream.frames[0].dts_90k
    assert [s.dts_90k for s in scan.samples] == [f.dts_90k - first_dts for f in stream.frames]
    assert [s.composition_offset_90k for s in scan.samples] == [
        f.pts_90k - f.dts_90k for f in stream.frames
    ]
    assert [s.keyframe for s in scan.samples] == [f.is_keyframe for f in stream.frames]
    for sample, frame in zip(scan.samples, stream.frames, strict=True):
        # A sample is the access unit, length-prefixed, without its parameter sets.
        units = vmscore.nal_units(data[sample.offset : sample.offset + sample.size], codec, 4)
        original = [
            u
            for u in vmscore.nal_units(frame.data, codec)
            if u.kind not in ("vps", "sps", "pps", "aud")
        ]
        assert [u.kind for u in units] == [u.kind for u in original]

    assert vmscore.scan_segment(path).samples == []
    in_memory = vmscore.scan_segment_bytes(data, samples=True)
    assert fragment_rows(in_memory.fragments) == fragment_rows(scan.fragments)
    assert scanned_samples(in_memory) == scanned_samples(scan)


def test_metadata_box_written_by_the_recorder_flow_is_found(tmp_path: Path) -> None:
    # The recorder writes the init segment with the first keyframe, then the metadata box, then
    # fragments, all to one file descriptor.
    stream = encoded("h264", 160, 96, 24, 8)
    text = metadata_text("cam2", START_US, "avc1.64000c")
    assert vmscore.segment_metadata_box(text) == metadata_box(text)
    assert metadata_box(text)[8:24] == vmscore.SEGMENT_METADATA_UUID
    path = tmp_path / "segment.mp4"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        writer = vmscore.Fmp4Writer(fd, "h264")
        first = stream.frames[0]
        assert writer.add(first.data, first.pts_90k, first.dts_90k) == len(
            writer.init_segment or b""
        )
        os.write(fd, vmscore.segment_metadata_box(text))
        for f in stream.frames[1:]:
            writer.add(f.data, f.pts_90k, f.dts_90k)
        writer.flush()
    finally:
        os.close(fd)
    scan = vmscore.scan_segment(str(path))
    assert scan.metadata == text and scan.problem is None
    assert [f.samples for f in scan.fragments] == [8, 8, 8]
    assert len(decode_luma(path.read_bytes())) == 24


def test_segment_without_metadata_and_with_duration_cut_fragments(tmp_path: Path) -> None:
    # A long GOP cut into fragments by duration: fragments need not start with a keyframe.
    stream = encoded("h264", 160, 96, 30, 30)
    data = write_segment(tmp_path / "s.mp4", "h264", stream.frames, fragment_duration_90k=36_000)
    scan = vmscore.scan_segment(tmp_path / "s.mp4")
    assert scan.metadata is None and scan.problem is None
    assert [f.samples for f in scan.fragments] == [10, 10, 10]
    assert [f.starts_with_keyframe for f in scan.fragments] == [True, False, False]
    assert scan.init_size == init_size_of(data) == scan.fragments[0].offset


@pytest.fixture(scope="module")
def crash_segment() -> tuple[bytes, list[np.ndarray]]:
    """A segment with metadata, six fragments (the last ones cut by duration), and its frames."""
    stream = encoded("h264", 160, 96, 48, 16)
    text = metadata_text("cam1", START_US, "avc1.64000c")
    data, _ = segment_bytes("h264", stream.frames, metadata=text, fragment_duration_90k=36_000)
    return data, decode_luma(data)


def cut_positions(data: bytes) -> list[int]:
    init = init_size_of(data)
    meta_end = init + next(b.size for b in parse(data) if b.type == b"uuid")
    edges = [init, meta_end, *fragment_ends(data)]
    around = {p + d for p in edges for d in (-1, 0, 1)}
    rng = random.Random(7)
    spread = {rng.randrange(init, len(data)) for _ in range(40)}
    return sorted(p for p in around | spread if init <= p <= len(data))


def test_a_file_cut_anywhere_trims_to_its_last_complete_fragment(
    tmp_path: Path, crash_segment: tuple[bytes, list[np.ndarray]]
) -> None:
    # The recorder crashed while writing: wherever the file ends, valid_end is the end of the last
    # complete fragment, the problem says what was cut, and the trimmed file plays to that point.
    data, frames = crash_segment
    init = init_size_of(data)
    meta_end = init + len(metadata_box(metadata_text("cam1", START_US, "avc1.64000c")))
    ends = fragment_ends(data)
    assert len(ends) == 6
    decoded: dict[int, int] = {}
    path = tmp_path / "cut.mp4"
    for pos in cut_positions(data):
        path.write_bytes(data[:pos])
        if pos < meta_end:
            scan = vmscore.scan_segment(path)
            assert scan.valid_end == init and scan.fragments == []
            if pos > init:
                assert scan.problem is not None and f"at byte {init}" in scan.problem
            continue
        scan = vmscore.scan_segment(path, samples=True)
        complete = [e for e in ends if e <= pos]
        expect = complete[-1] if complete else meta_end
        assert scan.valid_end == expect, pos
        assert scan.file_size == pos
        assert len(scan.fragments) == len(complete)
        assert scan.metadata is not None
        if pos == expect:
            assert scan.problem is None
        else:
            assert scan.problem is not None and "truncated" in scan.problem, scan.problem
            assert f"at byte {expect}" in scan.problem
        if expect not in decoded:
            os.truncate(path, scan.valid_end)
            again = vmscore.scan_segment(path)
            assert again.problem is None and again.valid_end == expect
            trimmed = decode_luma(path.read_bytes()) if scan.fragments else []
            assert len(trimmed) == scan.frames == len(scan.samples)
            for a, b in zip(trimmed, frames, strict=False):
                assert np.array_equal(a, b)
            decoded[expect] = len(trimmed)
    assert sorted(decoded) == [meta_end, *ends]


def test_a_cut_mdat_says_how_many_bytes_are_missing(
    tmp_path: Path, crash_segment: tuple[bytes, list[np.ndarray]]
) -> None:
    data, _ = crash_segment
    ends = fragment_ends(data)
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: ends[3] - 1000])
    scan = vmscore.scan_segment(path)
    assert scan.problem == f"fragment at byte {ends[2]} is truncated (mdat needs 1000 more bytes)"


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(random.Random(3).randbytes(5000), id="random"),
        pytest.param(b"\x01\x02\x03\x04\x05\x06\x07", id="stray-bytes"),
        pytest.param(bytes(64), id="zeros"),
        pytest.param(b"\x00\x00\x00\x10junkjunkjunk", id="unknown-box"),
        pytest.param(b"\x40\x00\x00\x00moof" + bytes(100), id="huge-moof"),
        pytest.param(b"\x00\x00\x00\x10mdat" + bytes(8), id="mdat-alone"),
        pytest.param(b"\x00\x00\x00\x04free", id="size-below-header"),
    ],
)
def test_garbage_after_the_last_fragment_is_the_problem(
    tmp_path: Path, crash_segment: tuple[bytes, list[np.ndarray]], tail: bytes
) -> None:
    data, _ = crash_segment
    path = tmp_path / "tail.mp4"
    path.write_bytes(data + tail)
    scan = vmscore.scan_segment(path)
    assert scan.valid_end == len(data)
    assert scan.file_size == len(data) + len(tail)
    assert len(scan.fragments) == 6
    assert scan.problem is not None and f"at byte {len(data)}" in scan.problem, scan.problem


def test_a_fragment_without_its_mdat_or_a_repeated_fragment_moof_is_reported(
    tmp_path: Path, crash_segment: tuple[bytes, list[np.ndarray]]
) -> None:
    data, _ = crash_segment
    moofs = [b for b in parse(data) if b.type == b"moof"]
    moof = data[moofs[0].offset : moofs[0].offset + moofs[0].size]
    path = tmp_path / "x.mp4"
    path.write_bytes(data + moof + b"\x00\x00\x00\x10free" + bytes(8))
    scan = vmscore.scan_segment(path)
    assert scan.valid_end == len(data)
    assert scan.problem is not None and "not mdat" in scan.problem
    # A whole old fragment again: its decode time goes backwards.
    first = data[moofs[0].offset : fragment_ends(data)[0]]
    path.write_bytes(data + first)
    scan = vmscore.scan_segment(path)
    assert scan.valid_end == len(data)
    assert scan.problem is not None and "goes back" in scan.problem
    # Padding boxes between fragments are skipped.
    path.write_bytes(data + b"\x00\x00\x00\x10free" + bytes(8))
    scan = vmscore.scan_segment(path)
    assert scan.valid_end == len(data) + 16 and scan.problem is None


def rchar() -> int:
    """Bytes this process has read through read/pread system calls so far."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_scanning_a_large_segment_reads_headers_not_media(tmp_path: Path) -> None:
    # 30 fragments of about 1 MB each: the scan must not read the payload (recovery scans every
    # segment of every camera at start-up).
    params = vmscore.parameter_sets(encoded("h264", 160, 96, 8, 8).frames[0].data, "h264")
    rng = np.random.default_rng(5)
    muxer = vmscore.Fmp4Muxer("h264", params)
    out = b""
    keep = []
    for i in range(60):
        # Bytes 1..255: no start code can appear inside the unit.
        size = 1_000_000 if i % 2 == 0 else 5_000
        payload = rng.integers(1, 256, size, dtype=np.uint8).tobytes()
        au = b"\x00\x00\x00\x01" + (b"\x65" if i % 2 == 0 else b"\x41") + payload
        keep.append(au)
        out += muxer.add(au, i * 3000, i * 3000, i % 2 == 0)
    out += muxer.flush()
    path = tmp_path / "big.mp4"
    path.write_bytes(out)
    before = rchar()
    scan = vmscore.scan_segment(path, samples=True)
    read = rchar() - before
    assert len(scan.fragments) == 30 and scan.problem is None and scan.valid_end == len(out)
    assert len(out) > 30_000_000
    assert read < 300_000, f"scan read {read} bytes of a {len(out)} byte file"


def test_a_file_that_is_not_a_segment_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(vmscore.StorageError) as info:
        vmscore.scan_segment(tmp_path / "missing.mp4")
    assert info.value.errno == errno.ENOENT and "missing.mp4" in str(info.value)
    with pytest.raises(vmscore.StorageError):
        vmscore.scan_segment(tmp_path)
    stream = encoded("h264", 160, 96, 16, 8)
    data, _ = segment_bytes("h264", stream.frames)
    init = init_size_of(data)
    cases = {
        "empty": (b"", "truncated"),
        "not-mp4": (b"hello world, this is not a video file at all", "not ftyp"),
        "cut-moov": (data[: init - 10], "moov is truncated"),
        "no-init": (data[init:], "not ftyp"),
    }
    # A track at another timescale.
    mdhd = data.index(b"mdhd")
    cases["timescale"] = (
        data[: mdhd + 16] + (1000).to_bytes(4, "big") + data[mdhd + 20 :],
        "90000",
    )
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.mp4"
        path.write_bytes(content)
        with pytest.raises(vmscore.BitstreamError, match=message):
            vmscore.scan_segment(path)


def test_a_progressive_mp4_is_not_a_segment(tmp_path: Path) -> None:
    stream = encoded("h264", 160, 96, 16, 8)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        out = container.add_stream("h264")
        out.width, out.height = 160, 96
        for f in stream.frames:
            packet = av.Packet(f.data)
            packet.pts, packet.dts = f.pts_90k // 3600, f.dts_90k // 3600
            packet.stream = out
            container.mux(packet)
    with pytest.raises(vmscore.BitstreamError, match="init segment"):
        vmscore.scan_segment_bytes(buffer.getvalue())


# --- properties -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def property_segment() -> bytes:
    stream = encoded("h265", 64, 64, 12, 4, 2)
    data, _ = segment_bytes(
        "h265",
        stream.frames,
        metadata=metadata_text("c", START_US, "hvc1"),
        fragment_duration_90k=9000,
    )
    return data


def check_scan(data: bytes, scan: vmscore.SegmentScan) -> None:
    """What every scan must satisfy, whatever the bytes after the init segment."""
    assert 0 < scan.init_size <= scan.valid_end <= scan.file_size == len(data)
    assert (scan.problem is None) == (scan.valid_end == len(data))
    at = scan.init_size
    prev_end_dts = 0
    for f in scan.fragments:
        assert at <= f.offset and f.offset + f.size <= scan.valid_end
        assert f.base_dts_90k >= prev_end_dts and f.samples >= 1
        prev_end_dts = f.base_dts_90k + f.duration_90k
        at = f.offset + f.size
    assert len(scan.samples) == sum(f.samples for f in scan.fragments)
    k = 0
    for f in scan.fragments:
        for s in scan.samples[k : k + f.samples]:
            assert f.offset < s.offset and s.offset + s.size <= f.offset + f.size
        k += f.samples
    # Trimming to valid_end gives a clean file with the same fragments.
    again = vmscore.scan_segment_bytes(data[: scan.valid_end], samples=True)
    assert again.problem is None and again.valid_end == scan.valid_end
    assert fragment_rows(again.fragments) == fragment_rows(scan.fragments)
    assert again.metadata == scan.metadata


@PROPERTY
@given(ops=mutations)
def test_mutated_segments_scan_consistently_or_raise_bitstream_error(
    property_segment: bytes, ops: list[tuple[str, int, bytes]]
) -> None:
    data = mutate(property_segment, ops)
    scan = expect_bitstream_error_or_result(vmscore.scan_segment_bytes, data, True)
    if scan is not None:
        check_scan(data, scan)


@PROPERTY
@given(cut=st.integers(0, 10**6), tail=st.binary(max_size=300), ops=mutations)
def test_any_tail_after_a_valid_init_segment_scans_without_raising(
    property_segment: bytes, cut: int, tail: bytes, ops: list[tuple[str, int, bytes]]
) -> None:
    # With the init segment intact, nothing after it may raise: every fault becomes .problem.
    init = init_size_of(property_segment)
    body = property_segment[init:]
    body = mutate(body[: cut % (len(body) + 1)], ops) + tail
    data = property_segment[:init] + body
    check_scan(data, vmscore.scan_segment_bytes(data, samples=True))
