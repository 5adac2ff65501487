"""The station's event hub: fans out what happens (alarm changes, camera events, arming) to the
server-sent-event streams of connected browsers and API clients.

Publishers are station threads; subscribers are asyncio queues on the web server's loop. A
subscriber that does not keep up is cut off (its queue is bounded) and resumes with
``Last-Event-ID`` from the alarm change log, instead of the station buffering for it without
bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HubMessage:
    event: str
    """SSE event name: alarm, camera, motion, tamper, site, station."""
    data: dict[str, Any]
    id: str | None = None
    """SSE id: alarm changes carry their sequence number (resumable)."""
    camera: str | None = None
    site: str | None = None
    """For permission filtering."""


_CLOSED = HubMessage("closed", {})


class Subscription:
    def __init__(self, hub: EventHub, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self._hub = hub
        self.loop = loop
        self.queue: asyncio.Queue[HubMessage] = asyncio.Queue(maxsize=maxsize)
        self.overflowed = False

    def _offer(self, msg: HubMessage) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(msg)
        except asyncio.QueueFull:
            self.overflowed = True
            self._hub.dropped_subscribers += 1
            # Make room for the end marker so the reader stops and the client resumes.
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(_CLOSED)

    async def get(self) -> HubMessage | None:
        msg = await self.queue.get()
        return None if msg is _CLOSED else msg

    def close(self) -> None:
        self._hub._remove(self)


class EventHub:
    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.published = 0
        self.dropped_subscribers = 0

    def subscribe(self, maxsize: int = 2000) -> Subscription:
        """Called on the event loop that will read the subscription."""
        sub = Subscription(self, asyncio.get_running_loop(), maxsize)
        with self._lock:
            self._subs.append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    def publish(self, msg: HubMessage) -> None:
        """Thread-safe; never blocks."""
        self.published += 1
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                sub.loop.call_soon_threadsafe(sub._offer, msg)

    def close(self) -> None:
        with self._lock:
            subs = list(self._subs)
            self._subs.clear()
        for sub in subs:
            with contextlib.suppress(RuntimeError):
                sub.loop.call_soon_threadsafe(sub._offer, _CLOSED)
