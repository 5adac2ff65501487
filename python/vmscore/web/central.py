"""The central station's routes (``station.role`` ``central`` or ``both``): every site's cameras
and alarms, operators' actions sent to the sites, and the sites' video through this station.

- ``GET /api/central/sites``: each site with its state (``online``, ``link_down``,
  ``station_offline``, ``stopped``, ``unknown``), its station and its cameras (status, motion,
  recorded range). A camera's video is under ``/api/central/stations/{station}/``.
- ``GET /api/central/alarms`` (``state``, ``site``, ``limit``, ``offset``) and
  ``GET /api/central/alarms/{station}/{id}``: the sites' alarms, each with its ``station``.
- ``POST /api/central/alarms/{station}/{id}/{action}`` (operator; ``acknowledge``, ``assign``,
  ``hold``, ``close``, ``comment`` with the bodies of the local alarm routes) and
  ``POST /api/central/sites/{site}/arm|disarm``: sent to the site as an MQTT command (202). The
  site applies it and its alarm change comes back over MQTT (SSE ``remote_alarm``).
- ``GET /api/central/stations/{station}/<path>``: the site station's ``/api/<path>`` for the
  paths an operator's client needs (snapshots, recordings with Range, one camera's alarms for
  the playback timeline, alarm snapshots and history, export jobs and exported files), fetched
  with the station's token;
  ``POST .../recordings/{camera}/export-jobs`` starts an export there;
  ``WS .../cameras/{camera}/live`` relays the site's live video (protocol in
  :mod:`vmscore.web.live`). The browser needs only the central address.

Permissions: a site's camera is the user's when ``can_view(camera, site)``; what the central
station may do at a site is what its token's user may do there.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import ssl
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal
from urllib.parse import quote

import httpx
import websockets
from fastapi import APIRouter, HTTPException, Query, Request, WebSocket, WebSocketDisconnect, status
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask
from websockets.asyncio.client import connect as ws_connect

from vmscore.station.central import Central, RemoteStation
from vmscore.station.station import Station
from vmscore.web.app import _station, _visible
from vmscore.web.auth import (
    SESSION_COOKIE,
    OperatorPrincipal,
    Principal,
    ViewerPrincipal,
    audit_action,
    principal_again,
)
from vmscore.web.live import CLOSE_FORBIDDEN, CLOSE_UNAVAILABLE, RECHECK_S, _refuse

__all__ = ["central_router"]

MAX_POST_BYTES = 64 * 1024
_PASS_HEADERS = (
    "content-type",
    "content-length",
    "content-range",
    "accept-ranges",
    "content-disposition",
    "cache-control",
    "etag",
    "last-modified",
)
_Station = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
_Camera = Annotated[str, PathParam(min_length=1, max_length=64)]

# The site paths a central client may read, and how each names its camera.
_CAMERA_PATHS = re.compile(
    r"^(?:cameras/(?P<c1>[^/]+)/(?:snapshot\.jpg|motion|health)"
    r"|recordings/(?P<c2>[^/]+)/video\.mp4)$"
)
_ALARM_PATHS = re.compile(r"^alarms/(?P<id>[0-9]{1,18})/(?:snapshot\.jpg|history)$")
_EXPORT_PATHS = re.compile(r"^(?:export-jobs/[A-Za-z0-9_-]{1,64}|exports/(?P<file>[^/]{1,300}))$")


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=4000)
    category: str | None = Field(default=None, max_length=100)
    to: str | None = Field(default=None, max_length=64)


_COMMAND = {
    "acknowledge": "ack",
    "assign": "assign",
    "hold": "hold",
    "close": "close",
    "comment": "comment",
}


def _central(station: Station) -> Central:
    if station.central is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this station is not a central station")
    return station.central


def _remote(central: Central, name: str) -> RemoteStation:
    remote = central.remote(name)
    if remote is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"station {name!r} is not in central.stations"
        )
    return remote


def _camera_site(central: Central, who: Principal, station: str, camera: str) -> str:
    """The site of a visible camera of ``station``; 404 alike for unknown and forbidden."""
    found = central.find_camera(station, camera)
    if found is None or not _visible(who, camera, found[0]):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such camera, or not yours to see")
    return found[0]


def _client(remote: RemoteStation, timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=remote.url,
        headers={"Authorization": f"Bearer {remote.token.get_secret_value()}"},
        timeout=timeout,
        verify=str(remote.ca_file) if remote.ca_file else True,
    )


async def _forward(
    request: Request, central: Central, remote: RemoteStation, method: str, path: str
) -> StreamingResponse:
    """Sends the request on to the site and streams its answer back."""
    client = _client(remote, central.settings.timeout_s)
    headers = {k: v for k, v in request.headers.items() if k in ("range", "if-range", "accept")}
    body: bytes | None = None
    if method == "POST":
        body = await request.body()
        if len(body) > MAX_POST_BYTES:
            await client.aclose()
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "the body is too large")
        headers["content-type"] = "application/json"
    req = client.build_request(
        method, "/api/" + path, params=str(request.query_params), headers=headers,
        content=body,
    )  # fmt: skip
    try:
        upstream = await client.send(req, stream=True)
    except httpx.HTTPError as e:
        await client.aclose()
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY, f"station {remote.name} is not reachable: {e}"
        ) from None
    if upstream.status_code == 401:
        await upstream.aclose()
        await client.aclose()
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY, f"station {remote.name} refused the central token"
        )

    async def close() -> None:
        await upstream.aclose()
        await client.aclose()

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError:
            return  # the site went away mid-answer: the client sees a short body

    out = {k: v for k, v in upstream.headers.items() if k in _PASS_HEADERS}
    return StreamingResponse(
        relay(), status_code=upstream.status_code, headers=out, background=BackgroundTask(close)
    )


def central_router() -> APIRouter:
    r = APIRouter(tags=["central"])

    @r.get("/api/central/sites")
    def sites(request: Request, who: ViewerPrincipal) -> list[dict[str, Any]]:
        st = _station(request)
        central = _central(st)
        out = []
        for name in central.site_names():
            view = central.site(name)
            if view is None or view.station == st.config.station.name:
                continue  # this station's own sites are its local cameras
            data = central.site_json(view, functools.partial(_camera_visible, who, name))
            if data["cameras"] or _visible(who, None, name):
                out.append(data)
        return out

    @r.get("/api/central/alarms")
    def alarms(
        request: Request,
        who: ViewerPrincipal,
        state: Annotated[list[str] | None, Query(max_length=4)] = None,
        site: Annotated[list[str] | None, Query(max_length=1000)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> list[dict[str, Any]]:
        central = _central(_station(request))
        return central.alarms(
            states=state,
            sites=site,
            visible=lambda camera, s: _visible(who, camera, s),
            limit=limit,
            offset=offset,
        )

    def visible_alarm(
        request: Request, who: Principal, station: str, alarm_id: int
    ) -> dict[str, Any]:
        alarm = _central(_station(request)).alarm(station, alarm_id)
        if alarm is None or not _visible(who, alarm.get("camera"), alarm.get("site")):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alarm, or not yours to see")
        return alarm

    @r.get("/api/central/alarms/{station}/{alarm_id}")
    def alarm(
        request: Request,
        station: _Station,
        alarm_id: Annotated[int, PathParam(ge=0, lt=1 << 62)],
        who: ViewerPrincipal,
    ) -> dict[str, Any]:
        return visible_alarm(request, who, station, alarm_id)

    @r.post("/api/central/alarms/{station}/{alarm_id}/{action}", status_code=202)
    def act(
        request: Request,
        station: _Station,
        alarm_id: Annotated[int, PathParam(ge=0, lt=1 << 62)],
        action: Literal["acknowledge", "assign", "hold", "close", "comment"],
        body: ActionBody,
        who: OperatorPrincipal,
    ) -> dict[str, Any]:
        alarm = visible_alarm(request, who, station, alarm_id)
        site = alarm.get("site")
        if not isinstance(site, str):
            raise HTTPException(
                status.HTTP_409_CONFLICT, "an alarm of no site is handled at its station"
            )
        # The site's history names the operator and the central station they work at.
        payload: dict[str, Any] = {"alarm_id": alarm_id, "user": _operator(request, who)}
        if body.comment:
            payload["comment"] = body.comment
        if action == "close" and body.category:
            payload["category"] = body.category
        if action == "assign":
            payload["to"] = body.to or _operator(request, who)
        if action == "comment" and not body.comment.strip():
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the comment is empty")
        try:
            connected = _central(_station(request)).command(site, _COMMAND[action], payload)
        except ValueError as e:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
        except OSError as e:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(e)) from None
        audit_action(request, who, f"central.alarm.{action}", f"{station}/{alarm_id}", payload)
        return {"sent": True, "broker_connected": connected, "site": site}

    @r.post("/api/central/sites/{site}/{action}", status_code=202)
    def arm(
        request: Request,
        site: Annotated[str, PathParam(min_length=1, max_length=100)],
        action: Literal["arm", "disarm"],
        who: OperatorPrincipal,
    ) -> dict[str, Any]:
        central = _central(_station(request))
        if central.site(site) is None or not _visible(who, None, site):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such site, or not yours to see")
        connected = central.command(site, action, {"user": _operator(request, who)})
        audit_action(request, who, f"central.site.{action}", site)
        return {"sent": True, "broker_connected": connected, "site": site}

    @r.get("/api/central/stations/{station}/{path:path}", response_class=StreamingResponse)
    async def proxy_get(
        request: Request, station: _Station, path: str, who: ViewerPrincipal
    ) -> StreamingResponse:
        central = _central(_station(request))
        remote = _remote(central, station)
        m = _CAMERA_PATHS.match(path)
        if m:
            _camera_site(central, who, station, m.group("c1") or m.group("c2"))
        elif path in ("recordings", "alarms"):
            cams = request.query_params.getlist("camera")
            if len(cams) != 1:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT, "name exactly one camera"
                )
            _camera_site(central, who, station, cams[0])
        elif (a := _ALARM_PATHS.match(path)) is not None:
            await asyncio.to_thread(visible_alarm, request, who, station, int(a.group("id")))
        elif (e := _EXPORT_PATHS.match(path)) is not None:
            if who.role == "viewer":
                raise HTTPException(status.HTTP_403_FORBIDDEN, "exports are for operators")
            file = e.group("file")
            if file is not None and not _export_visible(central, who, station, file):
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such export, or not yours")
        else:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "not a path the central station relays")
        return await _forward(request, central, remote, "GET", path)

    @r.post(
        "/api/central/stations/{station}/recordings/{camera}/export-jobs",
        response_class=StreamingResponse,
    )
    async def proxy_export(
        request: Request, station: _Station, camera: _Camera, who: OperatorPrincipal
    ) -> StreamingResponse:
        central = _central(_station(request))
        remote = _remote(central, station)
        _camera_site(central, who, station, camera)
        audit_action(request, who, "central.export", f"{station}/{camera}")
        path = f"recordings/{quote(camera, safe='')}/export-jobs"
        return await _forward(request, central, remote, "POST", path)

    @r.websocket("/api/central/stations/{station}/cameras/{camera}/live")
    async def live(
        ws: WebSocket,
        station: _Station,
        camera: _Camera,
        who: ViewerPrincipal,
        stream: Annotated[Literal["main", "sub"], Query()] = "sub",
    ) -> None:
        st: Station = ws.app.state.station
        await ws.accept()
        central = st.central
        found = central.find_camera(station, camera) if central is not None else None
        if central is None or found is None or not who.can_view(camera, found[0]):
            await _refuse(
                ws, "forbidden", "no such camera, or no permission to view it", CLOSE_FORBIDDEN
            )
            return
        remote = central.remote(station)
        if remote is None:
            await _refuse(
                ws, "unavailable", f"station {station} has no address here", CLOSE_UNAVAILABLE
            )
            return
        await _relay(ws, st, remote, camera, found[0], stream, central.settings.timeout_s)

    return r


def _operator(request: Request, who: Principal) -> str:
    return f"{who.user}@{_station(request).config.station.name}"[:100]


def _camera_visible(who: Principal, site: str, camera: str) -> bool:
    return _visible(who, camera, site)


def _export_visible(central: Central, who: Principal, station: str, file: str) -> bool:
    """Whether an exported file of ``station`` (named ``<camera>-<start>-...``) is of a camera
    the user sees."""
    for name in central.site_names():
        view = central.site(name)
        if view is None or view.station != station:
            continue
        for cam in view.cameras:
            c = cam.get("name")
            if isinstance(c, str) and file.startswith(f"{c}-") and _visible(who, c, name):
                return True
    return False


async def _relay(
    ws: WebSocket,
    station: Station,
    remote: RemoteStation,
    camera: str,
    site: str,
    stream: str,
    timeout: float,
) -> None:
    """Relays the site's live WebSocket to the browser until either side closes; the browser's
    user is checked again every few seconds."""
    url = re.sub(r"^http", "ws", remote.url.rstrip("/"))
    url += f"/api/cameras/{quote(camera, safe='')}/live?stream={stream}"
    context: ssl.SSLContext | None = None
    if url.startswith("wss:"):
        context = ssl.create_default_context(cafile=str(remote.ca_file) if remote.ca_file else None)
    try:
        upstream = await ws_connect(
            url,
            additional_headers={"Authorization": f"Bearer {remote.token.get_secret_value()}"},
            ssl=context,
            open_timeout=timeout,
            max_size=1 << 26,
            compression=None,
        )
    except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as e:
        await _refuse(
            ws, "unavailable", f"station {remote.name} is not reachable: {e}", CLOSE_UNAVAILABLE
        )
        return
    authorization = ws.headers.get("authorization")
    cookie = ws.cookies.get(SESSION_COOKIE)

    async def down() -> tuple[int, str]:
        """Site to browser; returns the site's close code and reason."""
        try:
            async for msg in upstream:
                if isinstance(msg, str):
                    await ws.send_text(msg)
                else:
                    await ws.send_bytes(msg)
        except websockets.exceptions.ConnectionClosed:
            pass
        code = upstream.close_code
        if code is None:
            return CLOSE_UNAVAILABLE, f"station {remote.name} closed the connection"
        return code, upstream.close_reason or ""

    async def up() -> None:
        """Waits for the browser to go away, checking its user meanwhile."""
        checked = time.monotonic()
        while True:
            try:
                msg = await asyncio.wait_for(ws.receive(), timeout=RECHECK_S)
                if msg["type"] == "websocket.disconnect":
                    return
            except TimeoutError:
                pass
            if time.monotonic() - checked >= RECHECK_S:
                checked = time.monotonic()
                fresh = await asyncio.to_thread(
                    principal_again, station.users, authorization, cookie
                )
                if fresh is None or not fresh.can_view(camera, site):
                    raise PermissionError

    down_task = asyncio.create_task(down())
    up_task = asyncio.create_task(up())
    try:
        done, _ = await asyncio.wait({down_task, up_task}, return_when=asyncio.FIRST_COMPLETED)
        if down_task in done and not down_task.cancelled() and down_task.exception() is None:
            code, reason = down_task.result()
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await ws.close(code=code if 4000 <= code < 5000 else CLOSE_UNAVAILABLE,
                               reason=reason[:120])  # fmt: skip
        elif up_task in done and isinstance(up_task.exception(), PermissionError):
            await _refuse(
                ws, "forbidden", "no permission to view this camera any more", CLOSE_FORBIDDEN
            )
    finally:
        for t in (down_task, up_task):
            t.cancel()
        for t in (down_task, up_task):
            with contextlib.suppress(BaseException):
                await t
        await upstream.close()
