"""Export jobs through the station's real HTTP server: an operator's job reports its progress until
it is done, and its MP4 and signed manifest download and verify; a viewer may not start one,
another operator does not see it (an admin does), and a range without footage fails the job with
the recorder's reason. The registry's bounds (jobs running at once, finished jobs kept by age and
by count) are checked on their own, with work that waits for the test and a clock it moves."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from station_helpers import (
    PASSWORDS,
    clip,
    document,
    finished_recordings,
    http_server,
    login,
    wait_for,
)
from vmscore.record import verify_export
from vmscore.sim import CameraServer
from vmscore.station.station import Station
from vmscore.web.exports import ExportJob, ExportJobs, TooManyJobsError

OTHER_OPERATOR = ("operator2", "operator2-password-1")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("export-jobs")
    carpark = clip(str(root / "clips"), "carpark", 1, 12)
    with CameraServer() as cs:
        cs.add_camera("lot", carpark.directory)
        camera = {
            "name": "lot",
            "site": "school-1",
            "main_url": cs.url("lot"),
            "sub_url": cs.url("lot", sub=True),
        }
        users = [{"name": n, "role": n, "password": p} for n, p in PASSWORDS.items()]
        users.append({"name": OTHER_OPERATOR[0], "role": "operator", "password": OTHER_OPERATOR[1]})
        doc = document(root, [camera], rules=[], users=users)
        doc["defaults"]["recording"]["segment_s"] = 2
        station = Station(doc)
        try:
            with http_server(station) as base:
                wait_for(lambda: station.camera_state("lot").online, 10, "lot online")
                yield {"station": station, "base": base}
        finally:
            station.close()


@pytest.fixture(scope="module")
def clients(world: dict[str, Any]) -> Iterator[dict[str, httpx.Client]]:
    base = world["base"]
    with contextlib.ExitStack() as stack:
        out = {
            name: stack.enter_context(contextlib.closing(login(base, name)))
            for name in ("admin", "operator", "viewer")
        }
        other = login(base, *OTHER_OPERATOR)
        out["other"] = stack.enter_context(contextlib.closing(other))
        yield out


def footage(world: dict[str, Any], client: httpx.Client) -> tuple[int, int]:
    """A range of a few seconds inside lot's finished segments."""
    recs = finished_recordings(world["station"], client, "lot")
    start = recs[0]["start_us"]
    return start, min(recs[-1]["end_us"], start + 5_000_000)


def run_job(client: httpx.Client, body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Starts a job of lot and polls it until it ends: its id and every answer seen."""
    r = client.post("/api/recordings/lot/export-jobs", json=body)
    assert r.status_code == 202, r.text
    job_id: str = r.json()["id"]
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while not seen or seen[-1]["state"] == "running":
        assert time.monotonic() < deadline, f"the export job did not end: {seen[-1:]}"
        r = client.get(f"/api/export-jobs/{job_id}")
        assert r.status_code == 200, r.text
        seen.append(r.json())
        time.sleep(0.05)
    return job_id, seen


@pytest.mark.slow
def test_export_job_progress_download_and_permissions(
    world: dict[str, Any], clients: dict[str, httpx.Client], tmp_path: Path
) -> None:
    op, viewer, admin, other = (clients[n] for n in ("operator", "viewer", "admin", "other"))
    start, end = footage(world, op)
    body = {"start_us": start, "end_us": end, "reason": "case 42"}
    assert viewer.post("/api/recordings/lot/export-jobs", json=body).status_code == 403
    assert op.post("/api/recordings/nowhere/export-jobs", json=body).status_code == 404
    empty = {**body, "end_us": start}
    assert op.post("/api/recordings/lot/export-jobs", json=empty).status_code == 422

    job_id, seen = run_job(op, body)
    job = seen[-1]
    assert job["state"] == "done", job
    assert job["error"] is None and job["camera"] == "lot"
    for s in seen:
        assert 0 <= s["done_bytes"] <= s["total_bytes"] or s["total_bytes"] == 0, s
    result = job["result"]
    assert job["done_bytes"] == job["total_bytes"] == result["bytes"] > 0
    assert result["url"] == f"/api/exports/{result['file']}"

    mp4 = op.get(result["url"])
    manifest = op.get(result["manifest_url"])
    assert mp4.status_code == manifest.status_code == 200
    assert len(mp4.content) == result["bytes"]
    (tmp_path / result["file"]).write_bytes(mp4.content)
    (tmp_path / result["manifest"]).write_bytes(manifest.content)
    report = verify_export(tmp_path / result["file"], tmp_path / result["manifest"])
    assert report.valid, report.problems
    assert (report.camera, report.exporter) == ("lot", "operator")

    # The job is its user's: another operator's request answers like an unknown job.
    for client, code in ((other, 404), (viewer, 403), (admin, 200)):
        assert client.get(f"/api/export-jobs/{job_id}").status_code == code
    r = other.get(f"/api/export-jobs/{job_id}")
    assert r.json() == {"detail": "no such export job"}
    assert op.get("/api/export-jobs/AAAAAAAAAAAAAAAA").status_code == 404
    assert op.get("/api/export-jobs/not-an-id").status_code == 422

    audit = admin.get("/api/audit", params={"action": "export"}).json()
    entry = next(e for e in audit if result["file"] in json.dumps(e["detail"]))
    assert entry["user"] == "operator" and entry["target"] == "lot"
    assert "case 42" in json.dumps(entry["detail"])

    # Nothing recorded in the range: the job fails with the recorder's reason, leaving no file.
    _, seen = run_job(op, {"start_us": 1_000_000, "end_us": 2_000_000})
    assert seen[-1]["state"] == "failed" and seen[-1]["error"], seen[-1]
    assert seen[-1]["result"] is None
    exports = world["station"].data_dir / "exports"
    assert not list(exports.glob("lot-1000000-2000000-*")), list(exports.iterdir())


@pytest.mark.slow
def test_alarm_settings_for_the_client(clients: dict[str, httpx.Client]) -> None:
    r = clients["viewer"].get("/api/alarm-settings")
    assert r.status_code == 200, r.text
    settings = r.json()
    assert [p["name"] for p in settings["priorities"]] == ["critical", "high", "medium", "low"]
    assert all(p["colour"].startswith("#") for p in settings["priorities"])
    assert settings["false_alarm_category"] in settings["categories"]


def ended(jobs: ExportJobs, job_id: str) -> ExportJob:
    def check() -> ExportJob | None:
        job = jobs.get(job_id)
        return job if job is not None and job.state != "running" else None

    found: ExportJob = wait_for(check, 5, f"job {job_id} to end", step=0.01)
    return found


def test_registry_bounds_running_age_and_count() -> None:
    now = [0.0]
    jobs = ExportJobs(max_running=2, keep_s=10, max_kept=3, clock=lambda: now[0])
    gate = threading.Event()

    def slow(progress: Any) -> dict[str, Any]:
        progress(1, 4)
        assert gate.wait(10)
        return {"bytes": 4}

    a = jobs.start("u", "cam", slow)
    b = jobs.start("u", "cam", slow)
    with pytest.raises(TooManyJobsError):
        jobs.start("u", "cam", slow)
    halfway = wait_for(lambda: (j := jobs.get(a.id)) and j.done_bytes == 1 and j, 5, "progress")
    assert (halfway.state, halfway.total_bytes) == ("running", 4)
    gate.set()
    for job in (a, b):
        done = ended(jobs, job.id)
        assert (done.state, done.done_bytes, done.result) == ("done", 4, {"bytes": 4})

    def broken(progress: Any) -> dict[str, Any]:
        raise OSError("disk full")

    c = jobs.start("u", "cam", broken)
    failed = ended(jobs, c.id)
    assert failed.state == "failed" and failed.error == "disk full" and failed.result is None

    # Four finished jobs, three kept: the oldest is forgotten first.
    now[0] = 5
    d = jobs.start("u", "cam", lambda progress: {"bytes": 1})
    assert ended(jobs, d.id).state == "done"
    assert jobs.get(a.id) is None
    assert all(jobs.get(j.id) is not None for j in (b, c, d))
    # Kept for keep_s after they ended: b and c ended at 0, d at 5.
    now[0] = 12
    assert jobs.get(b.id) is None and jobs.get(c.id) is None
    assert jobs.get(d.id) is not None
    now[0] = 16
    assert jobs.get(d.id) is None
