"""A small, independent ISO BMFF (MP4) box reader for tests: it checks what the muxer writes
without using the muxer's own code."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

CONTAINERS = {
    b"moov",
    b"trak",
    b"edts",
    b"mdia",
    b"minf",
    b"stbl",
    b"mvex",
    b"moof",
    b"traf",
    b"dinf",
}


@dataclass
class Box:
    type: bytes
    offset: int
    size: int
    header: int  # 8, or 16 with a 64-bit size
    data: bytes  # the box's payload (after the header)
    children: list[Box] = field(default_factory=list)

    def find(self, path: str) -> Box:
        """The first descendant along a slash-separated path of box types."""
        box = self
        for name in path.split("/"):
            box = next(c for c in box.children if c.type == name.encode())
        return box

    def all(self, name: str) -> list[Box]:
        return [c for c in self.children if c.type == name.encode()]


def parse(data: bytes, offset: int = 0, end: int | None = None) -> list[Box]:
    """Parses consecutive boxes; raises ValueError when a size is inconsistent."""
    end = len(data) if end is None else end
    boxes = []
    pos = offset
    while pos < end:
        if end - pos < 8:
            raise ValueError(f"truncated box header at {pos}")
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"box {kind!r} at {pos} has bad size {size}")
        box = Box(kind, pos, size, header, data[pos + header : pos + size])
        if kind in CONTAINERS:
            box.children = parse(data, pos + header, pos + size)
        boxes.append(box)
        pos += size
    return boxes


def full_box(box: Box) -> tuple[int, int, bytes]:
    """(version, flags, rest) of a full box."""
    version = box.data[0]
    flags = int.from_bytes(box.data[1:4], "big")
    return version, flags, box.data[4:]


@dataclass
class Trun:
    version: int
    flags: int
    data_offset: int | None
    durations: list[int]
    sizes: list[int]
    sample_flags: list[int]
    cts_offsets: list[int]


def trun(box: Box) -> Trun:
    version, flags, rest = full_box(box)
    (count,) = struct.unpack_from(">I", rest, 0)
    pos = 4
    data_offset = None
    if flags & 0x1:
        (data_offset,) = struct.unpack_from(">i", rest, pos)
        pos += 4
    if flags & 0x4:
        pos += 4
    out = Trun(version, flags, data_offset, [], [], [], [])
    for _ in range(count):
        if flags & 0x100:
            out.durations.append(struct.unpack_from(">I", rest, pos)[0])
            pos += 4
        if flags & 0x200:
            out.sizes.append(struct.unpack_from(">I", rest, pos)[0])
            pos += 4
        if flags & 0x400:
            out.sample_flags.append(struct.unpack_from(">I", rest, pos)[0])
            pos += 4
        if flags & 0x800:
            fmt = ">i" if version == 1 else ">I"
            out.cts_offsets.append(struct.unpack_from(fmt, rest, pos)[0])
            pos += 4
    if pos != len(rest):
        raise ValueError("trun has trailing bytes")
    return out


def tfdt(box: Box) -> int:
    version, _, rest = full_box(box)
    return int(struct.unpack_from(">Q" if version == 1 else ">I", rest, 0)[0])
