"""File-system helpers of the recorder: free space, directory fsync, file hashes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def free_bytes(path: str | Path) -> int:
    """Bytes available to this process on the file system holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fsync_directory(path: str | Path) -> None:
    """Makes a file's creation, rename or removal in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: str | Path) -> str:
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
