"""Bitstream tools: Annex-B and length-prefixed framing, NAL classification, access units, SPS
parsing, avcC/hvcC records and RFC 6381 codec strings, checked against FFmpeg's reading of the same
streams."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import vmscore
from conftest import DATA, Codec, encoded
from isobmff import parse


def ffmpeg_es(
    tmp: Path,
    codec: Codec,
    size: str,
    *,
    rate: int = 25,
    pix_fmt: str = "yuv420p",
    vf: str | None = None,
    params: str | None = None,
    frames: int = 3,
) -> Path:
    """An elementary stream written by the ffmpeg command line (an independent encoder setup)."""
    exe = shutil.which("ffmpeg")
    assert exe, "ffmpeg is missing: run scripts/install-test-deps"
    out = tmp / f"es.{codec}"
    cmd = [
        exe,
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate={rate}",
        "-frames:v",
        str(frames),
        "-pix_fmt",
        pix_fmt,
    ]
    if vf:
        cmd += ["-vf", vf]
    if codec == "h264":
        cmd += ["-c:v", "libx264"] + (["-x264-params", params] if params else [])
        cmd += ["-f", "h264"]
    else:
        cmd += [
            "-c:v",
            "libx265",
            "-x265-params",
            "log-level=error" + (f":{params}" if params else ""),
        ]
        cmd += ["-f", "hevc"]
    subprocess.run([*cmd, "-y", str(out)], check=True, timeout=120)
    return out


def probe_stream(path: Path) -> dict[str, Any]:
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_streams", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(proc.stdout)["streams"][0]  # type: ignore[no-any-return]


def config_record_written_by_ffmpeg(es: Path, tmp: Path, box: bytes) -> bytes:
    mp4 = tmp / "ffmpeg.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(es), "-c", "copy", "-y", str(mp4)],
        check=True,
        timeout=60,
    )
    stsd = parse(mp4.read_bytes())
    moov = next(b for b in stsd if b.type == b"moov")
    data = moov.find("trak/mdia/minf/stbl/stsd").data
    at = data.index(box)
    size = int.from_bytes(data[at - 4 : at], "big")
    return data[at + 4 : at - 4 + size]


class TestFraming:
    def test_annexb_with_three_and_four_byte_start_codes_and_trailing_zeros(self) -> None:
        data = b"\0\0\0\1\x67\x01\x02" + b"\0\0\1\x68\x03" + b"\0\0\0" + b"\0\0\1\x65\x04\x05"
        units = vmscore.nal_units(data, "h264")
        assert [(u.offset, u.size, u.kind) for u in units] == [
            (4, 3, "sps"),
            (10, 2, "pps"),
            (18, 3, "keyframe"),
        ]

    def test_empty_units_and_zero_only_data_give_no_units(self) -> None:
        assert vmscore.nal_units(b"", "h264") == []
        assert vmscore.nal_units(b"\0\0\0\0", "h264") == []
        units = vmscore.nal_units(b"\0\0\1\0\0\1\x09\xf0", "h264")
        assert [(u.offset, u.kind) for u in units] == [(6, "aud")]

    def test_data_without_a_start_code_is_rejected(self) -> None:
        with pytest.raises(vmscore.BitstreamError, match="start code"):
            vmscore.nal_units(b"\x67\x42\0\0\1\x68", "h264")
        with pytest.raises(vmscore.BitstreamError):
            vmscore.nal_units(b"\0\x01\x67", "h264")

    @pytest.mark.parametrize("length_size", [1, 2, 4])
    def test_length_prefixed_round_trip(self, length_size: int) -> None:
        data = (
            b"\0\0\0\1\x67\x64\x00\x1f" + b"\0\0\1\x68\xee" + b"\0\0\1\x65" + bytes(range(1, 200))
        )
        avcc = vmscore.annexb_to_avcc(data, length_size)
        units = vmscore.nal_units(avcc, "h264", length_size)
        assert [u.kind for u in units] == ["sps", "pps", "keyframe"]
        assert vmscore.avcc_to_annexb(
            avcc, length_size
        ) == b"\0\0\0\1\x67\x64\x00\x1f\0\0\0\1\x68\xee\0\0\0\1\x65" + bytes(range(1, 200))

    def test_length_prefixed_overrun_and_bad_sizes_are_rejected(self) -> None:
        with pytest.raises(vmscore.BitstreamError, match="runs past the end"):
            vmscore.nal_units(b"\0\0\0\x09\x65\x01", "h264", 4)
        with pytest.raises(vmscore.BitstreamError, match="truncated length"):
            vmscore.nal_units(b"\0\0\0\x01\x65\0\0", "h264", 4)
        with pytest.raises(vmscore.BitstreamError, match="1, 2 or 4"):
            vmscore.nal_units(b"\0\x01\x65", "h264", 3)
        with pytest.raises(vmscore.BitstreamError, match="does not fit"):
            vmscore.annexb_to_avcc(b"\0\0\1\x65" + b"\x11" * 300, 1)

    def test_forbidden_zero_bit_is_rejected(self) -> None:
        with pytest.raises(vmscore.BitstreamError, match="forbidden_zero_bit"):
            vmscore.nal_units(b"\0\0\1\xe5\x00", "h264")
        with pytest.raises(vmscore.BitstreamError, match="forbidden_zero_bit"):
            vmscore.nal_units(b"\0\0\1\xa6\x01\x00", "h265")


@pytest.mark.parametrize("codec", ["h264", "h265"])
@pytest.mark.parametrize("bframes", [0, 2])
def test_access_units_match_the_encoders_packets(codec: Codec, bframes: int) -> None:
    # The camera simulator and file readers rely on this to find frames in a raw stream.
    stream = encoded(codec, 320, 240, 30, 10, bframes)
    data = stream.annexb()
    found = vmscore.access_units(data, codec)
    expected = []
    offset = 0
    for frame in stream.frames:
        expected.append((offset, len(frame.data), frame.is_keyframe))
        offset += len(frame.data)
    assert found == expected


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_nal_kinds_of_a_camera_like_stream(codec: Codec) -> None:
    stream = encoded(codec, 320, 240, 12, 6, 0)
    first = [u.kind for u in vmscore.nal_units(stream.frames[0].data, codec)]
    sets = ["vps", "sps", "pps"] if codec == "h265" else ["sps", "pps"]
    assert [k for k in first if k in ("vps", "sps", "pps")] == sets
    assert first[-1] == "keyframe"
    second = vmscore.nal_units(stream.frames[1].data, codec)
    assert [u.kind for u in second if u.is_vcl] == ["slice"]
    assert all(u.is_first_slice for u in second if u.is_vcl)


H264_CASES = [
    # (size, pix_fmt, vf, x264 params, expected profile_idc, chroma, bit depth)
    ("1920x1080", "yuv420p", None, None, 100, 1, 8),
    ("640x360", "yuv420p", None, "bframes=0:cabac=0:8x8dct=0:weightp=0", 66, 1, 8),
    ("250x142", "yuv420p", None, None, 100, 1, 8),
    ("720x576", "yuv420p", None, "interlaced=1", 100, 1, 8),
    ("720x576", "yuv444p", None, None, 244, 3, 8),
    ("720x576", "yuv422p", None, None, 122, 2, 8),
    ("352x288", "yuv420p10le", None, None, 110, 1, 10),
    ("704x480", "yuv420p", "setsar=40/33", None, 100, 1, 8),
    ("320x240", "yuv420p", None, "cqm=jvt", 100, 1, 8),
]


@pytest.mark.parametrize(
    ("size", "pix_fmt", "vf", "params", "profile", "chroma", "depth"), H264_CASES
)
def test_h264_sps_agrees_with_ffprobe(
    tmp_path: Path,
    size: str,
    pix_fmt: str,
    vf: str | None,
    params: str | None,
    profile: int,
    chroma: int,
    depth: int,
) -> None:
    # If this fails, recordings get the wrong size or codec string and browsers refuse them.
    es = ffmpeg_es(tmp_path, "h264", size, pix_fmt=pix_fmt, vf=vf, params=params, rate=15)
    data = es.read_bytes()
    params_ = vmscore.parameter_sets(data, "h264")
    sps = vmscore.parse_sps(params_[0], "h264")
    probe = probe_stream(es)
    assert (sps.width, sps.height) == (probe["width"], probe["height"])
    assert sps.coded_width == -(-probe["width"] // 16) * 16
    assert (sps.profile_idc, sps.chroma_format_idc, sps.bit_depth_luma) == (profile, chroma, depth)
    assert sps.level_idc == probe["level"]
    assert sps.frame_rate == 15.0
    sar = probe.get("sample_aspect_ratio", "1:1")
    assert "{}:{}".format(*sps.sample_aspect_ratio) == (sar if sar != "0:1" else "1:1")
    assert sps.frame_mbs_only == ("interlaced" not in (params or ""))
    assert vmscore.codec_string(params_[0], "h264") == "avc1." + params_[0][1:4].hex()
    assert vmscore.decoder_config_record("h264", params_) == config_record_written_by_ffmpeg(
        es, tmp_path, b"avcC"
    )


def test_h264_1080p_is_coded_as_1088_lines_and_cropped() -> None:
    stream = encoded("h264", 1920, 1080, 2, 2, 0)
    sps = vmscore.parse_sps(vmscore.parameter_sets(stream.frames[0].data, "h264")[0], "h264")
    assert (sps.coded_width, sps.coded_height) == (1920, 1088)
    assert sps.crop == (0, 0, 0, 8)
    assert (sps.width, sps.height) == (1920, 1080)


def test_h264_codec_string_examples(tmp_path: Path) -> None:
    # High profile level 3.1 is "avc1.64001f"; browsers match the string exactly.
    es = ffmpeg_es(tmp_path, "h264", "1280x720", rate=25)
    sps = vmscore.parameter_sets(es.read_bytes(), "h264")[0]
    assert vmscore.codec_string(sps, "h264") == "avc1.64001f"


H265_CASES = [
    ("1920x1080", "yuv420p", None, None),
    ("250x142", "yuv420p", None, None),
    ("352x288", "yuv420p10le", None, None),
    ("320x240", "yuv444p", None, None),
    ("704x480", "yuv420p", "setsar=40/33", None),
    ("640x360", "yuv420p", None, "hrd=1:vbv-maxrate=800:vbv-bufsize=800:bframes=4"),
]


@pytest.mark.parametrize(("size", "pix_fmt", "vf", "params"), H265_CASES)
def test_h265_sps_agrees_with_ffprobe(
    tmp_path: Path, size: str, pix_fmt: str, vf: str | None, params: str | None
) -> None:
    es = ffmpeg_es(tmp_path, "h265", size, pix_fmt=pix_fmt, vf=vf, params=params, rate=30)
    data = es.read_bytes()
    sets = vmscore.parameter_sets(data, "h265")
    assert [vmscore.nal_units(b"\0\0\1" + s, "h265")[0].kind for s in sets] == ["vps", "sps", "pps"]
    sps = vmscore.parse_sps(sets[1], "h265")
    probe = probe_stream(es)
    assert (sps.width, sps.height) == (probe["width"], probe["height"])
    assert sps.level_idc == probe["level"]
    assert sps.bit_depth_luma == (10 if "10" in pix_fmt else 8)
    assert sps.chroma_format_idc == (3 if "444" in pix_fmt else 1)
    sar = probe.get("sample_aspect_ratio", "1:1")
    assert "{}:{}".format(*sps.sample_aspect_ratio) == (sar if sar != "0:1" else "1:1")
    ours = vmscore.decoder_config_record("h265", sets)
    theirs = config_record_written_by_ffmpeg(es, tmp_path, b"hvcC")
    # FFmpeg's record has the same 23-byte header; it may add arrays (SEI) after ours.
    assert ours[:22] == theirs[:22]
    assert ours[22] == 3


H265_VECTORS = json.loads((DATA / "h265" / "expected.json").read_text())


@pytest.mark.parametrize(
    "case", [c for c in H265_VECTORS if c["kind"] == "valid"], ids=lambda c: c["name"]
)
def test_h265_vectors(case: dict[str, Any]) -> None:
    # Units from real encodes (and hand-made ones for rare syntax: sub-layers, scaling lists, HRD),
    # with fields checked against ffprobe and FFmpeg's hvcC when they were made.
    units = {k: (DATA / "h265" / f).read_bytes() for k, f in case["files"].items()}
    sps = vmscore.parse_sps(units["sps"], "h265")
    for field, value in case["sps"].items():
        got = getattr(sps, field)
        assert (list(got) if isinstance(got, tuple) else got) == value, field
    sets = [units["vps"], units["sps"], units["pps"]]
    assert vmscore.decoder_config_record("h265", sets).hex() == case["hvcc"]
    assert vmscore.codec_string(units["sps"], "h265") == case["codec_string"]
    init = vmscore.init_segment("h265", sets)
    assert init.find(b"hvcC") > 0 and bytes.fromhex(case["hvcc"]) in init


@pytest.mark.parametrize(
    "case", [c for c in H265_VECTORS if c["kind"] == "invalid"], ids=lambda c: c["name"]
)
def test_h265_malformed_vectors_raise_clear_errors(case: dict[str, Any]) -> None:
    data = (DATA / "h265" / case["file"]).read_bytes()
    with pytest.raises(vmscore.BitstreamError, match=case["match"]):
        vmscore.parse_sps(data, "h265")


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_truncated_sps_raises_a_clear_error(codec: Codec) -> None:
    stream = encoded(codec, 320, 240, 2, 2, 0)
    sets = vmscore.parameter_sets(stream.frames[0].data, codec)
    sps = next(s for s in sets if vmscore.nal_units(b"\0\0\1" + s, codec)[0].kind == "sps")
    for cut in range(1 if codec == "h264" else 2, 8):
        with pytest.raises(vmscore.BitstreamError, match="SPS"):
            vmscore.parse_sps(sps[:cut], codec)
    with pytest.raises(vmscore.BitstreamError):
        vmscore.parse_sps(sets[-1], codec)  # a PPS is not an SPS
