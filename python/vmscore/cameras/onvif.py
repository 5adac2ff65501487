"""ONVIF probe: ask a camera, by address and credentials, what it is and where its streams are.

:func:`probe` talks to the ONVIF device and media services (ONVIF Core and Media Service
specifications, ver10) through onvif-zeep-async: ``GetSystemDateAndTime`` (anonymous, to learn
the camera's clock before signing anything), ``GetDeviceInformation``, ``GetServices`` (or
``GetCapabilities``) for the service addresses, ``GetProfiles``, ``GetStreamUri`` (RTP unicast
over RTSP) per video profile and ``GetSnapshotUri``. It returns an :class:`OnvifDevice` naming
the main stream (the largest H.264/H.265 profile) and the sub stream (the smallest other one), so
a camera can be added by its address alone.

Requests carry a WS-Security UsernameToken with a password digest, whose timestamp the camera
checks against its own clock; when the camera's clock is off by more than a couple of seconds,
the timestamps are shifted by the measured skew, and the skew is reported so that the station can
warn about it (recordings are stamped by our clock, but a camera's overlay is not).

Cameras are not all correct: :data:`QUIRKS` says, per manufacturer, which repairs apply to the
URIs they return (a host of 0.0.0.0 or their own factory address, a missing port, nameless
profiles). The repairs live in that table, not in branches.

Every failure becomes :class:`OnvifError` (or :class:`OnvifAuthError`) with a plain message that
names host:port and the step that failed; the password never appears in messages or logs. Replies
are bounded in size and the whole probe in time.

Threading: :func:`probe` is a coroutine for any running loop; :func:`probe_sync` runs it on a
fresh loop for threads and the CLI. Calls share nothing but immutable tables.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import ipaddress
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import zeep.exceptions

from vmscore.errors import VmsError

__all__ = [
    "QUIRKS",
    "OnvifAuthError",
    "OnvifDevice",
    "OnvifError",
    "OnvifProfile",
    "VendorQuirks",
    "probe",
    "probe_sync",
    "quirks_for",
    "repair_uri",
]

_log = logging.getLogger(__name__)


def _import_onvif_client() -> Any:
    """Imports onvif-zeep-async without letting it configure the application's logging.

    ``onvif.client`` calls ``logging.basicConfig(level=INFO)`` at import, which would install a
    root handler before the station configures logging (and make its own configuration a no-op).
    We undo exactly what that call added.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import onvif  # type: ignore[import-untyped,unused-ignore]

    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    return onvif.ONVIFCamera


_ONVIFCamera: Final = _import_onvif_client()

MAX_REPLY_BYTES: Final = 4 << 20
"""Largest SOAP reply read from a camera (a GetProfiles of a 16-channel encoder is ~200 KiB)."""
MAX_PROFILES: Final = 64
"""Profiles beyond this many are ignored (each costs a GetStreamUri round trip)."""
SKEW_COMPENSATE_S: Final = 2.0
"""Clock skew beyond which WS-Security timestamps are shifted to the camera's clock."""
_MAX_TEXT = 256  # identity strings are truncated to this many characters

_NS_MEDIA = "http://www.onvif.org/ver10/media/wsdl"
_VIDEO_CODECS = frozenset({"h264", "h265"})
_ENCODINGS = {
    "h264": "h264",
    "avc": "h264",
    "h265": "h265",
    "hevc": "h265",
    "jpeg": "jpeg",
    "mjpeg": "jpeg",
    "mpeg4": "mpeg4",
}


class OnvifError(VmsError, ConnectionError):
    """Probing an ONVIF device failed: unreachable, too slow, not ONVIF, or a malformed answer."""


class OnvifAuthError(OnvifError):
    """The device refused the user name or password (or the clock skew made it refuse them)."""


@dataclass(frozen=True)
class OnvifProfile:
    """One video media profile: its encoder settings and RTSP URI (None when it has none)."""

    token: str
    name: str
    encoding: str
    """Lower case: "h264", "h265", "jpeg", "mpeg4", or what the camera said."""
    width: int
    height: int
    fps: float | None
    bitrate_kbps: int | None
    rtsp_uri: str | None

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class OnvifDevice:
    """What a probe learned about a device. URIs are already repaired (see :data:`QUIRKS`)."""

    host: str
    port: int
    manufacturer: str
    model: str
    firmware: str
    serial: str
    hardware_id: str
    profiles: tuple[OnvifProfile, ...]
    main_uri: str | None
    sub_uri: str | None
    snapshot_uri: str | None
    clock_skew_s: float | None
    """Camera clock minus ours, in seconds (resolution about 0.5 s); None if it did not say."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready copy (profiles as a list of objects)."""
        return dataclasses.asdict(self) | {
            "profiles": [dataclasses.asdict(p) for p in self.profiles]
        }


@dataclass(frozen=True)
class VendorQuirks:
    """Repairs applied to the URIs a manufacturer's cameras return.

    The defaults are safe for every camera: a host that cannot be the camera (0.0.0.0, ::,
    loopback when we did not reach it on loopback) is replaced by the address we probed.
    """

    rewrite_unroutable_host: bool = True
    rewrite_foreign_host: bool = False
    """Any other host in a stream or snapshot URI is replaced by the probed address (cameras that
    report a factory or NAT-internal address)."""
    rtsp_port_from_protocols: bool = False
    """An RTSP URI without a port gets the RTSP port from GetNetworkProtocols (cameras that leave
    the port out even when RTSP was moved off 554)."""
    http_port_from_probe: bool = False
    """An HTTP snapshot URI without a port gets the port we reached the ONVIF service on (cameras
    that leave it out behind a port-forward or on a non-default web port)."""
    describe_profiles: bool = False
    """Profile names are replaced by a description ("H264 1920x1080"); for cameras whose names are
    empty or meaningless."""


QUIRKS: Final[Mapping[str, VendorQuirks]] = {
    # Axis writes rtsp://host/axis-media/... with no port, relying on 554 even when RTSP moved.
    "axis": VendorQuirks(rtsp_port_from_protocols=True),
    # Bosch reports its factory default address (192.168.0.1) or the NAT-internal one.
    "bosch": VendorQuirks(rewrite_foreign_host=True),
    # Pelco (Sarix) reports 0.0.0.0, the address it listens on: the default repair covers it.
    "pelco": VendorQuirks(),
    # Panasonic / i-PRO leave profile names empty and the port out of the snapshot URI.
    "panasonic": VendorQuirks(http_port_from_probe=True, describe_profiles=True),
    "i-pro": VendorQuirks(http_port_from_probe=True, describe_profiles=True),
}
"""Quirks by manufacturer, keyed by the first word of GetDeviceInformation's Manufacturer in
lower case ("AXIS" and "Axis Communications AB" are both "axis")."""

_DEFAULT_QUIRKS: Final = VendorQuirks()


def quirks_for(manufacturer: str) -> VendorQuirks:
    """The repairs for a manufacturer (the safe defaults for one not in :data:`QUIRKS`)."""
    words = manufacturer.strip().lower().split()
    return QUIRKS.get(words[0], _DEFAULT_QUIRKS) if words else _DEFAULT_QUIRKS


# -- URIs ---------------------------------------------------------------------------------------


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _is_unroutable(host: str | None, probed_host: str) -> bool:
    """True for a host that cannot name the camera from where we stand."""
    if not host or host.lower() == "localhost":
        return not _is_loopback(probed_host) if host else True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if address.is_unspecified:
        return True
    return address.is_loopback and not _is_loopback(probed_host)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def repair_uri(
    uri: str,
    quirks: VendorQuirks,
    probed_host: str,
    probed_port: int,
    rtsp_port: int | None = None,
) -> str:
    """Applies ``quirks`` to one URI; keeps scheme, user info, path and query."""
    try:
        parts = urlsplit(uri.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return uri  # unparsable (a port of "abc"): leave it for the caller to reject
    if not parts.scheme or not parts.netloc:
        return uri
    scheme = parts.scheme.lower()
    same_host = host is not None and host.lower() == probed_host.strip("[]").lower()
    unroutable = quirks.rewrite_unroutable_host and _is_unroutable(host, probed_host)
    if unroutable or (quirks.rewrite_foreign_host and not same_host):
        host, same_host = probed_host.strip("[]"), True
    if port is None and same_host:
        if scheme == "rtsp" and quirks.rtsp_port_from_protocols and rtsp_port not in (None, 554):
            port = rtsp_port
        elif scheme in ("http", "https") and quirks.http_port_from_probe:
            default = 443 if scheme == "https" else 80
            port = probed_port if probed_port != default else None
    if host == parts.hostname and port == parts.port:
        return uri.strip()
    netloc = _bracket(host or "") + (f":{port}" if port is not None else "")
    userinfo, sep, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo}{sep}{netloc}"))


def _needs_rtsp_port(uri: str) -> bool:
    try:
        parts = urlsplit(uri)
        return parts.scheme.lower() == "rtsp" and parts.port is None
    except ValueError:
        return False


# -- zeep objects -------------------------------------------------------------------------------


def _field(obj: Any, *path: str) -> Any:
    """``obj.a.b.c`` that yields None for a missing or null step (zeep objects or mappings)."""
    for name in path:
        if obj is None:
            return None
        if isinstance(obj, Mapping):
            obj = obj.get(name)
            continue
        try:
            obj = getattr(obj, name)
        except (AttributeError, KeyError, TypeError):
            return None
    return obj


def _text(value: Any) -> str:
    if value is None:
        return ""
    return str(value).strip()[:_MAX_TEXT]


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError, OverflowError):
        return None


# -- transport bound ----------------------------------------------------------------------------


class _ReplyTooLargeError(Exception):
    pass


class _NotSoapError(Exception):
    """An HTTP error status whose body is no SOAP envelope (a web server's error page)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class _Reply:
    """What zeep's SOAP binding reads from a transport's reply (status, headers, body)."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    encoding: str | None


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    if response.content_length is not None and response.content_length > MAX_REPLY_BYTES:
        raise _ReplyTooLargeError
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_chunked(1 << 16):
        total += len(chunk)
        if total > MAX_REPLY_BYTES:
            raise _ReplyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def _bound_replies(service: Any) -> None:
    """Makes a service read at most :data:`MAX_REPLY_BYTES` of any reply.

    onvif-zeep-async reads whole replies into memory and parses them with lxml's huge-tree
    option, so a device streaming an endless body would use memory until the timeout. We replace
    the transport's ``post_xml`` (zeep's documented transport hook, which the SOAP binding calls
    for every operation) with one that stops reading past the bound, on the same aiohttp session.
    Like the library's, it retries once when a pooled keep-alive connection turns out closed.
    """
    transport = service.transport
    session: aiohttp.ClientSession = transport.session

    async def post_xml(address: str, envelope: Any, headers: dict[str, str]) -> _Reply:
        # zeep's own XML library, already loaded with it.
        from lxml import etree  # type: ignore[import-untyped,unused-ignore]

        data = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        sent = {"User-Agent": "vmscore-onvif", **headers}
        for attempt in (1, 2):
            try:
                async with session.post(address, data=data, headers=sent) as response:
                    body = await _read_bounded(response)
                    # zeep would parse an HTML error page as XML and report an "unknown fault";
                    # a SOAP envelope's start tag always comes within the first few KiB.
                    if response.status != 200 and b"Envelope" not in body[:8192]:
                        raise _NotSoapError(response.status)
                    kept = {
                        k: v for k, v in response.headers.items() if k.lower() != "content-encoding"
                    }
                    return _Reply(response.status, kept, body, response.charset)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionResetError):
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    transport.post_xml = post_xml


# -- the probe ----------------------------------------------------------------------------------


def _is_auth_fault(fault: zeep.exceptions.Fault) -> bool:
    codes = [str(fault.code or "")]
    subcodes = fault.subcodes if isinstance(fault.subcodes, list) else [fault.subcodes]
    codes += [str(getattr(c, "text", c) or "") for c in subcodes]
    if any("notauthorized" in c.lower() for c in codes):
        return True
    # Many cameras answer a bad password with a generic Sender fault and a telling reason.
    reason = str(fault.message or "").lower()
    return any(w in reason for w in ("authoriz", "authenticat", "password", "credential"))


class _Probe:
    """One probe's state: the camera object, the step in progress, services being created."""

    def __init__(self, host: str, port: int, username: str, password: str) -> None:
        self.host, self.port = host, port
        self.where = f"{_bracket(host)}:{port}"
        self.username, self._password = username, password
        self.step = "the first request"
        self.cam: Any = None
        self._creating: set[asyncio.Task[Any]] = set()
        self._rtsp_port: int | bool | None = False  # False: not asked yet

    # Building a service loads its WSDL in an executor; cancelling that await would orphan the
    # service's aiohttp session (a ResourceWarning and a leaked connector). So creation runs as
    # a task shielded from our timeout, and close() waits for it (local work, no network).
    async def _service(self, create: Callable[[], Awaitable[Any]]) -> Any:
        task = asyncio.ensure_future(create())
        self._creating.add(task)
        service = await asyncio.shield(task)
        _bound_replies(service)
        if not self.username:
            # No credentials: send no UsernameToken at all (onvif-zeep-async would build one
            # from None and fail); zeep's client reads ``wsse`` on every call.
            service.zeep_client.wsse = None
        return service

    async def _call(self, step: str, operation: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        self.step = step
        return await operation(*args)

    async def run(self) -> OnvifDevice:
        # ONVIFCamera drops http(s)_proxy from the process environment (its aiohttp sessions do
        # not read it anyway); put them back, other parts of the station may rely on them.
        saved = {k: os.environ[k] for k in ("http_proxy", "https_proxy") if k in os.environ}
        try:
            self.cam = _ONVIFCamera(
                self.host,
                self.port,
                self.username or None,
                self._password or None,
                no_cache=True,  # WSDLs are bundled; no per-user SQLite cache file
            )
        finally:
            os.environ.update(saved)
        cam = self.cam
        devicemgmt = await self._service(cam.create_devicemgmt_service)
        skew = await self._clock_skew(devicemgmt)
        if skew is not None and abs(skew) > SKEW_COMPENSATE_S:
            # Rebuild the device service so its UsernameTokens are stamped in camera time.
            cam.dt_diff = dt.timedelta(seconds=skew)
            await devicemgmt.close()
            del cam.services[devicemgmt.binding_key]
            devicemgmt = await self._service(cam.create_devicemgmt_service)
        info = await self._call("GetDeviceInformation", devicemgmt.GetDeviceInformation)
        manufacturer = _text(_field(info, "Manufacturer"))
        quirks = quirks_for(manufacturer)
        await self._call("GetServices", cam.update_xaddrs)
        if skew is not None and abs(skew) > SKEW_COMPENSATE_S:
            cam.dt_diff = dt.timedelta(seconds=skew)  # update_xaddrs() resets it
        # A device that advertises its services at 0.0.0.0 (or its factory address) is repaired
        # like its stream URIs, or the media calls would go nowhere.
        xaddr_quirks = dataclasses.replace(quirks, http_port_from_probe=True)
        for namespace, url in list(cam.xaddrs.items()):
            if isinstance(url, str):
                cam.xaddrs[namespace] = repair_uri(url, xaddr_quirks, self.host, self.port)
        if _NS_MEDIA not in cam.xaddrs:
            raise OnvifError(f"{self.where} offers no ONVIF media service (Profile S)")
        media = await self._service(cam.create_media_service)
        raw_profiles = await self._call("GetProfiles", media.GetProfiles) or []
        profiles: list[OnvifProfile] = []
        for raw in list(raw_profiles)[:MAX_PROFILES]:
            profile = await self._profile(raw, media, devicemgmt, quirks)
            if profile is not None:
                profiles.append(profile)
        main, sub = _pick_streams(profiles)
        snapshot_token = main.token if main else (profiles[0].token if profiles else None)
        snapshot = None
        if snapshot_token is not None:
            snapshot = await self._snapshot_uri(media, snapshot_token, quirks)
        return OnvifDevice(
            host=self.host,
            port=self.port,
            manufacturer=manufacturer,
            model=_text(_field(info, "Model")),
            firmware=_text(_field(info, "FirmwareVersion")),
            serial=_text(_field(info, "SerialNumber")),
            hardware_id=_text(_field(info, "HardwareId")),
            profiles=tuple(profiles),
            main_uri=main.rtsp_uri if main else None,
            sub_uri=sub.rtsp_uri if sub else None,
            snapshot_uri=snapshot,
            clock_skew_s=skew,
        )

    async def _clock_skew(self, devicemgmt: Any) -> float | None:
        """Camera clock minus ours, from an anonymous GetSystemDateAndTime (authenticated if the
        camera insists, as some Axis firmware does)."""
        self.step = "GetSystemDateAndTime"
        before = time.time()
        try:
            answer = await devicemgmt.authless_GetSystemDateAndTime()
        except zeep.exceptions.Fault:
            before = time.time()
            answer = await devicemgmt.GetSystemDateAndTime()
        after = time.time()
        utc = _field(answer, "UTCDateTime")
        try:
            camera = dt.datetime(
                int(_field(utc, "Date", "Year")),
                int(_field(utc, "Date", "Month")),
                int(_field(utc, "Date", "Day")),
                int(_field(utc, "Time", "Hour")),
                int(_field(utc, "Time", "Minute")),
                int(_field(utc, "Time", "Second")),
                tzinfo=dt.UTC,
            )
        except (TypeError, ValueError, OverflowError):
            return None  # no UTC time, or nonsense (month 0): no skew to report
        # The camera truncates to whole seconds: its true time is half a second later on average.
        return round(camera.timestamp() + 0.5 - (before + after) / 2, 3)

    async def _profile(
        self, raw: Any, media: Any, devicemgmt: Any, quirks: VendorQuirks
    ) -> OnvifProfile | None:
        encoder = _field(raw, "VideoEncoderConfiguration")
        token = _text(_field(raw, "token"))
        if encoder is None or not token:
            return None  # audio-only or metadata profile
        encoding_raw = _text(_field(encoder, "Encoding")).lower()
        encoding = _ENCODINGS.get(encoding_raw, encoding_raw)
        width = _int(_field(encoder, "Resolution", "Width")) or 0
        height = _int(_field(encoder, "Resolution", "Height")) or 0
        fps_value = _int(_field(encoder, "RateControl", "FrameRateLimit"))
        fps = float(fps_value) if fps_value and fps_value > 0 else None
        bitrate = _int(_field(encoder, "RateControl", "BitrateLimit"))
        name = _text(_field(raw, "Name"))
        if quirks.describe_profiles or not name:
            name = f"{encoding.upper()} {width}x{height}" if quirks.describe_profiles else token
        uri = await self._stream_uri(media, devicemgmt, token, quirks)
        return OnvifProfile(
            token=token,
            name=name,
            encoding=encoding,
            width=width,
            height=height,
            fps=fps,
            bitrate_kbps=bitrate if bitrate and bitrate > 0 else None,
            rtsp_uri=uri,
        )

    async def _stream_uri(
        self, media: Any, devicemgmt: Any, token: str, quirks: VendorQuirks
    ) -> str | None:
        request = {
            "StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
            "ProfileToken": token,
        }
        try:
            answer = await self._call(f"GetStreamUri({token})", media.GetStreamUri, request)
        except zeep.exceptions.Fault as fault:
            _log.debug("%s: no stream URI for profile %s: %s", self.where, token, fault.message)
            return None
        uri = _text(_field(answer, "Uri")) if answer is not None else ""
        if not uri:
            return None
        rtsp_port = None
        if quirks.rtsp_port_from_protocols and _needs_rtsp_port(uri):
            rtsp_port = await self._rtsp_port_of(devicemgmt)
        return repair_uri(uri, quirks, self.host, self.port, rtsp_port)

    async def _rtsp_port_of(self, devicemgmt: Any) -> int | None:
        """The RTSP port from GetNetworkProtocols, asked once per probe (None if unknown)."""
        if self._rtsp_port is False:
            self._rtsp_port = None
            try:
                protocols = await self._call("GetNetworkProtocols", devicemgmt.GetNetworkProtocols)
            except zeep.exceptions.Fault:
                protocols = None
            for protocol in protocols or []:
                if _text(_field(protocol, "Name")).upper() == "RTSP":
                    ports = _field(protocol, "Port") or []
                    first = _int(ports[0] if isinstance(ports, list) and ports else ports)
                    if first and 0 < first < 65536:
                        self._rtsp_port = first
                    break
        return self._rtsp_port if isinstance(self._rtsp_port, int) else None

    async def _snapshot_uri(self, media: Any, token: str, quirks: VendorQuirks) -> str | None:
        try:
            answer = await self._call(
                "GetSnapshotUri", media.GetSnapshotUri, {"ProfileToken": token}
            )
        except zeep.exceptions.Fault as fault:  # snapshots are optional in Profile S
            _log.debug("%s: no snapshot URI: %s", self.where, fault.message)
            return None
        uri = _text(_field(answer, "Uri")) if answer is not None else ""
        return repair_uri(uri, quirks, self.host, self.port) if uri else None

    async def close(self) -> None:
        if self._creating:
            await asyncio.wait(self._creating, timeout=5.0)
            for task in self._creating:
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved, so asyncio does not log it as lost
                elif not task.done():
                    task.cancel()
        if self.cam is not None:
            try:
                await self.cam.close()
            except Exception as exc:  # closing must not mask the probe's outcome
                _log.debug("%s: closing the ONVIF client: %s", self.where, type(exc).__name__)

    def explain(self, exc: BaseException) -> OnvifError:
        """Turns whatever the stack raised into an OnvifError with a plain message."""
        where, step = self.where, self.step
        if isinstance(exc, zeep.exceptions.Fault):
            if _is_auth_fault(exc):
                return self._auth_error()
            return OnvifError(f"the camera at {where} refused {step}: {self._remote(exc.message)}")
        if isinstance(exc, zeep.exceptions.TransportError):
            if exc.status_code in (401, 403):
                return self._auth_error()
            if exc.status_code == 200:
                return self._not_soap()
            return self._http_status(exc.status_code)
        if isinstance(exc, _NotSoapError):
            if exc.status in (401, 403):
                return self._auth_error()
            return self._http_status(exc.status)
        if isinstance(exc, zeep.exceptions.XMLSyntaxError | zeep.exceptions.XMLParseError):
            return OnvifError(f"{where} answered {step} with XML that is not SOAP; is it ONVIF?")
        if isinstance(exc, _ReplyTooLargeError):
            return OnvifError(f"{where} answered {step} with more than {MAX_REPLY_BYTES} bytes")
        if isinstance(exc, aiohttp.ClientConnectorError):
            errno = exc.os_error.errno
            reason = os.strerror(errno).lower() if errno else type(exc.os_error).__name__
            return OnvifError(f"could not connect to {where}: {reason}")
        if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
            return OnvifError(f"{where} closed the connection during {step}")
        if isinstance(exc, aiohttp.ClientResponseError):
            return OnvifError(f"{where} sent a malformed HTTP reply to {step}")
        if isinstance(exc, aiohttp.ClientOSError | OSError):
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            return OnvifError(f"the connection to {where} failed during {step}: {reason}")
        if isinstance(exc, aiohttp.ClientError):
            return OnvifError(f"talking to {where} failed during {step}: {type(exc).__name__}")
        if type(exc).__name__ == "ONVIFAuthError":
            return self._auth_error()
        # zeep raises AttributeError, TypeError or ValueError on bodies that parse to nothing or
        # to the wrong structure.
        return self._not_soap()

    def _not_soap(self) -> OnvifError:
        return OnvifError(
            f"{self.where} answered {self.step} with something that is not an ONVIF SOAP reply; "
            "is it an ONVIF device?"
        )

    def _http_status(self, status: int) -> OnvifError:
        return OnvifError(
            f"{self.where} answered {self.step} with HTTP {status} and no SOAP reply; "
            "is it an ONVIF device, on this port?"
        )

    def _auth_error(self) -> OnvifAuthError:
        if not self.username:
            return OnvifAuthError(f"the camera at {self.where} requires a user name and password")
        return OnvifAuthError(f"the camera at {self.where} refused the user name or password")

    def _remote(self, text: Any) -> str:
        """A camera's own words for a message: short, and never echoing the password."""
        message = " ".join(str(text or "no reason given").split())[:200]
        if self._password and self._password in message:
            message = "(reason withheld: it quotes the credentials)"
        return message


def _pick_streams(
    profiles: Iterable[OnvifProfile],
) -> tuple[OnvifProfile | None, OnvifProfile | None]:
    """Main: the largest H.264/H.265 profile with a stream URI. Sub: the smallest other one with
    a different URI. JPEG and MPEG-4 profiles are never picked: the ingest engine depacketizes
    H.264 and H.265 only."""
    usable = [p for p in profiles if p.rtsp_uri and p.encoding in _VIDEO_CODECS]
    if not usable:
        return None, None

    def size(p: OnvifProfile) -> tuple[int, float, int]:
        return (p.pixels, p.fps or 0.0, p.bitrate_kbps or 0)

    main = max(usable, key=size)
    others = [p for p in usable if p is not main and p.rtsp_uri != main.rtsp_uri]
    return main, (min(others, key=size) if others else None)


def _check_arguments(host: str, port: int, timeout_s: float) -> None:
    if not isinstance(host, str) or not host.strip() or any(c in host for c in "/@?# "):
        raise ValueError(f"not a camera host name or address: {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"not a TCP port: {port!r}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, not {timeout_s!r}")


async def probe(
    host: str,
    port: int = 80,
    username: str = "",
    password: str = "",
    *,
    timeout_s: float = 10.0,
) -> OnvifDevice:
    """Probes the ONVIF device at ``host:port`` and returns what it is and where its streams are.

    Raises :class:`OnvifAuthError` when the credentials are refused and :class:`OnvifError` for
    anything else (nothing listening, no answer within ``timeout_s``, not an ONVIF device, a
    malformed answer). Empty credentials probe anonymously.
    """
    _check_arguments(host, port, timeout_s)
    host = host.strip().strip("[]")
    state = _Probe(host, port, username, password)
    try:
        async with asyncio.timeout(timeout_s):
            return await state.run()
    except TimeoutError:
        _log.debug("%s: no answer to %s within %g s", state.where, state.step, timeout_s)
        raise OnvifError(
            f"the camera at {state.where} did not answer {state.step} within {timeout_s:g} s"
        ) from None
    except OnvifError:
        raise
    except Exception as exc:
        error = state.explain(exc)
        _log.debug("%s: %s failed: %s", state.where, state.step, type(exc).__name__)
        raise error from exc
    finally:
        await state.close()


def probe_sync(
    host: str,
    port: int = 80,
    username: str = "",
    password: str = "",
    *,
    timeout_s: float = 10.0,
) -> OnvifDevice:
    """:func:`probe` for code without an event loop: threads (an executor's workers included) and
    the CLI. It runs its own loop, so it must not be called on a thread that is running one
    (that would block the loop); there, ``await probe(...)`` instead."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(probe(host, port, username, password, timeout_s=timeout_s))
    raise RuntimeError(
        "probe_sync() was called on a thread running an event loop; await probe() there"
    )
