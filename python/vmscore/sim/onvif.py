"""A simulated ONVIF camera: :class:`OnvifSimulator` answers what a VMS asks when it adds a camera.

It speaks SOAP 1.2 over HTTP on 127.0.0.1 (ONVIF Core and Media specifications, ver10 device and
media services): ``GetSystemDateAndTime``, ``GetCapabilities``, ``GetServices``,
``GetDeviceInformation``, ``GetScopes``, ``GetNetworkProtocols``, ``GetProfiles``, ``GetProfile``,
``GetStreamUri``, ``GetSnapshotUri``; it serves ``/snapshot.jpg`` behind HTTP Digest or Basic
authentication, and optionally answers WS-Discovery probes sent unicast to its UDP port.

Every SOAP call but ``GetSystemDateAndTime`` and ``GetCapabilities`` (which real cameras answer
anonymously so that a client can learn the clock before it signs anything) must carry a
WS-Security UsernameToken (PasswordDigest or PasswordText); a digest must be fresh by the
camera's clock (``clock_offset_s`` skews it), so a client that ignores clock skew fails here as it
would on a real camera. A refused token is answered with the ``ter:NotAuthorized`` fault.

A ``vendor`` personality gives the identity strings of an Axis, Bosch, Pelco or Panasonic camera
and one of the field quirks a client must cope with (see :data:`VENDORS`): stream URIs without a
port, with the camera's factory address, with the host 0.0.0.0, or nameless profiles and a
snapshot URI without a port. Stream URIs are whatever the profiles say, so they can point at
:class:`vmscore.sim.CameraServer` cameras.

Example::

    from vmscore.cameras.onvif import probe_sync
    from vmscore.sim.onvif import OnvifSimulator, SimProfile

    main = SimProfile("main", "Main", "h264", 1920, 1080, 25.0, 4096, "rtsp://127.0.0.1:8554/cam0")
    with OnvifSimulator(vendor="axis", password="secret", profiles=[main]) as cam:
        device = probe_sync(cam.host, cam.port, "admin", "secret")   # device.main_uri

Requests are bounded (1 MiB bodies, 10 s idle per connection) and garbage gets an HTTP or SOAP
error, never a crash.

Threading: one thread per HTTP connection (``ThreadingHTTPServer``) and one thread for the
discovery responder. Everything they read is fixed at construction, so they share it without
locks; ``close()`` may be called from any thread and is idempotent.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import os
import selectors
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

from vmscore.cameras.discovery import (
    ACTION_PROBE_MATCHES,
    MAX_DATAGRAM,
    NS_DN,
    NS_SOAP,
    NS_WSA,
    NS_WSD,
    WSA_ANONYMOUS,
    parse_untrusted_xml,
)

__all__ = ["VENDORS", "OnvifSimulator", "SimProfile", "Vendor", "VendorName"]

_log = logging.getLogger(__name__)

NS_TDS = "http://www.onvif.org/ver10/device/wsdl"
NS_TRT = "http://www.onvif.org/ver10/media/wsdl"
NS_TT = "http://www.onvif.org/ver10/schema"
NS_TER = "http://www.onvif.org/ver10/error"
NS_WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
NS_WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"

MAX_BODY = 1 << 20
"""Largest SOAP request accepted; anything bigger is refused with HTTP 413 before it is read."""

# A PasswordDigest whose Created is further than this from the camera's clock is refused. Cameras
# differ (some accept anything, some a few seconds); one minute is a middle that still catches a
# client that ignores an hour of skew.
TOKEN_WINDOW_S = 60.0
_DIGEST_NONCE_TTL_S = 300.0

VendorName = Literal["axis", "bosch", "pelco", "panasonic", "generic"]


@dataclass(frozen=True)
class Vendor:
    """A manufacturer's identity strings and the quirks its cameras show in the field."""

    manufacturer: str
    model: str
    firmware: str
    hardware_id: str
    stream_host: str | None = None
    """Host written into stream and snapshot URIs instead of the real one (None: keep it)."""
    drop_stream_port: bool = False
    """Stream URIs leave out the RTSP port (the client must learn it from GetNetworkProtocols)."""
    drop_snapshot_port: bool = False
    """The snapshot URI leaves out the HTTP port."""
    blank_profile_names: bool = False
    """Profiles come back with empty names."""
    snapshot_auth: Literal["digest", "basic"] = "digest"
    fault_status: int = 400
    """HTTP status of the NotAuthorized fault (cameras use 400 or 401)."""


VENDORS: dict[VendorName, Vendor] = {
    # Axis leaves the RTSP port out of its stream URIs and relies on the default (554), even
    # when RTSP was moved to another port.
    "axis": Vendor("AXIS", "P3245-LVE", "10.12.199", "932", drop_stream_port=True),
    # Bosch answers with its factory default address when it sits behind NAT or has not yet taken
    # the address it is reached by.
    "bosch": Vendor(
        "Bosch", "FLEXIDOME IP 5000i", "7.80.0128", "F0004CE0", stream_host="192.168.0.1"
    ),
    # Pelco fills in the address it listens on, 0.0.0.0.
    "pelco": Vendor(
        "Pelco",
        "IMP231-1IRS",
        "2.1.2.1",
        "Sarix",
        stream_host="0.0.0.0",
        snapshot_auth="basic",
        fault_status=401,
    ),
    # Panasonic (i-PRO) leaves profile names empty and the port out of the snapshot URI.
    "panasonic": Vendor(
        "Panasonic",
        "WV-S2131L",
        "2.60",
        "WV-S2131L",
        drop_snapshot_port=True,
        blank_profile_names=True,
        fault_status=401,
    ),
    "generic": Vendor("vmscore", "ONVIF simulator", "1.0", "sim-1"),
}


@dataclass(frozen=True)
class SimProfile:
    """One media profile of the simulated camera; ``rtsp_uri`` is returned as the stream URI."""

    token: str
    name: str
    encoding: Literal["h264", "h265", "jpeg", "mpeg4"]
    width: int
    height: int
    fps: float
    bitrate_kbps: int
    rtsp_uri: str


def _default_profiles(host: str) -> tuple[SimProfile, ...]:
    return (
        SimProfile("profile_main", "Main", "h264", 1920, 1080, 25.0, 4096, f"rtsp://{host}/main"),
        SimProfile("profile_sub", "Sub", "h264", 640, 360, 15.0, 512, f"rtsp://{host}/sub"),
    )


_JPEG_CACHE: list[bytes] = []


def _default_jpeg() -> bytes:
    """A small real JPEG (made once with PyAV's MJPEG encoder) for cameras given none."""
    if not _JPEG_CACHE:
        from fractions import Fraction

        import av
        import numpy as np

        height, width = 90, 160
        yy, xx = np.mgrid[0:height, 0:width]
        rgb = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 96)], axis=-1)
        codec = av.CodecContext.create("mjpeg", "w")
        codec.width, codec.height = width, height
        codec.pix_fmt = "yuvj420p"
        codec.time_base = Fraction(1, 25)
        frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")
        packets = codec.encode(frame.reformat(format="yuvj420p")) + codec.encode(None)
        _JPEG_CACHE.append(bytes(packets[0]))
    return _JPEG_CACHE[0]


class _SoapFaultError(Exception):
    """A SOAP fault to answer with."""

    def __init__(self, status: int, code: str, subcode: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.code, self.subcode, self.reason = status, code, subcode, reason


_ANONYMOUS_OPERATIONS = {(NS_TDS, "GetSystemDateAndTime"), (NS_TDS, "GetCapabilities")}


class OnvifSimulator:
    """A simulated ONVIF camera on loopback; see the module docstring.

    ``port=0`` takes a free TCP port, ``discovery_port=0`` a free UDP port for the WS-Discovery
    responder (None: no responder). ``clock_offset_s`` is added to the camera's clock.
    ``name`` and ``location`` end up in the discovery scopes.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = "admin",
        password: str = "sim-password",
        vendor: VendorName = "generic",
        serial: str = "SIM0000001",
        profiles: Sequence[SimProfile] | None = None,
        snapshot_jpeg: bytes | None = None,
        discovery_port: int | None = None,
        clock_offset_s: float = 0.0,
        name: str | None = None,
        location: str = "station",
    ) -> None:
        if vendor not in VENDORS:
            raise ValueError(f"unknown vendor {vendor!r}; known: {', '.join(VENDORS)}")
        self.vendor: Vendor = VENDORS[vendor]
        self.username = username
        self._password = password
        self.serial = serial
        self.profiles: tuple[SimProfile, ...] = (
            tuple(profiles) if profiles is not None else _default_profiles(host)
        )
        if not self.profiles:
            raise ValueError("a camera has at least one profile")
        if len({p.token for p in self.profiles}) != len(self.profiles):
            raise ValueError("profile tokens must be unique")
        self.snapshot_jpeg = snapshot_jpeg if snapshot_jpeg is not None else _default_jpeg()
        self.clock_offset_s = float(clock_offset_s)
        self.name = name if name is not None else f"{self.vendor.manufacturer} {self.vendor.model}"
        self.location = location
        self.endpoint = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'vmscore-sim:' + serial)}"
        self._digest_key = os.urandom(16)
        self._http = _Server((host, port), _Handler)
        self._http.sim = self
        self._udp: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        self._threads = [
            threading.Thread(
                target=self._http.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"onvif-sim-{self.port}",
                daemon=True,
            )
        ]
        if discovery_port is not None:
            try:
                self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._udp.bind((host, discovery_port))
                self._udp.setblocking(False)
                self._wake_r, self._wake_w = socket.socketpair()
            except OSError:
                self._close_sockets()
                raise
            self._threads.append(
                threading.Thread(target=self._discovery_loop, name="onvif-sim-wsd", daemon=True)
            )
        for thread in self._threads:
            thread.start()

    # -- addresses ----------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return str(self._http.server_address[0])

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` of the HTTP (ONVIF) service."""
        return (self.host, self.port)

    @property
    def discovery_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the WS-Discovery responder, or None without one."""
        if self._udp is None:
            return None
        host, port = self._udp.getsockname()[:2]
        return (str(host), int(port))

    @property
    def device_url(self) -> str:
        return f"http://{self.host}:{self.port}/onvif/device_service"

    @property
    def media_url(self) -> str:
        return f"http://{self.host}:{self.port}/onvif/media_service"

    @property
    def snapshot_url(self) -> str:
        """Where the snapshot really is (the quirk-free URL)."""
        return f"http://{self.host}:{self.port}/snapshot.jpg"

    @property
    def scopes(self) -> tuple[str, ...]:
        base = "onvif://www.onvif.org/"
        return (
            f"{base}type/video_encoder",
            f"{base}Profile/Streaming",
            f"{base}name/{quote(self.name, safe='')}",
            f"{base}hardware/{quote(self.vendor.model, safe='')}",
            f"{base}location/{quote(self.location, safe='/')}",
        )

    def now(self) -> dt.datetime:
        """The camera's clock (UTC)."""
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.clock_offset_s)

    # -- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stops the server threads and closes the sockets; safe to call more than once."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._http.shutdown()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5.0)
        self._http.server_close()
        self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in (self._udp, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()

    def __enter__(self) -> OnvifSimulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"OnvifSimulator({self.vendor.manufacturer} {self.vendor.model} at "
            f"{self.host}:{self.port})"
        )

    # -- URIs as the vendor would write them --------------------------------------------------

    def _vendor_uri(self, uri: str, *, drop_port: bool) -> str:
        parts = urlsplit(uri)
        host = self.vendor.stream_host or parts.hostname or self.host
        if ":" in host:
            host = f"[{host}]"
        netloc = host if drop_port or parts.port is None else f"{host}:{parts.port}"
        if parts.username is not None:
            userinfo = parts.username + (f":{parts.password}" if parts.password else "")
            netloc = f"{userinfo}@{netloc}"
        return urlunsplit(parts._replace(netloc=netloc))

    def stream_uri(self, profile: SimProfile) -> str:
        """The stream URI exactly as this vendor returns it (quirks included)."""
        return self._vendor_uri(profile.rtsp_uri, drop_port=self.vendor.drop_stream_port)

    def reported_snapshot_uri(self) -> str:
        """The snapshot URI exactly as this vendor returns it (quirks included)."""
        return self._vendor_uri(self.snapshot_url, drop_port=self.vendor.drop_snapshot_port)

    def _rtsp_port(self) -> int:
        for profile in self.profiles:
            try:
                port = urlsplit(profile.rtsp_uri).port
            except ValueError:
                continue
            if port is not None:
                return port
        return 554

    # -- SOAP ---------------------------------------------------------------------------------

    def handle_soap(self, body: bytes) -> tuple[int, bytes]:
        """Answers one SOAP request: (HTTP status, response envelope)."""
        try:
            try:
                root = parse_untrusted_xml(body, max_bytes=MAX_BODY)
            except ValueError:
                raise _SoapFaultError(
                    400, "env:Sender", "ter:WellFormed", "malformed XML"
                ) from None
            if root.tag != f"{{{NS_SOAP}}}Envelope":
                raise _SoapFaultError(
                    400, "env:Sender", "ter:WellFormed", "not a SOAP 1.2 envelope"
                )
            soap_body = root.find(f"{{{NS_SOAP}}}Body")
            if soap_body is None or len(soap_body) == 0:
                raise _SoapFaultError(400, "env:Sender", "ter:WellFormed", "empty SOAP body")
            request = soap_body[0]
            namespace, _, operation = request.tag[1:].partition("}")
            handler = self._operations().get((namespace, operation))
            if handler is None:
                raise _SoapFaultError(
                    500, "env:Receiver", "ter:ActionNotSupported", f"{operation} not supported"
                )
            if (namespace, operation) not in _ANONYMOUS_OPERATIONS and not self._authorized(
                root.find(f"{{{NS_SOAP}}}Header")
            ):
                raise _SoapFaultError(
                    self.vendor.fault_status,
                    "env:Sender",
                    "ter:NotAuthorized",
                    "Sender not Authorized",
                )
            return 200, _envelope(handler(request))
        except _SoapFaultError as fault:
            return fault.status, _envelope(_fault_xml(fault))

    def _operations(self) -> dict[tuple[str, str], Callable[[ET.Element], str]]:
        return {
            (NS_TDS, "GetSystemDateAndTime"): self._get_system_date_and_time,
            (NS_TDS, "GetCapabilities"): self._get_capabilities,
            (NS_TDS, "GetServices"): self._get_services,
            (NS_TDS, "GetDeviceInformation"): self._get_device_information,
            (NS_TDS, "GetScopes"): self._get_scopes,
            (NS_TDS, "GetNetworkProtocols"): self._get_network_protocols,
            (NS_TRT, "GetProfiles"): self._get_profiles,
            (NS_TRT, "GetProfile"): self._get_profile,
            (NS_TRT, "GetStreamUri"): self._get_stream_uri,
            (NS_TRT, "GetSnapshotUri"): self._get_snapshot_uri,
        }

    def _authorized(self, header: ET.Element | None) -> bool:
        """Checks the WS-Security UsernameToken (OASIS UsernameToken Profile 1.0 §3.1)."""
        if header is None:
            return False
        token = header.find(f"{{{NS_WSSE}}}Security/{{{NS_WSSE}}}UsernameToken")
        if token is None:
            return False
        user = (token.findtext(f"{{{NS_WSSE}}}Username") or "").strip()
        password = token.find(f"{{{NS_WSSE}}}Password")
        if password is None or not hmac.compare_digest(user.encode(), self.username.encode()):
            return False
        given = (password.text or "").strip()
        if password.get("Type", "").endswith("#PasswordText"):
            return hmac.compare_digest(given.encode(), self._password.encode())
        created = (token.findtext(f"{{{NS_WSU}}}Created") or "").strip()
        nonce_b64 = (token.findtext(f"{{{NS_WSSE}}}Nonce") or "").strip()
        try:
            nonce = base64.b64decode(nonce_b64, validate=True)
            created_at = dt.datetime.fromisoformat(created)
        except (binascii.Error, ValueError):
            return False
        if created_at.tzinfo is None:
            created_at = created_at.replace(tzinfo=dt.UTC)
        if abs((created_at - self.now()).total_seconds()) > TOKEN_WINDOW_S:
            return False
        expected = base64.b64encode(
            hashlib.sha1(nonce + created.encode() + self._password.encode()).digest()
        )
        return hmac.compare_digest(given.encode(), expected)

    def _get_system_date_and_time(self, _request: ET.Element) -> str:
        now = self.now()
        stamp = (
            f"<tt:Time><tt:Hour>{now.hour}</tt:Hour><tt:Minute>{now.minute}</tt:Minute>"
            f"<tt:Second>{now.second}</tt:Second></tt:Time>"
            f"<tt:Date><tt:Year>{now.year}</tt:Year><tt:Month>{now.month}</tt:Month>"
            f"<tt:Day>{now.day}</tt:Day></tt:Date>"
        )
        return (
            "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
            "<tt:DateTimeType>NTP</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>"
            "<tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone>"
            f"<tt:UTCDateTime>{stamp}</tt:UTCDateTime><tt:LocalDateTime>{stamp}</tt:LocalDateTime>"
            "</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
        )

    def _get_capabilities(self, _request: ET.Element) -> str:
        return (
            "<tds:GetCapabilitiesResponse><tds:Capabilities>"
            f"<tt:Device><tt:XAddr>{escape(self.device_url)}</tt:XAddr>"
            "<tt:System><tt:DiscoveryResolve>false</tt:DiscoveryResolve>"
            "<tt:DiscoveryBye>false</tt:DiscoveryBye><tt:RemoteDiscovery>false</tt:RemoteDiscovery>"
            "<tt:SystemBackup>false</tt:SystemBackup><tt:SystemLogging>false</tt:SystemLogging>"
            "<tt:FirmwareUpgrade>false</tt:FirmwareUpgrade>"
            "<tt:SupportedVersions><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor>"
            "</tt:SupportedVersions></tt:System></tt:Device>"
            f"<tt:Media><tt:XAddr>{escape(self.media_url)}</tt:XAddr>"
            "<tt:StreamingCapabilities><tt:RTPMulticast>false</tt:RTPMulticast>"
            "<tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP>"
            "</tt:StreamingCapabilities></tt:Media>"
            "</tds:Capabilities></tds:GetCapabilitiesResponse>"
        )

    def _get_services(self, _request: ET.Element) -> str:
        services = "".join(
            f"<tds:Service><tds:Namespace>{ns}</tds:Namespace>"
            f"<tds:XAddr>{escape(url)}</tds:XAddr>"
            "<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version>"
            "</tds:Service>"
            for ns, url in ((NS_TDS, self.device_url), (NS_TRT, self.media_url))
        )
        return f"<tds:GetServicesResponse>{services}</tds:GetServicesResponse>"

    def _get_device_information(self, _request: ET.Element) -> str:
        v = self.vendor
        return (
            "<tds:GetDeviceInformationResponse>"
            f"<tds:Manufacturer>{escape(v.manufacturer)}</tds:Manufacturer>"
            f"<tds:Model>{escape(v.model)}</tds:Model>"
            f"<tds:FirmwareVersion>{escape(v.firmware)}</tds:FirmwareVersion>"
            f"<tds:SerialNumber>{escape(self.serial)}</tds:SerialNumber>"
            f"<tds:HardwareId>{escape(v.hardware_id)}</tds:HardwareId>"
            "</tds:GetDeviceInformationResponse>"
        )

    def _get_scopes(self, _request: ET.Element) -> str:
        scopes = "".join(
            "<tds:Scopes><tt:ScopeDef>Fixed</tt:ScopeDef>"
            f"<tt:ScopeItem>{escape(scope)}</tt:ScopeItem></tds:Scopes>"
            for scope in self.scopes
        )
        return f"<tds:GetScopesResponse>{scopes}</tds:GetScopesResponse>"

    def _get_network_protocols(self, _request: ET.Element) -> str:
        protocols = "".join(
            f"<tds:NetworkProtocols><tt:Name>{name}</tt:Name><tt:Enabled>true</tt:Enabled>"
            f"<tt:Port>{port}</tt:Port></tds:NetworkProtocols>"
            for name, port in (("HTTP", self.port), ("RTSP", self._rtsp_port()))
        )
        return f"<tds:GetNetworkProtocolsResponse>{protocols}</tds:GetNetworkProtocolsResponse>"

    def _profile_xml(self, profile: SimProfile, element: str) -> str:
        name = "" if self.vendor.blank_profile_names else profile.name
        encoding = {"h264": "H264", "h265": "H265", "jpeg": "JPEG", "mpeg4": "MPEG4"}[
            profile.encoding
        ]
        h264 = (
            "<tt:H264><tt:GovLength>50</tt:GovLength><tt:H264Profile>Main</tt:H264Profile></tt:H264>"
            if profile.encoding == "h264"
            else ""
        )
        return (
            f'<{element} token="{escape(profile.token)}" fixed="true">'
            f"<tt:Name>{escape(name)}</tt:Name>"
            f'<tt:VideoSourceConfiguration token="vsc0"><tt:Name>VideoSource</tt:Name>'
            "<tt:UseCount>2</tt:UseCount><tt:SourceToken>vs0</tt:SourceToken>"
            '<tt:Bounds x="0" y="0" width="1920" height="1080"/></tt:VideoSourceConfiguration>'
            f'<tt:VideoEncoderConfiguration token="vec_{escape(profile.token)}">'
            f"<tt:Name>{escape(name)}</tt:Name><tt:UseCount>1</tt:UseCount>"
            f"<tt:Encoding>{encoding}</tt:Encoding>"
            f"<tt:Resolution><tt:Width>{profile.width}</tt:Width>"
            f"<tt:Height>{profile.height}</tt:Height></tt:Resolution>"
            "<tt:Quality>5</tt:Quality>"
            f"<tt:RateControl><tt:FrameRateLimit>{round(profile.fps)}</tt:FrameRateLimit>"
            "<tt:EncodingInterval>1</tt:EncodingInterval>"
            f"<tt:BitrateLimit>{profile.bitrate_kbps}</tt:BitrateLimit></tt:RateControl>"
            f"{h264}"
            "<tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type>"
            "<tt:IPv4Address>0.0.0.0</tt:IPv4Address></tt:Address><tt:Port>0</tt:Port>"
            "<tt:TTL>1</tt:TTL><tt:AutoStart>false</tt:AutoStart></tt:Multicast>"
            "<tt:SessionTimeout>PT60S</tt:SessionTimeout>"
            f"</tt:VideoEncoderConfiguration></{element}>"
        )

    def _get_profiles(self, _request: ET.Element) -> str:
        profiles = "".join(self._profile_xml(p, "trt:Profiles") for p in self.profiles)
        return f"<trt:GetProfilesResponse>{profiles}</trt:GetProfilesResponse>"

    def _find_profile(self, request: ET.Element) -> SimProfile:
        token = (request.findtext(f"{{{NS_TRT}}}ProfileToken") or "").strip()
        for profile in self.profiles:
            if profile.token == token:
                return profile
        raise _SoapFaultError(400, "env:Sender", "ter:NoProfile", "no such profile")

    def _get_profile(self, request: ET.Element) -> str:
        profile = self._profile_xml(self._find_profile(request), "trt:Profile")
        return f"<trt:GetProfileResponse>{profile}</trt:GetProfileResponse>"

    def _get_stream_uri(self, request: ET.Element) -> str:
        profile = self._find_profile(request)
        protocol = (
            request.findtext(f"{{{NS_TRT}}}StreamSetup/{{{NS_TT}}}Transport/{{{NS_TT}}}Protocol")
            or "RTSP"
        ).strip()
        if protocol not in ("RTSP", "TCP", "UDP"):
            raise _SoapFaultError(
                400, "env:Sender", "ter:InvalidStreamSetup", "transport not supported"
            )
        return (
            f"<trt:GetStreamUriResponse>{_media_uri(self.stream_uri(profile))}"
            "</trt:GetStreamUriResponse>"
        )

    def _get_snapshot_uri(self, request: ET.Element) -> str:
        self._find_profile(request)
        return (
            f"<trt:GetSnapshotUriResponse>{_media_uri(self.reported_snapshot_uri())}"
            "</trt:GetSnapshotUriResponse>"
        )

    # -- snapshot over HTTP -------------------------------------------------------------------

    def check_http_auth(self, method: str, uri: str, authorization: str | None) -> bool:
        """Checks an Authorization header the way this vendor's web server does."""
        if not authorization:
            return False
        scheme, _, value = authorization.strip().partition(" ")
        if self.vendor.snapshot_auth == "basic":
            if scheme.lower() != "basic":
                return False
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return hmac.compare_digest(user.encode(), self.username.encode()) and (
                hmac.compare_digest(password.encode(), self._password.encode())
            )
        if scheme.lower() != "digest":
            return False
        fields = _parse_digest(value)
        nonce = fields.get("nonce", "")
        if (
            fields.get("username") != self.username
            or fields.get("realm") != self._realm
            or fields.get("uri") != uri
            or not self._nonce_ok(nonce)
        ):
            return False
        ha1 = _md5(f"{self.username}:{self._realm}:{self._password}")
        ha2 = _md5(f"{method}:{uri}")
        if fields.get("qop"):
            if fields["qop"] != "auth":
                return False
            expected = _md5(
                f"{ha1}:{nonce}:{fields.get('nc', '')}:{fields.get('cnonce', '')}:auth:{ha2}"
            )
        else:
            expected = _md5(f"{ha1}:{nonce}:{ha2}")
        return hmac.compare_digest(fields.get("response", "").encode(), expected.encode())

    @property
    def _realm(self) -> str:
        return f"{self.vendor.manufacturer} camera"

    def challenge(self) -> str:
        """The WWW-Authenticate header for an unauthenticated snapshot request."""
        if self.vendor.snapshot_auth == "basic":
            return f'Basic realm="{self._realm}"'
        stamp = str(int(time.time()))
        mac = hmac.new(self._digest_key, stamp.encode(), hashlib.sha256).hexdigest()[:32]
        return f'Digest realm="{self._realm}", nonce="{stamp}-{mac}", qop="auth", algorithm=MD5'

    def _nonce_ok(self, nonce: str) -> bool:
        """Nonces are a time stamp signed with a per-simulator key: no per-client state."""
        stamp, _, mac = nonce.partition("-")
        if not stamp.isdigit():
            return False
        good = hmac.new(self._digest_key, stamp.encode(), hashlib.sha256).hexdigest()[:32]
        return hmac.compare_digest(mac, good) and time.time() - int(stamp) < _DIGEST_NONCE_TTL_S

    # -- WS-Discovery -------------------------------------------------------------------------

    def _discovery_loop(self) -> None:
        assert self._udp is not None and self._wake_r is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._udp, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._closed:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r:
                        return
                    try:
                        data, source = self._udp.recvfrom(MAX_DATAGRAM + 1)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        continue
                    reply = self.probe_match(data)
                    if reply is not None:
                        try:
                            self._udp.sendto(reply, source)
                        except OSError as exc:
                            _log.debug("ProbeMatch to %s not sent: %s", source, exc)

    def probe_match(self, data: bytes) -> bytes | None:
        """The ProbeMatches answering a Probe datagram, or None when we must stay silent."""
        try:
            root = parse_untrusted_xml(data, max_bytes=MAX_DATAGRAM)
        except ValueError:
            return None
        probe = root.find(f"{{{NS_SOAP}}}Body/{{{NS_WSD}}}Probe")
        header = root.find(f"{{{NS_SOAP}}}Header")
        if root.tag != f"{{{NS_SOAP}}}Envelope" or probe is None or header is None:
            return None
        message_id = (header.findtext(f"{{{NS_WSA}}}MessageID") or "").strip()
        if not message_id:
            return None
        # WS-Discovery §5.3: an empty Types matches any type; otherwise every requested type
        # must be one of ours. Types are QNames; we compare their local parts.
        wanted = (probe.findtext(f"{{{NS_WSD}}}Types") or "").split()
        if any(t.rpartition(":")[2] != "NetworkVideoTransmitter" for t in wanted):
            return None
        scopes = (probe.findtext(f"{{{NS_WSD}}}Scopes") or "").split()
        if any(not any(_scope_matches(s, ours) for ours in self.scopes) for s in scopes):
            return None
        xaddr = escape(self.device_url)
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f'<s:Envelope xmlns:s="{NS_SOAP}" xmlns:a="{NS_WSA}" xmlns:d="{NS_WSD}" '
            f'xmlns:dn="{NS_DN}">'
            "<s:Header>"
            f"<a:MessageID>urn:uuid:{uuid.uuid4()}</a:MessageID>"
            f"<a:RelatesTo>{escape(message_id)}</a:RelatesTo>"
            f"<a:To>{WSA_ANONYMOUS}</a:To>"
            f"<a:Action>{ACTION_PROBE_MATCHES}</a:Action>"
            "</s:Header><s:Body><d:ProbeMatches><d:ProbeMatch>"
            f"<a:EndpointReference><a:Address>{self.endpoint}</a:Address></a:EndpointReference>"
            "<d:Types>dn:NetworkVideoTransmitter</d:Types>"
            f"<d:Scopes>{escape(' '.join(self.scopes))}</d:Scopes>"
            f"<d:XAddrs>{xaddr}</d:XAddrs>"
            "<d:MetadataVersion>1</d:MetadataVersion>"
            "</d:ProbeMatch></d:ProbeMatches></s:Body></s:Envelope>"
        ).encode()


def _scope_matches(wanted: str, ours: str) -> bool:
    """RFC 3986 scope matching (WS-Discovery §5.1): equal, or a prefix by whole path segments."""
    wanted, ours = wanted.rstrip("/").lower(), ours.lower()
    return ours == wanted or ours.startswith(wanted + "/")


def _media_uri(uri: str) -> str:
    return (
        f"<trt:MediaUri><tt:Uri>{escape(uri)}</tt:Uri>"
        "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
        "<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot>"
        "<tt:Timeout>PT0S</tt:Timeout></trt:MediaUri>"
    )


def _envelope(body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<env:Envelope xmlns:env="{NS_SOAP}" xmlns:tds="{NS_TDS}" xmlns:trt="{NS_TRT}" '
        f'xmlns:tt="{NS_TT}" xmlns:ter="{NS_TER}">'
        f"<env:Body>{body}</env:Body></env:Envelope>"
    ).encode()


def _fault_xml(fault: _SoapFaultError) -> str:
    return (
        "<env:Fault>"
        f"<env:Code><env:Value>{fault.code}</env:Value>"
        f"<env:Subcode><env:Value>{fault.subcode}</env:Value></env:Subcode></env:Code>"
        f'<env:Reason><env:Text xml:lang="en">{escape(fault.reason)}</env:Text></env:Reason>'
        "</env:Fault>"
    )


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _parse_digest(value: str) -> dict[str, str]:
    """Splits the parameters of a Digest Authorization header (quoted or bare, RFC 7616 §3.4)."""
    fields: dict[str, str] = {}
    rest = value.strip()
    while rest and len(fields) < 32:
        key, sep, rest = rest.partition("=")
        if not sep:
            break
        key = key.strip().lower()
        rest = rest.lstrip()
        if rest.startswith('"'):
            end = rest.find('"', 1)
            if end < 0:
                break
            fields[key] = rest[1:end]
            rest = rest[end + 1 :]
        else:
            val, _, rest = rest.partition(",")
            fields[key] = val.strip()
            continue
        _, _, rest = rest.partition(",")
    return fields


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sim: OnvifSimulator

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that resets or times out mid-request is normal for a camera; log, do not print.
        _log.debug("ONVIF simulator: request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 10.0  # idle connections (and slow senders) are dropped after this
    server_version = "onvif-sim"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:
        _log.debug("ONVIF simulator %s: " + format, self.address_string(), *args)

    def _reply(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Sequence[tuple[str, str]] = (),
        *,
        close: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers:
            self.send_header(key, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding"):
            self._reply(411, b"Content-Length required\n", "text/plain", close=True)
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._reply(411, b"Content-Length required\n", "text/plain", close=True)
            return
        if length < 0:
            self._reply(400, b"bad Content-Length\n", "text/plain", close=True)
            return
        if length > MAX_BODY:
            self._reply(413, b"request body too large\n", "text/plain", close=True)
            return
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            return
        if len(body) < length:
            self.close_connection = True
            return
        status, payload = self.server.sim.handle_soap(body)
        self._reply(status, payload, 'application/soap+xml; charset="utf-8"')

    def do_GET(self) -> None:
        sim = self.server.sim
        if urlsplit(self.path).path != "/snapshot.jpg":
            self._reply(404, b"not found\n", "text/plain")
            return
        if not sim.check_http_auth(self.command, self.path, self.headers.get("Authorization")):
            self._reply(
                401, b"unauthorized\n", "text/plain", [("WWW-Authenticate", sim.challenge())]
            )
            return
        self._reply(200, sim.snapshot_jpeg, "image/jpeg")

    def do_HEAD(self) -> None:
        self.do_GET()
