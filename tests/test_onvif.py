"""Tests of the ONVIF probe (vmscore.cameras.onvif), WS-Discovery (vmscore.cameras.discovery) and
the simulated ONVIF camera they are tested against (vmscore.sim.onvif), all on loopback.

Adding a camera by address alone stands on these: if a vendor test fails, that manufacturer's
cameras get the wrong stream (or none); if an error test fails, an installer with a typo waits
forever or reads a traceback instead of "wrong password"; if a discovery test fails, the "find
cameras" button lists nothing or lists junk a hostile host sent.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from vmscore.cameras.discovery import (
    NS_SOAP,
    NS_WSA,
    NS_WSD,
    DiscoveredDevice,
    discover,
    parse_untrusted_xml,
    probe_message,
)
from vmscore.cameras.onvif import (
    OnvifAuthError,
    OnvifDevice,
    OnvifError,
    probe,
    probe_sync,
    quirks_for,
    repair_uri,
)
from vmscore.errors import VmsError
from vmscore.sim.onvif import MAX_BODY, NS_TDS, OnvifSimulator, SimProfile

PASSWORD = "s3cret-Pa55"
MAIN = "rtsp://127.0.0.1:8554/cam7/main"
SUB = "rtsp://127.0.0.1:8554/cam7/sub"


def two_profiles() -> list[SimProfile]:
    # Sub first: the probe must pick by size, not by order.
    return [
        SimProfile("prof_sub", "Sub stream", "h265", 640, 360, 10.0, 384, SUB),
        SimProfile("prof_main", "Main stream", "h264", 1920, 1080, 25.0, 6144, MAIN),
    ]


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., OnvifSimulator]]:
    made: list[OnvifSimulator] = []

    def make(**kwargs: object) -> OnvifSimulator:
        kwargs.setdefault("password", PASSWORD)
        kwargs.setdefault("profiles", two_profiles())
        sim = OnvifSimulator(**kwargs)  # type: ignore[arg-type]
        made.append(sim)
        return sim

    yield make
    for sim in made:
        sim.close()


# ---------------------------------------------------------------------------------------------
# Probing each vendor personality


EXPECTED_IDENTITY = {
    "axis": ("AXIS", "P3245-LVE"),
    "bosch": ("Bosch", "FLEXIDOME IP 5000i"),
    "pelco": ("Pelco", "IMP231-1IRS"),
    "panasonic": ("Panasonic", "WV-S2131L"),
    "generic": ("vmscore", "ONVIF simulator"),
}


@pytest.mark.parametrize("vendor", ["axis", "bosch", "pelco", "panasonic", "generic"])
def test_probe_vendor_personality(sim_factory: Callable[..., OnvifSimulator], vendor: str) -> None:
    """Identity, profiles, main/sub and repaired URIs that point where the camera really streams."""
    jpeg = b"\xff\xd8\xff\xe0" + os.urandom(200) + b"\xff\xd9"
    sim = sim_factory(vendor=vendor, serial=f"SN-{vendor}", snapshot_jpeg=jpeg)
    device = probe_sync(sim.host, sim.port, "admin", PASSWORD, timeout_s=10)

    manufacturer, model = EXPECTED_IDENTITY[vendor]
    assert (device.manufacturer, device.model) == (manufacturer, model)
    assert device.serial == f"SN-{vendor}"
    assert device.firmware == sim.vendor.firmware and device.hardware_id == sim.vendor.hardware_id
    assert (device.host, device.port) == (sim.host, sim.port)

    by_token = {p.token: p for p in device.profiles}
    assert set(by_token) == {"prof_main", "prof_sub"}
    main, sub = by_token["prof_main"], by_token["prof_sub"]
    assert (main.encoding, main.width, main.height, main.fps, main.bitrate_kbps) == (
        "h264",
        1920,
        1080,
        25.0,
        6144,
    )
    assert (sub.encoding, sub.width, sub.height, sub.fps, sub.bitrate_kbps) == (
        "h265",
        640,
        360,
        10.0,
        384,
    )
    # The stream quirk is really on the wire (Axis, Bosch and Pelco report a broken URI), and
    # the probe hands back exactly what the simulator was given.
    reported = sim.stream_uri(sim.profiles[1])
    assert (reported != MAIN) == (vendor in ("axis", "bosch", "pelco")), reported
    assert (main.rtsp_uri, sub.rtsp_uri) == (MAIN, SUB)
    assert (device.main_uri, device.sub_uri) == (MAIN, SUB)
    if vendor == "panasonic":
        assert (main.name, sub.name) == ("H264 1920x1080", "H265 640x360")
        assert urlsplit(sim.reported_snapshot_uri()).port is None
    else:
        assert (main.name, sub.name) == ("Main stream", "Sub stream")

    assert device.snapshot_uri == sim.snapshot_url
    auth: httpx.Auth = (
        httpx.BasicAuth("admin", PASSWORD)
        if sim.vendor.snapshot_auth == "basic"
        else httpx.DigestAuth("admin", PASSWORD)
    )
    with httpx.Client(timeout=5.0) as client:
        assert client.get(device.snapshot_uri).status_code == 401
        wrong = client.get(device.snapshot_uri, auth=httpx.DigestAuth("admin", "nope"))
        assert wrong.status_code == 401
        got = client.get(device.snapshot_uri, auth=auth)
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    assert got.content == jpeg

    as_json = device.to_json()
    assert as_json["main_uri"] == MAIN and as_json["profiles"][0]["token"] == "prof_sub"


def test_default_simulator_serves_a_real_jpeg(sim_factory: Callable[..., OnvifSimulator]) -> None:
    """The demo's cameras show a picture: the default snapshot decodes as a JPEG."""
    import av

    sim = sim_factory(vendor="axis")
    device = probe_sync(sim.host, sim.port, "admin", PASSWORD)
    assert device.snapshot_uri is not None
    got = httpx.get(device.snapshot_uri, auth=httpx.DigestAuth("admin", PASSWORD), timeout=5.0)
    with av.open(__import__("io").BytesIO(got.content), format="image2pipe") as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == (160, 90)


def test_one_profile_has_no_sub_and_jpeg_is_never_main(
    sim_factory: Callable[..., OnvifSimulator],
) -> None:
    """A camera with one H.264 profile and an MJPEG one: main is the H.264 one, no sub stream
    (the ingest engine cannot take MJPEG over RTP)."""
    sim = sim_factory(
        profiles=[
            SimProfile("mjpeg", "MJPEG", "jpeg", 3840, 2160, 5.0, 8000, "rtsp://127.0.0.1:8554/j"),
            SimProfile("only", "Only", "h264", 1280, 720, 30.0, 2048, "rtsp://127.0.0.1:8554/o"),
        ]
    )
    device = probe_sync(sim.host, sim.port, "admin", PASSWORD)
    assert [p.encoding for p in device.profiles] == ["jpeg", "h264"]
    assert device.main_uri == "rtsp://127.0.0.1:8554/o" and device.sub_uri is None


async def _probe_in_loop(sim: OnvifSimulator) -> tuple[OnvifDevice, OnvifDevice]:
    direct = await probe(sim.host, sim.port, "admin", PASSWORD)
    # An executor worker of a running loop has no loop of its own: probe_sync works there.
    threaded = await asyncio.to_thread(probe_sync, sim.host, sim.port, "admin", PASSWORD)
    with pytest.raises(RuntimeError, match="await probe"):
        probe_sync(sim.host, sim.port, "admin", PASSWORD)
    return direct, threaded


def test_probe_from_a_loop_and_from_threads(sim_factory: Callable[..., OnvifSimulator]) -> None:
    sim = sim_factory(vendor="bosch")
    direct, threaded = asyncio.run(_probe_in_loop(sim))
    assert direct.main_uri == threaded.main_uri == MAIN

    results: list[OnvifDevice | BaseException] = []

    def worker() -> None:
        try:
            results.append(probe_sync(sim.host, sim.port, "admin", PASSWORD, timeout_s=10))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert len(results) == 3
    assert all(isinstance(r, OnvifDevice) and r.sub_uri == SUB for r in results), results


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("vendor", ["axis", "pelco"])  # fault with HTTP 400 and with HTTP 401
def test_wrong_password_is_an_auth_error_without_the_password(
    sim_factory: Callable[..., OnvifSimulator], vendor: str, caplog: pytest.LogCaptureFixture
) -> None:
    sim = sim_factory(vendor=vendor)
    wrong = "wrong-Pa55word"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(OnvifAuthError) as info:
        probe_sync(sim.host, sim.port, "admin", wrong, timeout_s=10)
    message = str(info.value)
    assert message == f"the camera at {sim.host}:{sim.port} refused the user name or password"
    assert isinstance(info.value, OnvifError | VmsError | ConnectionError)
    assert wrong not in caplog.text and PASSWORD not in caplog.text


def test_no_credentials_on_a_camera_that_needs_them(
    sim_factory: Callable[..., OnvifSimulator],
) -> None:
    sim = sim_factory()
    with pytest.raises(OnvifAuthError, match="requires a user name and password"):
        probe_sync(sim.host, sim.port)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_closed_port_fails_fast() -> None:
    port = _free_port()
    start = time.monotonic()
    with pytest.raises(OnvifError, match=f"could not connect to 127.0.0.1:{port}") as info:
        probe_sync("127.0.0.1", port, "admin", PASSWORD, timeout_s=10)
    assert time.monotonic() - start < 2.0
    assert not isinstance(info.value, OnvifAuthError)


def test_bad_arguments_are_value_errors() -> None:
    for host, port in [("", 80), ("cam/1", 80), ("127.0.0.1", 0), ("127.0.0.1", 70000)]:
        with pytest.raises(ValueError, match="not a"):
            probe_sync(host, port)
    with pytest.raises(ValueError, match="timeout_s"):
        probe_sync("127.0.0.1", 80, timeout_s=0)


class RawServer:
    """A TCP server on loopback that reads one HTTP request per connection (headers and body)
    and answers with ``respond(conn)``: the hostile or confused device."""

    def __init__(self, respond: Callable[[socket.socket], None]) -> None:
        self.respond = respond
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5.0)
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    key, _, value = line.partition(b":")
                    if key.strip().lower() == b"content-length":
                        length = int(value)
                while len(body) < length:
                    body += conn.recv(65536)
                self.respond(conn)
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(timeout=2)


def _http(status: str, body: bytes, content_type: str = "application/soap+xml") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def _endless(conn: socket.socket, head: bytes) -> None:
    conn.sendall(head)
    chunk = b"<x>" * 20_000
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")


HOSTILE: dict[str, tuple[Callable[[socket.socket], None], str]] = {
    "garbage-200": (
        lambda c: c.sendall(_http("200 OK", b"\x00\x01hello, not xml")),
        "not an ONVIF SOAP reply",
    ),
    "html-404": (
        lambda c: c.sendall(_http("404 Not Found", b"<html>nope</html>", "text/html")),
        "HTTP 404",
    ),
    "xml-not-soap": (
        lambda c: c.sendall(_http("200 OK", b"<?xml version='1.0'?><config><a/></config>")),
        "XML that is not SOAP",
    ),
    "soap-wrong-shape": (
        lambda c: c.sendall(
            _http(
                "200 OK",
                f'<e:Envelope xmlns:e="{NS_SOAP}"><e:Body><Other/></e:Body></e:Envelope>'.encode(),
            )
        ),
        "not an ONVIF SOAP reply",  # empty answers pass zeep until the service list
    ),
    "huge-chunked": (
        lambda c: _endless(
            c, b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        "more than",
    ),
    "huge-length": (
        lambda c: _endless(c, b"HTTP/1.1 200 OK\r\nContent-Length: 10737418240\r\n\r\n"),
        "more than",
    ),
    "not-http": (lambda c: c.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\x00\xff\r\n\r\n"), "malformed HTTP"),
    "silent": (lambda c: time.sleep(3), "did not answer GetSystemDateAndTime within 1.5 s"),
    "hang-up": (lambda c: None, "closed the connection"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_or_confused_device_is_a_plain_error_within_the_timeout(kind: str) -> None:
    respond, expected = HOSTILE[kind]
    server = RawServer(respond)
    try:
        start = time.monotonic()
        with pytest.raises(OnvifError) as info:
            probe_sync("127.0.0.1", server.port, "admin", PASSWORD, timeout_s=1.5)
        elapsed = time.monotonic() - start
    finally:
        server.close()
    message = str(info.value)
    assert f"127.0.0.1:{server.port}" in message and expected in message, message
    assert not isinstance(info.value, OnvifAuthError)
    assert PASSWORD not in message
    assert elapsed < 2.5, elapsed


# ---------------------------------------------------------------------------------------------
# Clock skew


def _soap_with_token(username: str, password: str, created: dt.datetime, *, digest: bool) -> bytes:
    stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    nonce = os.urandom(16)
    if digest:
        value = base64.b64encode(hashlib.sha1(nonce + stamp.encode() + password.encode()).digest())
        kind = "PasswordDigest"
    else:
        value, kind = password.encode(), "PasswordText"
    wsse = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
    wsu = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
    profile = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
    return (
        f'<s:Envelope xmlns:s="{NS_SOAP}" xmlns:wsse="{wsse}" xmlns:wsu="{wsu}" '
        f'xmlns:tds="{NS_TDS}"><s:Header><wsse:Security><wsse:UsernameToken>'
        f"<wsse:Username>{username}</wsse:Username>"
        f'<wsse:Password Type="{profile}#{kind}">{value.decode()}</wsse:Password>'
        f"<wsse:Nonce>{base64.b64encode(nonce).decode()}</wsse:Nonce>"
        f"<wsu:Created>{stamp}</wsu:Created>"
        "</wsse:UsernameToken></wsse:Security></s:Header>"
        "<s:Body><tds:GetDeviceInformation/></s:Body></s:Envelope>"
    ).encode()


@pytest.mark.parametrize("offset_s", [3600.0, -7200.0])
def test_clock_skew_is_reported_and_compensated(
    sim_factory: Callable[..., OnvifSimulator], offset_s: float
) -> None:
    """The simulator refuses digests stamped more than a minute off its clock, like a strict
    camera; the probe must measure the skew, sign in camera time, and report it."""
    sim = sim_factory(vendor="axis", clock_offset_s=offset_s)
    now = dt.datetime.now(dt.UTC)
    url = sim.device_url
    refused = httpx.post(url, content=_soap_with_token("admin", PASSWORD, now, digest=True))
    assert refused.status_code == 400 and b"NotAuthorized" in refused.content
    in_camera_time = now + dt.timedelta(seconds=offset_s)
    accepted = httpx.post(
        url, content=_soap_with_token("admin", PASSWORD, in_camera_time, digest=True)
    )
    assert accepted.status_code == 200 and b"P3245-LVE" in accepted.content

    device = probe_sync(sim.host, sim.port, "admin", PASSWORD, timeout_s=10)
    assert device.clock_skew_s is not None
    assert abs(device.clock_skew_s - offset_s) < 1.5, device.clock_skew_s
    assert device.main_uri == MAIN


def test_no_skew_reads_near_zero_and_password_text_works(
    sim_factory: Callable[..., OnvifSimulator],
) -> None:
    sim = sim_factory()
    device = probe_sync(sim.host, sim.port, "admin", PASSWORD)
    assert device.clock_skew_s is not None and abs(device.clock_skew_s) < 1.5
    now = dt.datetime.now(dt.UTC)
    plain = httpx.post(
        sim.device_url, content=_soap_with_token("admin", PASSWORD, now, digest=False)
    )
    assert plain.status_code == 200 and b"SIM0000001" in plain.content
    bad = httpx.post(sim.device_url, content=_soap_with_token("admin", "x", now, digest=False))
    assert bad.status_code == 400 and b"ter:NotAuthorized" in bad.content


# ---------------------------------------------------------------------------------------------
# The simulator's own robustness


def test_simulator_survives_garbage_and_bounds_bodies(
    sim_factory: Callable[..., OnvifSimulator],
) -> None:
    sim = sim_factory()
    with httpx.Client(timeout=5.0) as client:
        too_big = client.post(sim.device_url, content=b"<" * (MAX_BODY + 1))
        assert too_big.status_code == 413
        garbage = client.post(sim.device_url, content=os.urandom(4096))
        assert garbage.status_code == 400 and b"ter:WellFormed" in garbage.content
        laughs = (
            b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><l>&b;</l>'
        )
        assert client.post(sim.device_url, content=laughs).status_code == 400
        unknown = client.post(
            sim.device_url,
            content=f'<s:Envelope xmlns:s="{NS_SOAP}"><s:Body><Reboot/></s:Body></s:Envelope>',
        )
        assert unknown.status_code == 500 and b"ActionNotSupported" in unknown.content
        assert client.get(f"http://{sim.host}:{sim.port}/admin").status_code == 404
    with socket.create_connection(sim.address, timeout=5) as raw:
        raw.sendall(b"BREW /pot HTTP/1.1\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 501")
    with socket.create_connection(sim.address, timeout=5) as raw:
        raw.sendall(b"\x16\x03\x01\x00\xff not http at all\r\n\r\n")
        assert raw.recv(100)  # an error page, then the connection closes
    assert probe_sync(sim.host, sim.port, "admin", PASSWORD).main_uri == MAIN


# ---------------------------------------------------------------------------------------------
# URI repair and XML hardening


@pytest.mark.parametrize(
    ("manufacturer", "uri", "rtsp_port", "expected"),
    [
        ("Pelco", "rtsp://0.0.0.0:554/stream1", None, "rtsp://10.0.0.7:554/stream1"),
        ("Unknown", "rtsp://[::]:8554/a?b=c", None, "rtsp://10.0.0.7:8554/a?b=c"),
        ("Unknown", "rtsp://127.0.0.1/x", None, "rtsp://10.0.0.7/x"),
        ("Unknown", "rtsp://192.168.0.1:554/x", None, "rtsp://192.168.0.1:554/x"),
        ("BOSCH", "rtsp://user:pw@192.168.0.1:554/x", None, "rtsp://user:pw@10.0.0.7:554/x"),
        (
            "Axis Communications AB",
            "rtsp://10.0.0.7/axis-media",
            8554,
            "rtsp://10.0.0.7:8554/axis-media",
        ),
        ("AXIS", "rtsp://10.0.0.7/axis-media", 554, "rtsp://10.0.0.7/axis-media"),
        ("AXIS", "rtsp://10.0.0.9/other-host", 8554, "rtsp://10.0.0.9/other-host"),
        (
            "Panasonic",
            "http://10.0.0.7/cgi-bin/camera",
            None,
            "http://10.0.0.7:8080/cgi-bin/camera",
        ),
        ("i-PRO", "http://0.0.0.0/snap.jpg", None, "http://10.0.0.7:8080/snap.jpg"),
        ("Unknown", "not a uri", None, "not a uri"),
    ],
)
def test_repair_uri(manufacturer: str, uri: str, rtsp_port: int | None, expected: str) -> None:
    assert repair_uri(uri, quirks_for(manufacturer), "10.0.0.7", 8080, rtsp_port) == expected


def test_untrusted_xml_refuses_dtds_and_oversize() -> None:
    assert parse_untrusted_xml(b"<a xmlns='urn:x'><b/></a>", max_bytes=100).tag == "{urn:x}a"
    for bad in [
        b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>',
        b'<!DOCTYPE a SYSTEM "file:///etc/passwd"><a/>',
        b"<a><b></a>",
        b"",
    ]:
        with pytest.raises(ValueError, match="XML"):
            parse_untrusted_xml(bad, max_bytes=1000)
    with pytest.raises(ValueError, match="exceeds"):
        parse_untrusted_xml(b"<a>" + b" " * 2000 + b"</a>", max_bytes=1000)


# ---------------------------------------------------------------------------------------------
# WS-Discovery


def test_discovery_finds_one_simulator(sim_factory: Callable[..., OnvifSimulator]) -> None:
    sim = sim_factory(vendor="axis", discovery_port=0, name="Gate 1", location="city/Bern")
    assert sim.discovery_address is not None
    start = time.monotonic()
    found = discover(0.6, targets=[sim.discovery_address])
    assert 0.55 < time.monotonic() - start < 1.5
    assert len(found) == 1
    device = found[0]
    assert device.endpoint == sim.endpoint and device.address == "127.0.0.1"
    assert device.xaddrs == (sim.device_url,)
    assert (device.host, device.port) == (sim.host, sim.port)
    assert (device.name, device.hardware, device.location) == ("Gate 1", "P3245-LVE", "city/Bern")
    assert "dn:NetworkVideoTransmitter" in device.types
    # The discovered address is enough to probe the camera.
    assert probe_sync(device.host, device.port, "admin", PASSWORD).model == "P3245-LVE"


def test_discovery_finds_several_and_deduplicates(
    sim_factory: Callable[..., OnvifSimulator],
) -> None:
    sims = [
        sim_factory(vendor=v, discovery_port=0, serial=f"S{i}", name=f"Cam {i}")
        for i, v in enumerate(["axis", "bosch", "pelco", "panasonic"])
    ]
    targets = [s.discovery_address for s in sims if s.discovery_address]
    found = discover(0.6, targets=targets + targets[:2])  # two asked twice
    assert sorted(d.endpoint for d in found) == sorted(s.endpoint for s in sims)
    assert {d.name for d in found} == {"Cam 0", "Cam 1", "Cam 2", "Cam 3"}
    assert {d.port for d in found} == {s.port for s in sims}


class HostileResponder:
    """A UDP host that answers every probe with junk, a forged answer to someone else's probe,
    an entity bomb and an oversize datagram."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address = self.sock.getsockname()
        self.stop = threading.Event()
        self.answered = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                data, source = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            other = (
                f'<s:Envelope xmlns:s="{NS_SOAP}" xmlns:a="{NS_WSA}" xmlns:d="{NS_WSD}">'
                f"<s:Header><a:RelatesTo>urn:uuid:{uuid.uuid4()}</a:RelatesTo></s:Header>"
                "<s:Body><d:ProbeMatches><d:ProbeMatch><a:EndpointReference>"
                "<a:Address>urn:uuid:forged</a:Address></a:EndpointReference>"
                "<d:XAddrs>http://127.0.0.1:1/onvif/device_service</d:XAddrs>"
                "</d:ProbeMatch></d:ProbeMatches></s:Body></s:Envelope>"
            ).encode()
            bomb = (
                b'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY a "aaaaaaaaaaaaaaaa">'
                b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><s>&b;</s>'
            )
            for reply in (os.urandom(512), b"<not-closed>", other, bomb, b"<" * 65000, data):
                self.sock.sendto(reply, source)
            self.answered += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.sock.close()


def test_discovery_ignores_garbage_responders(sim_factory: Callable[..., OnvifSimulator]) -> None:
    sim = sim_factory(discovery_port=0)
    hostile = HostileResponder()
    try:
        assert sim.discovery_address is not None
        found = discover(0.6, targets=[hostile.address, sim.discovery_address])
    finally:
        hostile.close()
    assert hostile.answered >= 1  # it did answer, with junk
    assert [d.endpoint for d in found] == [sim.endpoint]


def test_discovery_responder_filters_types_and_scopes(
    sim_factory: Callable[..., OnvifSimulator],
) -> None:
    sim = sim_factory(location="city/Bern")
    assert sim.probe_match(probe_message("urn:uuid:1")) is not None
    assert sim.probe_match(probe_message("urn:uuid:1", types="dn:Printer")) is None
    assert sim.probe_match(b"<junk") is None
    match = sim.probe_match(probe_message("urn:uuid:42"))
    assert match is not None and b"<a:RelatesTo>urn:uuid:42</a:RelatesTo>" in match


def test_discovery_rejects_bad_targets() -> None:
    with pytest.raises(ValueError, match="host, port"):
        discover(0.1, targets=[("127.0.0.1", 0)])
    with pytest.raises(ValueError, match="timeout_s"):
        discover(0)


_MULTICAST_SCRIPT = r"""
import socket, subprocess, sys, threading
for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "link", "set", "lo", "multicast", "on"],
            ["ip", "route", "add", "224.0.0.0/4", "dev", "lo"]):
    subprocess.run(cmd, check=True)
from vmscore.cameras.discovery import MULTICAST_ADDRESS, discover
from vmscore.sim.onvif import OnvifSimulator
with OnvifSimulator(password="x", name="Multicast cam") as sim:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("", MULTICAST_ADDRESS[1]))
    group = socket.inet_aton(MULTICAST_ADDRESS[0]) + socket.inet_aton("127.0.0.1")
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group)
    sock.settimeout(3)
    def answer():
        data, source = sock.recvfrom(65536)
        sock.sendto(sim.probe_match(data), source)
    threading.Thread(target=answer, daemon=True).start()
    found = discover(1.0)
    sock.close()
import json
print(json.dumps({"found": [[d.name, d.host, d.port] for d in found], "port": sim.port}))
"""


def test_discovery_multicast_in_a_private_network_namespace() -> None:
    """The default (multicast) path, inside a user + network namespace that only has loopback,
    so nothing leaves the machine."""
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip to make a private network namespace")
    if subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode != 0:
        pytest.skip("user namespaces are not available here")
    done = subprocess.run(
        [unshare, "-rn", sys.executable, "-W", "error", "-c", _MULTICAST_SCRIPT],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["found"] == [["Multicast cam", "127.0.0.1", result["port"]]], done.stdout


def test_discovered_device_helpers_without_xaddrs() -> None:
    bare = DiscoveredDevice("urn:uuid:x", (), ("onvif://www.onvif.org/name/",), (), "10.1.1.1")
    assert (bare.host, bare.port, bare.name, bare.location) == ("10.1.1.1", 80, None, None)
    tls = DiscoveredDevice("e", ("https://[fe80::1]/onvif",), (), (), "10.1.1.1")
    assert (tls.host, tls.port) == ("fe80::1", 443)
