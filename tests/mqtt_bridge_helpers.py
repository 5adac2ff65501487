"""Helpers for tests of the multi-site MQTT layer: a central mosquitto and N site mosquittos on
loopback, each running the configuration shipped in ``deploy/mosquitto/`` (rendered by replacing
its ``@NAME@`` placeholders with loopback ports, test paths, throw-away TLS files and passwords),
and between each site and the central broker a TCP relay through which the site's bridge
connects, so a test can cut and restore one site's link.

Threading: brokers and relays are driven from the test's thread; a relay runs an accept thread
and two threads per connection (one per direction); subscribers record on paho's thread.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import pwd
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from mqtt_helpers import HOST, Broker, Subscriber, make_tls_files, wait_until

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto"
CENTRAL_CONF = DEPLOY / "central.conf"
SITE_CONF = DEPLOY / "site.conf"

PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")

CENTRAL_USER = "vmscore-central"

CENTRAL_ACL = """\
# the central station and operators' tools on the central host
user vmscore-central
topic readwrite vmscore/#
topic read $SYS/broker/connection/#
"""
"""The central broker's ACL file starts with this; docs/mqtt-bridging.md shows the same text."""

SITE_ACL = """\
# the bridge of site @SITE@, whose station is @STATION@
user vmscore-site-@SITE@
topic write vmscore/@SITE@/#
topic read vmscore/@SITE@/cmd/#
topic read vmscore/cmd/#
topic write vmscore/station/@STATION@/#
topic write $SYS/broker/connection/vmscore-bridge-@SITE@/state
"""
"""Then one of these per site (docs/mqtt-bridging.md shows the same text)."""


def bridge_user(site: str) -> str:
    return f"vmscore-site-{site}"


def bridge_client_id(site: str) -> str:
    """The site bridge's client id at the central broker (``remote_clientid``)."""
    return f"vmscore-bridge-{site}"


def link_state_topic(site: str) -> str:
    """Where both brokers publish the site bridge's state, ``1`` up and ``0`` down (retained)."""
    return f"$SYS/broker/connection/{bridge_client_id(site)}/state"


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with every ``@NAME@`` replaced by ``values[NAME]``; a placeholder without a
    value, or a value without a placeholder, is an error (the shipped file and the test would
    have drifted apart)."""
    names = set(PLACEHOLDER.findall(template))
    missing = names - values.keys()
    unused = values.keys() - names
    if missing or unused:
        raise ValueError(f"placeholders without values: {missing}; values without one: {unused}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _process_user() -> str:
    # As root, mosquitto would switch to its own user, which cannot read the test's directory.
    return pwd.getpwuid(os.geteuid()).pw_name


@dataclass
class CentralBroker(Broker):
    """The central broker: ``deploy/mosquitto/central.conf`` rendered. ``port`` (the Broker's
    address) is the plain loopback listener for local clients; ``bridge_port`` the TLS listener
    the site bridges reach. ``sites`` maps each site to its station (for the ACL); ``users`` (the
    password file) gets the central user and one user per site."""

    sites: Mapping[str, str] = field(default_factory=dict)
    bridge_port: int = 0
    central_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    site_passwords: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.persistence = True
        for site in self.sites:
            self.site_passwords.setdefault(site, secrets.token_urlsafe(12))
        self.users = {
            CENTRAL_USER: self.central_password,
            **{bridge_user(s): p for s, p in self.site_passwords.items()},
        }
        if self.tls is None:
            self.tls = make_tls_files(self.workdir / "tls", self.host)

    @property
    def acl_path(self) -> Path:
        return self.workdir / "acl"

    def acl_text(self) -> str:
        blocks = [CENTRAL_ACL]
        blocks += [render(SITE_ACL, {"SITE": s, "STATION": st}) for s, st in self.sites.items()]
        return "\n".join(blocks)

    def config_text(self) -> str:
        assert self.tls is not None
        values = {
            "BRIDGE_ADDRESS": self.host,
            "BRIDGE_PORT": str(self.bridge_port),
            "CERT_FILE": str(self.tls.cert),
            "KEY_FILE": str(self.tls.key),
            "LOCAL_PORT": str(self.port),
            "PASSWORD_FILE": str(self.workdir / "passwd"),
            "ACL_FILE": str(self.acl_path),
            "DATA_DIR": f"{self.workdir / 'data'}/",
            "LOG_FILE": str(self.log_path),
        }
        test_only = f"\n# test only: run as this process's user\nuser {_process_user()}\n"
        return render(CENTRAL_CONF.read_text(), values) + test_only

    def _write_files(self) -> None:
        if self.bridge_port == 0:
            self.bridge_port = _free_port_except(self.port)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.acl_path.write_text(self.acl_text())
        super()._write_files()

    @property
    def bridge_address(self) -> tuple[str, int]:
        return (self.host, self.bridge_port)


@dataclass
class SiteBroker(Broker):
    """One site's broker: ``deploy/mosquitto/site.conf`` rendered, its bridge pointed at
    ``central`` (a relay's address in these tests)."""

    site: str = "north"
    station: str = "north-st1"
    central: tuple[str, int] = (HOST, 0)
    bridge_password: str = ""
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        self.persistence = True

    def config_text(self) -> str:
        assert self.ca_file is not None
        values = {
            "SITE": self.site,
            "STATION": self.station,
            "LOCAL_PORT": str(self.port),
            "CENTRAL_HOST": self.central[0],
            "CENTRAL_PORT": str(self.central[1]),
            "BRIDGE_PASSWORD": self.bridge_password,
            "CA_FILE": str(self.ca_file),
            "DATA_DIR": f"{self.workdir / 'data'}/",
            "LOG_FILE": str(self.log_path),
        }
        test_only = f"\n# test only: run as this process's user\nuser {_process_user()}\n"
        return render(SITE_CONF.read_text(), values) + test_only


def _free_port_except(*taken: int) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port not in taken:
            return port


# --- the relay ----------------------------------------------------------------------------------


class _Pipe:
    """One relayed connection: a thread per direction; either side ending ends both."""

    def __init__(self, down: socket.socket, up: socket.socket, name: str) -> None:
        self.socks = (down, up)
        self._lock = threading.Lock()
        self._exited = 0
        self.threads = [
            threading.Thread(target=self._pump, args=(down, up), name=f"{name}-up", daemon=True),
            threading.Thread(target=self._pump, args=(up, down), name=f"{name}-down", daemon=True),
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        self.shutdown()
        with self._lock:
            self._exited += 1
            last = self._exited == 2
        if last:
            for s in self.socks:
                s.close()

    def shutdown(self) -> None:
        """Ends both directions now (wakes the threads blocked in recv)."""
        for s in self.socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def join(self, timeout: float) -> None:
        for t in self.threads:
            if t is not threading.current_thread():
                t.join(timeout)


class Relay:
    """A TCP relay on a loopback port to ``target``. :meth:`cut` stops accepting and closes every
    relayed connection (both ends see the link go); :meth:`restore` listens again on the same
    port."""

    def __init__(self, target: tuple[str, int], name: str = "relay") -> None:
        self.target = target
        self.name = name
        self.port = 0
        self.accepted = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._pipes: list[_Pipe] = []

    def __iter__(self) -> Iterator[Any]:
        return iter((HOST, self.port))

    @property
    def open(self) -> bool:
        return self._listener is not None

    def start(self) -> Relay:
        with self._lock:
            assert self._listener is None, "relay already listening"
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, self.port))
            sock.listen(16)
            sock.settimeout(0.05)
            self.port = int(sock.getsockname()[1])
            self._listener = sock
            self._accept_thread = threading.Thread(
                target=self._accept_loop, args=(sock,), name=f"{self.name}-accept", daemon=True
            )
            self._accept_thread.start()
        return self

    restore = start

    def _accept_loop(self, listener: socket.socket) -> None:
        n = 0
        while self._listener is listener:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            try:
                up = socket.create_connection(self.target, timeout=5)
            except OSError:
                conn.close()
                continue
            up.settimeout(None)
            for s in (conn, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            n += 1
            pipe = _Pipe(conn, up, f"{self.name}-{n}")
            with self._lock:
                if self._listener is not listener:
                    pipe.shutdown()
                    conn.close()
                    up.close()
                    return
                self._pipes = [p for p in self._pipes if any(t.is_alive() for t in p.threads)]
                self._pipes.append(pipe)
                self.accepted += 1
            pipe.start()

    def cut(self) -> None:
        """The link goes: no new connections, existing ones closed at both ends."""
        with self._lock:
            listener, self._listener = self._listener, None
            thread, self._accept_thread = self._accept_thread, None
            pipes, self._pipes = self._pipes, []
        if thread is not None:
            thread.join(5)
        if listener is not None:
            listener.close()
        for p in pipes:
            p.shutdown()
        for p in pipes:
            p.join(5)

    close = cut


# --- clients ------------------------------------------------------------------------------------


class TimedSubscriber(Subscriber):
    """A Subscriber that also records when (``time.monotonic_ns()``) each message arrived:
    ``times[i]`` belongs to ``messages[i]``."""

    def __init__(self, broker: Broker | tuple[str, int], *args: Any, **kwargs: Any) -> None:
        self.times: list[int] = []
        super().__init__(broker, *args, **kwargs)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        now = time.monotonic_ns()
        with self._cond:
            self.times.append(now)
        super()._on_message(client, userdata, msg)


class Publisher:
    """A paho client that publishes without waiting for each acknowledgement (as a station's
    link does), ``inflight`` messages at most in flight; :meth:`flush` waits for them all."""

    def __init__(
        self, broker: Broker | tuple[str, int], *, inflight: int = 100, window: int = 20000
    ) -> None:
        host, port = broker
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-pub-{secrets.token_hex(6)}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.max_inflight_messages_set(inflight)
        self.window = window
        self._infos: collections.deque[paho.MQTTMessageInfo] = collections.deque()
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        """Queues one message; waits only when ``window`` messages are unacknowledged (MQTT
        numbers them with 16 bits, so paho refuses a number still in use)."""
        if len(self._infos) >= self.window:
            oldest = self._infos.popleft()
            oldest.wait_for_publish(30)
            assert oldest.is_published(), f"publish (mid {oldest.mid}) not acknowledged in 30 s"
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        assert info.rc == paho.MQTT_ERR_SUCCESS, f"publish refused by paho: {info.rc}"
        self._infos.append(info)

    def flush(self, timeout: float = 30.0) -> None:
        """Waits until the broker acknowledged every message published so far."""
        deadline = time.monotonic() + timeout
        for info in self._infos:
            info.wait_for_publish(max(0.001, deadline - time.monotonic()))
            assert info.is_published(), f"publish (mid {info.mid}) not acknowledged in {timeout} s"
        self._infos.clear()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _consume(
    address: tuple[str, int],
    username: str | None,
    password: str | None,
    topic: str,
    count: int,
    timeout: float,
    out: Any,
) -> None:
    """In a child process: receives ``count`` JSON messages on ``topic`` (persistent session, QoS
    1) and sends back ``(seq, t, arrived)`` per message: the payload's ``seq`` and ``t`` (the
    publisher's ``time.monotonic_ns()``, one clock for every process of the machine) and the
    arrival time."""
    import json

    try:
        sub = TimedSubscriber(
            address,
            topic,
            username=username,
            password=password,
            session=f"test-consumer-{os.getpid()}",
        )
    except BaseException as e:
        out.put(("error", repr(e)))
        raise
    try:
        out.put(("ready", None))
        sub.wait_for(topic, count=count, timeout=timeout)
        with sub._cond:
            pairs = list(zip(sub.messages, sub.times, strict=True))
        rows = []
        for m, arrived in pairs:
            if m.topic == topic:
                body = json.loads(m.payload)
                rows.append((int(body["seq"]), int(body.get("t", 0)), arrived))
        out.put(("done", rows))
    except BaseException as e:
        out.put(("error", repr(e)))
    finally:
        sub.close()


class Consumer:
    """A QoS 1 subscriber in its own process (so that the publishers, relays and paho threads of
    the test do not share its interpreter), for measurements; see :func:`_consume`."""

    def __init__(
        self,
        broker: Broker | tuple[str, int],
        topic: str,
        count: int,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        host, port = broker
        ctx = multiprocessing.get_context("spawn")
        self._out = ctx.Queue()
        self.timeout = timeout
        self.proc = ctx.Process(
            target=_consume,
            args=((host, port), username, password, topic, count, timeout, self._out),
            daemon=True,
        )
        self.proc.start()
        kind, value = self._out.get(timeout=30)
        if kind != "ready":
            self.close()
            raise AssertionError(f"consumer process failed: {value}")

    def result(self) -> list[tuple[int, int, int]]:
        """``(seq, sent_ns, arrived_ns)`` for every message, in arrival order."""
        kind, value = self._out.get(timeout=self.timeout + 10)
        if kind != "done":
            raise AssertionError(f"consumer process failed: {value}")
        rows: list[tuple[int, int, int]] = value
        return rows

    def close(self) -> None:
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self._out.close()
        self._out.join_thread()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the topology -------------------------------------------------------------------------------


@dataclass
class BridgedSites:
    """A central broker, site brokers and their relays (the links), all running."""

    central: CentralBroker
    sites: dict[str, SiteBroker]
    relays: dict[str, Relay]

    def central_client(
        self, topics: Iterable[str] | str = (), *, session: str | None = None
    ) -> Subscriber:
        """A client of the central broker (as the central station), subscribed to ``topics``;
        ``session`` names a persistent session (clean start false)."""
        return Subscriber(
            self.central,
            topics,
            username=CENTRAL_USER,
            password=self.central.central_password,
            session=session,
        )

    def central_consumer(self, topic: str, count: int, timeout: float = 60.0) -> Consumer:
        """A :class:`Consumer` of ``count`` messages on ``topic`` at the central broker."""
        return Consumer(
            self.central,
            topic,
            count,
            username=CENTRAL_USER,
            password=self.central.central_password,
            timeout=timeout,
        )

    def site_client(self, site: str, topics: Iterable[str] | str = ()) -> Subscriber:
        """A client of ``site``'s broker (as its station)."""
        return Subscriber(self.sites[site], topics)

    def central_retained(self, topic_filter: str) -> dict[str, bytes]:
        """The retained messages matching ``topic_filter`` at the central broker right now (as
        ``mqtt_helpers.read_retained``, with the central station's credentials)."""
        marker = f"vmscore/test-marker/{secrets.token_hex(8)}"
        with self.central_client([topic_filter, marker]) as sub:
            sub.publish(marker, b"end")
            sub.wait_for(marker, timeout=10)
            return {m.topic: m.payload for m in list(sub.messages) if m.retain}

    def wait_links(
        self, up: bool = True, sites: Iterable[str] | None = None, timeout: float = 15
    ) -> None:
        """Waits until the central broker reports these sites' bridges connected (or not)."""
        want = b"1" if up else b"0"
        names = list(self.sites if sites is None else sites)
        with self.central_client([link_state_topic(s) for s in names]) as sub:
            for s in names:

                def ok(s: str = s) -> bool:
                    got = sub.of(link_state_topic(s))
                    return bool(got) and got[-1].payload == want

                wait_until(ok, timeout, f"site {s}'s link {'up' if up else 'down'} at central")

    def cut(self, site: str) -> None:
        self.relays[site].cut()

    def restore(self, site: str) -> None:
        self.relays[site].restore()

    def stop(self) -> None:
        """Stops the relays, then the site brokers, then the central broker; each is attempted
        even when an earlier one fails."""
        with contextlib.ExitStack() as stack:
            stack.callback(self.central.stop)
            for broker in self.sites.values():
                stack.callback(broker.stop)
            for relay in self.relays.values():
                stack.callback(relay.close)


@contextmanager
def bridged_sites(
    workdir: Path, sites: Sequence[str] = ("north", "south", "east")
) -> Iterator[BridgedSites]:
    """A central broker and one broker per site, each bridged to it through its own relay (the
    station of site ``s`` is named ``s-st1``); returns once every bridge is connected. Everything
    is stopped at the end, whatever happened."""
    central = CentralBroker(workdir / "central", sites={s: f"{s}-st1" for s in sites})
    topo = BridgedSites(central, {}, {})
    try:
        central.start()
        assert central.tls is not None
        for s in sites:
            relay = Relay(central.bridge_address, name=f"relay-{s}")
            topo.relays[s] = relay.start()
            broker = SiteBroker(
                workdir / f"site-{s}",
                site=s,
                station=f"{s}-st1",
                central=(HOST, relay.port),
                bridge_password=central.site_passwords[s],
                ca_file=central.tls.ca,
            )
            topo.sites[s] = broker
            broker.start()
        topo.wait_links(up=True)
        yield topo
    finally:
        topo.stop()
