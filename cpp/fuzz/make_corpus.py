#!/usr/bin/env python3
"""Regenerates the seed corpora of the bitstream and muxer fuzz targets (cpp/fuzz/corpus/<target>/)
with ffmpeg.

Usage: python3 cpp/fuzz/make_corpus.py  (needs ffmpeg with libx264 and libx265 on PATH, and vmscore
installed for the segment files of fuzz_fmp4_reader)

Every seed is a small real input: parameter sets of several encoder configurations (profiles,
chroma formats, bit depths, cropping, scaling lists, interlacing, sub-layers, VUI with HRD and
aspect ratio), the first access units of short 64x64 streams, and muxer scripts in the record
format that fuzz_fmp4_muxer.cpp reads (see the comment at its top). The corpus stays far below
200 KB.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"

# The targets whose seeds this script makes.
TARGETS = (
    "fuzz_annexb",
    "fuzz_length_prefixed",
    "fuzz_h264_sps",
    "fuzz_h265_sps",
    "fuzz_access_units",
    "fuzz_parameter_sets",
    "fuzz_fmp4_muxer",
    "fuzz_fmp4_reader",
)

# name: (size, ffmpeg options, encoder parameters: -x264-params / -x265-params)
H264_VARIANTS: dict[str, tuple[str, str, str]] = {
    "high": ("64x64", "-pix_fmt yuv420p", ""),
    "baseline_crop": ("72x40", "-profile:v baseline -pix_fmt yuv420p", ""),
    "high444": ("64x64", "-pix_fmt yuv444p", ""),
    "high10": ("64x64", "-pix_fmt yuv420p10le", ""),
    "high422": ("48x32", "-pix_fmt yuv422p", ""),
    "gray": ("64x64", "-pix_fmt gray", ""),
    "interlaced": ("64x64", "-pix_fmt yuv420p", "interlaced=1"),
    "cqm_jvt": ("64x64", "-pix_fmt yuv420p", "cqm=jvt"),
    "sar_hrd": (
        "64x64",
        "-pix_fmt yuv420p -vf setsar=7/5 -b:v 200k -maxrate 300k -bufsize 600k",
        "nal-hrd=vbr",
    ),
    "no_bframes": ("64x64", "-pix_fmt yuv420p -bf 0", ""),
}

H265_VARIANTS: dict[str, tuple[str, str, str]] = {
    "main": ("64x64", "-pix_fmt yuv420p", ""),
    "window": ("66x34", "-pix_fmt yuv420p", ""),
    "main444": ("64x64", "-pix_fmt yuv444p", ""),
    "main10": ("64x64", "-pix_fmt yuv420p10le", ""),
    "main422_12": ("64x64", "-pix_fmt yuv422p12le", ""),
    "gray": ("64x64", "-pix_fmt gray", ""),
    "scaling_list": ("64x64", "-pix_fmt yuv420p", "scaling-list=default"),
    "temporal_layers": ("64x64", "-pix_fmt yuv420p", "temporal-layers=1:bframes=3"),
    "sar_hrd": (
        "64x64",
        "-pix_fmt yuv420p -vf setsar=7/5",
        "bitrate=200:vbv-maxrate=300:vbv-bufsize=600:hrd=1",
    ),
}

# Variants whose PPS and whole parameter-set bundle are seeds too.
BUNDLED = ("high", "main", "sar_hrd", "main444", "scaling_list")


def encode(
    codec: str, variant: tuple[str, str, str], out: Path, frames: int, aud: bool = False
) -> bytes:
    size, options, params = variant
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"]
    args += ["-i", f"testsrc2=size={size}:rate=10", "-frames:v", str(frames)]
    if codec == "h264":
        args += ["-c:v", "libx264", "-g", "5", "-bf", "2", *options.split()]
        if params:
            args += ["-x264-params", params]
        bsf = "filter_units=remove_types=6"  # x264's version SEI is large and says nothing
        args += ["-bsf:v", bsf + (",h264_metadata=aud=insert" if aud else ""), "-f", "h264"]
    else:
        x265 = "log-level=error:info=0:keyint=5:repeat-headers=1" + (f":{params}" if params else "")
        args += ["-c:v", "libx265", *options.split(), "-x265-params", x265]
        args += [*(["-bsf:v", "hevc_metadata=aud=insert"] if aud else []), "-f", "hevc"]
    subprocess.run([*args, str(out)], check=True)
    return out.read_bytes()


def nal_units(stream: bytes) -> list[bytes]:
    starts = [m.start() for m in re.finditer(b"\x00\x00\x01", stream)]
    units = []
    for i, s in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(stream)
        unit = stream[s + 3 : end].rstrip(b"\x00")
        if unit:
            units.append(unit)
    return units


def nal_type(codec: str, unit: bytes) -> int:
    return unit[0] & 0x1F if codec == "h264" else (unit[0] >> 1) & 0x3F


def is_keyframe(codec: str, unit: bytes) -> bool:
    t = nal_type(codec, unit)
    return t == 5 if codec == "h264" else 16 <= t <= 23


def is_aud(codec: str, unit: bytes) -> bool:
    return nal_type(codec, unit) == (9 if codec == "h264" else 35)


def is_parameter_set(codec: str, unit: bytes) -> bool:
    return nal_type(codec, unit) in ((7, 8) if codec == "h264" else (32, 33, 34))


def access_units(codec: str, stream_with_auds: bytes) -> list[list[bytes]]:
    aus: list[list[bytes]] = []
    for unit in nal_units(stream_with_auds):
        if is_aud(codec, unit) or not aus:
            aus.append([])
        aus[-1].append(unit)
    return aus


def annexb(units: list[bytes], short_start_codes: bool = False) -> bytes:
    sc = b"\x00\x00\x01" if short_start_codes else b"\x00\x00\x00\x01"
    return b"".join(sc + u for u in units)


def length_prefixed(units: list[bytes], size: int) -> bytes:
    return b"".join(len(u).to_bytes(size, "big") + u for u in units)


def parameter_sets(codec: str, stream: bytes) -> dict[str, bytes]:
    names = {7: "sps", 8: "pps"} if codec == "h264" else {32: "vps", 33: "sps", 34: "pps"}
    found: dict[str, bytes] = {}
    for unit in nal_units(stream):
        name = names.get(nal_type(codec, unit))
        if name and name not in found:
            found[name] = unit
    return found


# fuzz_fmp4_muxer's record format; keep in step with fuzz_fmp4_muxer.cpp.
CFG_H265, CFG_GIVE_PS, CFG_LENGTH_PREFIXED, CFG_DETECT = 0x01, 0x02, 0x04, 0x08
CFG_FRAGMENT_1, CFG_FRAGMENT_9000 = 0x10, 0x20
CTL_KEY, CTL_PREPEND_PS, CTL_FLUSH = 0x01, 0x02, 0x04
DTS_U16 = 0 << 3
CTO_NONE, CTO_S16 = 0 << 5, 1 << 5
CTL_LEN16 = 0x80
# fuzz_fmp4_reader.cpp's config byte.
READER_SEED_INIT, READER_SAMPLES = 0x01, 0x02


def muxer_script(
    config: int, aus: list[tuple[bytes, bool]], ctos: list[int], flush_at: int = -1
) -> bytes:
    out = bytearray([config])
    for i, (au, key) in enumerate(aus):
        ctl = (CTL_KEY if key else 0) | DTS_U16 | (CTO_S16 if ctos[i] else CTO_NONE)
        if i == flush_at:
            ctl |= CTL_FLUSH
        if len(au) > 255:
            ctl |= CTL_LEN16
        out.append(ctl)
        out += struct.pack(">H", 9000)  # 10 fps at 90 kHz
        if ctos[i]:
            out += struct.pack(">h", ctos[i])
        out += struct.pack(">H", len(au)) if len(au) > 255 else bytes([len(au)])
        out += au
    return bytes(out)


def write(target: str, name: str, data: bytes) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def parameter_set_seeds(tmp: Path) -> None:
    for codec, variants in (("h264", H264_VARIANTS), ("h265", H265_VARIANTS)):
        target = f"fuzz_{codec}_sps"
        for name, variant in variants.items():
            ps = parameter_sets(codec, encode(codec, variant, tmp / f"{codec}_{name}.es", frames=2))
            write(target, f"sps_{name}", ps["sps"])
            if name in BUNDLED:
                write(target, f"pps_{name}", ps["pps"])
                order = ["vps", "sps", "pps"] if codec == "h265" else ["sps", "pps"]
                write(target, f"bundle_{name}", annexb([ps[k] for k in order]))
            if name == "main":
                write(target, "vps_main", ps["vps"])


def stream_seeds(tmp: Path, codec: str) -> None:
    variant = H264_VARIANTS["high"] if codec == "h264" else H265_VARIANTS["main"]
    plain = encode(codec, variant, tmp / f"{codec}.es", frames=10)
    with_aud = encode(codec, variant, tmp / f"{codec}_aud.es", frames=10, aud=True)
    aus = access_units(codec, with_aud)
    units = nal_units(plain)
    cbit = CFG_H265 if codec == "h265" else 0

    # Annex-B: the first access units, both start code lengths, trailing zero bytes.
    write("fuzz_annexb", f"{codec}_first_aus", annexb([u for a in aus[:3] for u in a]))
    write("fuzz_annexb", f"{codec}_short_sc", annexb(units[:4], short_start_codes=True))
    padded = annexb(units[:3]).replace(b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x01")
    write("fuzz_annexb", f"{codec}_trailing_zeros", b"\x00\x00" + padded)

    # Length-prefixed: byte 0 selects the length size (0: 1, 1: 2, 2: 4 bytes).
    small = [u for u in units if len(u) < 256][:5]
    for sel, size in ((0, 1), (1, 2), (2, 4)):
        write(
            "fuzz_length_prefixed",
            f"{codec}_len{size}",
            bytes([sel]) + length_prefixed(small, size),
        )

    # Access units: the start of the stream, with and without AUDs.
    write("fuzz_access_units", f"{codec}_stream", plain[:3000])
    write("fuzz_access_units", f"{codec}_aud", with_aud[:3000])

    # Parameter sets: byte 0 selects the codec (bit 0) and the framing (bits 1-2).
    key_au = [u for u in aus[0] if not is_aud(codec, u)]
    write("fuzz_parameter_sets", f"{codec}_annexb", bytes([cbit]) + annexb(key_au)[:1500])
    lp4 = bytes([cbit | (3 << 1)]) + length_prefixed(key_au, 4)[:1500]
    write("fuzz_parameter_sets", f"{codec}_len4", lp4)

    # The muxer: access units at 10 fps with in-band parameter sets, with given ones (keyframes
    # detected, length-prefixed input, a flush), and with given ones and in-band ones removed.
    pairs = [(annexb(a), any(is_keyframe(codec, u) for u in a)) for a in aus[:10]]
    ctos = [0 if key else 3000 * (1 + i % 2) for i, (_, key) in enumerate(pairs)]
    write("fuzz_fmp4_muxer", f"{codec}_inband", muxer_script(cbit, pairs, ctos))
    config = cbit | CFG_GIVE_PS | CFG_LENGTH_PREFIXED | CFG_DETECT | CFG_FRAGMENT_9000
    script = muxer_script(config, pairs[:6], ctos[:6], flush_at=2)
    write("fuzz_fmp4_muxer", f"{codec}_given_ps_detect_lp", script)
    stripped = [
        (annexb([u for u in a if not is_parameter_set(codec, u)], short_start_codes=True), key)
        for a, (_, key) in zip(aus[:6], pairs, strict=False)
    ]
    script = muxer_script(cbit | CFG_GIVE_PS | CFG_FRAGMENT_1, stripped, ctos[:6])
    write("fuzz_fmp4_muxer", f"{codec}_given_ps_fragments", script)


def reader_seeds(tmp: Path, codec: str) -> None:
    """Segment files as the recorder writes them (init segment, metadata box, fragments), muxed by
    the installed vmscore, in the format fuzz_fmp4_reader.cpp reads: byte 0 is its config."""
    import vmscore

    variant = H264_VARIANTS["high"] if codec == "h264" else H265_VARIANTS["main"]
    aus = access_units(codec, encode(codec, variant, tmp / f"{codec}_reader.es", frames=10))
    muxer = vmscore.Fmp4Muxer(codec, fragment_duration_90k=18000)  # type: ignore[arg-type]
    out = b""
    for i, units in enumerate(aus):
        key = any(is_keyframe(codec, u) for u in units)
        cto = 0 if key else 3000 * (1 + i % 2)
        out += muxer.add(annexb(units), i * 9000 + cto, i * 9000, key)
    out += muxer.flush()
    init = muxer.init_segment
    assert init is not None
    meta = vmscore.segment_metadata_box('{"format":"vmscore-segment","version":1,"camera":"c"}')
    segment = init + meta + out[len(init) :]
    write("fuzz_fmp4_reader", f"{codec}_segment_samples", bytes([READER_SAMPLES]) + segment)
    write("fuzz_fmp4_reader", f"{codec}_segment_cut", bytes([0]) + segment[:-37])
    # Fragments only, after the target's own init segment.
    fragments = out[len(init) :]
    write("fuzz_fmp4_reader", f"{codec}_fragments", bytes([READER_SEED_INIT]) + fragments)


def main() -> int:
    if not shutil.which("ffmpeg"):
        print("ffmpeg is needed to make the corpus", file=sys.stderr)
        return 1
    for target in TARGETS:  # other targets' seeds are not made here and stay as they are
        shutil.rmtree(CORPUS / target, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        parameter_set_seeds(Path(tmp))
        for codec in ("h264", "h265"):
            stream_seeds(Path(tmp), codec)
            reader_seeds(Path(tmp), codec)
    files = [p for t in TARGETS for p in (CORPUS / t).iterdir() if p.is_file()]
    print(f"corpus: {sum(p.stat().st_size for p in files)} bytes in {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
