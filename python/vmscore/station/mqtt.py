"""The station's MQTT link: state and events out, operator commands in (paho-mqtt 2.x, MQTT 5 or
3.1.1), with a topic layout in the style of Frigate's.

Everything a site owns lives under ``<prefix>/<site>/``, so one pattern per site carries a whole
site to a central broker (on the site's broker: ``topic <prefix>/<site>/# out 1`` and
``topic <prefix>/<site>/cmd/# in 1``). The station's own topics live under
``<prefix>/station/<station>/``; bridge that pattern too if the central side should see the
station's last will.

=================================================  ======  ===  ===================================
topic                                              retain  qos  payload
=================================================  ======  ===  ===================================
``<prefix>/station/<station>/available``           yes     1    ``online`` after every connect,
                                                                ``stopped`` on a clean stop,
                                                                ``offline``: the last will
``<prefix>/station/<station>/stats``               yes     cfg  JSON from ``publish_stats``
``<prefix>/station/<station>/events``              no      cfg  JSON events that have no site
``<prefix>/station/<station>/alarms``              no      1    alarms that have no site (as
                                                                ``<prefix>/<site>/alarms``)
``<prefix>/<site>/available``                      yes     1    ``online`` / ``stopped``
``<prefix>/<site>/station``                        yes     1    the station serving the site
``<prefix>/<site>/events``                         no      cfg  every event of the site as JSON
                                                                (``StationEvent.to_json()``)
``<prefix>/<site>/alarms``                         no      1    JSON ``{"type": "new" | "update" |
                                                                "end", "station": ..., "seq": int,
                                                                "before": {...} | null,
                                                                "after": {...}}``
``<prefix>/<site>/info``                           yes     1    JSON ``{"display_name", "address",
                                                                "armed"}``
``<prefix>/<site>/cameras``                        yes     1    JSON list: the site's cameras
                                                                (name, display name, group,
                                                                streams, codec, size, online)
``<prefix>/<site>/recordings``                     yes     1    JSON per camera: first and last
                                                                recorded time, bytes, segments
``<prefix>/<site>/<camera>/motion``                yes     cfg  ``ON`` while any motion (in any
                                                                zone or the whole image), ``OFF``
``<prefix>/<site>/<camera>/zones/<zone>/motion``   yes     cfg  ``ON`` / ``OFF`` for one zone
``<prefix>/<site>/<camera>/tamper``                yes     cfg  JSON ``{"active": bool, "flags":
                                                                [...], "at_us": int}``
``<prefix>/<site>/<camera>/status``                yes     cfg  ``online`` / ``offline``
``<prefix>/<site>/<camera>/state``                 yes     cfg  JSON health (fps, bitrate, online)
``<prefix>/<site>/cmd/<name>``                     in      cfg  a command for one site (JSON)
``<prefix>/cmd/<name>``                            in      cfg  a command for every site (JSON)
=================================================  ======  ===  ===================================

``cfg`` is ``MqttSettings.qos`` (1 by default); "in" topics are the station's subscriptions.

Commands (JSON objects of at most 64 KiB; unknown fields are refused):

- ``ack``, ``hold``: ``alarm_id``, ``user``, optional ``comment``; ``assign``: also ``to`` (the
  user assigned); ``close``: optional ``category``; ``comment``: ``comment`` required.
- ``arm`` / ``disarm``: optional ``user`` and ``comment`` (an empty payload is fine); on
  ``<prefix>/cmd/`` they mean every site.
- ``event``: an external event, ``name`` (letters, digits, ``_.-``), optional ``camera`` and
  ``data`` (an object).

Commands are delivered at least once (QoS 1 may repeat one), so handlers must be idempotent
(acknowledging an acknowledged alarm changes nothing). A command published with the retain flag
is acted on when it is published, but refused when the broker replays it to a new subscription
(it would otherwise run again after every reconnect). The station's session is persistent
(``session_expiry_s``, one hour by default): commands published while it is disconnected, or
while its site's bridge is cut, wait at the broker and are acted on when it returns. With
``session_expiry_s: 0`` the session is clean and such commands are lost.

Availability: one connection has one last will, so only the station's ``available`` topic turns
``offline`` when the process dies; a site's ``available`` keeps its last value. A consumer watches
both: a site is up when ``<prefix>/<site>/available`` and the ``available`` topic of the station
named in ``<prefix>/<site>/station`` are both ``online``. Across a bridge, the bridge's own
notification topic tells whether the site's broker is reachable at all.

Names in topics: a site, camera, zone or station name becomes one topic level by percent-encoding
(UTF-8 bytes as ``%XX``) the characters MQTT gives a meaning to or refuses: ``/``, ``+``, ``#``,
``%`` itself, NUL and other control characters, Unicode non-characters and lone surrogates. The
site names ``station`` and ``cmd`` and the camera name ``cmd`` would collide with the station's
topics, so their first letter is encoded (``cmd`` becomes ``%63md``). Standard percent-decoding
(``urllib.parse.unquote``) gives the name back.

Delivery while the broker is unreachable: retained state topics keep only their latest value (no
queue) and are published again after every connect, so a broker restarted without persistence
gets its retained state back. Events, alarms and raw messages with QoS 1 or 2 wait in paho's
outgoing queue until the broker acknowledges them, at most ``max_queued`` of them; beyond it, and
for QoS 0 while disconnected, a message is dropped and counted in ``stats()["dropped"]``.
Availability and state never count against that bound.

Threading: every public method is thread-safe and never blocks on the network (``stop`` waits at
most its timeout). paho runs its own network thread (``loop_start``); ``on_command`` is called on
that thread, so it must return quickly (hand the command to the station's own thread) and must
not call :meth:`MqttLink.stop`. Exceptions it raises are logged and counted, never passed to paho.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from vmscore.rules.models import Name
from vmscore.station.events import StationEvent

__all__ = [
    "COMMANDS",
    "MAX_COMMAND_BYTES",
    "RESERVED_CAMERA_NAMES",
    "RESERVED_SITE_NAMES",
    "MqttCommand",
    "MqttLink",
    "MqttSettings",
    "check_topic",
    "connect_async",
    "make_client",
    "topic_segment",
]

logger = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 64 * 1024
"""Largest command payload accepted; larger ones are counted as bad and ignored."""

_MAX_PACKET_BYTES = 1 << 20
"""MQTT 5 Maximum Packet Size announced to the broker: it drops anything larger for us, so a
hostile publisher cannot make paho buffer huge packets; between 64 KiB and this, a command
arrives and is refused with a reason."""

RESERVED_SITE_NAMES = frozenset({"station", "cmd"})
RESERVED_CAMERA_NAMES = frozenset({"cmd"})


# --- topics -------------------------------------------------------------------------------------


def _needs_escape(ch: str) -> bool:
    cp = ord(ch)
    return (
        ch in "/+#%"
        or cp < 0x20
        or 0x7F <= cp <= 0x9F
        or 0xD800 <= cp <= 0xDFFF
        or 0xFDD0 <= cp <= 0xFDEF
        or (cp & 0xFFFE) == 0xFFFE
    )


def _escape(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))


def topic_segment(name: str, *, reserved: frozenset[str] = frozenset()) -> str:
    """One topic level made from a name (see the module docstring); reversible and injective, so
    two names never share a topic. A name in ``reserved`` gets its first letter encoded."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a topic level needs a non-empty name, not {name!r}")
    out = "".join(_escape(c) if _needs_escape(c) else c for c in name)
    if out in reserved:
        out = _escape(out[0]) + out[1:]
    return out


def check_topic(topic: str) -> None:
    """Raises ValueError unless ``topic`` can be published as is: one topic (no wildcards), not a
    broker topic (``$``), within MQTT's length, and free of characters a broker refuses (it would
    drop the whole connection for them)."""
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"an MQTT topic is a non-empty string, not {topic!r}")
    if "+" in topic or "#" in topic:
        raise ValueError(f"MQTT topic {topic!r} has a wildcard (+ or #): publish to one topic")
    if topic.startswith("$"):
        raise ValueError(f"MQTT topic {topic!r} starts with '$', which brokers keep for themselves")
    bad = [c for c in topic if c not in "/%" and _needs_escape(c)]
    if bad:
        raise ValueError(f"MQTT topic {topic!r} has characters brokers refuse: {bad[:3]!r}")
    if len(topic.encode("utf-8")) > 65535:
        raise ValueError("MQTT topic is longer than 65535 bytes")


# --- settings -----------------------------------------------------------------------------------


class MqttSettings(BaseModel):
    """How the station reaches its broker (``mqtt:`` in the station's configuration)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = Field(default=None, min_length=1, max_length=256)
    """None: ``vmscore-<station>``. Two clients with one id take the connection from each other."""
    topic_prefix: str = "vmscore"
    keepalive_s: int = Field(default=30, ge=5, le=65535)
    tls: bool = False
    ca_file: Path | None = None
    """The CA that signed the broker's certificate; None: the system's CAs."""
    qos: Literal[0, 1, 2] = 1
    """For state, events and command subscriptions (availability and alarms always use 1)."""
    max_queued: int = Field(default=10000, ge=1, le=60000)
    """Events, alarms and raw messages waiting for the broker's acknowledgement (and retained
    state topics kept); beyond it new ones are dropped. At most 60000: MQTT numbers the
    messages in flight with 16 bits."""
    protocol: Literal["5", "3.1.1"] = "5"
    reconnect_min_s: int = Field(default=1, ge=1, le=3600)
    reconnect_max_s: int = Field(default=30, ge=1, le=3600)
    """Reconnect attempts back off from min to max, doubling."""
    session_expiry_s: int = Field(default=3600, ge=0, le=2**32 - 1)
    """How long the broker keeps the station's session (its subscriptions and the commands
    queued for it) while the station is away; 0: a clean session, nothing is kept. With MQTT
    3.1.1 any value but 0 keeps the session until the broker's persistent_client_expiration."""
    ha_discovery: bool = False
    """Home Assistant MQTT discovery: not implemented yet, so true is refused."""

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v or v.startswith("/") or v.endswith("/") or "//" in v:
            raise ValueError(
                f"topic_prefix {v!r} must be non-empty, without a leading or trailing '/' "
                "and without empty levels"
            )
        check_topic(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        if self.password is not None and self.username is None:
            raise ValueError("mqtt password given without a username")
        if self.ca_file is not None and not self.tls:
            raise ValueError("mqtt ca_file is only used with tls: true")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("mqtt reconnect_max_s is below reconnect_min_s")
        if self.ha_discovery:
            raise ValueError("mqtt ha_discovery (Home Assistant discovery) is not implemented yet")
        return self


# --- commands -----------------------------------------------------------------------------------

_User = Annotated[str, Field(min_length=1, max_length=100)]
_Text = Annotated[str, Field(max_length=4000)]
_AlarmId = Annotated[int, Field(ge=0)] | Annotated[str, Field(min_length=1, max_length=128)]


class _Command(BaseModel):
    # strict: a JSON string "5" is not the number 5 and true is not 1; refusing is clearer than
    # guessing for commands that change alarms or arm a site.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _AlarmCommand(_Command):
    alarm_id: _AlarmId
    user: _User
    comment: _Text | None = None


class AckCommand(_AlarmCommand):
    pass


class HoldCommand(_AlarmCommand):
    pass


class AssignCommand(_AlarmCommand):
    to: _User


class CloseCommand(_AlarmCommand):
    category: Annotated[str, Field(min_length=1, max_length=100)] | None = None


class CommentCommand(_AlarmCommand):
    comment: Annotated[str, Field(min_length=1, max_length=4000)]


class ArmCommand(_Command):
    user: _User | None = None
    comment: _Text | None = None


class EventCommand(_Command):
    name: Name
    camera: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    data: dict[str, Any] = Field(default_factory=dict)


COMMANDS: dict[str, type[_Command]] = {
    "ack": AckCommand,
    "assign": AssignCommand,
    "hold": HoldCommand,
    "close": CloseCommand,
    "comment": CommentCommand,
    "arm": ArmCommand,
    "disarm": ArmCommand,
    "event": EventCommand,
}
"""Command names and the model each payload must satisfy."""


@dataclass(frozen=True)
class MqttCommand:
    """A validated command: ``site`` None means every site (``<prefix>/cmd/<name>``); ``payload``
    has every field of the command's model, defaults filled in."""

    site: str | None
    name: str
    payload: dict[str, Any]
    topic: str


class _BadCommandError(Exception):
    pass


def _parse_payload(name: str, raw: bytes) -> dict[str, Any]:
    model = COMMANDS.get(name)
    if model is None:
        raise _BadCommandError(f"unknown command {name!r} (known: {', '.join(sorted(COMMANDS))})")
    if len(raw) > MAX_COMMAND_BYTES:
        raise _BadCommandError(f"payload of {len(raw)} bytes is over {MAX_COMMAND_BYTES}")
    if raw.strip():
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            raise _BadCommandError(f"payload is not JSON: {e}") from None
    else:
        data = {}
    if not isinstance(data, dict):
        raise _BadCommandError(f"payload is a JSON {type(data).__name__}, not an object")
    try:
        return model.model_validate(data).model_dump()
    except ValidationError as e:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}"
            for err in e.errors()[:5]
        )
        raise _BadCommandError(reasons) from None


# --- payloads -----------------------------------------------------------------------------------


def _json_default(o: object) -> object:
    if isinstance(o, Mapping):
        return dict(o)
    raise TypeError(f"{type(o).__name__} is not JSON")


def _dumps(obj: object) -> bytes:
    try:
        text = json.dumps(
            obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
        )
        return text.encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ValueError(f"cannot send as JSON: {e}") from e


class _ClosingSSLSocket(ssl.SSLSocket):
    """paho 2.2 leaves the socket open when a TLS handshake fails (an untrusted certificate);
    closing it here keeps every failed reconnect attempt from leaving a socket to the collector."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


# --- connections (the station's link and the central station's consumer) ------------------------


def make_client(settings: MqttSettings, client_id: str) -> paho.Client:
    """A paho client for ``settings``: protocol, session kind, credentials, TLS and reconnect
    back-off; callbacks are the caller's."""
    s = settings
    v5 = s.protocol == "5"
    kwargs: dict[str, Any] = {} if v5 else {"clean_session": s.session_expiry_s == 0}
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        reconnect_on_failure=True,
        **kwargs,
    )
    client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)
    if s.username is not None:
        client.username_pw_set(s.username, s.password.get_secret_value() if s.password else None)
    if s.tls:
        try:
            context = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            raise ValueError(f"mqtt TLS setup failed (ca_file {s.ca_file}): {e}") from e
        context.sslsocket_class = _ClosingSSLSocket
        client.tls_set_context(context)
    return client


def connect_async(client: paho.Client, settings: MqttSettings) -> None:
    """Starts connecting ``client`` (made by :func:`make_client`) in the background: MQTT 5
    announces the largest packet it takes and the session's expiry; a session expiry of 0 asks
    for a clean start."""
    s = settings
    properties = None
    kwargs: dict[str, Any] = {}
    if s.protocol == "5":
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.MaximumPacketSize = _MAX_PACKET_BYTES
        if s.session_expiry_s:
            properties.SessionExpiryInterval = s.session_expiry_s
        kwargs["clean_start"] = s.session_expiry_s == 0
    client.connect_async(s.host, s.port, keepalive=s.keepalive_s, properties=properties, **kwargs)


_STAT_NAMES = ("published", "dropped", "commands", "bad_commands", "command_errors", "reconnects")


# --- the link -----------------------------------------------------------------------------------


class MqttLink:
    """The station's connection to one broker. ``start()`` returns at once and the link keeps
    (re)connecting in the background, so the station runs whether or not the broker does.

    ``sites`` names the sites this station serves (called by :meth:`start` and
    :meth:`refresh_sites`, on the caller's thread); ``on_command`` receives valid commands on
    paho's network thread (see the module docstring).
    """

    def __init__(
        self,
        settings: MqttSettings,
        station: str,
        *,
        sites: Callable[[], Iterable[str]],
        on_command: Callable[[MqttCommand], None],
    ) -> None:
        self._settings = settings
        self._station = station
        self._prefix = settings.topic_prefix
        self._station_base = f"{self._prefix}/station/{topic_segment(station)}"
        self._station_available = f"{self._station_base}/available"
        self._sites_fn = sites
        self._on_command = on_command

        # _lock guards the fields below. Lock order: _lock or _queue_lock, then paho's own
        # locks (publish and subscribe take them); paho calls on_publish with its locks held, so
        # on_publish takes only the leaf locks _pending_lock and _stats_lock, held for a set or
        # counter update and nothing else.
        self._lock = threading.Lock()
        self._queue_lock = threading.Lock()  # makes check-and-queue of bounded messages atomic
        self._pending_lock = threading.Lock()
        self._pending: set[int] = set()  # message ids of bounded messages not acknowledged yet
        self._stats_lock = threading.Lock()
        self._stats = dict.fromkeys(_STAT_NAMES, 0)
        self._sites: dict[str, str] = {}  # topic level -> site name
        self._retained: dict[str, bytes] = {}  # retained state topic -> latest payload
        self._motion: dict[tuple[str, str], set[str | None]] = {}  # active zones (None: image)
        self._tamper: dict[tuple[str, str], set[str]] = {}  # active tamper flags
        self._ready = False  # subscribed and retained state published on this connection
        self._ready_event = threading.Event()
        self._sub_mid: int | None = None
        self._connects = 0
        self._phase: Literal["new", "running", "stopped"] = "new"
        self._unreachable_logged = False
        self._net_thread: int | None = None
        self._client = self._make_client()

    def _make_client(self) -> paho.Client:
        client = make_client(self._settings, self._settings.client_id or f"vmscore-{self._station}")
        client.will_set(self._station_available, b"offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    # --- life cycle ---

    def start(self) -> None:
        """Starts connecting in the background and returns at once (the broker may be down)."""
        with self._lock:
            if self._phase != "new":
                raise RuntimeError("an MqttLink starts once")
            self._phase = "running"
        try:
            self.refresh_sites()
        except BaseException:
            with self._lock:
                self._phase = "new"
            raise
        s = self._settings
        connect_async(self._client, s)
        self._client.loop_start()
        logger.info("MQTT link of station %r connecting to %s:%d", self._station, s.host, s.port)

    def stop(self, timeout: float = 5.0) -> None:
        """Publishes ``stopped`` on the availability topics (a clean disconnect does not fire the
        last will), waits for the broker to take them, disconnects and ends paho's thread; waits
        at most ``timeout`` seconds in all. If the broker is unreachable at that moment, its last
        will has already said ``offline``. Publishing afterwards drops and counts."""
        deadline = time.monotonic() + timeout
        infos: list[paho.MQTTMessageInfo] = []
        with self._lock:
            if self._phase != "running":
                self._phase = "stopped"
                return
            if self._net_thread == threading.get_ident():  # it would join itself
                raise RuntimeError("MqttLink.stop() called from on_command (paho's thread)")
            self._phase = "stopped"
            topics = [self._station_available] + [self._site_available(s) for s in self._sites]
            for topic in topics:
                self._retained[topic] = b"stopped"
                if self._ready:
                    info = self._send(topic, b"stopped", 1, True)
                    if info is not None:
                        infos.append(info)
        for info in infos:
            remaining = deadline - time.monotonic() - timeout / 2
            if remaining <= 0:
                break
            try:
                info.wait_for_publish(remaining)
            except (RuntimeError, ValueError):
                break
        self._client.disconnect()
        # loop_stop() joins without a timeout; a helper thread keeps stop() bounded even if
        # paho's thread is stuck in a TCP connect to an unreachable host.
        joiner = threading.Thread(target=self._client.loop_stop, name="mqtt-stop", daemon=True)
        joiner.start()
        joiner.join(max(0.5, deadline - time.monotonic()))
        if joiner.is_alive():
            logger.warning("MQTT network thread still running %.1f s after stop()", timeout)
        self._ready_event.clear()
        # The callbacks are bound methods: without them the client no longer refers back to
        # the link, so dropping the link frees the client at once and paho's __del__ closes its
        # wake-up socket pair (loop_stop leaves it open; in a cycle the garbage collector might
        # finalise the sockets unclosed first).
        client = self._client
        client.on_connect = client.on_connect_fail = client.on_disconnect = None
        client.on_subscribe = client.on_publish = client.on_message = None
        logger.info("MQTT link of station %r stopped", self._station)

    def __enter__(self) -> MqttLink:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        """Connected, subscribed and availability published."""
        return self._ready_event.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._ready_event.wait(timeout)

    def stats(self) -> dict[str, int]:
        """Counters since construction: ``published`` (acknowledged by the broker, or written
        for QoS 0), ``dropped``, ``commands`` (handed to on_command), ``bad_commands``,
        ``command_errors`` (on_command raised), ``reconnects``; and ``queued``, the events,
        alarms and raw messages waiting for the broker now."""
        with self._stats_lock:
            out = dict(self._stats)
        with self._pending_lock:
            out["queued"] = len(self._pending)
        return out

    def refresh_sites(self) -> None:
        """Reads ``sites()`` again: new sites are subscribed and announced ``online``; removed
        ones are unsubscribed, announced ``stopped`` and their retained state forgotten."""
        new = {topic_segment(n, reserved=RESERVED_SITE_NAMES): n for n in self._sites_fn()}
        with self._lock:
            old = self._sites
            added = [seg for seg in new if seg not in old]
            removed = [seg for seg in old if seg not in new]
            self._sites = new
            for seg in removed:
                base = f"{self._prefix}/{seg}/"
                for topic in [t for t in self._retained if t.startswith(base)]:
                    del self._retained[topic]
                site = old[seg]
                for tracker in (self._motion, self._tamper):
                    for key in [k for k in tracker if k[0] == site]:
                        del tracker[key]
                if self._phase == "running":
                    # Queued in order even while disconnected; not kept as state, so a later
                    # reconnect cannot overwrite another station that took the site over.
                    self._send(self._site_available(seg), b"stopped", 1, True)
            if not self._ready:
                return  # the next connection subscribes and announces the current sites
            if removed:
                self._client.unsubscribe([self._site_commands(seg) for seg in removed])
            if added:
                topics: list[tuple[str, int]] = [
                    (self._site_commands(seg), self._settings.qos) for seg in added
                ]
                self._client.subscribe(topics)
                for seg in added:
                    self._announce_site(seg)

    # --- publishing ---

    def publish_event(self, event: StationEvent) -> None:
        """Every event as JSON on the site's ``events`` topic; motion, tamper and camera status
        also as retained state on the camera's topics."""
        payload = _dumps(event.to_json())
        if event.site:
            site_base = f"{self._prefix}/{topic_segment(event.site, reserved=RESERVED_SITE_NAMES)}"
        else:
            site_base = self._station_base
        if event.site and event.camera:
            cam = f"{site_base}/{topic_segment(event.camera, reserved=RESERVED_CAMERA_NAMES)}"
            key = (event.site, event.camera)
            with self._lock:
                if event.kind in ("motion", "motion_end"):
                    self._motion_changed(cam, key, event)
                elif event.kind in ("tamper", "tamper_end"):
                    flags = self._tamper.setdefault(key, set())
                    if event.kind == "tamper":
                        flags.add(event.detail)
                    else:
                        flags.discard(event.detail)
                    state = {"active": bool(flags), "flags": sorted(flags), "at_us": event.at_us}
                    if not flags:
                        del self._tamper[key]
                    self._put_state(f"{cam}/tamper", _dumps(state))
                elif event.kind in ("camera_offline", "camera_online"):
                    status = b"offline" if event.kind == "camera_offline" else b"online"
                    self._put_state(f"{cam}/status", status)
        self._send_message(f"{site_base}/events", payload, self._settings.qos, False)

    def _motion_changed(self, cam: str, key: tuple[str, str], event: StationEvent) -> None:
        zones = self._motion.setdefault(key, set())
        if event.kind == "motion":
            zones.add(event.zone)
        else:
            zones.discard(event.zone)
        if event.zone is not None:
            zone = topic_segment(event.zone)
            self._put_state(f"{cam}/zones/{zone}/motion", b"ON" if event.zone in zones else b"OFF")
        camera_state = b"ON" if zones else b"OFF"
        if not zones:
            del self._motion[key]
        if self._retained.get(f"{cam}/motion") != camera_state:
            self._put_state(f"{cam}/motion", camera_state)

    def publish_alarm(
        self,
        site: str | None,
        change: Literal["new", "update", "end"],
        alarm: Mapping[str, Any],
        before: Mapping[str, Any] | None = None,
        *,
        seq: int | None = None,
    ) -> None:
        """An alarm's change on ``<prefix>/<site>/alarms``, or for an alarm of no site (a disk,
        the station itself) on ``<prefix>/station/<station>/alarms`` (QoS 1, not retained).
        ``seq``: the change's number in the station's alarm change log, which grows across all
        its alarms and survives restarts. QoS 1 may deliver a change twice and a bridge may
        reorder one, so a consumer applies an alarm's state only when its ``version`` is newer,
        and a jump in ``seq`` tells it that it missed changes (``GET /api/alarm-changes``)."""
        if change not in ("new", "update", "end"):
            raise ValueError(f"alarm change {change!r} is not one of new, update, end")
        if site is not None:
            topic = f"{self._prefix}/{topic_segment(site, reserved=RESERVED_SITE_NAMES)}/alarms"
        else:
            topic = f"{self._station_base}/alarms"
        payload = _dumps(
            {
                "type": change,
                "station": self._station,
                "seq": seq,
                "before": before,
                "after": alarm,
            }
        )
        self._send_message(topic, payload, 1, False)

    def publish_camera_state(self, site: str, camera: str, state: Mapping[str, Any]) -> None:
        """A camera's health (fps, bitrate, online, ...) as retained JSON."""
        topic = (
            f"{self._prefix}/{topic_segment(site, reserved=RESERVED_SITE_NAMES)}/"
            f"{topic_segment(camera, reserved=RESERVED_CAMERA_NAMES)}/state"
        )
        payload = _dumps(state)
        with self._lock:
            self._put_state(topic, payload)

    def publish_site_state(
        self, site: str, name: Literal["info", "cameras", "recordings"], state: object
    ) -> None:
        """The site's description and arming, camera inventory or recording summary as retained
        JSON (QoS 1); published only when it changed."""
        if name not in ("info", "cameras", "recordings"):
            raise ValueError(f"site state {name!r} is not info, cameras or recordings")
        topic = f"{self._prefix}/{topic_segment(site, reserved=RESERVED_SITE_NAMES)}/{name}"
        payload = _dumps(state)
        with self._lock:
            if self._retained.get(topic) != payload:
                self._put_state(topic, payload, qos=1)

    def publish_stats(self, stats: Mapping[str, Any]) -> None:
        """The station's statistics as retained JSON (the latest value only is kept)."""
        payload = _dumps(stats)
        with self._lock:
            self._put_state(f"{self._station_base}/stats", payload)

    def publish(
        self, topic: str, payload: str | bytes, qos: Literal[0, 1, 2] = 1, retain: bool = False
    ) -> None:
        """A raw message (the rules' ``mqtt`` action), queued like events; not kept as state."""
        check_topic(topic)
        if qos not in (0, 1, 2):
            raise ValueError(f"MQTT QoS {qos!r} is not 0, 1 or 2")
        if isinstance(payload, str):
            data = payload.encode("utf-8")
        elif isinstance(payload, bytes | bytearray):
            data = bytes(payload)
        else:
            raise ValueError(f"MQTT payload must be str or bytes, not {type(payload).__name__}")
        self._send_message(topic, data, qos, retain)

    # --- internals (publishing) ---

    def _site_available(self, seg: str) -> str:
        return f"{self._prefix}/{seg}/available"

    def _site_commands(self, seg: str) -> str:
        return f"{self._prefix}/{seg}/cmd/+"

    def _announce_site(self, seg: str) -> None:
        """With _lock held: the site's availability and station as retained state."""
        self._put_state(self._site_available(seg), b"online", qos=1, force=True)
        self._put_state(f"{self._prefix}/{seg}/station", self._station.encode(), qos=1, force=True)

    def _put_state(
        self, topic: str, payload: bytes, *, qos: int | None = None, force: bool = False
    ) -> None:
        """With _lock held: remembers a retained state and publishes it if connected. While not
        connected only the latest value is kept; the next connection publishes it."""
        if self._phase == "stopped":
            self._count("dropped")
            return
        if (
            topic not in self._retained
            and not force
            and len(self._retained) >= self._settings.max_queued
        ):
            self._count("dropped")
            logger.warning(
                "MQTT retained state %s dropped: %d topics kept", topic, len(self._retained)
            )
            return
        self._retained[topic] = payload
        if self._ready:
            self._send(topic, payload, self._settings.qos if qos is None else qos, True)

    def _send_message(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Events, alarms, raw messages: queued (QoS 1 and 2) up to ``max_queued``. Retained
        state and availability do not count against the bound, so a full queue of events never
        keeps the station from announcing itself online."""
        if self._phase == "stopped":
            self._count("dropped")
            return
        if qos == 0:
            self._send(topic, payload, qos, retain)
            return
        with self._queue_lock:
            with self._pending_lock:
                full = len(self._pending) >= self._settings.max_queued
            if full:
                self._count("dropped")
                return
            info = self._send(topic, payload, qos, retain)
            if info is None:
                return
            with self._pending_lock:
                self._pending.add(info.mid)
            # The acknowledgement may have come before the add (on_publish found no id then).
            # is_published() raises for messages queued while disconnected (rc NO_CONN); those
            # cannot have been acknowledged yet.
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS and info.is_published():
                with self._pending_lock:
                    self._pending.discard(info.mid)

    def _send(
        self, topic: str, payload: bytes, qos: int, retain: bool
    ) -> paho.MQTTMessageInfo | None:
        """Hands a message to paho; returns its info if paho took it (sent or queued)."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        rc = info.rc
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (
            rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos > 0
        ):
            return info
        self._count("dropped")
        if rc != MQTTErrorCode.MQTT_ERR_NO_CONN:
            logger.warning("MQTT publish to %s failed: %s", topic, paho.error_string(rc))
        return None

    def _count(self, name: str, n: int = 1) -> None:
        with self._stats_lock:
            self._stats[name] += n

    # --- paho callbacks (paho's network thread; nothing may raise into paho) ---

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._net_thread = threading.get_ident()
        if reason.is_failure:
            logger.error(
                "MQTT broker %s:%d refused station %r: %s",
                self._settings.host,
                self._settings.port,
                self._station,
                reason,
            )
            return
        qos = self._settings.qos
        with self._lock:
            self._connects += 1
            if self._connects > 1:
                self._count("reconnects")
            self._unreachable_logged = False
            topics: list[tuple[str, int]] = [(f"{self._prefix}/cmd/+", qos)]
            topics += [(self._site_commands(seg), qos) for seg in self._sites]
            _, self._sub_mid = client.subscribe(topics)
        logger.info("MQTT link of station %r connected", self._station)

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            logger.error("MQTT broker refused command subscriptions: %s", ", ".join(refused))
        with self._lock:
            if mid != self._sub_mid:
                return
            # Only now, after paho re-sent what it had queued from the previous connection (it
            # does so right after on_connect), so the latest state goes out after older copies.
            self._sub_mid = None
            self._ready = True
            self._retained[self._station_available] = b"online"
            self._send(self._station_available, b"online", 1, True)
            for seg in self._sites:
                self._announce_site(seg)
            qos = self._settings.qos
            skip = {self._station_available}
            skip.update(self._site_available(seg) for seg in self._sites)
            skip.update(f"{self._prefix}/{seg}/station" for seg in self._sites)
            for topic, payload in self._retained.items():
                if topic not in skip:
                    self._send(topic, payload, qos, True)
        self._ready_event.set()

    def _on_connect_fail(self, client: paho.Client, userdata: object) -> None:
        if not self._unreachable_logged:
            self._unreachable_logged = True
            logger.warning(
                "MQTT broker %s:%d unreachable; retrying in the background",
                self._settings.host,
                self._settings.port,
            )

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            self._ready = False
            self._sub_mid = None
            stopping = self._phase == "stopped"
        self._ready_event.clear()
        if not stopping:
            logger.warning("MQTT link of station %r lost its broker: %s", self._station, reason)

    def _on_publish(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._pending_lock:
            self._pending.discard(mid)
        if reason.is_failure:  # MQTT 5: the broker refused it (an ACL, a quota)
            self._count("dropped")
            logger.warning("MQTT broker refused a message: %s", reason)
        else:
            self._count("published")

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # brokers check UTF-8, but paho's thread must never see this
            topic = "(not UTF-8)"
        try:
            command = self._command(topic, msg)
        except _BadCommandError as e:
            self._count("bad_commands")
            logger.warning("MQTT command on %r ignored: %s", topic[:200], e)
            return
        except Exception:  # a bug here must not end paho's thread
            self._count("bad_commands")
            logger.exception("MQTT command on %r could not be read", topic[:200])
            return
        self._count("commands")
        try:
            self._on_command(command)
        except Exception:
            self._count("command_errors")
            logger.exception("MQTT command %s for site %r failed", command.name, command.site)

    def _command(self, topic: str, msg: paho.MQTTMessage) -> MqttCommand:
        if msg.retain:
            raise _BadCommandError("retained commands are refused (they would replay on reconnect)")
        if not topic.startswith(self._prefix + "/"):
            raise _BadCommandError("not under this station's topic prefix")
        levels = topic[len(self._prefix) + 1 :].split("/")
        if len(levels) == 2 and levels[0] == "cmd":
            site = None
        elif len(levels) == 3 and levels[1] == "cmd":
            with self._lock:
                site = self._sites.get(levels[0])
            if site is None:
                raise _BadCommandError(f"site level {levels[0]!r} is not served by this station")
        else:
            raise _BadCommandError("not a command topic")
        name = levels[-1]
        payload = _parse_payload(name, bytes(msg.payload))
        return MqttCommand(site=site, name=name, payload=payload, topic=topic)
