"""The rule engine: station events in, what the rules want done out.

The engine decides and never acts. For each event (:meth:`RuleEngine.on_event`) and each clock
tick (:meth:`RuleEngine.tick`) it returns :class:`Firing` records, one per action of each rule
that fires, in the rule's action order and the configured order of rules, and :class:`Ending`
records when a condition a rule fired for has ended (the station closes alarms with
``close_on_end`` and ends event recordings). Alarms, recording, MQTT, snapshots and arming are
executed by the station; webhooks by :class:`vmscore.rules.webhook.WebhookSender`.

Deterministic: no clock is read. Time comes only from the events' ``at_us`` and from
``tick(now_us)``, so the same calls in the same order give the same results. The two callbacks
(``camera``, ``is_armed``) are the only other inputs.

How a rule is evaluated:

* Kinds that come in pairs (motion, tamper, camera_offline, disk_trouble) are conditions with a
  begin and an end sharing :attr:`StationEvent.key`. While a rule has fired (or waits to fire)
  for a key, another begin with that key is a continuation, not a new firing; the end event
  produces an :class:`Ending` for each rule that fired for the key and cancels waits that had
  not reached their minimum duration. Other kinds (recording_gap, external, schedule) are
  instants: each event is a new occurrence.
* ``time_profile`` is checked at the event's time; ``site_armed`` when the condition begins and
  again when a wait ends; ``cooldown_s`` when the rule fires, per rule and condition (camera and
  zone, or camera and detail), from the last firing.
* ``min_duration_s`` puts the rule in a wait that fires at ``begin + min_duration`` (the firing's
  ``at_us``, whatever the tick granularity, and its event is the original begin) at the first
  tick or end event at or after that moment. For a recording gap, whose event arrives when the
  gap is over, the duration is the gap's own length (``data["start_us"]``/``["end_us"]``);
  an external event has no end, so there the duration is a plain delay.

Bounded: waits, fired conditions and cooldowns are each capped (``max_keys``); the oldest entry
is dropped with a counted warning. Expired waits and cooldowns are dropped as ticks pass them.

Not thread-safe: one thread (the station's rule thread) calls it.
"""

from __future__ import annotations

import heapq
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vmscore.rules.models import Action, Rule, TimeProfile
from vmscore.rules.timeprofile import is_active, next_change, validate_profile
from vmscore.station.events import ENDS, StationEvent

__all__ = ["CameraInfo", "Ending", "Firing", "RuleEngine"]

log = logging.getLogger("vmscore.rules")

_US = 1_000_000
_PAIRED = frozenset(ENDS.values())
"""Kinds that are conditions with an end; every other kind is an instant."""
_HORIZON_S = 8 * 86_400
_MAX_EDGES = 64
"""Profile edges one tick replays in order; with more (ticks stopped for days) none is replayed
and the profile's present state is reported as one edge if it changed."""


@dataclass(frozen=True)
class CameraInfo:
    """What the engine needs to know of a camera to narrow triggers."""

    name: str
    site: str
    group: str = ""


@dataclass(frozen=True)
class Firing:
    """One action of a rule that fired for ``event`` at ``at_us``. ``key`` pairs it with the
    :class:`Ending` that may follow."""

    rule: Rule
    action: Action
    event: StationEvent
    key: str
    at_us: int


@dataclass(frozen=True)
class Ending:
    """The condition ``rule`` fired for (``key``) has ended with ``event``. ``rule`` is the
    definition that fired, even if it has since been changed or removed."""

    rule: Rule
    key: str
    event: StationEvent


@dataclass
class _Wait:
    rule: Rule
    event: StationEvent
    deadline_us: int
    seq: int


@dataclass
class _Clock:
    """A time profile's known state, for edge detection."""

    active: bool | None = None
    """None until the first tick that sees the profile."""
    next_us: int | None = None
    valid_until_us: int = 0
    """No change before this moment when ``next_us`` is None."""
    resync: bool = False


_StateKey = tuple[str, str]
"""(rule name, condition key)."""


class RuleEngine:
    """Evaluates rules against station events; see the module docstring for the semantics."""

    def __init__(
        self,
        rules: Sequence[Rule],
        time_profiles: Sequence[TimeProfile],
        *,
        camera: Callable[[str], CameraInfo | None],
        is_armed: Callable[[str], bool],
        max_keys: int = 100_000,
    ) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, not {max_keys}")
        self._camera = camera
        self._is_armed = is_armed
        self._max_keys = max_keys
        self._rules: tuple[Rule, ...] = ()
        self._by_name: dict[str, Rule] = {}
        self._profiles: dict[str, TimeProfile] = {}
        self._clocks: dict[str, _Clock] = {}
        self._waits: OrderedDict[_StateKey, _Wait] = OrderedDict()
        self._wait_heap: list[tuple[int, int, _StateKey]] = []
        self._open: OrderedDict[_StateKey, tuple[Rule, StationEvent]] = OrderedDict()
        self._cooldowns: OrderedDict[_StateKey, tuple[int, int]] = OrderedDict()
        """(rule, condition) -> (last firing, seq)."""
        self._cooldown_heap: list[tuple[int, int, _StateKey]] = []
        self._removed: list[str] = []
        """Names of removed rules with fired conditions (their endings still go out)."""
        self._seq = 0
        self._warned: set[tuple[str, str]] = set()
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "events",
                "ticks",
                "firings",
                "actions",
                "endings",
                "continuations",
                "cancelled",
                "schedule_edges",
                "dropped_keys",
                "unknown_profile",
            ),
            0,
        )
        # At start-up a rule naming a missing profile is kept and never fires (warned once):
        # the station must start even when a stored rule outlived its profile. Run-time changes
        # through update() are refused instead, so the editor sees the mistake.
        self._install(rules, time_profiles, strict=False)

    # -- configuration ----------------------------------------------------------------------------

    def update(self, rules: Sequence[Rule], time_profiles: Sequence[TimeProfile]) -> None:
        """Replaces the rules and time profiles at run time.

        Raises ValueError (and changes nothing) when a rule names a time profile that does not
        exist, names are repeated or a profile cannot be evaluated. Waits of rules whose
        definition is unchanged are kept, those of changed or removed rules dropped; fired
        conditions are kept so their endings still reach the station; cooldowns follow the rule
        name while the rule exists.
        """
        self._install(rules, time_profiles, strict=True)

    def _install(
        self, rules: Sequence[Rule], time_profiles: Sequence[TimeProfile], *, strict: bool
    ) -> None:
        profiles: dict[str, TimeProfile] = {}
        for p in time_profiles:
            if not isinstance(p, TimeProfile):
                raise TypeError(f"time profiles must be TimeProfile, not {type(p).__name__}")
            if p.name in profiles:
                raise ValueError(f"two time profiles are named {p.name!r}")
            validate_profile(p)
            profiles[p.name] = p
        by_name: dict[str, Rule] = {}
        for r in rules:
            if not isinstance(r, Rule):
                raise TypeError(f"rules must be Rule, not {type(r).__name__}")
            if r.name in by_name:
                raise ValueError(f"two rules are named {r.name!r}")
            for problem in self._references(r, profiles):
                if strict:
                    raise ValueError(problem)
                log.warning("%s: the rule never fires until that is fixed", problem)
            by_name[r.name] = r

        old = self._by_name
        self._rules = tuple(by_name.values())
        self._by_name = by_name
        for skey in [k for k, w in self._waits.items() if by_name.get(k[0]) != w.rule]:
            del self._waits[skey]
        for skey in [k for k in self._cooldowns if k[0] not in by_name]:
            del self._cooldowns[skey]
        self._removed = sorted({n for (n, _) in self._open if n not in by_name})
        self._compact()
        if old:
            self._warned = {w for w in self._warned if old.get(w[0]) == by_name.get(w[0])}

        clocks: dict[str, _Clock] = {}
        for name, p in profiles.items():
            clock = self._clocks.get(name)
            if clock is None:
                clock = _Clock()
            elif self._profiles.get(name) != p:
                clock.resync = True
            clocks[name] = clock
        self._profiles = profiles
        self._clocks = clocks

    @staticmethod
    def _references(rule: Rule, profiles: dict[str, TimeProfile]) -> list[str]:
        problems = []
        tp = rule.conditions.time_profile
        if tp is not None and tp not in profiles:
            problems.append(f"rule {rule.name!r}: no time profile named {tp!r}")
        if rule.trigger.kind == "schedule":
            for detail in rule.trigger.details:
                name, sep, edge = detail.rpartition(":")
                if not sep or edge not in ("start", "end"):
                    problems.append(
                        f"rule {rule.name!r}: schedule detail {detail!r} is not "
                        "'<time profile>:start' or '<time profile>:end'"
                    )
                elif name not in profiles:
                    problems.append(f"rule {rule.name!r}: no time profile named {name!r}")
        return problems

    # -- evaluation -------------------------------------------------------------------------------

    def on_event(self, event: StationEvent) -> list[Firing | Ending]:
        """What the rules do about one event."""
        if not isinstance(event, StationEvent):
            raise TypeError(f"on_event takes a StationEvent, not {type(event).__name__}")
        self._counts["events"] += 1
        out: list[Firing | Ending] = []
        if event.is_end:
            self._end(event, out)
            if event.kind == "camera_online":
                # "Camera back" is also a trigger of its own (notify the technician), an
                # instant: it ends the offline condition and may fire rules made for it.
                self._begin(event, out)
        else:
            self._begin(event, out)
        return out

    def tick(self, now_us: int) -> list[Firing | Ending]:
        """Fires the waits whose minimum duration has passed by ``now_us`` and turns time-profile
        edges up to ``now_us`` into ``schedule`` events (``<profile>:start`` / ``:end``, at the
        moment of the edge). The first tick reports ``:start`` for every profile active then,
        so a station started at night arms its sites."""
        self._counts["ticks"] += 1
        due: list[tuple[int, int, int, str | _Wait]] = []
        for order, (name, clock) in enumerate(self._clocks.items()):
            for at_us, active in self._edges(name, clock, now_us):
                due.append((at_us, 0, order, f"{name}:{'start' if active else 'end'}"))
        while self._wait_heap and self._wait_heap[0][0] <= now_us:
            _, seq, skey = heapq.heappop(self._wait_heap)
            wait = self._waits.get(skey)
            if wait is not None and wait.seq == seq:
                due.append((wait.deadline_us, 1, seq, wait))
        due.sort(key=lambda d: d[:3])
        out: list[Firing | Ending] = []
        for at_us, _, _, what in due:
            if isinstance(what, str):
                self._counts["schedule_edges"] += 1
                self._begin(StationEvent(kind="schedule", at_us=at_us, detail=what), out)
            else:
                self._fire_wait(what, out)
        self._expire_cooldowns(now_us)
        return out

    def pending(self) -> int:
        """Waits for a minimum duration not yet reached."""
        return len(self._waits)

    def stats(self) -> dict[str, int]:
        return {
            **self._counts,
            "rules": len(self._rules),
            "time_profiles": len(self._profiles),
            "pending": len(self._waits),
            "open": len(self._open),
            "cooldowns": len(self._cooldowns),
        }

    # -- internals --------------------------------------------------------------------------------

    def _begin(self, event: StationEvent, out: list[Firing | Ending]) -> None:
        info: CameraInfo | None = None
        if event.camera is not None:
            info = self._camera(event.camera)
        site = info.site if info is not None else event.site
        paired = event.kind in _PAIRED
        for rule in self._rules:
            if not rule.enabled or not _matches(rule, event, info):
                continue
            skey = (rule.name, event.key)
            if skey in self._waits or (paired and skey in self._open):
                self._counts["continuations"] += 1
                continue
            cond = rule.conditions
            if cond.time_profile is not None and not self._profile_active(
                rule, cond.time_profile, event.at_us
            ):
                continue
            if cond.site_armed and not self._armed(site):
                continue
            min_us = round(cond.min_duration_s * _US)
            if min_us and event.kind == "recording_gap":
                if _gap_us(event) < min_us:
                    continue
            elif min_us:
                self._seq += 1
                wait = _Wait(rule, event, event.at_us + min_us, self._seq)
                self._put(self._waits, skey, wait, "pending")
                heapq.heappush(self._wait_heap, (wait.deadline_us, wait.seq, skey))
                continue
            self._fire(rule, event, event.at_us, out)

    def _end(self, event: StationEvent, out: list[Firing | Ending]) -> None:
        key = event.key
        for name in self._names_with(key):
            skey = (name, key)
            wait = self._waits.pop(skey, None)
            if wait is not None:
                if wait.deadline_us <= event.at_us:
                    # It held long enough; no tick came between its deadline and its end.
                    self._fire_wait(wait, out, popped=True)
                else:
                    self._counts["cancelled"] += 1
            fired = self._open.pop(skey, None)
            if fired is not None:
                self._counts["endings"] += 1
                out.append(Ending(fired[0], key, event))

    def _names_with(self, key: str) -> list[str]:
        """Rule names that may hold state for ``key``: configured rules in order, then rules
        since removed whose fired conditions still await their end."""
        names = [r.name for r in self._rules]
        names.extend(n for n in self._removed if (n, key) in self._open)
        return names

    def _fire_wait(self, wait: _Wait, out: list[Firing | Ending], *, popped: bool = False) -> None:
        skey = (wait.rule.name, wait.event.key)
        if not popped:
            self._waits.pop(skey, None)
        info = self._camera(wait.event.camera) if wait.event.camera is not None else None
        site = info.site if info is not None else wait.event.site
        if wait.rule.conditions.site_armed and not self._armed(site):
            return
        self._fire(wait.rule, wait.event, wait.deadline_us, out)

    def _fire(
        self,
        rule: Rule,
        event: StationEvent,
        at_us: int,
        out: list[Firing | Ending],
    ) -> None:
        cooldown_us = round(rule.conditions.cooldown_s * _US)
        ckey = (rule.name, _condition(event))
        if cooldown_us:
            last = self._cooldowns.get(ckey)
            if last is not None and at_us < last[0] + cooldown_us:
                return
            self._seq += 1
            self._put(self._cooldowns, ckey, (at_us, self._seq), "cooldown")
            heapq.heappush(self._cooldown_heap, (at_us + cooldown_us, self._seq, ckey))
        key = event.key
        if event.kind in _PAIRED:
            self._put(self._open, (rule.name, key), (rule, event), "fired")
        self._counts["firings"] += 1
        self._counts["actions"] += len(rule.actions)
        out.extend(Firing(rule, action, event, key, at_us) for action in rule.actions)

    def _put(
        self, table: OrderedDict[_StateKey, Any], skey: _StateKey, value: Any, what: str
    ) -> None:
        if skey in table:
            table.move_to_end(skey)
        table[skey] = value
        while len(table) > self._max_keys:
            dropped, _ = table.popitem(last=False)
            self._counts["dropped_keys"] += 1
            n = self._counts["dropped_keys"]
            if n == 1 or n % 10_000 == 0:
                log.warning(
                    "rule state full (%d %s entries): dropped the oldest (rule %r); %d dropped",
                    self._max_keys,
                    what,
                    dropped[0],
                    n,
                )
        if len(self._wait_heap) > 2 * self._max_keys + 1024 or (
            len(self._cooldown_heap) > 2 * self._max_keys + 1024
        ):
            self._compact()

    def _compact(self) -> None:
        """Rebuilds the deadline heaps from the live entries (dropped and replaced entries leave
        stale ones behind)."""
        self._wait_heap = [(w.deadline_us, w.seq, k) for k, w in self._waits.items()]
        heapq.heapify(self._wait_heap)
        heap = [
            (last + self._cooldown_us(ckey[0]), seq, ckey)
            for ckey, (last, seq) in self._cooldowns.items()
        ]
        heapq.heapify(heap)
        self._cooldown_heap = heap

    def _cooldown_us(self, rule_name: str) -> int:
        rule = self._by_name.get(rule_name)
        return round(rule.conditions.cooldown_s * _US) if rule is not None else 0

    def _expire_cooldowns(self, now_us: int) -> None:
        heap = self._cooldown_heap
        while heap and heap[0][0] <= now_us:
            _, seq, ckey = heapq.heappop(heap)
            entry = self._cooldowns.get(ckey)
            if entry is None or entry[1] != seq:
                continue
            expiry = entry[0] + self._cooldown_us(ckey[0])
            if expiry <= now_us:
                del self._cooldowns[ckey]
            else:  # the rule's cooldown was lengthened by update()
                heapq.heappush(heap, (expiry, seq, ckey))

    def _profile_active(self, rule: Rule, name: str, at_us: int) -> bool:
        profile = self._profiles.get(name)
        if profile is None:
            self._counts["unknown_profile"] += 1
            if (rule.name, name) not in self._warned:
                self._warned.add((rule.name, name))
                log.warning("rule %r: no time profile named %r; it does not fire", rule.name, name)
            return False
        return is_active(profile, at_us)

    def _armed(self, site: str | None) -> bool:
        return site is not None and bool(self._is_armed(site))

    def _edges(self, name: str, clock: _Clock, now_us: int) -> list[tuple[int, bool]]:
        """The profile's state changes up to ``now_us``, each (moment, active)."""
        profile = self._profiles[name]
        horizon_us = _HORIZON_S * _US
        if clock.active is None or clock.resync:
            # First sight (the first tick, or a profile added or changed at run time): report
            # the state it has now if that is news.
            was = clock.active
            clock.active = is_active(profile, now_us)
            clock.resync = False
            clock.next_us = next_change(profile, now_us, _HORIZON_S)
            clock.valid_until_us = now_us + horizon_us
            return [(now_us, clock.active)] if clock.active != bool(was) else []
        edges: list[tuple[int, bool]] = []
        before = clock.active
        for _ in range(_MAX_EDGES + 1):
            if clock.next_us is None:
                if clock.valid_until_us >= now_us:
                    return edges
                base = clock.valid_until_us
                clock.next_us = next_change(profile, base, _HORIZON_S)
                clock.valid_until_us = base + horizon_us
                continue
            if clock.next_us > now_us:
                return edges
            clock.active = not clock.active
            edges.append((clock.next_us, clock.active))
            base = clock.next_us
            clock.next_us = next_change(profile, base, _HORIZON_S)
            clock.valid_until_us = base + horizon_us
        # Ticks stopped for long: replaying days of schedule at once would be noise; report
        # only where the profile is now, if that differs from what was last reported.
        now_active = is_active(profile, now_us)
        edges = [(now_us, now_active)] if now_active != before else []
        clock.active = now_active
        clock.next_us = next_change(profile, now_us, _HORIZON_S)
        clock.valid_until_us = now_us + horizon_us
        return edges


def _matches(rule: Rule, event: StationEvent, info: CameraInfo | None) -> bool:
    t = rule.trigger
    if t.kind != event.kind:
        return False
    if t.cameras or t.groups:
        # Only a camera the station knows can be in a list or a group.
        if info is None:
            return False
        if t.cameras and event.camera not in t.cameras:
            return False
        if t.groups and info.group not in t.groups:
            return False
    if t.sites:
        site = info.site if info is not None else event.site
        if site is None:
            # No site and no camera: a station-wide event (a schedule edge) concerns every site.
            if event.camera is not None:
                return False
        elif site not in t.sites:
            return False
    if t.zones and event.zone not in t.zones:
        return False
    if t.details:
        if event.detail in t.details:
            return True
        # A disk event's detail is the storage location, its reason is in data.
        reason = event.data.get("reason") if event.kind == "disk_trouble" else None
        return isinstance(reason, str) and reason in t.details
    return True


def _condition(event: StationEvent) -> str:
    """What a cooldown is counted for: the event's key (camera and zone, or camera and detail),
    plus the detail for instants whose key leaves it out (each reason of a recording gap, each
    schedule edge)."""
    key = event.key
    if event.kind in ("recording_gap", "schedule"):
        return f"{key}/{event.detail}"
    return key


def _gap_us(event: StationEvent) -> int:
    start = event.data.get("start_us")
    end = event.data.get("end_us")
    if isinstance(start, int) and isinstance(end, int):
        return end - start
    return -1
