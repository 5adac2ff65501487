"""Segment files as the recorder writes them, for the reader and export tests: the muxer's init
segment, an optional metadata box (uuid, JSON), then the muxer's fragments."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import vmscore
from vmscore.sim.encode import EncodedFrame

METADATA_UUID = bytes.fromhex("d584998356024607bc57f763da9d47eb")


def metadata_text(camera: str, start_wall_us: int, codec_string: str) -> str:
    return json.dumps(
        {
            "format": "vmscore-segment",
            "version": 1,
            "camera": camera,
            "stream": "main",
            "start_wall_us": start_wall_us,
            "start_90k": 0,
            "codec": codec_string,
        }
    )


def metadata_box(text: str) -> bytes:
    """Built here byte by byte, independently of vmscore.segment_metadata_box."""
    payload = text.encode()
    return (24 + len(payload)).to_bytes(4, "big") + b"uuid" + METADATA_UUID + payload


def segment_bytes(
    codec: str,
    frames: Sequence[EncodedFrame],
    *,
    metadata: str | None = None,
    fragment_duration_90k: int = 0,
) -> tuple[bytes, list[vmscore.FragmentInfo]]:
    """One segment of `frames` (starting with a keyframe) and where the muxer put each fragment,
    offsets counted in the returned file (the metadata box included)."""
    muxer = vmscore.Fmp4Muxer(codec, fragment_duration_90k=fragment_duration_90k)  # type: ignore[arg-type]
    out = b""
    infos: list[vmscore.FragmentInfo] = []
    for f in frames:
        out += muxer.add(f.data, f.pts_90k, f.dts_90k, f.is_keyframe)
        info = muxer.last_fragment
        if info is not None and (not infos or infos[-1].sequence != info.sequence):
            infos.append(info)
    out += muxer.flush()
    info = muxer.last_fragment
    assert info is not None
    if not infos or infos[-1].sequence != info.sequence:
        infos.append(info)
    init = muxer.init_segment
    assert init is not None and out.startswith(init)
    if metadata is not None:
        out = init + metadata_box(metadata) + out[len(init) :]
    return out, infos


def write_segment(
    path: Path,
    codec: str,
    frames: Sequence[EncodedFrame],
    *,
    metadata: str | None = None,
    fragment_duration_90k: int = 0,
) -> bytes:
    data, _ = segment_bytes(
        codec, frames, metadata=metadata, fragment_duration_90k=fragment_duration_90k
    )
    path.write_bytes(data)
    return data
