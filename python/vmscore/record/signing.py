"""Signed evidence exports: a manifest signed with the station's Ed25519 key, and its verification.

An exported MP4 ``clip.mp4`` gets ``clip.mp4.manifest.json`` next to it (:func:`sign_export`). The
manifest is a JSON object::

    {
      "format": "vmscore-export-manifest",
      "version": 1,
      "file": {"name": "clip.mp4", "size": 5242880, "sha256": "<64 hex>",
               "block_size": 1048576, "block_sha256": ["<64 hex>", ...]},
      "camera": "gate-north",
      "range": {"start_us": ..., "end_us": ..., "start_utc": "2024-05-01T12:00:00.000000Z",
                "end_utc": "..."},
      "exporter": "alice",
      "station": "north",
      "exported_at_us": ...,
      "exported_at_utc": "...",
      "key": {"algorithm": "Ed25519", "public_key": "-----BEGIN PUBLIC KEY-----...",
              "fingerprint": "<16 hex>"},
      "extra": {"case": "2024-1187"},
      "signature": "<base64, 88 characters>"
    }

- ``file.block_sha256[i]`` is the SHA-256 of bytes ``i * block_size`` up to
  ``min((i + 1) * block_size, size)``; there are ``ceil(size / block_size)`` of them (none for an
  empty file). They locate a modification to a block; ``file.sha256`` covers the whole file.
- Times are microseconds since the Unix epoch (UTC) and the same instant as ISO-8601 text with
  exactly six decimals and ``Z``. The range is the requested one; a media time ``t`` seconds after
  the file's first presentation time is reported as ``range.start_us + t``.
- ``key.public_key`` is the signer's public key (PEM, SubjectPublicKeyInfo); ``key.fingerprint``
  is the first 16 hex digits of the SHA-256 of its 32 raw bytes.
- ``extra`` maps keys of ``[A-Za-z0-9_.-]`` (1 to 64 characters) to strings.
- ``signature`` is the Ed25519 signature (base64, standard alphabet, padded) of the *canonical
  bytes*: the manifest object without its ``signature`` member, serialised as JSON with object keys
  sorted, no whitespace, non-ASCII characters as themselves and the minimal escapes (``\\"``,
  ``\\\\``, ``\\b \\f \\n \\r \\t``, other control characters as ``\\u00xx``), encoded as UTF-8.
  The manifest holds only strings, integers (0 to 2**53 - 1), lists and objects, and its keys are
  ASCII, so this is RFC 8785 (JSON Canonicalization Scheme) and any language can reproduce it.

A manifest with members that are unknown, missing or of the wrong type is malformed. The
manifest file itself may be formatted in any way; only its content is signed.

:func:`verify_export` checks the signature, optionally that the signer is trusted, then the file
against the hashes, and says exactly what is wrong: which bytes were modified, cut off or
appended and, while the MP4 still demuxes, which media time those bytes hold.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from vmscore.errors import KeyFileError

__all__ = [
    "BLOCK_SIZE",
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "ByteDamage",
    "ExportKey",
    "ExportManifest",
    "ExportRange",
    "FileDigest",
    "Finding",
    "MediaSpan",
    "StationKey",
    "VerifyReport",
    "canonical_bytes",
    "key_fingerprint",
    "load_public_key",
    "manifest_path_for",
    "sign_export",
    "utc_text",
    "verify_export",
]

MANIFEST_FORMAT = "vmscore-export-manifest"
MANIFEST_VERSION = 1
BLOCK_SIZE = 1 << 20
"""Bytes per hashed block of an export."""

_MAX_KEY_FILE = 64 << 10
_MAX_MANIFEST = 256 << 20
_MAX_INT = 2**53 - 1  # integers stay exact as JSON numbers in every language (and in RFC 8785)
_MAX_WALL_US = _MAX_INT  # 2255-06-05
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- keys -----------------------------------------------------------------------------------------


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_fingerprint(key: Ed25519PublicKey) -> str:
    """The first 16 hex digits of the SHA-256 of the key's 32 raw bytes."""
    return hashlib.sha256(_raw_public(key)).hexdigest()[:16]


def _key_kind(key: object) -> str:
    """``an RSA``, ``an EllipticCurve``, ``a DSA`` ... from the key's class name."""
    kind = type(key).__name__.lstrip("_").removesuffix("PrivateKey").removesuffix("PublicKey")
    return f"{'an' if kind[:1] in 'AEIORX' else 'a'} {kind}"


def _public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _read_key_file(path: Path) -> bytes:
    with path.open("rb") as f:
        data = f.read(_MAX_KEY_FILE + 1)
    if len(data) > _MAX_KEY_FILE:
        raise KeyFileError(f"{path} is larger than {_MAX_KEY_FILE} bytes: not a key file")
    if not data.strip():
        raise KeyFileError(f"{path} is empty: not a key file (was its creation interrupted?)")
    return data


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StationKey:
    """The station's Ed25519 signing key, kept unencrypted in a PEM file only its owner can read.

    :meth:`create` writes a new key atomically with mode 0600 and never replaces an existing file;
    :meth:`load` refuses a file that group or others can access, or that holds anything but an
    Ed25519 private key (:class:`~vmscore.errors.KeyFileError`).
    """

    __slots__ = ("_private", "path")

    def __init__(self, private_key: Ed25519PrivateKey, *, path: Path | None = None) -> None:
        self._private = private_key
        self.path = path
        """The key file, or None for a key held only in memory."""

    @classmethod
    def generate(cls) -> StationKey:
        """A new key held only in memory."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> StationKey:
        """Reads the key: ``FileNotFoundError`` when there is none, ``KeyFileError`` when it is
        unusable."""
        path = Path(path)
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{path} is not a regular file")
        if st.st_mode & 0o077:
            raise KeyFileError(
                f"{path} can be accessed by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"the station's private key must be readable by its owner only: chmod 600 {path}"
            )
        data = _read_key_file(path)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except TypeError as exc:  # encrypted, and no password given
            raise KeyFileError(
                f"{path} is encrypted with a passphrase; station keys are stored unencrypted "
                "and protected by the file's permissions"
            ) from exc
        except (ValueError, UnsupportedAlgorithm) as exc:
            if b"PUBLIC KEY-----" in data:
                raise KeyFileError(
                    f"{path} holds a public key; the station key file must hold the private key"
                ) from exc
            raise KeyFileError(
                f"{path} is not a readable PEM private key (corrupt, truncated or another kind "
                f"of file): {exc}"
            ) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path} holds {_key_kind(key)} key; station keys are Ed25519")
        return cls(key, path=path)

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> StationKey:
        """Generates a key and writes it to ``path`` (mode 0600, atomically).

        ``FileExistsError`` when ``path`` exists: a station key is never overwritten, since every
        export signed with it would lose its signer. The directory must exist.
        """
        path = Path(path)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        if path.exists() or path.is_symlink():
            raise FileExistsError(errno.EEXIST, "a station key is never overwritten", str(path))
        directory = path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        try:
            _write_and_close(fd, pem, 0o600)
            try:
                # link() fails when the name exists: two stations racing cannot replace a key.
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(
                    errno.EEXIST, "a station key is never overwritten", str(path)
                ) from None
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                _write_exclusive(path, pem)  # a file system without hard links
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        _fsync_directory(directory)
        return cls(key, path=path)

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> StationKey:
        """Loads the key at ``path``, creating it first when there is none."""
        try:
            return cls.load(path)
        except FileNotFoundError:
            pass
        try:
            return cls.create(path)
        except FileExistsError:  # created by someone else meanwhile
            return cls.load(path)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._private.public_key()

    @property
    def public_key_pem(self) -> str:
        """The public key as PEM (SubjectPublicKeyInfo), to hand to whoever verifies exports."""
        return _public_pem(self.public_key)

    @property
    def fingerprint(self) -> str:
        """First 16 hex digits of the SHA-256 of the raw public key."""
        return key_fingerprint(self.public_key)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._private.sign(data)

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path is not None else ""
        return f"StationKey(fingerprint={self.fingerprint!r}{where})"


def _write_and_close(fd: int, data: bytes, mode: int) -> None:
    """Sets the mode, writes all of ``data``, syncs it to disk and closes ``fd``."""
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_exclusive(path: Path, data: bytes) -> None:
    _write_and_close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), data, 0o600)


def load_public_key(source: str | os.PathLike[str] | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (a path) or PEM bytes; ``KeyFileError`` otherwise."""
    if isinstance(source, bytes):
        data, name = source, "the given PEM"
    else:
        data, name = _read_key_file(Path(source)), str(source)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        if b"PRIVATE KEY-----" in data:
            raise KeyFileError(
                f"{name} holds a private key; pass the station's public key instead "
                "('vmscore keys show' prints it)"
            ) from exc
        raise KeyFileError(f"{name} is not a readable PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{name} holds {_key_kind(key)} key; station keys are Ed25519")
    return key


# --- the manifest ---------------------------------------------------------------------------------


def utc_text(wall_us: int) -> str:
    """Microseconds since the epoch as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return (_EPOCH + timedelta(microseconds=wall_us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_Hex256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
_Text = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
_WallUs = Annotated[int, Field(ge=0, le=_MAX_WALL_US)]
_ExtraKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FileDigest(_Strict):
    """What the exported file was: its name, size and SHA-256, whole and per block."""

    name: _Text
    size: Annotated[int, Field(ge=0, le=_MAX_INT)]
    sha256: _Hex256
    block_size: Annotated[int, Field(ge=4096, le=64 << 20)]
    block_sha256: list[_Hex256]

    @model_validator(mode="after")
    def _one_hash_per_block(self) -> FileDigest:
        blocks = -(-self.size // self.block_size)
        if len(self.block_sha256) != blocks:
            raise ValueError(
                f"{self.size} bytes in blocks of {self.block_size} make {blocks} blocks, "
                f"but {len(self.block_sha256)} block hashes are listed"
            )
        return self


class ExportRange(_Strict):
    """The exported wall-clock range, as microseconds since the epoch and as UTC text."""

    start_us: _WallUs
    end_us: _WallUs
    start_utc: str
    end_utc: str

    @model_validator(mode="after")
    def _consistent(self) -> ExportRange:
        if self.end_us < self.start_us:
            raise ValueError(f"range ends ({self.end_us}) before it starts ({self.start_us})")
        for us, text in ((self.start_us, self.start_utc), (self.end_us, self.end_utc)):
            if utc_text(us) != text:
                raise ValueError(f"{text!r} is not {us} µs, which is {utc_text(us)!r}")
        return self


class ExportKey(_Strict):
    """The public half of the key that signed the manifest."""

    algorithm: Literal["Ed25519"]
    public_key: Annotated[str, StringConstraints(max_length=10_000)]
    fingerprint: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]

    @model_validator(mode="after")
    def _fingerprint_matches(self) -> ExportKey:
        key = self.load()
        if key_fingerprint(key) != self.fingerprint:
            raise ValueError(
                f"fingerprint {self.fingerprint} does not belong to the key, "
                f"whose fingerprint is {key_fingerprint(key)}"
            )
        return self

    def load(self) -> Ed25519PublicKey:
        try:
            return load_public_key(self.public_key.encode("utf-8"))
        except (KeyFileError, UnicodeEncodeError) as exc:
            raise ValueError(f"public_key: {exc}") from None


class ExportManifest(_Strict):
    """The signed description of one exported file (see the module's documentation)."""

    format: Literal["vmscore-export-manifest"]
    version: Literal[1]
    file: FileDigest
    camera: _Text
    range: ExportRange
    exporter: _Text
    station: _Text
    exported_at_us: _WallUs
    exported_at_utc: str
    key: ExportKey
    extra: dict[_ExtraKey, Annotated[str, StringConstraints(max_length=10_000)]]
    signature: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{86}==$")]

    @model_validator(mode="after")
    def _export_time_consistent(self) -> ExportManifest:
        if utc_text(self.exported_at_us) != self.exported_at_utc:
            raise ValueError(
                f"exported_at_utc {self.exported_at_utc!r} is not exported_at_us "
                f"({utc_text(self.exported_at_us)!r})"
            )
        return self


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """The bytes the signature covers: ``document`` without ``signature``, as canonical JSON."""
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    text = json.dumps(
        unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def manifest_path_for(mp4_path: str | os.PathLike[str]) -> Path:
    """Where the manifest of ``mp4_path`` lives: ``<file>.manifest.json`` next to it."""
    path = Path(mp4_path)
    return path.with_name(path.name + ".manifest.json")


@dataclass(frozen=True)
class _Hashes:
    size: int
    sha256: str
    blocks: list[str]


def _hash_file(path: Path, block_size: int) -> _Hashes:
    whole = hashlib.sha256()
    blocks: list[str] = []
    size = 0
    with path.open("rb") as f:
        while block := f.read(block_size):
            whole.update(block)
            blocks.append(hashlib.sha256(block).hexdigest())
            size += len(block)
    return _Hashes(size, whole.hexdigest(), blocks)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _write_and_close(fd, data, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)


def sign_export(
    mp4_path: str | os.PathLike[str],
    *,
    key: StationKey,
    camera: str,
    start_wall_us: int,
    end_wall_us: int,
    exporter: str,
    station: str,
    extra: Mapping[str, str] | None = None,
) -> Path:
    """Hashes the finished export, signs a manifest of it and writes ``<file>.manifest.json``.

    ``start_wall_us`` / ``end_wall_us`` are the exported range (µs since the epoch, UTC),
    ``exporter`` the user who asked for it, ``station`` this station's name; ``extra`` adds
    string fields (a case number, a reason). The manifest is written atomically (temporary file,
    fsync, rename) and replaces an older one. Returns its path. ``ValueError`` for bad arguments,
    ``OSError`` when the file cannot be read or the manifest written, ``RuntimeError`` when the
    file changed while it was being hashed.
    """
    path = Path(mp4_path)
    before = os.stat(path)
    if not stat.S_ISREG(before.st_mode):
        raise ValueError(f"{path} is not a regular file")
    hashes = _hash_file(path, BLOCK_SIZE)
    after = os.stat(path)
    if (after.st_size, after.st_mtime_ns, after.st_ino) != (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    ) or hashes.size != after.st_size:
        raise RuntimeError(f"{path} changed while it was being hashed; sign it once it is complete")
    now_us = (datetime.now(UTC) - _EPOCH) // timedelta(microseconds=1)
    document: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "file": {
            "name": path.name,
            "size": hashes.size,
            "sha256": hashes.sha256,
            "block_size": BLOCK_SIZE,
            "block_sha256": hashes.blocks,
        },
        "camera": camera,
        "range": {
            "start_us": start_wall_us,
            "end_us": end_wall_us,
            "start_utc": utc_text(start_wall_us) if 0 <= start_wall_us <= _MAX_WALL_US else "",
            "end_utc": utc_text(end_wall_us) if 0 <= end_wall_us <= _MAX_WALL_US else "",
        },
        "exporter": exporter,
        "station": station,
        "exported_at_us": now_us,
        "exported_at_utc": utc_text(now_us),
        "key": {
            "algorithm": "Ed25519",
            "public_key": key.public_key_pem,
            "fingerprint": key.fingerprint,
        },
        "extra": dict(extra or {}),
    }
    signature = key.sign(canonical_bytes(document))
    document["signature"] = base64.b64encode(signature).decode("ascii")
    try:
        ExportManifest.model_validate(document)
    except ValidationError as exc:
        raise ValueError(f"cannot sign this export: {_summarise(exc)}") from None
    target = manifest_path_for(path)
    _write_atomic(target, (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode())
    return target


# --- verification ---------------------------------------------------------------------------------


_DamageKind = Literal["modified", "missing", "appended"]


class _Report(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Finding(_Report):
    """One thing verification found: ``code`` for programs, ``message`` for people."""

    code: str
    message: str


class MediaSpan(_Report):
    """The media of one stream inside a damaged byte range."""

    stream: int
    kind: str
    """``video``, ``audio``, ..."""
    start_s: float
    """Seconds from the file's first presentation time (the start of the export)."""
    end_s: float
    start_utc: str | None
    """``start_s`` as wall time, counted from the manifest's range start."""
    end_utc: str | None
    packets: int
    keyframes: int


class ByteDamage(_Report):
    """A byte range of the file that differs from what was signed."""

    kind: _DamageKind
    start: int
    end: int
    """Exclusive."""
    blocks: tuple[int, int] | None
    """First and last index of the signed blocks concerned (None for appended bytes)."""
    media: list[MediaSpan] | None
    """The media in those bytes; None when the file does not demux."""
    non_media_bytes: int | None
    """Bytes of the range outside every demuxed packet (container structure); None if unknown."""


class VerifyReport(_Report):
    """The outcome of :func:`verify_export`: valid, or every problem found."""

    file: str
    manifest: str
    valid: bool
    signature: Literal["valid", "invalid", "unchecked"]
    key_fingerprint: str | None = None
    key_trusted: bool | None = None
    """None when no trusted keys were given."""
    camera: str | None = None
    station: str | None = None
    exporter: str | None = None
    start_utc: str | None = None
    end_utc: str | None = None
    exported_at_utc: str | None = None
    signed_name: str | None = None
    signed_size: int | None = None
    actual_size: int | None = None
    problems: list[Finding] = []
    notes: list[Finding] = []
    damage: list[ByteDamage] = []


def _summarise(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "manifest"
        parts.append(f"{where}: {err['msg']}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"member {k!r} appears twice")
        out[k] = v
    return out


def _read_manifest(path: Path) -> tuple[dict[str, Any], ExportManifest] | Finding:
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_MANIFEST + 1)
    except FileNotFoundError:
        return Finding(
            code="manifest_missing",
            message=f"no manifest at {path}: without it the file cannot be verified "
            "(pass --manifest if it was moved or renamed)",
        )
    except OSError as exc:
        return Finding(
            code="manifest_unreadable", message=f"cannot read the manifest {path}: {exc}"
        )
    if len(data) > _MAX_MANIFEST:
        return Finding(
            code="manifest_malformed", message=f"{path} is too large to be an export manifest"
        )
    try:
        document = json.loads(data.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        return Finding(code="manifest_malformed", message=f"{path} is not valid JSON: {exc}")
    if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
        return Finding(
            code="manifest_malformed", message=f"{path} is not a vmscore export manifest"
        )
    if document.get("version") != MANIFEST_VERSION:
        return Finding(
            code="manifest_malformed",
            message=f"{path} has manifest version {document.get('version')!r}; "
            f"this vmscore reads version {MANIFEST_VERSION}",
        )
    try:
        manifest = ExportManifest.model_validate(document)
        canonical_bytes(document)  # lone surrogates in strings cannot be UTF-8
    except ValidationError as exc:
        return Finding(code="manifest_malformed", message=f"{path} is malformed: {_summarise(exc)}")
    except UnicodeEncodeError:
        return Finding(code="manifest_malformed", message=f"{path} has text that is not Unicode")
    return document, manifest


@dataclass
class _Comparison:
    actual_size: int
    modified: list[int]
    """Indices of signed blocks, fully present, whose hash differs."""
    prefix_sha256: str
    """SHA-256 of the first min(signed, actual) bytes."""


def _compare(path: Path, digest: FileDigest) -> _Comparison:
    prefix = hashlib.sha256()
    modified: list[int] = []
    actual = 0
    with path.open("rb") as f:
        for index, expected in enumerate(digest.block_sha256):
            length = min(digest.block_size, digest.size - index * digest.block_size)
            block = f.read(length)
            prefix.update(block)
            actual += len(block)
            if len(block) < length:
                break  # cut off inside this block: reported as missing bytes
            if hashlib.sha256(block).hexdigest() != expected:
                modified.append(index)
        while chunk := f.read(1 << 20):
            actual += len(chunk)
    return _Comparison(actual, modified, prefix.hexdigest())


def _runs(indices: Sequence[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


@dataclass(frozen=True)
class _Packet:
    stream: int
    kind: str
    pos: int
    size: int
    start_s: float
    end_s: float
    key: bool


@dataclass
class _Demuxed:
    packets: list[_Packet]
    """Byte positions, and times relative to the file's first presentation time."""
    end_s: float | None
    """The container's declared end of media (same origin), None when it declares none."""
    error: str | None
    """Why demuxing stopped early; the packets are those read until then."""


def _demux(path: Path) -> _Demuxed:
    import av  # only needed to locate damage

    raw: list[tuple[int, str, int, int, float, float, bool]] = []
    error: str | None = None
    origin: float | None = None
    end: float | None = None
    try:
        with av.open(str(path), mode="r") as container:
            if container.start_time is not None:
                origin = container.start_time / 1_000_000
                if container.duration is not None:
                    end = origin + container.duration / 1_000_000
            try:
                for packet in container.demux():
                    ts = packet.pts if packet.pts is not None else packet.dts
                    if packet.pos is None or packet.pos < 0 or packet.size <= 0 or ts is None:
                        continue
                    tb = float(packet.time_base)
                    start = ts * tb
                    raw.append(
                        (
                            packet.stream_index,
                            packet.stream.type,
                            packet.pos,
                            packet.size,
                            start,
                            start + (packet.duration or 0) * tb,
                            packet.is_keyframe,
                        )
                    )
            except (av.FFmpegError, OSError, ValueError) as exc:
                error = f"demuxing stopped early: {exc}"
    except (av.FFmpegError, OSError, ValueError) as exc:
        return _Demuxed(
            [],
            None,
            f"the file does not open as media, so damage is not mapped to media times: {exc}",
        )
    if origin is None and raw:
        origin = min(r[4] for r in raw)
    base = origin or 0.0
    packets = [_Packet(s, k, p, n, a - base, b - base, key) for s, k, p, n, a, b, key in raw]
    return _Demuxed(packets, None if end is None else end - base, error)


def _media_in(
    demuxed: _Demuxed, kind: _DamageKind, start: int, end: int, range_start_us: int
) -> tuple[list[MediaSpan], int]:
    """Per stream, the media of the packets overlapping bytes [start, end), and the bytes of the
    range outside every packet.

    For missing bytes (a cut at ``start``) the demuxer only knows packets before the cut, so a span
    runs from the last packet that reaches the cut to the container's declared end of media.
    """
    packets = demuxed.packets
    if kind == "missing":
        hit = [p for p in packets if p.pos + p.size >= start]
    else:
        hit = [p for p in packets if p.pos < end and p.pos + p.size > start]
    spans: list[MediaSpan] = []
    for stream in sorted({p.stream for p in hit}):
        mine = [p for p in hit if p.stream == stream]
        a = min(p.start_s for p in mine)
        b = max(max(p.end_s, p.start_s) for p in mine)
        if kind == "missing" and demuxed.end_s is not None:
            b = max(b, demuxed.end_s)
        spans.append(
            MediaSpan(
                stream=stream,
                kind=mine[0].kind,
                start_s=round(a, 6),
                end_s=round(b, 6),
                start_utc=_offset_utc(range_start_us, a),
                end_utc=_offset_utc(range_start_us, b),
                packets=len(mine),
                keyframes=sum(p.key for p in mine),
            )
        )
    covered = 0
    cursor = start
    for lo, hi in sorted((max(p.pos, start), min(p.pos + p.size, end)) for p in hit):
        lo = max(lo, cursor)
        if hi > lo:
            covered += hi - lo
            cursor = hi
    return spans, (end - start) - covered


def _offset_utc(range_start_us: int, seconds: float) -> str | None:
    us = range_start_us + round(seconds * 1_000_000)
    return utc_text(us) if 0 <= us <= _MAX_WALL_US else None


def _bytes(n: int) -> str:
    return f"{n:,} byte{'s' if n != 1 else ''}"


def _blocks_text(blocks: tuple[int, int] | None) -> str:
    if blocks is None:
        return "no block"
    first, last = blocks
    return f"block {first}" if first == last else f"blocks {first}-{last}"


class _Range(NamedTuple):
    kind: _DamageKind
    start: int
    end: int
    blocks: tuple[int, int] | None


def _locate(cmp: _Comparison, digest: FileDigest) -> tuple[list[_Range], list[Finding]]:
    """The damaged byte ranges of the file and the problems they make."""
    bs = digest.block_size
    damage: list[_Range] = []
    problems: list[Finding] = []
    for run in _runs(cmp.modified):
        end = min((run[-1] + 1) * bs, digest.size)
        damage.append(_Range("modified", run[0] * bs, end, (run[0], run[-1])))
    if damage:
        shown = 5
        ranges = ", ".join(
            f"bytes {d.start:,}-{d.end - 1:,} ({_blocks_text(d.blocks)})" for d in damage[:shown]
        )
        if len(damage) > shown:
            ranges += f" and {len(damage) - shown} more ranges"
        problems.append(
            Finding(
                code="modified",
                message=f"{len(cmp.modified)} of {len(digest.block_sha256)} signed blocks of "
                f"{_bytes(bs)} differ: {ranges}",
            )
        )
    if cmp.actual_size < digest.size:
        cut = cmp.actual_size
        first = cut // bs
        damage.append(_Range("missing", cut, digest.size, (first, len(digest.block_sha256) - 1)))
        partial = (
            f"; the {_bytes(cut - first * bs)} left of block {first} cannot be checked, since "
            "its hash covers the missing bytes"
            if cut % bs
            else ""
        )
        problems.append(
            Finding(
                code="truncated",
                message=f"the file is {_bytes(digest.size - cut)} shorter than signed "
                f"({cut:,} instead of {digest.size:,}): bytes {cut:,}-{digest.size - 1:,} are "
                f"missing{partial}",
            )
        )
    elif cmp.actual_size > digest.size:
        damage.append(_Range("appended", digest.size, cmp.actual_size, None))
        problems.append(
            Finding(
                code="extended",
                message=f"the file is {_bytes(cmp.actual_size - digest.size)} longer than signed "
                f"({cmp.actual_size:,} instead of {digest.size:,}): bytes {digest.size:,}-"
                f"{cmp.actual_size - 1:,} were appended",
            )
        )
    if not cmp.modified and cmp.actual_size >= digest.size and cmp.prefix_sha256 != digest.sha256:
        problems.append(
            Finding(
                code="digest_mismatch",
                message="every block matches its hash but the whole-file SHA-256 does not: "
                "the manifest contradicts itself",
            )
        )
    return damage, problems


def verify_export(
    mp4_path: str | os.PathLike[str],
    manifest_path: str | os.PathLike[str] | None = None,
    *,
    trusted_keys: Iterable[Ed25519PublicKey] | None = None,
) -> VerifyReport:
    """Checks an export against its signed manifest (default ``<file>.manifest.json``).

    With ``trusted_keys``, the signer must be one of them. The report is ``valid`` or lists every
    problem (``code`` and message): ``file_missing``, ``file_unreadable``, ``manifest_missing``,
    ``manifest_unreadable``, ``manifest_malformed``, ``signature_invalid``, ``untrusted_key``,
    ``modified``, ``truncated``, ``extended``, ``digest_mismatch``; ``damage`` gives the byte
    ranges with the media they hold. ``notes`` (``renamed``, ``key_not_checked``,
    ``media_unmapped``) do not make an export invalid. Never raises for a bad file or manifest.
    """
    path = Path(mp4_path)
    mpath = Path(manifest_path) if manifest_path is not None else manifest_path_for(path)
    problems: list[Finding] = []
    notes: list[Finding] = []
    report: dict[str, Any] = {"file": str(path), "manifest": str(mpath), "signature": "unchecked"}

    def done(**fields: Any) -> VerifyReport:
        return VerifyReport(**report, **fields, valid=not problems, problems=problems, notes=notes)

    loaded = _read_manifest(mpath)
    if isinstance(loaded, Finding):
        problems.append(loaded)
        if not path.is_file():
            problems.append(Finding(code="file_missing", message=f"{path} does not exist"))
        return done()
    document, manifest = loaded
    report.update(
        key_fingerprint=manifest.key.fingerprint,
        camera=manifest.camera,
        station=manifest.station,
        exporter=manifest.exporter,
        start_utc=manifest.range.start_utc,
        end_utc=manifest.range.end_utc,
        exported_at_utc=manifest.exported_at_utc,
        signed_name=manifest.file.name,
        signed_size=manifest.file.size,
    )

    signer = manifest.key.load()
    try:
        signer.verify(
            base64.b64decode(manifest.signature, validate=True), canonical_bytes(document)
        )
        report["signature"] = "valid"
    except (InvalidSignature, ValueError):
        report["signature"] = "invalid"
        problems.append(
            Finding(
                code="signature_invalid",
                message="the signature does not match the manifest: the manifest was altered "
                "after signing (its camera, range, hashes or any other field cannot be trusted)",
            )
        )
    if trusted_keys is not None:
        trusted = {_raw_public(k): key_fingerprint(k) for k in trusted_keys}
        report["key_trusted"] = _raw_public(signer) in trusted
        if not report["key_trusted"]:
            listed = ", ".join(sorted(trusted.values())) or "none"
            problems.append(
                Finding(
                    code="untrusted_key",
                    message=f"signed by key {manifest.key.fingerprint} (station "
                    f"{manifest.station!r}), which is not a trusted key (trusted: {listed})",
                )
            )
    elif report["signature"] == "valid":
        notes.append(
            Finding(
                code="key_not_checked",
                message="the signature is valid for the key in the manifest "
                f"({manifest.key.fingerprint}); give the station's public key to check who "
                "signed it",
            )
        )

    if not path.is_file():
        problems.append(Finding(code="file_missing", message=f"{path} does not exist"))
        return done()
    if path.name != manifest.file.name:
        notes.append(
            Finding(
                code="renamed",
                message=f"the file was signed as {manifest.file.name!r} and is now named "
                f"{path.name!r}; names are not content, so this alone changes nothing",
            )
        )
    digest = manifest.file
    try:
        cmp = _compare(path, digest)
    except OSError as exc:
        problems.append(Finding(code="file_unreadable", message=f"cannot read {path}: {exc}"))
        return done()
    report["actual_size"] = cmp.actual_size

    damage, found = _locate(cmp, digest)
    problems += found
    located: list[ByteDamage] = []
    if damage:
        demuxed = _demux(path)
        if demuxed.error is not None:
            notes.append(Finding(code="media_unmapped", message=demuxed.error))
        elif not demuxed.packets:
            notes.append(
                Finding(
                    code="media_unmapped",
                    message="the file holds no media packets with byte positions, so damage is "
                    "not mapped to media times",
                )
            )
        for d in damage:
            if demuxed.packets:
                spans, outside = _media_in(demuxed, d.kind, d.start, d.end, manifest.range.start_us)
            else:
                spans, outside = None, None
            located.append(
                ByteDamage(
                    kind=d.kind,
                    start=d.start,
                    end=d.end,
                    blocks=d.blocks,
                    media=spans,
                    non_media_bytes=outside if d.kind != "missing" else None,
                )
            )
    return done(damage=located)
