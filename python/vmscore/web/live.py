"""Live video over WebSocket: ``/api/cameras/{camera}/live?stream=sub|main``.

The protocol, server to browser:

- text ``{"type": "status", "state": ..., "reason": ...}``: the stream's state (``playing``,
  ``connecting``, ``offline``, ``removed``) and, before the server closes, why a viewer gets no
  video (``forbidden``: no such camera or no permission, ``disabled``, ``unavailable``: the
  stream is not running, ``stopping``: the station shuts down, ``removed``: the camera was
  removed or restarted with new settings, so the browser connects again);
- text ``{"type": "init", "codec", "mime", "width", "height", "role"}`` followed by one binary
  message: an init segment (ftyp+moov) for a Media Source Extensions SourceBuffer, first and again
  whenever the camera changes its parameter sets;
- binary messages: media fragments (moof+mdat, one per frame) to append;
- text ``{"type": "clock", "wall_us": ..., "skipped": ...}`` about once a second: the wall time of
  the newest frame sent (for the browser's latency figure) and frames skipped since the last
  one because the connection was too slow.

The browser sends nothing; closing the socket ends the viewer. Authentication is the session
cookie (and a same-origin check) or a bearer token; permissions are looked up again every few
seconds, so a revoked user stops receiving video.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from fastapi import Path as PathParam

from vmscore.station.live import LiveViewer
from vmscore.station.station import Station
from vmscore.web.auth import SESSION_COOKIE, ViewerPrincipal, principal_again

RECHECK_S = 5.0
CLOCK_S = 1.0

# Close codes of the 4000-4999 range (private use): the browser's tile shows why.
CLOSE_FORBIDDEN = 4403
CLOSE_UNAVAILABLE = 4404
CLOSE_STOPPING = 4503
CLOSE_RESTARTED = 4410
"""The camera's stream was removed or restarted (its settings changed): connect again."""


def _text(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def live_router() -> APIRouter:
    r = APIRouter()

    @r.websocket("/api/cameras/{camera}/live")
    async def live(
        ws: WebSocket,
        camera: Annotated[str, PathParam(min_length=1, max_length=64)],
        who: ViewerPrincipal,
        stream: Annotated[Literal["main", "sub"], Query()] = "sub",
    ) -> None:
        station: Station = ws.app.state.station
        await ws.accept()
        cfg = station.config.camera(camera)
        if cfg is None or not who.can_view(cfg.name, cfg.site):
            await _refuse(
                ws, "forbidden", "no such camera, or no permission to view it", CLOSE_FORBIDDEN
            )
            return
        if not cfg.enabled:
            await _refuse(ws, "disabled", "the camera is disabled", CLOSE_UNAVAILABLE)
            return
        try:
            streams = dict(station.camera_state(camera).streams)
        except KeyError:
            streams = {}
        role = stream if stream in streams else "main"
        sid = streams.get(role)
        if sid is None:
            await _refuse(
                ws, "unavailable", "the camera's stream is not running", CLOSE_UNAVAILABLE
            )
            return
        try:
            viewer = station.live.open(sid, who.user)
        except ValueError as e:  # the stream went away, or too many viewers
            await _refuse(ws, "unavailable", str(e), CLOSE_UNAVAILABLE)
            return
        receiver = asyncio.create_task(_drain(ws))
        try:
            await _feed(ws, station, viewer, camera, role, receiver)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the browser went away mid-send
        finally:
            viewer.close()
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiver

    return r


async def _refuse(ws: WebSocket, state: str, reason: str, code: int) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await ws.send_text(_text("status", state=state, reason=reason))
        await ws.close(code=code, reason=reason[:120])


async def _drain(ws: WebSocket) -> None:
    """Reads (and ignores) what the browser sends, until it closes."""
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            return


async def _feed(
    ws: WebSocket,
    station: Station,
    viewer: LiveViewer,
    camera: str,
    role: str,
    receiver: asyncio.Task[None],
) -> None:
    authorization = ws.headers.get("authorization")
    cookie = ws.cookies.get(SESSION_COOKIE)
    checked = clock = time.monotonic()
    skipped = 0
    last_wall = 0
    while True:
        get = asyncio.ensure_future(viewer.get())
        done, _ = await asyncio.wait(
            {get, receiver}, timeout=RECHECK_S, return_when=asyncio.FIRST_COMPLETED
        )
        if receiver in done:
            get.cancel()
            return
        now = time.monotonic()
        if now - checked >= RECHECK_S:
            checked = now
            fresh = await asyncio.to_thread(principal_again, station.users, authorization, cookie)
            cfg = station.config.camera(camera)
            if fresh is None or cfg is None or not fresh.can_view(cfg.name, cfg.site):
                get.cancel()
                await _refuse(
                    ws, "forbidden", "no permission to view this camera any more", CLOSE_FORBIDDEN
                )
                return
        if get not in done:
            get.cancel()
            continue
        chunk = get.result()
        if chunk is None:
            await _refuse(ws, "stopping", "the station is stopping", CLOSE_STOPPING)
            return
        if chunk.state == "removed":
            # The viewer belongs to a stream that is gone; a restarted camera has a new one.
            await _refuse(ws, "removed", chunk.reason, CLOSE_RESTARTED)
            return
        if chunk.state is not None:
            await ws.send_text(_text("status", state=chunk.state, reason=chunk.reason))
        if chunk.init is not None:
            await ws.send_text(
                _text(
                    "init",
                    codec=chunk.codec,
                    mime=f'video/mp4; codecs="{chunk.codec}"',
                    width=chunk.width,
                    height=chunk.height,
                    role=role,
                )
            )
            await ws.send_bytes(chunk.init)
        if chunk.fragments:
            await ws.send_bytes(chunk.media)
            last_wall = chunk.last_wall_time_us
        skipped += chunk.skipped
        viewer.ack()
        if last_wall and now - clock >= CLOCK_S:
            clock = now
            await ws.send_text(_text("clock", wall_us=last_wall, skipped=skipped))
            skipped = 0
