"""The fragmented MP4 muxer: what recording, export and live view write.

Proven three ways for H.264 and H.265: FFmpeg (through PyAV) decodes the file to exactly the frames
of the original elementary stream; ffprobe reads it without a warning; a golden test pins the bytes.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

import vmscore
from conftest import Codec, decode_luma, encoded, es_format, ffprobe, golden_stream
from isobmff import parse, tfdt, trun

# (codec, width, height, frames, gop, bframes): sizes include 1920x1080 (coded height 1088) and a
# size that is no multiple of 16.
MATRIX = [
    ("h264", 1920, 1080, 20, 10, 0),
    ("h264", 640, 360, 40, 12, 2),
    ("h264", 250, 142, 30, 30, 0),
    ("h265", 1920, 1080, 16, 8, 0),
    ("h265", 640, 360, 40, 12, 3),
    ("h265", 250, 142, 30, 10, 0),
]


def mux(
    codec: Codec, units: list[tuple[bytes, int, int]], **kwargs: int
) -> tuple[bytes, vmscore.Fmp4Muxer]:
    muxer = vmscore.Fmp4Muxer(codec, **kwargs)
    out = b"".join(muxer.add(au, pts, dts) for au, pts, dts in units) + muxer.flush()
    return out, muxer


def units_of(
    codec: Codec, w: int, h: int, n: int, gop: int, bf: int
) -> list[tuple[bytes, int, int]]:
    stream = encoded(codec, w, h, n, gop, bf)
    return [(f.data, f.pts_90k, f.dts_90k) for f in stream.frames]


@pytest.mark.parametrize(("codec", "width", "height", "frames", "gop", "bframes"), MATRIX)
def test_decodes_to_the_same_frames_as_the_elementary_stream(
    codec: Codec, width: int, height: int, frames: int, gop: int, bframes: int
) -> None:
    # If this fails, recordings and exports do not show what the camera sent.
    stream = encoded(codec, width, height, frames, gop, bframes)
    mp4, muxer = mux(codec, [(f.data, f.pts_90k, f.dts_90k) for f in stream.frames])
    original = decode_luma(stream.annexb(), es_format(codec))
    muxed = decode_luma(mp4, "mp4")
    assert len(original) == frames
    assert len(muxed) == frames
    for a, b in zip(original, muxed, strict=True):
        assert a.shape == (height, width)
        assert np.array_equal(a, b)
    assert muxer.fragments == -(-frames // gop)  # one fragment per GOP
    assert muxer.samples == frames
    assert (muxer.width, muxer.height) == (width, height)


@pytest.mark.parametrize(("codec", "width", "height", "frames", "gop", "bframes"), MATRIX)
def test_ffprobe_reads_codec_size_frames_and_duration_without_warnings(
    tmp_path: Path, codec: Codec, width: int, height: int, frames: int, gop: int, bframes: int
) -> None:
    # If this fails, other tools (players, evidence viewers) cannot open our recordings.
    mp4, _ = mux(codec, units_of(codec, width, height, frames, gop, bframes))
    path = tmp_path / "out.mp4"
    path.write_bytes(mp4)
    info, warnings = ffprobe(
        path,
        "-count_frames",
        "-show_entries",
        "stream=codec_name,codec_tag_string,width,height,nb_read_frames,duration:format=duration",
    )
    assert warnings == ""
    (stream,) = info["streams"]  # type: ignore[misc]
    assert stream["codec_name"] == ("h264" if codec == "h264" else "hevc")
    assert stream["codec_tag_string"] == ("avc1" if codec == "h264" else "hvc1")
    assert (stream["width"], stream["height"]) == (width, height)
    assert int(stream["nb_read_frames"]) == frames
    assert float(stream["duration"]) == pytest.approx(frames / 25.0, abs=1e-6)


@pytest.mark.parametrize(
    ("name", "codec", "size", "sha256"),
    [
        (
            "small_bframes.h264",
            "h264",
            6280,
            "81b812d25a52a84c94c653bed0baea4d34f3871ab838dcdc0f329ab38ba71f22",
        ),
        (
            "small.h265",
            "h265",
            9042,
            "a9470be07c92ea3ed433155d5b2eea84e2bddf6f9b13a67caaa9df635c3f5c43",
        ),
    ],
)
def test_golden_bytes(name: str, codec: Codec, size: int, sha256: str) -> None:
    # Pins the exact output for committed inputs (H.264 with B-frames, H.265): a change here must
    # be deliberate, with the decode and ffprobe tests above passing for the new bytes.
    data, stamps = golden_stream(name)
    aus = vmscore.access_units(data, codec)
    muxer = vmscore.Fmp4Muxer(codec)
    out = b"".join(
        muxer.add(data[o : o + n], pts, dts, key)
        for (o, n, key), (pts, dts, _) in zip(aus, stamps, strict=True)
    )
    out += muxer.flush()
    assert len(decode_luma(out, "mp4")) == len(stamps) == 12
    assert len(out) == size
    assert hashlib.sha256(out).hexdigest() == sha256


def test_structure_follows_the_mse_byte_stream_rules() -> None:
    # If this fails, browsers refuse the live view (MSE is stricter than FFmpeg).
    units = units_of("h264", 320, 240, 30, 10, 2)
    mp4, muxer = mux("h264", units)
    boxes = parse(mp4)
    assert [b.type for b in boxes[:2]] == [b"ftyp", b"moov"]
    ftyp = boxes[0].data
    assert ftyp[:4] == b"iso5" and b"iso6" in ftyp[8:]
    moov = boxes[1]
    stbl = moov.find("trak/mdia/minf/stbl")
    for name in ("stts", "stsc", "stco"):
        assert stbl.find(name).data == b"\0" * 8  # version/flags + zero entries
    assert moov.find("mvex/trex")
    assert stbl.find("stsd").data[12:16] == b"avc1"  # parameter sets out of band (Safari)
    assert muxer.init_segment == mp4[: boxes[0].size + boxes[1].size]

    rest = boxes[2:]
    assert [b.type for b in rest] == [b"moof", b"mdat"] * (len(rest) // 2)
    sequence = [int.from_bytes(m.find("mfhd").data[4:8], "big") for m in rest[::2]]
    assert sequence == list(range(1, len(sequence) + 1))
    decode_time = 0
    total = 0
    for moof, mdat in zip(rest[::2], rest[1::2], strict=True):
        traf = moof.find("traf")
        assert [c.type for c in traf.children] == [b"tfhd", b"tfdt", b"trun"]  # tfdt before trun
        assert traf.find("tfhd").data[1:4] == b"\x02\x00\x00"  # default-base-is-moof
        assert traf.find("tfdt").data[0] == 1  # version 1: 64-bit decode time
        assert tfdt(traf.find("tfdt")) == decode_time
        run = trun(traf.find("trun"))
        assert run.data_offset == moof.size + 8
        assert sum(run.sizes) == mdat.size - 8
        assert all(d > 0 for d in run.durations)  # zero durations break Safari
        assert run.sample_flags[0] == 0x02000000  # each fragment starts at a keyframe
        assert all(f == 0x01010000 for f in run.sample_flags[1:])
        assert run.cts_offsets, "B-frames need composition offsets"
        decode_time += sum(run.durations)
        total += len(run.sizes)
    assert total == 30
    assert decode_time == 30 * 3600


def test_fragment_duration_cuts_long_gops_and_one_frame_fragments_for_live() -> None:
    units = units_of("h264", 320, 240, 40, 40, 0)
    _, per_gop = mux("h264", units)
    assert per_gop.fragments == 1
    mp4, cut = mux("h264", units, fragment_duration_90k=90_000 // 5)  # 200 ms: 5 frames at 25 fps
    assert cut.fragments == 8
    assert len(decode_luma(mp4, "mp4")) == 40
    _, live = mux("h264", units, fragment_duration_90k=1)
    assert live.fragments == 40
    info = live.last_fragment
    assert info is not None
    assert info.samples == 1 and info.sequence == 40 and not info.starts_with_keyframe
    assert info.offset + info.size == live.bytes_out


def test_last_fragment_reports_where_each_fragment_landed() -> None:
    # The recording index stores these offsets for seeking; they must point at real moof boxes.
    units = units_of("h265", 320, 240, 24, 8, 0)
    muxer = vmscore.Fmp4Muxer("h265")
    out = b""
    seen = []
    for au, pts, dts in units:
        out += muxer.add(au, pts, dts)
        info = muxer.last_fragment
        if info is not None and (not seen or seen[-1][0] != info.sequence):
            seen.append((info.sequence, info.offset, info.size, info.base_dts_90k, info.samples))
    out += muxer.flush()
    info = muxer.last_fragment
    assert info is not None
    seen.append((info.sequence, info.offset, info.size, info.base_dts_90k, info.samples))
    assert [s[0] for s in seen] == [1, 2, 3]
    for _, offset, size, base, samples in seen:
        (moof, mdat) = parse(out[offset : offset + size])
        assert moof.type == b"moof" and mdat.type == b"mdat"
        assert tfdt(moof.find("traf/tfdt")) == base
        assert samples == 8
        assert out[offset + 4 : offset + 8] == b"moof"


def test_units_before_the_first_keyframe_are_dropped_and_counted() -> None:
    units = units_of("h264", 320, 240, 20, 10, 0)
    muxer = vmscore.Fmp4Muxer("h264")
    outputs = [muxer.add(au, pts, dts) for au, pts, dts in units[3:]]
    outputs.append(muxer.flush())
    assert muxer.dropped_before_keyframe == 7  # frames 3..9; frame 10 is the next keyframe
    assert outputs[:7] == [b""] * 7
    assert muxer.samples == 10
    assert len(decode_luma(b"".join(outputs), "mp4")) == 10


def test_timestamps_going_backwards_are_refused_and_the_muxer_stays_usable() -> None:
    units = units_of("h264", 320, 240, 10, 5, 0)
    muxer = vmscore.Fmp4Muxer("h264")
    out = muxer.add(*units[0]) + muxer.add(*units[1])
    with pytest.raises(vmscore.MuxError, match="must increase"):
        muxer.add(units[2][0], units[0][1], units[0][2])
    with pytest.raises(ValueError, match="must increase"):  # also a ValueError
        muxer.add(units[2][0], units[1][1], units[1][2])
    for unit in units[2:]:
        out += muxer.add(*unit)
    out += muxer.flush()
    assert len(decode_luma(out, "mp4")) == 10


def test_changed_parameter_sets_ask_for_a_new_file() -> None:
    # A camera switched resolution: continuing in the same file would make it undecodable.
    small = units_of("h264", 320, 240, 10, 5, 0)
    large = units_of("h264", 640, 360, 10, 5, 0)
    muxer = vmscore.Fmp4Muxer("h264")
    for unit in small[:7]:
        muxer.add(*unit)
    with pytest.raises(vmscore.ParametersChangedError, match="start a new file"):
        muxer.add(large[0][0], small[7][1], small[7][2])
    assert isinstance(vmscore.ParametersChangedError("x"), vmscore.MuxError)
    out = muxer.add(*small[7]) + muxer.flush()
    assert out  # still usable with the old parameters
    fresh = vmscore.Fmp4Muxer("h264")
    assert fresh.add(*large[0]) and fresh.width == 640


def test_given_parameter_sets_make_the_init_segment_before_any_frame() -> None:
    units = units_of("h265", 320, 240, 10, 5, 0)
    params = vmscore.parameter_sets(units[0][0], "h265")
    assert [vmscore.nal_units(b"\0\0\1" + p, "h265")[0].kind for p in params] == [
        "vps",
        "sps",
        "pps",
    ]
    muxer = vmscore.Fmp4Muxer("h265", params)
    assert muxer.init_segment == vmscore.init_segment("h265", params)
    assert muxer.codec_string is not None and muxer.codec_string.startswith("hvc1.1.6.")
    lazy = vmscore.Fmp4Muxer("h265")
    assert lazy.init_segment is None
    lazy.add(*units[0])
    assert lazy.init_segment == muxer.init_segment


def test_length_prefixed_input_gives_the_same_file() -> None:
    units = units_of("h264", 320, 240, 12, 6, 0)
    annexb, _ = mux("h264", units)
    muxer = vmscore.Fmp4Muxer("h264", annexb=False)
    avcc = b"".join(muxer.add(vmscore.annexb_to_avcc(au), pts, dts) for au, pts, dts in units)
    assert avcc + muxer.flush() == annexb


def test_bad_input_gets_a_clear_error() -> None:
    muxer = vmscore.Fmp4Muxer("h264")
    with pytest.raises(vmscore.BitstreamError, match="start code"):
        muxer.add(b"\x65\x88\x84", 0, 0, True)
    sps_only = vmscore.parameter_sets(units_of("h264", 320, 240, 5, 5, 0)[0][0], "h264")[0]
    with pytest.raises(vmscore.BitstreamError, match="no coded slice"):
        muxer.add(b"\0\0\0\1" + sps_only, 0, 0, True)
    with pytest.raises(vmscore.MuxError, match="no complete h264 parameter sets"):
        muxer.add(b"\0\0\0\1\x65\x88\x84\x00\x10", 0, 0, True)
    with pytest.raises(ValueError, match="codec must be"):
        vmscore.Fmp4Muxer("mjpeg")  # type: ignore[arg-type]
    with pytest.raises(vmscore.BitstreamError, match="incomplete h265 parameter sets"):
        vmscore.init_segment("h265", [])
    assert muxer.fragments == 0 and muxer.bytes_out == 0


def test_long_runs_keep_64_bit_decode_times() -> None:
    # 32-bit decode times at 90 kHz wrap after 13.25 hours of recording.
    units = units_of("h264", 160, 96, 10, 5, 0)
    muxer = vmscore.Fmp4Muxer("h264")
    step = 2**31
    out = b""
    for i, (au, _, _) in enumerate(units):
        out += muxer.add(au, i * step, i * step)
    out += muxer.flush()
    moofs = [b for b in parse(out) if b.type == b"moof"]
    assert tfdt(moofs[1].find("traf/tfdt")) == 5 * step > 2**32


def test_writer_writes_the_same_bytes_to_a_file(tmp_path: Path) -> None:
    units = units_of("h265", 320, 240, 20, 5, 0)
    expected, _ = mux("h265", units)
    path = tmp_path / "segment.mp4"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        writer = vmscore.Fmp4Writer(fd, "h265")
        written = sum(writer.add(au, pts, dts) for au, pts, dts in units) + writer.flush()
    finally:
        os.close(fd)
    assert written == len(expected) == writer.bytes_out
    assert path.read_bytes() == expected


def test_writer_reports_a_full_disk_as_a_storage_error() -> None:
    # /dev/full fails every write with ENOSPC, as a full recording disk does.
    units = units_of("h264", 160, 96, 10, 5, 0)
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        writer = vmscore.Fmp4Writer(fd, "h264")
        with pytest.raises(vmscore.StorageError) as info:
            writer.add(*units[0])  # the init segment is written with the first keyframe
    finally:
        os.close(fd)
    assert info.value.errno == errno.ENOSPC
    assert isinstance(info.value, OSError)


def test_writer_on_a_read_only_descriptor_fails_cleanly() -> None:
    units = units_of("h264", 160, 96, 10, 5, 0)
    fd = os.open("/dev/null", os.O_RDONLY)  # not open for writing: EBADF
    try:
        writer = vmscore.Fmp4Writer(fd, "h264")
        with pytest.raises(vmscore.StorageError) as info:
            writer.add(*units[0])
    finally:
        os.close(fd)
    assert info.value.errno == errno.EBADF
