"""The station's HTTP API (FastAPI): REST for sites, cameras, zones, rules, time profiles, alarms,
bookmarks, evidence locks, recordings (MP4 of any range with HTTP Range, signed export),
snapshots, health and statistics; server-sent events for alarms and camera events; Prometheus
metrics at ``/metrics``; the OpenAPI schema at ``/api/openapi.json``.

Every route declares its minimum role (see :mod:`vmscore.web.auth`) and checks the camera
permission of the user for anything tied to a camera; a camera the user may not see answers
exactly like one that does not exist. Operator actions are written to the audit log.

Threading: the routes are plain functions run by FastAPI's thread pool (the station's methods
block on SQLite, decoding and disk); only the event stream is a coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from vmscore.alarms import (
    Alarm,
    AlarmNotFoundError,
    AlarmScope,
    AlarmStateError,
)
from vmscore.cameras.snapshot import NoPictureError, probe_streams, redact
from vmscore.errors import NoFootageError, VmsError
from vmscore.record import StationKey
from vmscore.station.config import ConfigError, dump_document
from vmscore.station.hub import HubMessage
from vmscore.station.station import Station
from vmscore.web.auth import (
    CAMERA_NOT_FOUND,
    SESSION_COOKIE,
    AdminPrincipal,
    LoginLimiter,
    OperatorPrincipal,
    Principal,
    ViewerPrincipal,
    audit_action,
    check_camera,
    install_auth,
    principal_again,
    public,
    require,
)
from vmscore.web.live import live_router

__all__ = ["create_app"]

Name = Annotated[
    str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
INT_LIMIT = 2**62
"""Times, ids and versions are below this (the alarm manager's bound; SQLite stores 63 bits):
a larger number is a 422, not an overflow in the database."""
Id = Annotated[int, PathParam(ge=0, lt=INT_LIMIT)]
MAX_RANGE_US = 24 * 3600 * 1_000_000
"""The longest range one MP4 or export may cover (a day)."""
MAX_BODY_BYTES = 1 << 20
"""The largest request body accepted (413 beyond)."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CommentBody(_Body):
    comment: str = Field(default="", max_length=4000)


class CloseBody(_Body):
    comment: str = Field(default="", max_length=4000)
    category: str | None = Field(default=None, max_length=100)


class AssignBody(_Body):
    to: str | None = Field(default=None, max_length=64)


class PriorityBody(_Body):
    priority: Literal["critical", "high", "medium", "low"]


class VersionQuery(_Body):
    pass


class BookmarkBody(_Body):
    camera: str = Field(min_length=1, max_length=64)
    start_us: int = Field(ge=0, lt=INT_LIMIT)
    end_us: int | None = Field(default=None, ge=0, lt=INT_LIMIT)
    text: str = Field(default="", max_length=4000)


class LockBody(_Body):
    camera: str = Field(min_length=1, max_length=64)
    start_us: int = Field(ge=0, lt=INT_LIMIT)
    end_us: int = Field(ge=0, lt=INT_LIMIT)
    reason: str = Field(min_length=1, max_length=1000)
    expires_us: int | None = Field(default=None, ge=0, lt=INT_LIMIT)


class ExportBody(_Body):
    start_us: int = Field(ge=0, lt=INT_LIMIT)
    end_us: int = Field(ge=0, lt=INT_LIMIT)
    reason: str = Field(default="", max_length=1000)


class ExternalEventBody(_Body):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    camera: str | None = Field(default=None, max_length=64)
    site: str | None = Field(default=None, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict)


class ViewBody(_Body):
    """A saved view of the operator's overview."""

    layout: str = Field(default="auto", pattern=r"^(auto|[1-8]x[1-8])$")
    group_by: Literal["site", "group", "none"] = "site"
    group: str | None = Field(default=None, max_length=64)
    """Only the cameras of this site or group (None: all)."""
    cameras: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=1000
    )
    """An explicit choice and order of cameras (None: all, by group and name)."""
    page: int = Field(default=0, ge=0, le=1000)


class TestCameraBody(_Body):
    main_url: str = Field(pattern=r"^rtsps?://", max_length=2000)
    sub_url: str | None = Field(default=None, pattern=r"^rtsps?://", max_length=2000)
    username: str | None = Field(default=None, max_length=200)
    password: str | None = Field(default=None, max_length=200)
    transport: Literal["tcp", "udp"] = "tcp"


class ProbeBody(_Body):
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(default=80, ge=1, le=65535)
    username: str = Field(default="", max_length=200)
    password: str = Field(default="", max_length=200)


class DiscoverBody(_Body):
    timeout_s: float = Field(default=2.0, gt=0, le=10)
    targets: list[tuple[str, int]] | None = Field(default=None, max_length=256)


def _station(request: Request) -> Station:
    st: Station = request.app.state.station
    return st


def _camera(request: Request, who: Principal, name: str) -> Any:
    """The camera's configuration, or 404 when it does not exist or the user may not see it."""
    cfg = _station(request).config.camera(name)
    if cfg is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, CAMERA_NOT_FOUND)
    check_camera(who, cfg.name, cfg.site)
    return cfg


def _camera_json(station: Station, cfg: Any) -> dict[str, Any]:
    data: dict[str, Any] = cfg.model_dump(mode="json", exclude={"password"})
    data["has_password"] = cfg.password is not None
    for key in ("main_url", "sub_url"):
        if data.get(key):
            data[key] = redact(data[key])
    try:
        state = station.camera_state(cfg.name)
        data["online"] = state.online
        data["last_error"] = state.last_error
    except KeyError:
        data["online"] = False
    return data


def _unrestricted(who: Principal) -> bool:
    """Whether the user sees every camera (station-wide figures are for them only)."""
    return who.role == "admin" or "*" in who.cameras or "*" in who.sites


def _visible(who: Principal, camera: str | None, site: str | None) -> bool:
    """Whether something of ``camera`` (or, without a camera, of ``site``) is the user's."""
    if _unrestricted(who):
        return True
    if camera:
        return who.can_view(camera, site)
    return site is not None and who.can_view_site(site)


def _visible_alarm(who: Principal, alarm: Alarm) -> bool:
    return _visible(who, alarm.camera, alarm.site)


def _scope(station: Station, who: Principal) -> AlarmScope | None:
    """The alarms a user may see, as the alarm manager's filter (None: all)."""
    if _unrestricted(who):
        return None
    cams = frozenset(c.name for c in station.config.cameras if who.can_view(c.name, c.site))
    sites = frozenset(s.name for s in station.config.sites if who.can_view_site(s.name))
    return AlarmScope(cameras=cams, sites=sites, station=False)


def _alarm(request: Request, who: Principal, alarm_id: int) -> Alarm:
    try:
        alarm = _station(request).alarms.get(alarm_id)
    except AlarmNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alarm") from None
    if not _visible_alarm(who, alarm):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alarm")
    return alarm


def _range(start_us: int, end_us: int) -> None:
    if end_us <= start_us:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the range must not be empty")
    if end_us - start_us > MAX_RANGE_US:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "a range may cover at most 24 hours"
        )


def _edit_camera(name: str, edit: Any) -> Any:
    def apply(doc: dict[str, Any]) -> None:
        for cam in doc.get("cameras") or []:
            if isinstance(cam, dict) and cam.get("name") == name:
                edit(cam)
                return
        raise HTTPException(status.HTTP_404_NOT_FOUND, CAMERA_NOT_FOUND)

    return apply


def _change(request: Request, who: Principal, edit: Any, reason: str, target: str) -> None:
    try:
        _station(request).change(edit, user=who.user, reason=reason)
    except ConfigError as e:
        audit_action(request, who, reason, target, {"error": str(e)[:500]}, ok=False)
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            {"message": "invalid", "problems": e.problems or [str(e)]},
        ) from None
    audit_action(request, who, reason, target)


_EXPORT_NAME = r"-\d+-\d+-\d+\.mp4(\.[a-z0-9.]+)?"
"""An export's file name after its camera's name (see the export route)."""


def _probe_streams(body: dict[str, Any]) -> dict[str, str]:
    """main_url and sub_url of an ONVIF camera named by ``onvif_address`` (host[:port])."""
    from vmscore.cameras.onvif import OnvifAuthError, OnvifError, probe_sync

    address = str(body["onvif_address"])
    host, _, port = address.rpartition(":") if address.count(":") == 1 else (address, "", "")
    try:
        dev = probe_sync(
            host or address,
            int(port) if port.isdigit() else 80,
            str(body.get("username") or ""),
            str(body.get("password") or ""),
            timeout_s=10,
        )
    except OnvifAuthError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
    except OnvifError as e:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(e)) from None
    if not dev.main_uri:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"{address}: no H.264 or H.265 stream found"
        )
    out = {"main_url": dev.main_uri}
    if dev.sub_uri:
        out["sub_url"] = dev.sub_uri
    return out


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The single byte range of a Range header, as [start, end); None for the whole file."""
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if m is None or (not m.group(1) and not m.group(2)):
        raise HTTPException(
            status.HTTP_416_RANGE_NOT_SATISFIABLE,
            headers={"Content-Range": f"bytes */{size}"},
        )
    if m.group(1):
        start = int(m.group(1))
        end = int(m.group(2)) + 1 if m.group(2) else size
    else:
        start, end = max(0, size - int(m.group(2))), size
    end = min(end, size)
    if start >= end:
        raise HTTPException(
            status.HTTP_416_RANGE_NOT_SATISFIABLE,
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end


STATIC = Path(__file__).parent / "static"
UI_HEADERS = {
    # Everything the UI loads comes from the station itself.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self'; script-src 'self'; style-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class _Static(StaticFiles):
    """The UI's files, revalidated on every load (an upgraded station serves new modules)."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(UI_HEADERS)
        return response


def create_app(station: Station, *, limiter: LoginLimiter | None = None) -> FastAPI:
    app = FastAPI(
        title="vmscore station",
        version=_version(),
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        # Every body the API takes is small (a camera, zones, a rule); without a bound a
        # client could make the station hold any amount in memory (an external event's data).
        max_body_size=MAX_BODY_BYTES,
    )
    app.state.station = station
    install_auth(
        app,
        station.users,
        limiter or LoginLimiter(),
        secure_cookies=station.config.station.http.secure_cookies,
    )
    app.mount("/static", _Static(directory=STATIC), name="static")
    # Imported here: those routes build on this module's export code and checks.
    from vmscore.web.central import central_router
    from vmscore.web.exports import alarm_settings_router, export_router

    for router in (
        _status_router(),
        _camera_router(),
        _alarm_router(),
        _recording_router(),
        _config_router(),
        _event_router(),
        _view_router(),
        live_router(),
        export_router(),
        alarm_settings_router(),
        central_router(),
    ):
        app.include_router(router)

    @app.exception_handler(VmsError)
    def _vms_error(request: Request, exc: VmsError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_409_CONFLICT)

    return app


def _version() -> str:
    import vmscore

    return vmscore.__version__


# -- status -------------------------------------------------------------------------------------


def _status_router() -> APIRouter:
    r = APIRouter(tags=["status"])

    @r.get("/", dependencies=[Depends(public)], include_in_schema=False)
    def root() -> Response:
        """The operator's UI (plain ES modules under /static; it logs in by itself)."""
        from fastapi.responses import FileResponse

        return FileResponse(STATIC / "index.html", headers=UI_HEADERS)

    @r.get("/api/live", dependencies=[Depends(public)])
    def live() -> dict[str, str]:
        """Liveness for load balancers: answers while the process serves requests."""
        return {"status": "ok"}

    @r.get("/api/health")
    def health(request: Request, who: ViewerPrincipal) -> dict[str, Any]:
        h = _station(request).health()
        h["cameras"] = [c for c in h["cameras"] if who.can_view(c["camera"], c["site"])]
        if not who.has_role("admin"):
            h.pop("storage", None)
            h.pop("mqtt", None)
        return h

    @r.get("/metrics", response_class=PlainTextResponse)
    def metrics(request: Request, who: ViewerPrincipal) -> Response:
        """Prometheus metrics of every camera: for users who may see every camera (a scraper's
        token), since they name and describe cameras a restricted user must not learn of."""
        from vmscore.web.metrics import render

        if not _unrestricted(who):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, "the metrics cover every camera of the station"
            )

        body, ctype = render(_station(request))
        return Response(body, media_type=ctype)

    @r.get("/api/sites")
    def sites(request: Request, who: ViewerPrincipal) -> list[dict[str, Any]]:
        st = _station(request)
        out = []
        for s in st.config.sites:
            cams = [
                c for c in st.config.cameras if c.site == s.name and who.can_view(c.name, c.site)
            ]
            if not cams and not who.can_view_site(s.name):
                continue
            out.append(
                {
                    **s.model_dump(mode="json"),
                    "armed": st.is_armed(s.name),
                    "cameras": [c.name for c in cams],
                }
            )
        return out

    @r.post("/api/sites/{site}/arm")
    def arm(request: Request, site: Name, who: OperatorPrincipal) -> dict[str, Any]:
        return _set_armed(request, who, site, True)

    @r.post("/api/sites/{site}/disarm")
    def disarm(request: Request, site: Name, who: OperatorPrincipal) -> dict[str, Any]:
        return _set_armed(request, who, site, False)

    @r.post("/api/events/external")
    def external(
        request: Request, body: ExternalEventBody, who: OperatorPrincipal
    ) -> dict[str, Any]:
        st = _station(request)
        if body.camera is not None:
            cfg = _camera(request, who, body.camera)
            if body.site is not None and body.site != cfg.site:
                # Else an operator of one site could fire another site's rules through a camera
                # of their own.
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    f"camera {body.camera} is not at site {body.site}",
                )
        elif body.site is not None and (
            st.config.site(body.site) is None or not who.can_view_site(body.site)
        ):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such site")
        ev = st.external_event(body.name, camera=body.camera, site=body.site, data=body.data)
        audit_action(request, who, "event.external", body.name, {"camera": body.camera})
        return ev.to_json()

    return r


def _set_armed(request: Request, who: Principal, site: str, armed: bool) -> dict[str, Any]:
    st = _station(request)
    if st.config.site(site) is None or not who.can_view_site(site):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such site")
    st.set_armed(site, armed, by=who.user)
    audit_action(request, who, "arm" if armed else "disarm", site)
    return {"site": site, "armed": armed}


# -- cameras ------------------------------------------------------------------------------------


def _camera_router() -> APIRouter:
    r = APIRouter(tags=["cameras"])

    @r.get("/api/cameras")
    def cameras(request: Request, who: ViewerPrincipal) -> list[dict[str, Any]]:
        st = _station(request)
        return [_camera_json(st, c) for c in st.config.cameras if who.can_view(c.name, c.site)]

    @r.get("/api/cameras/{camera}")
    def camera(request: Request, camera: Name, who: ViewerPrincipal) -> dict[str, Any]:
        return _camera_json(_station(request), _camera(request, who, camera))

    @r.get("/api/cameras/{camera}/health")
    def camera_health(request: Request, camera: Name, who: ViewerPrincipal) -> dict[str, Any]:
        _camera(request, who, camera)
        return _station(request).camera_health(camera)

    @r.get("/api/cameras/{camera}/snapshot.jpg", response_class=Response)
    def snapshot(
        request: Request,
        camera: Name,
        who: ViewerPrincipal,
        width: Annotated[int, Query(ge=0, le=7680)] = 0,
    ) -> Response:
        _camera(request, who, camera)
        try:
            jpeg = _station(request).snapshot(camera, max_width=width)
        except (NoPictureError, KeyError) as e:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(e)) from None
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @r.get("/api/cameras/{camera}/motion")
    def motion(
        request: Request,
        camera: Name,
        who: ViewerPrincipal,
        since_us: Annotated[int, Query(ge=0, lt=INT_LIMIT)],
        until_us: Annotated[int, Query(ge=0, lt=INT_LIMIT)],
    ) -> list[dict[str, Any]]:
        """Motion per second (score and the 16x16 grid as hex) for timeline search."""
        _camera(request, who, camera)
        _range(since_us, until_us)
        return [
            {"second_us": m.second_us, "score": round(m.score, 4), "grid": m.grid.hex()}
            for m in _station(request).store.motion(camera, since_us, until_us)
        ]

    @r.post("/api/cameras", status_code=status.HTTP_201_CREATED)
    def add_camera(
        request: Request, who: AdminPrincipal, body: Annotated[dict[str, Any], Body()]
    ) -> dict[str, Any]:
        """Adds a camera (the configuration's camera fields; recording and motion are merged
        over the station's defaults). The other cameras are not disturbed.

        By address alone: give ``onvif_address`` ("host[:port]"), ``username`` and ``password``
        without ``main_url``; the camera is probed over ONVIF and its main and sub stream URIs
        filled in."""
        name = str(body.get("name", ""))
        body = dict(body)
        if body.get("onvif_address") and not body.get("main_url"):
            body.update(_probe_streams(body))

        def edit(doc: dict[str, Any]) -> None:
            doc.setdefault("cameras", []).append(dict(body))

        _change(request, who, edit, "camera.add", name)
        return _camera_json(_station(request), _station(request).config.camera(name))

    @r.patch("/api/cameras/{camera}")
    def update_camera(
        request: Request,
        camera: Name,
        who: AdminPrincipal,
        body: Annotated[dict[str, Any], Body()],
    ) -> dict[str, Any]:
        """Changes some of a camera's settings (recording and motion merged one level deep)."""
        _camera(request, who, camera)
        if "name" in body and body["name"] != camera:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "a camera keeps its name")

        def edit(cam: dict[str, Any]) -> None:
            for k, v in body.items():
                if k in ("recording", "motion") and isinstance(v, dict):
                    cam[k] = {**(cam.get(k) or {}), **v}
                elif v is None:
                    cam.pop(k, None)
                else:
                    cam[k] = v

        _change(request, who, _edit_camera(camera, edit), "camera.update", camera)
        return _camera_json(_station(request), _station(request).config.camera(camera))

    @r.put("/api/cameras/{camera}/zones")
    def set_zones(
        request: Request,
        camera: Name,
        who: AdminPrincipal,
        zones: Annotated[list[dict[str, Any]], Body(max_length=200)],
    ) -> list[dict[str, Any]]:
        """Replaces the camera's zones and masks (polygons relative to the image)."""
        _camera(request, who, camera)

        def edit(cam: dict[str, Any]) -> None:
            cam["motion"] = {**(cam.get("motion") or {}), "zones": zones}

        _change(request, who, _edit_camera(camera, edit), "camera.zones", camera)
        cfg = _station(request).config.camera(camera)
        assert cfg is not None
        return [z.model_dump(mode="json") for z in cfg.motion.zones]

    def set_enabled(request: Request, who: Principal, camera: str, on: bool) -> dict[str, Any]:
        _camera(request, who, camera)
        edit = _edit_camera(camera, lambda c: c.update(enabled=on))
        _change(request, who, edit, "camera.enable" if on else "camera.disable", camera)
        return _camera_json(_station(request), _station(request).config.camera(camera))

    @r.post("/api/cameras/{camera}/enable")
    def enable(request: Request, camera: Name, who: AdminPrincipal) -> dict[str, Any]:
        return set_enabled(request, who, camera, True)

    @r.post("/api/cameras/{camera}/disable")
    def disable(request: Request, camera: Name, who: AdminPrincipal) -> dict[str, Any]:
        return set_enabled(request, who, camera, False)

    @r.delete("/api/cameras/{camera}", status_code=status.HTTP_204_NO_CONTENT)
    def remove_camera(request: Request, camera: Name, who: AdminPrincipal) -> Response:
        _camera(request, who, camera)

        def edit(doc: dict[str, Any]) -> None:
            doc["cameras"] = [c for c in doc.get("cameras") or [] if c.get("name") != camera]

        _change(request, who, edit, "camera.remove", camera)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @r.post("/api/cameras/{camera}/test")
    def test_existing(request: Request, camera: Name, who: AdminPrincipal) -> dict[str, Any]:
        cfg = _camera(request, who, camera)
        result = probe_streams(
            cfg.main_url,
            cfg.sub_url,
            username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password else None,
            transport=cfg.transport,
            timeout_s=8.0,
            sample_s=2.0,
        )
        audit_action(request, who, "camera.test", camera)
        return result.to_json()

    @r.post("/api/cameras/test")
    def test_new(request: Request, body: TestCameraBody, who: AdminPrincipal) -> dict[str, Any]:
        """Tests a camera before adding it: codec, size, frame rate and bitrate of each stream
        and a snapshot (base64) from the main stream."""
        import base64

        result = probe_streams(
            body.main_url,
            body.sub_url,
            username=body.username,
            password=body.password,
            transport=body.transport,
            timeout_s=8.0,
            sample_s=2.0,
        )
        out = result.to_json()
        if result.snapshot_jpeg:
            out["snapshot_jpeg_base64"] = base64.b64encode(result.snapshot_jpeg).decode()
        audit_action(request, who, "camera.test", redact(body.main_url))
        return out

    @r.post("/api/onvif/probe")
    def onvif_probe(request: Request, body: ProbeBody, who: AdminPrincipal) -> dict[str, Any]:
        """Device information, profiles and stream URIs of an ONVIF camera, so it can be added
        by its address alone."""
        from vmscore.cameras.onvif import OnvifAuthError, OnvifError, probe_sync

        try:
            dev = probe_sync(body.host, body.port, body.username, body.password, timeout_s=10)
        except OnvifAuthError as e:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
        except OnvifError as e:
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(e)) from None
        audit_action(request, who, "camera.onvif_probe", f"{body.host}:{body.port}")
        return dev.to_json()

    @r.post("/api/onvif/discover")
    def onvif_discover(
        request: Request, who: AdminPrincipal, body: DiscoverBody | None = None
    ) -> list[dict[str, Any]]:
        from vmscore.cameras.discovery import discover

        b = body or DiscoverBody()
        found = discover(b.timeout_s, targets=b.targets)
        return [
            {
                "endpoint": d.endpoint,
                "xaddrs": list(d.xaddrs),
                "scopes": list(d.scopes),
                "address": d.address,
                "name": d.name,
                "hardware": d.hardware,
            }
            for d in found
        ]

    return r


# -- alarms -------------------------------------------------------------------------------------


Version = Annotated[
    int | None, Query(ge=0, lt=INT_LIMIT, description="Expected version (409 when stale)")
]


def _alarm_router() -> APIRouter:
    r = APIRouter(tags=["alarms"])

    @r.get("/api/alarms")
    def alarms(
        request: Request,
        who: ViewerPrincipal,
        state: Annotated[list[str] | None, Query(max_length=4)] = None,
        site: Annotated[list[str] | None, Query(max_length=100)] = None,
        camera: Annotated[list[str] | None, Query(max_length=100)] = None,
        priority: Annotated[list[str] | None, Query(max_length=4)] = None,
        owner: Annotated[str | None, Query(max_length=64)] = None,
        since_us: Annotated[int | None, Query(ge=0, lt=INT_LIMIT)] = None,
        until_us: Annotated[int | None, Query(ge=0, lt=INT_LIMIT)] = None,
        text: Annotated[str | None, Query(max_length=200)] = None,
        sort: Literal["priority", "newest", "oldest"] = "priority",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> list[dict[str, Any]]:
        try:
            found = _station(request).alarms.list(
                states=state,
                sites=site,
                cameras=camera,
                priorities=priority,
                owner=owner,
                since_us=since_us,
                until_us=until_us,
                text=text,
                sort=sort,
                limit=limit,
                offset=offset,
                scope=_scope(_station(request), who),
            )
        except ValueError as e:  # an unknown state or priority
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
        return [a.model_dump(mode="json") for a in found]

    @r.get("/api/alarms/{alarm_id}")
    def alarm(request: Request, alarm_id: Id, who: ViewerPrincipal) -> dict[str, Any]:
        return _alarm(request, who, alarm_id).model_dump(mode="json")

    @r.get("/api/alarms/{alarm_id}/history")
    def history(request: Request, alarm_id: Id, who: ViewerPrincipal) -> list[dict[str, Any]]:
        _alarm(request, who, alarm_id)
        return [h.model_dump(mode="json") for h in _station(request).alarms.history(alarm_id)]

    @r.get("/api/alarms/{alarm_id}/snapshot.jpg", response_class=Response)
    def alarm_snapshot(request: Request, alarm_id: Id, who: ViewerPrincipal) -> Response:
        _alarm(request, who, alarm_id)
        jpeg = _station(request).alarms.snapshot(alarm_id)
        if jpeg is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "this alarm has no snapshot")
        return Response(jpeg, media_type="image/jpeg")

    def act(
        request: Request,
        who: Principal,
        alarm_id: int,
        method: str,
        *args: Any,
        expect_version: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Runs one of the alarm manager's operator actions as ``who`` and audits it."""
        _alarm(request, who, alarm_id)
        fn = getattr(_station(request).alarms, method)
        extra = {"expect_version": expect_version} if expect_version is not None else {}
        try:
            alarm = fn(alarm_id, who.user, *args, **extra)
        except AlarmStateError as e:  # AlarmConflictError included: stale version
            raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
        except ValueError as e:  # the request itself is wrong (an unknown category...)
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
        audit_action(request, who, f"alarm.{method}", str(alarm_id), detail or "")
        out: dict[str, Any] = alarm.model_dump(mode="json")
        return out

    @r.post("/api/alarms/{alarm_id}/acknowledge")
    def acknowledge(
        request: Request, alarm_id: Id, who: OperatorPrincipal, expect_version: Version = None
    ) -> dict[str, Any]:
        return act(request, who, alarm_id, "acknowledge", expect_version=expect_version)

    @r.post("/api/alarms/{alarm_id}/assign")
    def assign(
        request: Request, alarm_id: Id, body: AssignBody, who: OperatorPrincipal,
        expect_version: Version = None,
    ) -> dict[str, Any]:  # fmt: skip
        return act(request, who, alarm_id, "assign", body.to, expect_version=expect_version,
                   detail={"to": body.to})  # fmt: skip

    @r.post("/api/alarms/{alarm_id}/hold")
    def hold(
        request: Request, alarm_id: Id, body: CommentBody, who: OperatorPrincipal,
        expect_version: Version = None,
    ) -> dict[str, Any]:  # fmt: skip
        return act(request, who, alarm_id, "hold", body.comment, expect_version=expect_version)

    @r.post("/api/alarms/{alarm_id}/resume")
    def resume(
        request: Request, alarm_id: Id, who: OperatorPrincipal, expect_version: Version = None
    ) -> dict[str, Any]:
        return act(request, who, alarm_id, "resume", expect_version=expect_version)

    @r.post("/api/alarms/{alarm_id}/close")
    def close(
        request: Request, alarm_id: Id, body: CloseBody, who: OperatorPrincipal,
        expect_version: Version = None,
    ) -> dict[str, Any]:  # fmt: skip
        return act(request, who, alarm_id, "close", body.comment, body.category,
                   expect_version=expect_version, detail={"category": body.category})  # fmt: skip

    @r.post("/api/alarms/{alarm_id}/reopen")
    def reopen(
        request: Request, alarm_id: Id, body: CommentBody, who: OperatorPrincipal,
        expect_version: Version = None,
    ) -> dict[str, Any]:  # fmt: skip
        return act(request, who, alarm_id, "reopen", body.comment, expect_version=expect_version)

    @r.post("/api/alarms/{alarm_id}/comment")
    def comment(
        request: Request, alarm_id: Id, body: CommentBody, who: OperatorPrincipal
    ) -> dict[str, Any]:
        if not body.comment.strip():
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the comment is empty")
        return act(request, who, alarm_id, "comment", body.comment)

    @r.post("/api/alarms/{alarm_id}/priority")
    def priority(
        request: Request, alarm_id: Id, body: PriorityBody, who: OperatorPrincipal,
        expect_version: Version = None,
    ) -> dict[str, Any]:  # fmt: skip
        return act(request, who, alarm_id, "set_priority", body.priority,
                   expect_version=expect_version, detail={"priority": body.priority})  # fmt: skip

    @r.get("/api/alarm-changes")
    def alarm_changes(
        request: Request,
        who: ViewerPrincipal,
        since: Annotated[int, Query(ge=0, lt=INT_LIMIT)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    ) -> dict[str, Any]:
        """The alarm change log after ``since``, oldest first (what the MQTT ``alarms`` topic
        carried, with the same ``seq``): how a central station fills a hole in what it
        received. ``through`` is where the next page starts: every change up to it is in
        ``changes`` or not the caller's to see (or was superseded by a later change of the same
        alarm); ``more`` says whether to ask again."""
        alarms = _station(request).alarms
        newest = alarms.last_seq()  # read first: a change after it is on the next page
        found = alarms.changes_since(since, limit)
        more = len(found) == limit
        through = found[-1].seq if more else max(newest, found[-1].seq if found else since)
        return {
            "station": _station(request).config.station.name,
            "through": through,
            "more": more,
            "changes": [
                {
                    "seq": ch.seq,
                    "type": ch.kind,
                    "after": ch.alarm.model_dump(mode="json"),
                    "before": ch.before.model_dump(mode="json") if ch.before else None,
                }
                for ch in found
                if _visible_alarm(who, ch.alarm)
            ],
        }

    @r.get("/api/alarm-statistics/false-alarms")
    def false_alarms(
        request: Request,
        who: OperatorPrincipal,
        since_us: Annotated[int | None, Query(ge=0, lt=INT_LIMIT)] = None,
    ) -> list[dict[str, Any]]:
        """Per camera and zone: closed alarms and how many were false (for tuning zones)."""
        stats = _station(request).alarms.false_alarm_stats(since_us=since_us)
        return [s.model_dump(mode="json") for s in stats if _visible(who, s.camera, s.site)]

    return r


# -- recordings ---------------------------------------------------------------------------------


def write_export(
    request: Request,
    who: Principal,
    camera: str,
    body: ExportBody,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Writes the signed export of ``body``'s range of ``camera``, audits it and returns what the
    export routes answer (the synchronous one and the jobs of :mod:`vmscore.web.exports`). The
    caller has checked the camera and the range; ``progress(done, total)`` reports the bytes
    written. Raises 404 when nothing was recorded in the range."""
    st = _station(request)
    out_dir = st.data_dir / "exports"
    out_dir.mkdir(exist_ok=True)
    # The name is claimed before writing: the same export asked twice in one instant (a
    # double click) would otherwise write and sign one file twice at once.
    stamp = time.time_ns() // 1000
    while True:
        name = f"{camera}-{body.start_us}-{body.end_us}-{stamp}.mp4"
        try:
            (out_dir / name).open("x").close()
            break
        except FileExistsError:
            stamp += 1
    key = StationKey.load_or_create(st.data_dir / "station.key")
    try:
        manifest = st.recorder.export_signed(
            camera,
            body.start_us,
            body.end_us,
            out_dir / name,
            key=key,
            exporter=who.user,
            station=st.config.station.name,
            progress=progress,
        )
    except NoFootageError as e:
        (out_dir / name).unlink(missing_ok=True)
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from None
    except BaseException:
        (out_dir / name).unlink(missing_ok=True)
        raise
    audit_action(
        request,
        who,
        "export",
        camera,
        {"start_us": body.start_us, "end_us": body.end_us, "reason": body.reason, "file": name},
    )
    return {
        "file": name,
        "manifest": manifest.name,
        "bytes": (out_dir / name).stat().st_size,
        "url": f"/api/exports/{name}",
        "manifest_url": f"/api/exports/{manifest.name}",
    }


def _recording_router() -> APIRouter:
    r = APIRouter(tags=["recordings"])

    @r.get("/api/recordings")
    def recordings(
        request: Request,
        who: ViewerPrincipal,
        camera: Annotated[str, Query(min_length=1, max_length=64)],
        since_us: Annotated[int | None, Query(ge=0, lt=INT_LIMIT)] = None,
        until_us: Annotated[int | None, Query(ge=0, lt=INT_LIMIT)] = None,
        stream: Literal["main", "sub"] = "main",
    ) -> dict[str, Any]:
        """Recorded ranges, gaps and events of a camera (for the timeline)."""
        _camera(request, who, camera)
        rec = _station(request).recorder
        rows = rec.recordings(camera, since_us, until_us, role=stream)
        return {
            "recordings": [
                {
                    "id": x.id,
                    "start_us": x.start_wall_us,
                    "end_us": x.end_wall_us,
                    "bytes": x.bytes,
                    "frames": x.frames,
                }
                for x in rows
            ],
            "gaps": [
                {"start_us": g.start_wall_us, "end_us": g.end_wall_us, "reason": g.reason}
                for g in rec.gaps(camera)
                if (since_us is None or g.end_wall_us >= since_us)
                and (until_us is None or g.start_wall_us <= until_us)
            ][-1000:],
            "events": [
                {"id": e.id, "kind": e.kind, "start_us": e.start_wall_us, "end_us": e.end_wall_us}
                for e in rec.events(camera)
                if (since_us is None or e.end_wall_us >= since_us)
                and (until_us is None or e.start_wall_us <= until_us)
            ][-1000:],
        }

    @r.get("/api/recordings/{camera}/video.mp4", response_class=Response)
    def video(
        request: Request,
        camera: Name,
        who: ViewerPrincipal,
        start_us: Annotated[int, Query(ge=0, lt=INT_LIMIT)],
        end_us: Annotated[int, Query(ge=0, lt=INT_LIMIT)],
        stream: Literal["main", "sub"] = "main",
    ) -> Response:
        """One MP4 of [start, end), served from the segments without a temporary file; HTTP
        Range requests are answered (seeking in a browser's video element)."""
        _camera(request, who, camera)
        _range(start_us, end_us)
        st = _station(request)
        read: Callable[[int, int], bytes]
        try:
            plan = st.recorder.export_plan(camera, start_us, end_us, role=stream)
            size, read = plan.size, plan.read
        except NoFootageError as e:
            # Not indexed yet: the last seconds, while their segment is still open, come from
            # the recorder's ring (an alarm's clip right after it fired).
            try:
                recent = st.recent_clip(camera, start_us, end_us, role=stream)
            except NoPictureError:
                raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from None
            size = len(recent)

            def read(pos: int, n: int) -> bytes:
                return recent[pos : pos + n]

        rng = _parse_range(request.headers.get("range"), size)
        first, last = rng if rng is not None else (0, size)

        def body() -> Iterator[bytes]:
            pos = first
            while pos < last:
                n = min(1 << 20, last - pos)
                yield read(pos, n)
                pos += n

        headers = {
            "Accept-Ranges": "bytes",
            "Content-Length": str(last - first),
            "Cache-Control": "no-store",
        }
        code = status.HTTP_200_OK
        if rng is not None:
            headers["Content-Range"] = f"bytes {first}-{last - 1}/{size}"
            code = status.HTTP_206_PARTIAL_CONTENT
        return StreamingResponse(body(), status_code=code, media_type="video/mp4", headers=headers)

    @r.post("/api/recordings/{camera}/export")
    def export(
        request: Request, camera: Name, body: ExportBody, who: OperatorPrincipal
    ) -> dict[str, Any]:
        """Exports [start, end) to an MP4 with a manifest signed by the station's key; the
        files are then downloaded from /api/exports/NAME."""
        _camera(request, who, camera)
        _range(body.start_us, body.end_us)
        return write_export(request, who, camera, body)

    @r.get("/api/exports/{name}", response_class=Response)
    def download(
        request: Request,
        name: Annotated[
            str,
            PathParam(
                pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*-\d+-\d+-\d+\.mp4(\.[a-z0-9.]+)?$",
                max_length=200,
            ),
        ],
        who: OperatorPrincipal,
    ) -> Response:
        from fastapi.responses import FileResponse

        st = _station(request)
        # The whole name, not a prefix: camera "lot" must not claim "lot-2"'s exports.
        cam = next(
            (
                c
                for c in st.config.cameras
                if re.fullmatch(re.escape(c.name) + _EXPORT_NAME, name) is not None
            ),
            None,
        )
        if cam is None or not who.can_view(cam.name, cam.site):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such export")
        path = st.data_dir / "exports" / name
        if not path.is_file():
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such export")
        return FileResponse(path, filename=name)

    @r.get("/api/bookmarks")
    def bookmarks(
        request: Request,
        who: ViewerPrincipal,
        camera: Annotated[str | None, Query(max_length=64)] = None,
        since_us: Annotated[int | None, Query(ge=0, lt=INT_LIMIT)] = None,
        until_us: Annotated[int | None, Query(ge=0, lt=INT_LIMIT)] = None,
    ) -> list[dict[str, Any]]:
        st = _station(request)
        cams = [c.name for c in st.config.cameras if who.can_view(c.name, c.site)]
        if camera is not None:
            _camera(request, who, camera)
            cams = [camera]
        return [b.to_json() for b in st.store.bookmarks(cams, since_us, until_us)]

    @r.post("/api/bookmarks", status_code=status.HTTP_201_CREATED)
    def add_bookmark(
        request: Request, body: BookmarkBody, who: OperatorPrincipal
    ) -> dict[str, Any]:
        _camera(request, who, body.camera)
        try:
            b = _station(request).store.add_bookmark(
                body.camera,
                body.start_us,
                body.end_us or body.start_us,
                body.text,
                user=who.user,
            )
        except ValueError as e:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
        audit_action(request, who, "bookmark.add", body.camera, {"id": b.id})
        return b.to_json()

    @r.delete("/api/bookmarks/{bookmark_id}", status_code=status.HTTP_204_NO_CONTENT)
    def delete_bookmark(request: Request, bookmark_id: Id, who: OperatorPrincipal) -> Response:
        st = _station(request)
        b = st.store.bookmark(bookmark_id)
        if b is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such bookmark")
        _camera(request, who, b.camera)
        st.store.delete_bookmark(bookmark_id)
        audit_action(request, who, "bookmark.delete", b.camera, {"id": bookmark_id})
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @r.get("/api/locks")
    def locks(
        request: Request,
        who: ViewerPrincipal,
        camera: Annotated[str | None, Query(max_length=64)] = None,
        include_inactive: bool = False,
    ) -> list[dict[str, Any]]:
        st = _station(request)
        if camera is not None:
            _camera(request, who, camera)
        out = []
        for lk in st.recorder.locks(camera, include_inactive=include_inactive):
            cfg = st.config.camera(lk.camera)
            if cfg is None and not who.has_role("admin"):
                continue
            if cfg is not None and not who.can_view(cfg.name, cfg.site):
                continue
            out.append({k: getattr(lk, k) for k in lk.__dataclass_fields__})
        return out

    @r.post("/api/locks", status_code=status.HTTP_201_CREATED)
    def add_lock(request: Request, body: LockBody, who: OperatorPrincipal) -> dict[str, Any]:
        _camera(request, who, body.camera)
        try:
            lock_id = _station(request).recorder.lock(
                body.camera,
                body.start_us,
                body.end_us,
                reason=body.reason,
                owner=who.user,
                expires_wall_us=body.expires_us,
            )
        except ValueError as e:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
        audit_action(
            request,
            who,
            "evidence.lock",
            body.camera,
            {
                "id": lock_id,
                "start_us": body.start_us,
                "end_us": body.end_us,
                "reason": body.reason,
            },
        )
        return {"id": lock_id}

    @r.delete("/api/locks/{lock_id}", status_code=status.HTTP_204_NO_CONTENT)
    def unlock(request: Request, lock_id: Id, who: OperatorPrincipal) -> Response:
        st = _station(request)
        lk = next((x for x in st.recorder.locks(None) if x.id == lock_id), None)
        if lk is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such active lock")
        if st.config.camera(lk.camera) is not None:
            _camera(request, who, lk.camera)
        elif not who.has_role("admin"):
            # The camera was removed: its locks are listed to admins only, and lifted by them.
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such active lock")
        st.recorder.unlock(lock_id, by=who.user)
        audit_action(request, who, "evidence.unlock", lk.camera, {"id": lock_id})
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return r


# -- configuration --------------------------------------------------------------------------------


def _list_section(section: str, what: str) -> APIRouter:
    """CRUD for a named list of the configuration (sites, rules, time profiles)."""
    r = APIRouter(tags=["configuration"])
    path = f"/api/{section.replace('_', '-')}"

    # Sites are every viewer's; rules and time profiles are operators' (declared on the route,
    # so that the route walk and the OpenAPI schema see the real minimum).
    minimum = require("viewer" if section == "sites" else "operator")

    @r.get(path, name=f"list_{section}", dependencies=[Depends(minimum)])
    def listing(request: Request, who: ViewerPrincipal) -> list[dict[str, Any]]:
        items = getattr(_station(request).config, section)
        return [i.model_dump(mode="json") for i in items]

    @r.put(path + "/{name}", name=f"put_{section}")
    def put(
        request: Request, name: Name, who: AdminPrincipal, body: Annotated[dict[str, Any], Body()]
    ) -> dict[str, Any]:
        """Creates or replaces one entry."""
        item = {**body, "name": name}

        def edit(doc: dict[str, Any]) -> None:
            items = [i for i in doc.get(section) or [] if i.get("name") != name]
            old = [i for i in doc.get(section) or [] if i.get("name") == name]
            if old:
                idx = (doc.get(section) or []).index(old[0])
                items.insert(idx, item)
            else:
                items.append(item)
            doc[section] = items

        _change(request, who, edit, f"{what}.put", name)
        cfg = _station(request).config
        item_cfg = next(i for i in getattr(cfg, section) if i.name == name)
        out: dict[str, Any] = item_cfg.model_dump(mode="json")
        return out

    @r.delete(path + "/{name}", name=f"delete_{section}", status_code=status.HTTP_204_NO_CONTENT)
    def delete(request: Request, name: Name, who: AdminPrincipal) -> Response:
        if not any(i.name == name for i in getattr(_station(request).config, section)):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such {what}")

        def edit(doc: dict[str, Any]) -> None:
            doc[section] = [i for i in doc.get(section) or [] if i.get("name") != name]

        _change(request, who, edit, f"{what}.delete", name)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return r


def _config_router() -> APIRouter:
    r = APIRouter(tags=["configuration"])
    for section, what in (("sites", "site"), ("rules", "rule"), ("time_profiles", "time_profile")):
        r.include_router(_list_section(section, what))

    @r.get("/api/config", response_class=PlainTextResponse)
    def export_config(request: Request, who: AdminPrincipal) -> Response:
        """The station's configuration as YAML (secrets as environment references)."""
        audit_action(request, who, "config.export")
        return PlainTextResponse(
            dump_document(_station(request).document), media_type="application/yaml"
        )

    @r.get("/api/config/history")
    def config_history(request: Request, who: AdminPrincipal) -> list[dict[str, Any]]:
        return _station(request).store.config_history()

    @r.get("/api/config/schema")
    def config_schema(request: Request, who: AdminPrincipal) -> dict[str, Any]:
        from vmscore.station.config import StationConfig

        return StationConfig.model_json_schema()

    return r


# -- saved views ----------------------------------------------------------------------------------


def _view_router() -> APIRouter:
    r = APIRouter(tags=["views"])

    @r.get("/api/views")
    def views(request: Request, who: ViewerPrincipal) -> list[dict[str, Any]]:
        """The user's saved views of the overview."""
        return _station(request).store.views(who.user)

    @r.put("/api/views/{name}")
    def save_view(
        request: Request, name: Name, body: ViewBody, who: ViewerPrincipal
    ) -> dict[str, Any]:
        try:
            _station(request).store.save_view(who.user, name, body.model_dump())
        except ValueError as e:
            raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
        return {"name": name, "view": body.model_dump()}

    @r.delete("/api/views/{name}", status_code=status.HTTP_204_NO_CONTENT)
    def delete_view(request: Request, name: Name, who: ViewerPrincipal) -> Response:
        if not _station(request).store.delete_view(who.user, name):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such view")
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return r


# -- events ---------------------------------------------------------------------------------------


def _sse(event: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


SSE_RECHECK_S = 2.0
"""How often an open event stream looks its caller up again."""
_IDLE = HubMessage("idle", {})


def _event_router() -> APIRouter:
    r = APIRouter(tags=["events"])

    @r.get("/api/events", response_class=StreamingResponse)
    async def events(
        request: Request,
        who: ViewerPrincipal,
        last_event_id: Annotated[
            int | None, Query(alias="last_event_id", ge=0, lt=INT_LIMIT)
        ] = None,
    ) -> StreamingResponse:
        """Server-sent events: ``alarm`` (new/update/end, id = the change's sequence number, so
        a client resumes with Last-Event-ID), ``camera`` (online/offline), ``motion``,
        ``tamper``, ``site`` (armed), ``station``. A heartbeat comment every 15 s."""
        st = _station(request)
        header = request.headers.get("last-event-id")
        resume = last_event_id
        # A resume point the change log cannot hold is ignored, not an error after the stream
        # has begun (int() of "²" or of 5000 digits would raise, SQLite takes 63 bits).
        if header and header.isascii() and header.isdigit() and len(header) < 19:
            resume = int(header)
        sub = st.hub.subscribe()
        # The stream outlives the request's authentication: the caller is looked up again every
        # few seconds, so a logout, a disabled user or a revoked token ends it and a change of
        # permissions applies to it.
        authorization = request.headers.get("authorization")
        cookie = request.cookies.get(SESSION_COOKIE)
        current = who

        def visible(camera: str | None, site: str | None) -> bool:
            return _visible(current, camera, site)

        async def stream() -> AsyncIterator[bytes]:
            nonlocal current
            try:
                yield b": vmscore event stream\nretry: 2000\n\n"
                if resume is not None:
                    changes = await asyncio.to_thread(st.alarms.changes_since, resume, 1000)
                    for ch in changes:
                        if visible(ch.alarm.camera, ch.alarm.site):
                            yield _sse(
                                "alarm",
                                {"type": ch.kind, "alarm": ch.alarm.model_dump(mode="json")},
                                str(ch.seq),
                            )
                checked = sent = time.monotonic()
                while True:
                    try:
                        msg = await asyncio.wait_for(sub.get(), timeout=SSE_RECHECK_S)
                    except TimeoutError:
                        msg = _IDLE
                    if msg is None:
                        return
                    now = time.monotonic()
                    if now - checked >= SSE_RECHECK_S:
                        fresh = await asyncio.to_thread(
                            principal_again, st.users, authorization, cookie
                        )
                        if fresh is None:
                            return
                        current, checked = fresh, now
                    if msg is _IDLE:
                        if now - sent >= 15:
                            yield b": heartbeat\n\n"
                            sent = now
                        continue
                    if visible(msg.camera, msg.site) or (
                        msg.event == "station" and msg.camera is None and msg.site is None
                    ):
                        yield _sse(msg.event, msg.data, msg.id)
                        sent = now
            finally:
                sub.close()

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return r


with contextlib.suppress(Exception):
    del Path
