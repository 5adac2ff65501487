"""Helpers for tests that need a real MQTT broker: mosquitto on a free loopback port with a private
configuration (stopped and restarted on the same port for outage tests, extensible for bridges),
a paho client that records what arrives, and a reader of retained values.

Threading: a Broker is driven from the test's thread; a Subscriber records on paho's thread and
is read from the test's thread under a condition variable.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST = "127.0.0.1"


def mosquitto_exe() -> str | None:
    """The broker (Debian installs it in /usr/sbin, which is not on every PATH)."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def mosquitto_passwd_exe() -> str | None:
    return shutil.which("mosquitto_passwd")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Polls ``predicate`` until it is true; fails the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_tls_files(directory: Path, host: str = HOST) -> TlsFiles:
    """A throw-away CA and a server certificate for ``host`` signed by it (cryptography)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vmscore test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@dataclass
class Broker:
    """One mosquitto process with a private configuration in ``workdir``.

    ``extra_config`` is appended to the generated file as is (a bridge test adds its
    ``connection`` block there, naming another Broker's port); change it between stop() and
    start(). ``host, port = broker`` unpacks the address.
    """

    workdir: Path
    port: int = 0
    host: str = HOST
    users: Mapping[str, str] | None = None
    """None: anonymous clients allowed; else these users only (a mosquitto_passwd file)."""
    persistence: bool = False
    """Keep sessions, queued messages and retained messages across a restart (a file here)."""
    tls: TlsFiles | None = None
    extra_config: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.host, self.port))

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def config_text(self) -> str:
        lines = [
            "# private broker for one test",
            # As root, mosquitto would switch to its own user, which cannot read this directory.
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'false' if self.users is not None else 'true'}",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            f"persistence {'true' if self.persistence else 'false'}",
        ]
        if self.users is not None:
            lines.append(f"password_file {self.workdir / 'passwd'}")
        if self.persistence:
            lines.append(f"persistence_location {self.workdir / 'data'}/")
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.cert}",
                f"keyfile {self.tls.key}",
            ]
        return "\n".join(lines) + "\n" + self.extra_config + "\n"

    def _write_files(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.persistence:
            (self.workdir / "data").mkdir(exist_ok=True)
        if self.users is not None:
            exe = mosquitto_passwd_exe()
            assert exe, "mosquitto_passwd is missing (Debian package mosquitto)"
            path = self.workdir / "passwd"
            path.unlink(missing_ok=True)
            for i, (user, password) in enumerate(self.users.items()):
                args = [exe, "-b", *(["-c"] if i == 0 else []), str(path), user, password]
                subprocess.run(args, check=True, capture_output=True, timeout=10)
        self.config_path.write_text(self.config_text())

    def start(self, timeout: float = 10.0) -> Broker:
        """Starts the broker (on a free port the first time, on the same port after a stop) and
        returns once it accepts TCP connections."""
        exe = mosquitto_exe()
        assert exe, "mosquitto is missing (Debian package mosquitto)"
        assert self.proc is None, "broker already running"
        choose = self.port == 0
        for _attempt in range(3):
            if choose:
                self.port = free_port()
            self._write_files()
            self.proc = subprocess.Popen(
                [exe, "-c", str(self.config_path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if self._wait_accepting(timeout):
                return self
            err = self._reap()
            if not (choose and "in use" in (err + self.log())):
                raise AssertionError(
                    f"mosquitto did not start on {self.host}:{self.port}: {err}\n{self.log()}"
                )
        raise AssertionError("mosquitto found no free port in 3 attempts")

    def _wait_accepting(self, timeout: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def _reap(self) -> str:
        proc, self.proc = self.proc, None
        if proc is None:
            return ""
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=10)
        return err.decode(errors="replace")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM by PID (a persistent broker saves its state), SIGKILL if it lingers."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        self._reap()

    def kill(self) -> None:
        """SIGKILL by PID: a broker crash (nothing saved)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self._reap()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@contextmanager
def mosquitto(workdir: Path, **kwargs: Any) -> Iterator[Broker]:
    """A running Broker (see its fields for the options), stopped at the end."""
    broker = Broker(workdir, **kwargs)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Subscriber:
    """A plain paho client in the test (MQTT 5): subscribes to ``topics`` and records every
    message. ``session`` names a persistent session (kept by the broker while disconnected)."""

    def __init__(
        self,
        broker: Broker | tuple[str, int],
        topics: Iterable[str] | str = "#",
        *,
        username: str | None = None,
        password: str | None = None,
        session: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        host, port = broker
        self._cond = threading.Condition()
        self.messages: list[Message] = []
        self._subscribed = threading.Event()
        self._topics = [topics] if isinstance(topics, str) else list(topics)
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=session or f"test-{uuid.uuid4().hex[:12]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        props = None
        if session is not None:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 600
        self.client.connect(host, port, keepalive=30, clean_start=session is None, properties=props)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise AssertionError(f"test subscriber got no SUBACK from {host}:{port}")

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any):
        if rc.is_failure:
            return
        if self._topics:
            client.subscribe([(t, 1) for t in self._topics])
        else:
            self._subscribed.set()

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, rcs: Any, props: Any):
        self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Message(msg.topic, bytes(msg.payload), msg.qos, msg.retain))
            self._cond.notify_all()

    def of(self, topic: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(
        self,
        topic: str,
        payload: bytes | Callable[[bytes], bool] | None = None,
        timeout: float = 10.0,
        count: int = 1,
    ) -> list[Message]:
        """Waits until ``count`` messages on ``topic`` (matching ``payload`` when given) arrived;
        returns them."""

        def matching() -> list[Message]:
            out = []
            for m in self.messages:
                if m.topic != topic:
                    continue
                if payload is None or (
                    payload(m.payload) if callable(payload) else m.payload == payload
                ):
                    out.append(m)
            return out

        deadline = time.monotonic() + timeout
        with self._cond:
            while len(found := matching()) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(m.topic, m.payload[:80]) for m in self.messages[-10:]]
                    raise AssertionError(
                        f"{count} message(s) on {topic!r} ({payload!r}) not seen in {timeout} s; "
                        f"got {len(found)}; last messages: {seen}"
                    )
                self._cond.wait(left)
            return found

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published(), f"test publish to {topic} not acknowledged"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()
        # No reference cycle through bound methods: paho's __del__ then closes its socket pair
        # as soon as this object goes (loop_stop leaves it open).
        self.client.on_connect = self.client.on_subscribe = self.client.on_message = None

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_retained(broker: Broker | tuple[str, int], topic_filter: str) -> dict[str, bytes]:
    """The retained messages matching ``topic_filter`` right now. Deterministic: after
    subscribing, the reader publishes a marker to itself; the broker sends the retained messages
    before it, so when the marker arrives they all have."""
    marker = f"test-marker/{uuid.uuid4().hex}"
    with Subscriber(broker, [topic_filter, marker]) as sub:
        sub.publish(marker, b"end")
        sub.wait_for(marker, timeout=10)
        with sub._cond:
            return {m.topic: m.payload for m in sub.messages if m.retain and m.topic != marker}
