"""Signed evidence exports: the station key, the manifest, and ``vmscore verify``.

Exports are real MP4 files: a progressive MP4 written by FFmpeg's muxer (PyAV) and a fragmented one
from vmscore's own muxer. Where a test damages a frame, it finds that frame's bytes in the file by
searching for them (not through the demuxer the verifier uses), so the media time the verifier
reports is checked against the frame that was really hit.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

import vmscore
from vmscore.cli import app
from vmscore.errors import KeyFileError, VmsError
from vmscore.record.signing import (
    BLOCK_SIZE,
    StationKey,
    VerifyReport,
    load_public_key,
    manifest_path_for,
    sign_export,
    utc_text,
    verify_export,
)
from vmscore.sim.encode import encode_frames

MIB = 1 << 20
FPS = 10
FRAMES = 40  # 4 s of noise at about 1.2 MB/s: several 1 MiB blocks, each well under a second
W, H = 320, 240
START_US = 1_714_564_800_000_000  # 2024-05-01T12:00:00Z
END_US = START_US + FRAMES * 1_000_000 // FPS


@dataclass(frozen=True)
class Export:
    """A test export and where each frame's bytes sit in it."""

    path: Path
    layout: str
    frames: list[tuple[int, float]]
    """(byte offset of a run of the frame's bytes, presentation time in seconds) per frame."""


def noise(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(FRAMES)]


def write_progressive(path: Path) -> Export:
    """An MP4 written by FFmpeg's muxer: mdat first, moov at the end."""
    packets: list[tuple[bytes, float]] = []
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "0", "x264-params": "keyint=10"}
        for image in noise(1):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for p in stream.encode(frame):
                packets.append((bytes(p), float((p.pts or 0) * p.time_base)))
                container.mux(p)
        for p in stream.encode(None):
            packets.append((bytes(p), float((p.pts or 0) * p.time_base)))
            container.mux(p)
    return Export(path, "progressive", locate(path.read_bytes(), packets))


def write_fragmented(path: Path) -> Export:
    """A fragmented MP4 from vmscore's muxer, on a recording's 90 kHz timeline (not from 0)."""
    stream = encode_frames(
        (img[:, :, 0] for img in noise(2)),
        codec="h264",
        width=W,
        height=H,
        fps=FPS,
        gop=10,
        bitrate_bps=10_000_000,
        preset="ultrafast",
    )
    base = 90_000 * 3600
    muxer = vmscore.Fmp4Muxer("h264")
    data = b"".join(muxer.add(f.data, f.pts_90k + base, f.dts_90k + base) for f in stream.frames)
    path.write_bytes(data + muxer.flush())
    frames = [(f.data, f.pts_90k / 90_000) for f in stream.frames]
    return Export(path, "fragmented", locate(path.read_bytes(), frames))


def locate(data: bytes, frames: list[tuple[bytes, float]]) -> list[tuple[int, float]]:
    out = []
    for payload, t in frames:
        tail = payload[-1024:]  # the end of the last NAL unit: stored verbatim in either layout
        offset = data.find(tail)
        assert offset > 0 and data.find(tail, offset + 1) == -1
        out.append((offset, t))
    return out


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Export]:
    d = tmp_path_factory.mktemp("exports")
    return {
        "progressive": write_progressive(d / "progressive.mp4"),
        "fragmented": write_fragmented(d / "fragmented.mp4"),
    }


@pytest.fixture(scope="module")
def station() -> StationKey:
    return StationKey.generate()


@pytest.fixture(params=["progressive", "fragmented"])
def signed(
    request: pytest.FixtureRequest,
    originals: dict[str, Export],
    station: StationKey,
    tmp_path: Path,
) -> Export:
    """A fresh copy of each layout, signed by ``station``."""
    export = fresh(originals[request.param], tmp_path)
    sign(export.path, station)
    return export


def fresh(original: Export, directory: Path, name: str = "gate-north.mp4") -> Export:
    path = directory / name
    shutil.copyfile(original.path, path)
    return Export(path, original.layout, original.frames)


def sign(path: Path, key: StationKey, **changes: Any) -> Path:
    """Signs ``path`` as the test export; ``changes`` replace sign_export's arguments."""
    fields: dict[str, Any] = {
        "camera": "gate-north",
        "start_wall_us": START_US,
        "end_wall_us": END_US,
        "exporter": "alice",
        "station": "north",
    }
    return sign_export(path, key=key, **(fields | changes))


def codes(findings: list[Any]) -> list[str]:
    return [f.code for f in findings]


def run_cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vmscore", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )


def invoke(*args: str | Path) -> tuple[int, str]:
    res = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    return res.exit_code, res.output


# --- the station key ------------------------------------------------------------------------------


def test_station_key_is_created_owner_only_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "station.key"
    key = StationKey.create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["station.key"]  # no temporary file left
    original = path.read_bytes()
    with pytest.raises(FileExistsError):
        StationKey.create(path)
    assert path.read_bytes() == original
    assert StationKey.load_or_create(path).fingerprint == key.fingerprint
    assert StationKey.load(path).public_key_pem == key.public_key_pem
    raw = key.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key.fingerprint == hashlib.sha256(raw).hexdigest()[:16]
    assert load_public_key(key.public_key_pem.encode()).public_bytes_raw() == raw
    assert "PRIVATE" not in repr(key)
    other = StationKey.load_or_create(tmp_path / "second.key")
    assert other.fingerprint != key.fingerprint


def test_unusable_key_files_are_clear_errors(tmp_path: Path) -> None:
    def bad(name: str, data: bytes, mode: int = 0o600) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        path.chmod(mode)
        return path

    good = StationKey.create(tmp_path / "good.key")
    pem = (tmp_path / "good.key").read_bytes()
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cases = {
        bad("garbage.key", b"not a key at all\n"): "not a readable PEM private key",
        bad("cut.key", pem[: len(pem) // 2]): "not a readable PEM private key",
        bad("empty.key", b""): "empty",
        bad("public.key", good.public_key_pem.encode()): "holds a public key",
        bad("ec.key", ec_pem): "holds an EC key; station keys are Ed25519",
        bad("open.key", pem, 0o644): "chmod 600",
    }
    for path, message in cases.items():
        with pytest.raises(KeyFileError, match=message) as info:
            StationKey.load(path)
        assert isinstance(info.value, VmsError) and isinstance(info.value, ValueError)
        assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError):
        StationKey.load(tmp_path / "absent.key")
    with pytest.raises(KeyFileError, match="holds a private key"):
        load_public_key(tmp_path / "good.key")

    code, out = invoke("keys", "show", "--path", tmp_path / "garbage.key")
    assert code == 2 and "not a readable PEM private key" in out
    code, out = invoke("keys", "create", "--path", tmp_path / "good.key")
    assert code == 2 and "never overwritten" in out


def test_keys_commands_create_and_show_the_public_key(tmp_path: Path) -> None:
    code, out = invoke(
        "keys", "create", "--path", tmp_path / "k", "--public-out", tmp_path / "k.pub"
    )
    assert code == 0, out
    key = StationKey.load(tmp_path / "k")
    assert key.fingerprint in out and key.public_key_pem in out
    assert (tmp_path / "k.pub").read_text() == key.public_key_pem
    code, out = invoke("keys", "show", "--path", tmp_path / "k")
    assert code == 0 and key.fingerprint in out and key.public_key_pem in out


# --- signing and a valid export -------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["progressive", "fragmented"])
def test_valid_export_verifies(
    layout: str, originals: dict[str, Export], station: StationKey, tmp_path: Path
) -> None:
    export = fresh(originals[layout], tmp_path)
    manifest_path = sign(export.path, station, extra={"case": "2024-1187"})
    assert manifest_path == tmp_path / "gate-north.mp4.manifest.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "gate-north.mp4",
        "gate-north.mp4.manifest.json",
    ]

    report = verify_export(export.path)
    assert report.valid and report.problems == [] and report.damage == []
    assert report.signature == "valid" and report.key_trusted is None
    assert codes(report.notes) == ["key_not_checked"]
    assert report.camera == "gate-north" and report.exporter == "alice"
    assert report.start_utc == "2024-05-01T12:00:00.000000Z"
    assert report.end_utc == "2024-05-01T12:00:04.000000Z"

    trusted = verify_export(export.path, trusted_keys=[station.public_key])
    assert trusted.valid and trusted.key_trusted is True and trusted.notes == []


def test_manifest_content_and_canonical_signature(
    originals: dict[str, Export], station: StationKey, tmp_path: Path
) -> None:
    export = fresh(originals["progressive"], tmp_path)
    manifest = json.loads(sign(export.path, station, extra={"case": "2024-1187"}).read_text())
    data = export.path.read_bytes()
    blocks = [data[i : i + BLOCK_SIZE] for i in range(0, len(data), BLOCK_SIZE)]
    assert len(blocks) >= 4
    assert manifest["format"] == "vmscore-export-manifest" and manifest["version"] == 1
    assert manifest["file"] == {
        "name": "gate-north.mp4",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "block_size": MIB,
        "block_sha256": [hashlib.sha256(b).hexdigest() for b in blocks],
    }
    assert manifest["range"] == {
        "start_us": START_US,
        "end_us": END_US,
        "start_utc": "2024-05-01T12:00:00.000000Z",
        "end_utc": "2024-05-01T12:00:04.000000Z",
    }
    assert (manifest["camera"], manifest["exporter"], manifest["station"]) == (
        "gate-north",
        "alice",
        "north",
    )
    assert manifest["exported_at_utc"] == utc_text(manifest["exported_at_us"])
    assert manifest["key"] == {
        "algorithm": "Ed25519",
        "public_key": station.public_key_pem,
        "fingerprint": station.fingerprint,
    }
    assert manifest["extra"] == {"case": "2024-1187"}
    # The documented canonical form, rebuilt here: sorted keys, no whitespace, UTF-8.
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    canonical = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    station.public_key.verify(base64.b64decode(manifest["signature"]), canonical.encode())


def test_empty_and_renamed_exports(station: StationKey, tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    manifest = json.loads(sign(empty, station).read_text())
    assert manifest["file"]["size"] == 0 and manifest["file"]["block_sha256"] == []
    assert verify_export(empty).valid

    moved = tmp_path / "evidence-7.mp4"
    empty.rename(moved)
    missing = verify_export(moved)
    assert not missing.valid and codes(missing.problems) == ["manifest_missing"]
    report = verify_export(moved, manifest_path_for(empty))
    assert report.valid and "renamed" in codes(report.notes)
    note = next(n for n in report.notes if n.code == "renamed")
    assert "'empty.mp4'" in note.message and "'evidence-7.mp4'" in note.message


def test_sign_rejects_bad_arguments(station: StationKey, tmp_path: Path) -> None:
    path = tmp_path / "a.mp4"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(ValueError, match="before it starts"):
        sign(path, station, start_wall_us=END_US, end_wall_us=START_US)
    with pytest.raises(ValueError, match="camera"):
        sign(path, station, camera="")
    with pytest.raises(ValueError, match="start_us"):
        sign(path, station, start_wall_us=-1)
    with pytest.raises(ValueError, match="extra"):
        sign(path, station, extra={"bad key": "x"})
    assert not manifest_path_for(path).exists()
    with pytest.raises(FileNotFoundError):
        sign(tmp_path / "absent.mp4", station)


# --- damage ---------------------------------------------------------------------------------------


def test_one_flipped_byte_is_located_in_bytes_and_media_time(signed: Export) -> None:
    export = signed
    offset, t = export.frames[27]  # a P frame near 2.7 s, in the middle of the file
    offset += 100  # inside the frame's slice data
    data = bytearray(export.path.read_bytes())
    data[offset] ^= 0x01
    export.path.write_bytes(data)

    report = verify_export(export.path)
    assert not report.valid and codes(report.problems) == ["modified"]
    block = offset // MIB
    (damage,) = report.damage
    assert damage.kind == "modified" and damage.blocks == (block, block)
    assert (damage.start, damage.end) == (block * MIB, min((block + 1) * MIB, len(data)))
    assert f"block {block}" in report.problems[0].message
    assert damage.media is not None
    (span,) = damage.media
    assert span.kind == "video" and span.packets >= 2
    # The hit frame's time lies in the reported span, and the span is a block's worth of video.
    assert span.start_s <= t < span.end_s
    assert span.end_s - span.start_s < 1.5
    assert int(span.start_s) <= t < int(span.end_s) + 1
    assert span.start_utc == utc_text(START_US + round(span.start_s * 1e6))
    assert span.end_utc == utc_text(START_US + round(span.end_s * 1e6))
    assert damage.non_media_bytes is not None and damage.non_media_bytes < MIB // 10

    code, out = invoke("verify", export.path, "--json")
    assert code == 1
    assert VerifyReport.model_validate_json(out) == report


def test_truncated_export_is_reported(signed: Export) -> None:
    export = signed
    size = export.path.stat().st_size
    cut, t = export.frames[30]
    cut += 10
    with export.path.open("r+b") as f:
        f.truncate(cut)

    report = verify_export(export.path)
    assert not report.valid and codes(report.problems) == ["truncated"]
    assert (report.signed_size, report.actual_size) == (size, cut)
    message = report.problems[0].message
    assert f"{size - cut:,} bytes shorter" in message and f"{cut:,}-{size - 1:,}" in message
    assert f"block {cut // MIB} cannot be checked" in message
    (damage,) = report.damage
    assert (damage.kind, damage.start, damage.end) == ("missing", cut, size)
    assert damage.blocks == (cut // MIB, -(-size // MIB) - 1)
    if export.layout == "progressive":
        # FFmpeg's muxer puts the index (moov) last: the cut file no longer demuxes.
        assert damage.media is None and "media_unmapped" in codes(report.notes)
    else:
        assert damage.media is not None
        (span,) = damage.media
        assert span.start_s <= t < span.start_s + 1 / FPS + 1e-6


def test_appended_bytes_are_reported(signed: Export) -> None:
    export = signed
    size = export.path.stat().st_size
    with export.path.open("ab") as f:
        f.write(b"\0\0\0\x10free" + b"x" * 8)

    report = verify_export(export.path)
    assert not report.valid and codes(report.problems) == ["extended"]
    assert "16 bytes longer" in report.problems[0].message
    (damage,) = report.damage
    assert (damage.kind, damage.start, damage.end, damage.blocks) == (
        "appended",
        size,
        size + 16,
        None,
    )
    assert damage.media == [] and damage.non_media_bytes == 16


def test_several_damages_at_once(
    originals: dict[str, Export], station: StationKey, tmp_path: Path
) -> None:
    export = fresh(originals["fragmented"], tmp_path)
    sign(export.path, station)
    data = bytearray(export.path.read_bytes())
    size = len(data)
    for frame in (5, 6, 33):  # two frames close together and a later one
        data[export.frames[frame][0] + 50] ^= 0xFF
    data += b"tail"
    export.path.write_bytes(data)

    report = verify_export(export.path)
    assert codes(report.problems) == ["modified", "extended"]
    hit = sorted({(export.frames[i][0] + 50) // MIB for i in (5, 6, 33)})
    modified = [d for d in report.damage if d.kind == "modified"]
    flagged = sorted({b for d in modified if d.blocks for b in range(d.blocks[0], d.blocks[1] + 1)})
    assert flagged == hit
    assert report.damage[-1].kind == "appended" and report.damage[-1].start == size


# --- the manifest and the signer ------------------------------------------------------------------


def edit_manifest(path: Path, change: Any) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document, indent=2))


@pytest.mark.parametrize(
    "what",
    ["camera", "range", "exporter", "block hash", "extra"],
)
def test_edited_manifest_fails_the_signature(
    what: str, originals: dict[str, Export], station: StationKey, tmp_path: Path
) -> None:
    export = fresh(originals["progressive"], tmp_path)
    manifest = sign(export.path, station)

    def change(doc: dict[str, Any]) -> None:
        if what == "camera":
            doc["camera"] = "gate-south"
        elif what == "range":  # moved an hour earlier, consistently in both forms
            doc["range"]["start_us"] -= 3_600_000_000
            doc["range"]["start_utc"] = utc_text(doc["range"]["start_us"])
        elif what == "exporter":
            doc["exporter"] = "mallory"
        elif what == "block hash":
            doc["file"]["block_sha256"][1] = "0" * 64
        else:
            doc["extra"] = {"note": "added later"}

    edit_manifest(manifest, change)
    report = verify_export(export.path, trusted_keys=[station.public_key])
    assert not report.valid and report.signature == "invalid"
    expected = ["signature_invalid", "modified"] if what == "block hash" else ["signature_invalid"]
    assert codes(report.problems) == expected
    assert "altered" in report.problems[0].message
    code, out = invoke("verify", export.path)
    assert code == 1 and "NOT VALID" in out and "INVALID" in out


def test_reformatted_manifest_still_verifies(
    originals: dict[str, Export], station: StationKey, tmp_path: Path
) -> None:
    export = fresh(originals["progressive"], tmp_path)
    manifest = sign(export.path, station)
    edit_manifest(manifest, lambda doc: None)  # other indentation: content is what is signed
    assert verify_export(export.path).valid


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a vmscore export manifest"),
        (b'{"format": "vmscore-export-manifest", "version": 9}', "version 9"),
    ],
)
def test_unreadable_manifests_are_reported(
    content: bytes, message: str, originals: dict[str, Export], tmp_path: Path
) -> None:
    export = fresh(originals["progressive"], tmp_path)
    manifest_path_for(export.path).write_bytes(content)
    report = verify_export(export.path)
    assert not report.valid and codes(report.problems) == ["manifest_malformed"]
    assert message in report.problems[0].message


def test_malformed_manifests_are_reported(
    originals: dict[str, Export], station: StationKey, tmp_path: Path
) -> None:
    export = fresh(originals["progressive"], tmp_path)
    manifest = sign(export.path, station)
    signed = manifest.read_text()

    def check(change: Any, message: str) -> None:
        manifest.write_text(signed)
        edit_manifest(manifest, change)
        report = verify_export(export.path)
        assert codes(report.problems) == ["manifest_malformed"], report.problems
        assert message in report.problems[0].message

    check(lambda d: d.update(comment="x"), "comment: Extra inputs are not permitted")
    check(lambda d: d.pop("camera"), "camera: Field required")
    check(lambda d: d["file"].update(size=str(d["file"]["size"])), "file.size")
    check(lambda d: d["file"]["block_sha256"].pop(), "block hashes are listed")
    check(lambda d: d["range"].update(start_utc="2024-05-01T12:00:00Z"), "is not")
    check(lambda d: d["key"].update(fingerprint="0" * 16), "does not belong to the key")
    check(lambda d: d.update(signature="AAAA"), "signature")
    text = signed.replace('"camera": "gate-north",', '"camera": "x", "camera": "gate-north",')
    manifest.write_text(text)
    assert "appears twice" in verify_export(export.path).problems[0].message


def test_export_signed_by_another_key_is_untrusted(
    originals: dict[str, Export], station: StationKey, tmp_path: Path
) -> None:
    # Someone replaced the frames and signed a new manifest with their own key.
    export = fresh(originals["progressive"], tmp_path)
    forger = StationKey.generate()
    sign(export.path, forger)
    report = verify_export(export.path, trusted_keys=[station.public_key])
    assert not report.valid and report.signature == "valid" and report.key_trusted is False
    assert codes(report.problems) == ["untrusted_key"]
    assert forger.fingerprint in report.problems[0].message
    assert station.fingerprint in report.problems[0].message

    pub = tmp_path / "north.pub.pem"
    pub.write_text(station.public_key_pem)
    proc = run_cli("verify", export.path, "--key", pub, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "NOT VALID" in proc.stdout and "NOT TRUSTED" in proc.stdout
    assert "untrusted_key" in proc.stdout

    both = tmp_path / "both.pem"
    both.write_text(forger.public_key_pem)
    proc = run_cli("verify", export.path, "--key", pub, "--key", both, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["key_trusted"] is True


def test_cli_verifies_a_valid_export_in_a_subprocess(
    originals: dict[str, Export], station: StationKey, tmp_path: Path
) -> None:
    export = fresh(originals["fragmented"], tmp_path)
    sign(export.path, station)
    pub = tmp_path / "north.pub.pem"
    pub.write_text(station.public_key_pem)
    proc = run_cli("verify", export.path.name, "--key", pub.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("VALID")
    assert "gate-north" in proc.stdout and station.fingerprint in proc.stdout
    assert "trusted" in proc.stdout and "2024-05-01T12:00:00.000000Z" in proc.stdout
    proc = run_cli("verify", export.path, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["valid"] is True and report["signature"] == "valid"
    assert [n["code"] for n in report["notes"]] == ["key_not_checked"]


def test_cli_missing_manifest_and_usage_errors(
    originals: dict[str, Export], station: StationKey, tmp_path: Path
) -> None:
    export = fresh(originals["progressive"], tmp_path)
    proc = run_cli("verify", export.path, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "NOT VALID" in proc.stdout and "no manifest at" in proc.stdout
    assert "gate-north.mp4.manifest.json" in proc.stdout

    code, out = invoke("verify", export.path, "--json")
    assert code == 1
    assert [p["code"] for p in json.loads(out)["problems"]] == ["manifest_missing"]
    code, out = invoke("verify", export.path, "--manifest", tmp_path / "elsewhere.json")
    assert code == 1 and "no manifest at" in out

    # Usage errors: exit status 2.
    code, out = invoke("verify", tmp_path / "absent.mp4")
    assert code == 2
    private = tmp_path / "station.key"
    StationKey.create(private)
    sign(export.path, StationKey.load(private))
    code, out = invoke("verify", export.path, "--key", private)
    assert code == 2 and "holds a private key" in out
    corrupt = tmp_path / "corrupt.pem"
    corrupt.write_text("-----BEGIN PUBLIC KEY-----\nnonsense\n-----END PUBLIC KEY-----\n")
    code, out = invoke("verify", export.path, "--key", corrupt)
    assert code == 2 and "not a readable PEM public key" in out
    code, out = invoke("verify", export.path, "--key", tmp_path / "absent.pem")
    assert code == 2
