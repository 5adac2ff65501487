"""Live view for browsers: the station's side of :class:`vmscore._core.LiveHub`.

The hub (C++) remuxes every watched stream into fragmented MP4, one fragment per frame, once for
all its viewers. One thread here waits on ``poll()`` (without the GIL) and hands each chunk to
the asyncio loop of the WebSocket that asked for it; the WebSocket acknowledges a chunk once it
has sent it, and only then gets the next one, so a slow connection makes its own viewer skip to
the newest keyframe instead of holding anything back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass
from typing import Any

from vmscore import _core

log = logging.getLogger(__name__)

POLL_S = 0.5
MAX_VIEWERS = 1000
"""Live viewers of the whole station; beyond it a new viewer is refused (ValueError)."""
MAX_VIEWERS_PER_USER = 256
"""Live viewers of one user (a few browsers with an 8x8 grid each)."""


@dataclass
class _Route:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[_core.LiveChunk | None]
    owner: str


def _deliver(batch: list[tuple[_Route, _core.LiveChunk]]) -> None:
    for route, chunk in batch:
        route.queue.put_nowait(chunk)


class LiveViewer:
    """One viewer: ``await get()`` the next chunk (None when the service stopped), ``ack()``
    once it is sent, ``close()`` at the end."""

    def __init__(self, service: LiveService, viewer: int, route: _Route) -> None:
        self._service = service
        self.id = viewer
        self._route = route

    async def get(self) -> _core.LiveChunk | None:
        return await self._route.queue.get()

    def ack(self) -> None:
        self._service.hub.ack(self.id)

    def stats(self) -> _core.LiveViewerStats:
        return self._service.hub.viewer_stats(self.id)

    def close(self) -> None:
        self._service.close_viewer(self.id)


class LiveService:
    """The station's live-view hub and the thread that feeds its viewers."""

    def __init__(self, engine: _core.IngestEngine) -> None:
        self.hub = _core.LiveHub(engine)
        self._routes: dict[int, _Route] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vmscore-live", daemon=True)
        self._thread.start()

    def add_stream(self, stream_id: str) -> None:
        self.hub.add_stream(stream_id)

    def remove_stream(self, stream_id: str) -> None:
        self.hub.remove_stream(stream_id)

    def open(self, stream_id: str, owner: str = "") -> LiveViewer:
        """A viewer of an ingest stream for user ``owner``, fed on the running asyncio loop
        (ValueError when the stream is not live or the viewers' bounds are reached)."""
        loop = asyncio.get_running_loop()
        route = _Route(loop, asyncio.Queue(), owner)
        with self._lock:
            if self._stopping.is_set():
                raise ValueError("the station is stopping")
            if len(self._routes) >= MAX_VIEWERS:
                raise ValueError(f"the station serves at most {MAX_VIEWERS} live viewers")
            if sum(r.owner == owner for r in self._routes.values()) >= MAX_VIEWERS_PER_USER:
                raise ValueError(f"at most {MAX_VIEWERS_PER_USER} live viewers per user")
            viewer = self.hub.open(stream_id)
            self._routes[viewer] = route
        return LiveViewer(self, viewer, route)

    def close_viewer(self, viewer: int) -> None:
        with self._lock:
            self._routes.pop(viewer, None)
        self.hub.close(viewer)

    def viewers(self) -> int:
        with self._lock:
            return len(self._routes)

    def stats(self) -> list[dict[str, Any]]:
        return [
            {
                "stream_id": s.stream_id,
                "viewers": s.viewers,
                "muxing": s.muxing,
                "fragments": s.fragments,
                "bytes": s.bytes,
                "muxed": s.muxed,
                "mux_errors": s.mux_errors,
                "state": s.state,
            }
            for s in self.hub.source_stats()
        ]

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                chunks = self.hub.poll(POLL_S)
            except Exception:  # pragma: no cover - a bug: log it and keep serving
                log.exception("live view poll failed")
                continue
            # One hand-off per asyncio loop and poll, not per chunk: each call_soon_threadsafe
            # wakes the loop through its self-pipe.
            batches: dict[asyncio.AbstractEventLoop, list[tuple[_Route, _core.LiveChunk]]] = {}
            with self._lock:
                for chunk in chunks:
                    route = self._routes.get(chunk.viewer)
                    if route is not None:
                        batches.setdefault(route.loop, []).append((route, chunk))
            for loop, batch in batches.items():
                try:
                    loop.call_soon_threadsafe(_deliver, batch)
                except RuntimeError:  # the loop has closed: its viewers are gone
                    for _, chunk in batch:
                        self.close_viewer(chunk.viewer)

    def close(self) -> None:
        """Ends every viewer (their get() returns None) and the feeding thread."""
        self._stopping.set()
        self.hub.wake()
        self._thread.join(timeout=5)
        with self._lock:
            routes = list(self._routes.items())
            self._routes.clear()
        for viewer, route in routes:
            self.hub.close(viewer)
            with contextlib.suppress(RuntimeError):  # its loop has closed
                route.loop.call_soon_threadsafe(route.queue.put_nowait, None)
