"""The exceptions of vmscore.

One root, :class:`VmsError`; each subclass also inherits the builtin a caller would catch without
knowing vmscore (``ValueError`` for bad data, ``OSError`` for storage). The native core raises these
same classes.
"""

from __future__ import annotations

__all__ = [
    "BitstreamError",
    "KeyFileError",
    "MuxError",
    "NoFootageError",
    "ParametersChangedError",
    "StorageError",
    "VmsError",
]


class VmsError(Exception):
    """Root of every error vmscore raises on purpose."""


class BitstreamError(VmsError, ValueError):
    """Malformed, truncated or hostile bytes in a bitstream, container or protocol message."""


class MuxError(VmsError, ValueError):
    """A muxer or writer was used against its contract (timestamps going backwards, ...)."""


class ParametersChangedError(MuxError):
    """In-band parameter sets differ from the init segment's: start a new file with this unit."""


class NoFootageError(VmsError, LookupError):
    """An export's time range holds no recorded video."""


class StorageError(VmsError, OSError):
    """Reading or writing recordings failed (a full disk, a vanished directory, ...)."""


class KeyFileError(VmsError, ValueError):
    """A key file is unusable: corrupt, the wrong kind of key, or readable by others."""
