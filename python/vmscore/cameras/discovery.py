"""WS-Discovery of ONVIF cameras: :func:`discover` lists the network video transmitters that answer.

WS-Discovery (the 2005/04 draft ONVIF Core §7 requires) is SOAP 1.2 over UDP: we send a
``Probe`` for ``dn:NetworkVideoTransmitter`` to the multicast group 239.255.255.250:3702, or to
given unicast addresses, and collect the ``ProbeMatches`` that come back until the timeout. Each
match names the device (an endpoint reference, usually ``urn:uuid:...``), the URLs of its device
service (``XAddrs``) and its scopes (``onvif://www.onvif.org/name/...`` and so on).

Datagrams come from anyone on the network, so every one is treated as hostile: bounded in size,
parsed by :func:`parse_untrusted_xml` (no DTD, no entities), and dropped when it is not a
ProbeMatches answering our probe. Unicast targets exist because loopback carries no multicast:
that is how the tests reach a simulator on 127.0.0.1, and how an installer probes a camera on a
routed subnet that multicast does not reach.

Threading: :func:`discover` blocks its caller for ``timeout_s``; call it from a worker thread (or
``asyncio.to_thread``). It shares no state between calls.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import selectors
import socket
import struct
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit
from xml.parsers import expat

__all__ = [
    "MULTICAST_ADDRESS",
    "DiscoveredDevice",
    "discover",
    "parse_untrusted_xml",
    "probe_message",
]

_log = logging.getLogger(__name__)

MULTICAST_ADDRESS: tuple[str, int] = ("239.255.255.250", 3702)
"""The WS-Discovery multicast group and port (IPv4)."""

NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS_WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
NS_DN = "http://www.onvif.org/ver10/network/wsdl"
ACTION_PROBE = f"{NS_WSD}/Probe"
ACTION_PROBE_MATCHES = f"{NS_WSD}/ProbeMatches"
WSD_TO = "urn:schemas-xmlsoap-org:ws:2005:04:discovery"
WSA_ANONYMOUS = f"{NS_WSA}/role/anonymous"

# A WS-Discovery message must fit one UDP datagram; anything longer is truncated by recvfrom and
# then fails to parse, which is what we want.
MAX_DATAGRAM = 65_507
# A hostile network could answer with endless distinct endpoints; a station never has this many
# cameras on one segment.
MAX_DEVICES = 4096

_SCOPE_PREFIX = "onvif://www.onvif.org/"


def parse_untrusted_xml(data: bytes, *, max_bytes: int) -> ET.Element:
    """Parses XML from the network into an ElementTree element, refusing anything dangerous.

    Why not ``ET.fromstring``: expat would still read a DTD and expand internal entities (the
    "billion laughs"). SOAP forbids DTDs altogether (SOAP 1.2 part 1 §5), so any document type
    declaration, entity declaration or external reference is an error here, as are documents
    larger than ``max_bytes``. Tags come out in ElementTree's ``{namespace}local`` form.

    Raises ``ValueError`` (``expat.ExpatError`` is one) on any of these or on malformed XML.
    """
    if len(data) > max_bytes:
        raise ValueError(f"XML document of {len(data)} bytes exceeds {max_bytes}")
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")

    def refuse(*_args: object) -> None:
        raise ValueError("XML with a document type or entity declaration is refused")

    def start(tag: str, attrs: dict[str, str]) -> None:
        builder.start(_clark(tag), {_clark(k): v for k, v in attrs.items()})

    def end(tag: str) -> None:
        builder.end(_clark(tag))

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse  # type: ignore[assignment]
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
        root = builder.close()
    except expat.ExpatError as exc:
        raise ValueError(f"malformed XML: {exc}") from None
    except (AssertionError, IndexError):  # TreeBuilder's own checks on unbalanced input
        raise ValueError("malformed XML") from None
    return root


def _clark(name: str) -> str:
    """Turns expat's ``uri}local`` into ElementTree's ``{uri}local``."""
    return "{" + name if "}" in name else name


@dataclass(frozen=True)
class DiscoveredDevice:
    """One device that answered a WS-Discovery probe.

    ``endpoint`` is the device's stable identity (the same across address changes); ``address``
    is the IP the answer came from, which may differ from the XAddrs' host on a multi-homed camera.
    """

    endpoint: str
    xaddrs: tuple[str, ...]
    scopes: tuple[str, ...]
    types: tuple[str, ...]
    address: str

    @property
    def host(self) -> str:
        """Host of the first device-service URL (the datagram's source when there is none)."""
        if self.xaddrs:
            host = urlsplit(self.xaddrs[0]).hostname
            if host:
                return host
        return self.address

    @property
    def port(self) -> int:
        """Port of the first device-service URL (the scheme's default when it names none)."""
        if self.xaddrs:
            parts = urlsplit(self.xaddrs[0])
            try:
                if parts.port is not None:
                    return parts.port
            except ValueError:  # a port out of range or not a number
                pass
            return 443 if parts.scheme == "https" else 80
        return 80

    @property
    def name(self) -> str | None:
        """The ``onvif://www.onvif.org/name/...`` scope, decoded."""
        return self._scope("name")

    @property
    def hardware(self) -> str | None:
        """The ``onvif://www.onvif.org/hardware/...`` scope (usually the model), decoded."""
        return self._scope("hardware")

    @property
    def location(self) -> str | None:
        """The ``onvif://www.onvif.org/location/...`` scope: whatever follows ``location/``."""
        return self._scope("location")

    def _scope(self, kind: str) -> str | None:
        prefix = f"{_SCOPE_PREFIX}{kind}/"
        for scope in self.scopes:
            if scope.lower().startswith(prefix):
                value = unquote(scope[len(prefix) :]).strip()
                if value:
                    return value
        return None

    def to_json(self) -> dict[str, object]:
        """A JSON-ready copy, helpers included."""
        return {
            "endpoint": self.endpoint,
            "xaddrs": list(self.xaddrs),
            "scopes": list(self.scopes),
            "types": list(self.types),
            "address": self.address,
            "host": self.host,
            "port": self.port,
            "name": self.name,
            "hardware": self.hardware,
            "location": self.location,
        }


def probe_message(message_id: str, types: str = "dn:NetworkVideoTransmitter") -> bytes:
    """The SOAP envelope of a Probe for ``types`` (QNames with the ``dn`` prefix bound)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<s:Envelope xmlns:s="{NS_SOAP}" xmlns:a="{NS_WSA}" xmlns:d="{NS_WSD}" '
        f'xmlns:dn="{NS_DN}">'
        "<s:Header>"
        f'<a:Action s:mustUnderstand="1">{ACTION_PROBE}</a:Action>'
        f"<a:MessageID>{message_id}</a:MessageID>"
        f"<a:ReplyTo><a:Address>{WSA_ANONYMOUS}</a:Address></a:ReplyTo>"
        f'<a:To s:mustUnderstand="1">{WSD_TO}</a:To>'
        "</s:Header>"
        f"<s:Body><d:Probe><d:Types>{types}</d:Types></d:Probe></s:Body>"
        "</s:Envelope>"
    ).encode()


def _parse_probe_matches(data: bytes, source: str, message_id: str) -> list[DiscoveredDevice]:
    """The devices in one datagram, or nothing when it is not a ProbeMatches for our probe."""
    try:
        root = parse_untrusted_xml(data, max_bytes=MAX_DATAGRAM)
    except ValueError as exc:
        _log.debug("ignoring a datagram from %s: %s", source, exc)
        return []
    if root.tag != f"{{{NS_SOAP}}}Envelope":
        return []
    header = root.find(f"{{{NS_SOAP}}}Header")
    if header is not None:
        action = (header.findtext(f"{{{NS_WSA}}}Action") or "").strip()
        if action and action != ACTION_PROBE_MATCHES:
            return []  # a Hello, Bye or someone else's Probe on the group
        relates = (header.findtext(f"{{{NS_WSA}}}RelatesTo") or "").strip()
        if relates and relates != message_id:
            return []  # a late answer to an earlier probe
    matches = root.find(f"{{{NS_SOAP}}}Body/{{{NS_WSD}}}ProbeMatches")
    if matches is None:
        return []
    found: list[DiscoveredDevice] = []
    for match in matches.findall(f"{{{NS_WSD}}}ProbeMatch"):
        endpoint = (
            match.findtext(f"{{{NS_WSA}}}EndpointReference/{{{NS_WSA}}}Address") or ""
        ).strip()
        if not endpoint:
            continue
        found.append(
            DiscoveredDevice(
                endpoint=endpoint,
                xaddrs=tuple((match.findtext(f"{{{NS_WSD}}}XAddrs") or "").split()),
                scopes=tuple((match.findtext(f"{{{NS_WSD}}}Scopes") or "").split()),
                types=tuple((match.findtext(f"{{{NS_WSD}}}Types") or "").split()),
                address=source,
            )
        )
    return found


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _send_multicast(sock: socket.socket, message: bytes) -> int:
    """Sends the probe out of every interface that takes it; returns how many did.

    The kernel would otherwise pick one interface by the routing table, and a station with a
    camera network on a second NIC would find nothing there.
    """
    sent = 0
    for index, name in socket.if_nameindex():
        if name == "lo":
            continue
        try:
            sock.setsockopt(
                socket.IPPROTO_IP, socket.IP_MULTICAST_IF, struct.pack("=4s4si", b"", b"", index)
            )
            sock.sendto(message, MULTICAST_ADDRESS)
            sent += 1
        except OSError as exc:  # no address, no multicast, interface down
            _log.debug("WS-Discovery probe not sent on %s: %s", name, exc)
    if sent == 0:
        try:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("0.0.0.0"))
            sock.sendto(message, MULTICAST_ADDRESS)
            sent = 1
        except OSError as exc:
            _log.debug("WS-Discovery probe not sent: %s", exc)
    return sent


def discover(
    timeout_s: float = 2.0, *, targets: Sequence[tuple[str, int]] | None = None
) -> list[DiscoveredDevice]:
    """Probes for ONVIF devices and returns those that answered within ``timeout_s``.

    Without ``targets`` the probe goes to the multicast group on every interface; with
    ``targets`` it goes unicast to each ``(host, port)``. The probe is sent twice (a UDP probe
    can be lost; WS-Discovery repeats it with the same message id), answers are collected until
    the timeout and deduplicated by endpoint, first answer kept, in order of arrival.
    """
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, not {timeout_s!r}")
    destinations = list(targets) if targets is not None else None
    if destinations is not None:
        for target in destinations:
            if len(target) != 2 or not isinstance(target[1], int) or not 0 < target[1] < 65536:
                raise ValueError(f"a target is a (host, port) pair, not {target!r}")
    message_id = f"urn:uuid:{uuid.uuid4()}"
    message = probe_message(message_id)
    loopback_only = bool(destinations) and all(_is_loopback(h) for h, _ in destinations or [])
    deadline = time.monotonic() + timeout_s
    found: dict[str, DiscoveredDevice] = {}
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        selectors.DefaultSelector() as selector,
    ):
        # Answers come back to the port we send from; binding loopback when every target is
        # local keeps the socket off the network altogether.
        sock.bind(("127.0.0.1" if loopback_only else "", 0))
        sock.setblocking(False)
        if destinations is None:
            # ONVIF Core §7.3: discovery stays on the local link.
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        selector.register(sock, selectors.EVENT_READ)

        def send() -> None:
            if destinations is None:
                _send_multicast(sock, message)
                return
            for host, port in destinations:
                try:
                    sock.sendto(message, (host, port))
                except OSError as exc:  # unresolvable name, unreachable network
                    _log.debug("WS-Discovery probe to %s:%d not sent: %s", host, port, exc)

        send()
        # WS-Discovery (2005/04) §3.2: repeat after a random 50-250 ms.
        resend_at: float | None = time.monotonic() + random.uniform(0.05, 0.25)
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if resend_at is not None and now >= resend_at:
                send()
                resend_at = None
            wait = deadline - now if resend_at is None else min(deadline, resend_at) - now
            if not selector.select(max(0.0, wait)):
                continue
            while True:
                try:
                    data, source = sock.recvfrom(MAX_DATAGRAM + 1)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:  # ICMP port unreachable from a unicast target
                    _log.debug("WS-Discovery receive: %s", exc)
                    break
                for device in _parse_probe_matches(data, source[0], message_id):
                    if device.endpoint not in found and len(found) < MAX_DEVICES:
                        found[device.endpoint] = device
    return list(found.values())
