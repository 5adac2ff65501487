"""Export jobs: the signed export of a range written on a worker thread, so the operator's browser
shows its progress instead of waiting on one long request; and the alarm settings (priorities,
categories) the operator's client needs.

- ``POST /api/recordings/{camera}/export-jobs`` (operator, body as the synchronous export route)
  checks the camera and the range, starts the job and answers ``{"id": ...}`` (202);
- ``GET /api/export-jobs/{id}`` (the user who started it, or an admin) answers ``state``
  (``running``, ``done``, ``failed``), ``done_bytes`` of ``total_bytes``, and ``result`` (what
  the synchronous route returns: file, manifest, their URLs) or ``error``.

The jobs live in the station's memory only and are bounded: at most :data:`MAX_RUNNING` run at
once (429 beyond), a finished job is kept :data:`KEEP_S` seconds and at most :data:`MAX_KEPT` of
them. The exported files stay in the exports directory like any other export's.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Request, status
from fastapi import Path as PathParam

from vmscore.web.app import ExportBody, Name, _camera, _range, _station, write_export
from vmscore.web.auth import OperatorPrincipal, ViewerPrincipal

__all__ = [
    "KEEP_S",
    "MAX_KEPT",
    "MAX_RUNNING",
    "ExportJob",
    "ExportJobs",
    "TooManyJobsError",
    "alarm_settings_router",
    "export_router",
]

_log = logging.getLogger(__name__)

MAX_RUNNING = 2
"""Exports written at once: each reads and writes the whole range, so more would only slow the
recording disks down for everyone."""
KEEP_S = 3600.0
"""How long a finished job is still answered."""
MAX_KEPT = 100
"""Finished jobs remembered at most (the oldest are forgotten first)."""

JobState = Literal["running", "done", "failed"]
Progress = Callable[[int, int], None]
Work = Callable[[Progress], dict[str, Any]]
JobId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_-]{16}$")]


class TooManyJobsError(RuntimeError):
    """As many jobs as allowed are running already."""


@dataclass
class ExportJob:
    id: str
    user: str
    camera: str
    state: JobState = "running"
    done_bytes: int = 0
    total_bytes: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None
    finished_at: float | None = None
    """The registry's clock when the job ended (None while it runs)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "camera": self.camera,
            "state": self.state,
            "done_bytes": self.done_bytes,
            "total_bytes": self.total_bytes,
            "result": self.result,
            "error": self.error,
        }


class ExportJobs:
    """One station's export jobs: each runs its work on a thread of its own. Thread-safe; the
    jobs handed out are copies."""

    def __init__(
        self,
        *,
        max_running: int = MAX_RUNNING,
        keep_s: float = KEEP_S,
        max_kept: int = MAX_KEPT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_running = max_running
        self._keep_s = keep_s
        self._max_kept = max_kept
        self._clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[str, ExportJob] = {}  # in the order they were started

    def start(self, user: str, camera: str, work: Work) -> ExportJob:
        """Starts ``work(progress)``, whose result (or exception) ends the job."""
        with self._lock:
            self._prune()
            running = sum(j.state == "running" for j in self._jobs.values())
            if running >= self._max_running:
                raise TooManyJobsError(
                    f"{running} exports are running already: try again when one has finished"
                )
            job = ExportJob(id=secrets.token_urlsafe(12), user=user, camera=camera)
            self._jobs[job.id] = job
            started = replace(job)
        thread = threading.Thread(
            target=self._run, args=(job, work), name=f"export-{camera}", daemon=True
        )
        thread.start()
        return started

    def get(self, job_id: str) -> ExportJob | None:
        with self._lock:
            self._prune()
            job = self._jobs.get(job_id)
            return None if job is None else replace(job)

    def _run(self, job: ExportJob, work: Work) -> None:
        def progress(done: int, total: int) -> None:
            with self._lock:
                job.done_bytes, job.total_bytes = done, total

        try:
            result = work(progress)
        except HTTPException as e:  # no footage in the range, as the synchronous route says
            self._finish(job, None, str(e.detail))
        except Exception as e:
            _log.exception("export job %s of %s failed", job.id, job.camera)
            self._finish(job, None, str(e) or type(e).__name__)
        else:
            self._finish(job, result, None)

    def _finish(self, job: ExportJob, result: dict[str, Any] | None, error: str | None) -> None:
        with self._lock:
            job.state = "failed" if error is not None else "done"
            job.result, job.error = result, error
            if result is not None:
                job.done_bytes = job.total_bytes = int(result.get("bytes", job.total_bytes))
            job.finished_at = self._clock()
            self._prune()

    def _prune(self) -> None:
        """Forgets finished jobs past their time, then the oldest beyond the count (locked)."""
        expired = self._clock() - self._keep_s
        finished = [j for j in self._jobs.values() if j.finished_at is not None]
        for j in finished:
            if j.finished_at is not None and j.finished_at < expired:
                del self._jobs[j.id]
        finished = [j for j in self._jobs.values() if j.finished_at is not None]
        for j in finished[: max(0, len(finished) - self._max_kept)]:
            del self._jobs[j.id]


def export_router() -> APIRouter:
    """The export job routes, with a registry of their own (one per app, so one per station)."""
    r = APIRouter(tags=["recordings"])
    jobs = ExportJobs()

    @r.post("/api/recordings/{camera}/export-jobs", status_code=status.HTTP_202_ACCEPTED)
    def start_export(
        request: Request, camera: Name, body: ExportBody, who: OperatorPrincipal
    ) -> dict[str, str]:
        """Starts the signed export of [start, end); poll /api/export-jobs/ID for its progress."""
        _camera(request, who, camera)
        _range(body.start_us, body.end_us)

        def work(progress: Progress) -> dict[str, Any]:
            return write_export(request, who, camera, body, progress)

        try:
            job = jobs.start(who.user, camera, work)
        except TooManyJobsError as e:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS, str(e), headers={"Retry-After": "5"}
            ) from None
        return {"id": job.id}

    @r.get("/api/export-jobs/{job_id}")
    def export_job(request: Request, job_id: JobId, who: OperatorPrincipal) -> dict[str, Any]:
        """A job's state and progress; another user's job answers like one that does not
        exist (an admin sees every job), and so does one of a camera the user no longer sees."""
        job = jobs.get(job_id)
        if job is None or (job.user != who.user and not who.has_role("admin")):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such export job")
        cfg = _station(request).config.camera(job.camera)
        if cfg is None or not who.can_view(cfg.name, cfg.site):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such export job")
        return job.to_json()

    return r


def alarm_settings_router() -> APIRouter:
    r = APIRouter(tags=["alarms"])

    @r.get("/api/alarm-settings")
    def alarm_settings(request: Request, who: ViewerPrincipal) -> dict[str, Any]:
        """The priorities, most urgent first, with the colour and sound a client shows them
        with, and the categories an operator may close an alarm under."""
        settings = _station(request).alarms.settings
        by_urgency = sorted(settings.priorities, key=lambda p: p.level)
        return {
            "priorities": [p.model_dump(mode="json") for p in by_urgency],
            "categories": list(settings.categories),
            "false_alarm_category": settings.false_alarm_category,
        }

    return r
