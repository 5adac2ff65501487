"""The alarm manager against real SQLite files: the operator workflow and its history, the
condition re-trigger rule, auto-close and retention, statistics, concurrency and persistence.

If these fail, operators at the monitoring station lose alarms, see duplicates, act on stale
alarms without noticing, or the audit trail no longer says who did what and when."""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from vmscore.alarms import (
    SCHEMA_VERSION,
    Alarm,
    AlarmChange,
    AlarmConflictError,
    AlarmManager,
    AlarmNotFoundError,
    AlarmScope,
    AlarmSettings,
    AlarmStateError,
    PriorityLevel,
)
from vmscore.errors import VmsError

T0 = 1_700_000_000_000_000
S = 1_000_000  # one second in microseconds
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 100 + b"\xff\xd9"


class Clock:
    """The injected clock: time moves only when a test says so."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> int:
        self.now += round(seconds * S)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "station.db"


@pytest.fixture
def make(db: Path, clock: Clock) -> Iterator[Callable[..., AlarmManager]]:
    made: list[AlarmManager] = []

    def factory(settings: AlarmSettings | None = None) -> AlarmManager:
        m = AlarmManager(db, settings or AlarmSettings(), clock=clock)
        made.append(m)
        return m

    yield factory
    for m in made:
        m.close()


@pytest.fixture
def mgr(make: Callable[..., AlarmManager]) -> AlarmManager:
    return make()


def raise_(m: AlarmManager, key: str = "motion/school-1/cam-1/door", **kw: object) -> Alarm:
    args: dict[str, object] = {
        "title": "Motion at the door",
        "priority": "high",
        "source_key": key,
        "site": "school-1",
        "camera": "cam-1",
        "zone": "door",
        "rule": "night-motion",
    }
    args.update(kw)
    return m.raise_alarm(**args)  # type: ignore[arg-type]


# -- transitions -------------------------------------------------------------------------------


def to_state(m: AlarmManager, state: str, key: str = "k") -> Alarm:
    a = raise_(m, key)
    if state in ("in_progress", "on_hold", "closed"):
        a = m.acknowledge(a.id, "ann")
    if state == "on_hold":
        a = m.hold(a.id, "ann")
    if state == "closed":
        a = m.close(a.id, "ann")
    assert a.state == state
    return a


ACTIONS: dict[str, Callable[[AlarmManager, int], Alarm]] = {
    "acknowledge": lambda m, i: m.acknowledge(i, "bob"),
    "hold": lambda m, i: m.hold(i, "bob", "waiting for the guard"),
    "resume": lambda m, i: m.resume(i, "bob"),
    "close": lambda m, i: m.close(i, "bob", "done", "Intrusion"),
    "reopen": lambda m, i: m.reopen(i, "bob", "not done"),
    "comment": lambda m, i: m.comment(i, "bob", "looked at it"),
    "assign": lambda m, i: m.assign(i, "bob", "carl"),
    "set_priority": lambda m, i: m.set_priority(i, "bob", "critical"),
}

# (state before, action) -> state after; a pair missing here is refused.
ALLOWED: dict[tuple[str, str], str] = {
    ("new", "acknowledge"): "in_progress",
    ("new", "hold"): "on_hold",
    ("new", "close"): "closed",
    ("new", "comment"): "new",
    ("new", "assign"): "new",
    ("new", "set_priority"): "new",
    ("in_progress", "hold"): "on_hold",
    ("in_progress", "close"): "closed",
    ("in_progress", "comment"): "in_progress",
    ("in_progress", "assign"): "in_progress",
    ("in_progress", "set_priority"): "in_progress",
    ("on_hold", "resume"): "in_progress",
    ("on_hold", "close"): "closed",
    ("on_hold", "comment"): "on_hold",
    ("on_hold", "assign"): "on_hold",
    ("on_hold", "set_priority"): "on_hold",
    ("closed", "reopen"): "in_progress",
    ("closed", "comment"): "closed",
}


@pytest.mark.parametrize("state", ["new", "in_progress", "on_hold", "closed"])
@pytest.mark.parametrize("action", list(ACTIONS))
def test_transition_table(mgr: AlarmManager, state: str, action: str) -> None:
    """Every action from every state: the allowed ones move to the right state and write one
    history line; the others raise AlarmStateError and change nothing."""
    a = to_state(mgr, state)
    history_before = mgr.history(a.id)
    expected = ALLOWED.get((state, action))
    if expected is None:
        with pytest.raises(AlarmStateError) as err:
            ACTIONS[action](mgr, a.id)
        assert isinstance(err.value, VmsError) and isinstance(err.value, ValueError)
        assert f"alarm {a.id}" in str(err.value)
        assert mgr.get(a.id) == a
        assert mgr.history(a.id) == history_before
        return
    after = ACTIONS[action](mgr, a.id)
    assert after.state == expected
    assert after.version == a.version + 1
    assert mgr.get(a.id) == after
    new_lines = mgr.history(a.id)[len(history_before) :]
    assert len(new_lines) == 1
    assert (new_lines[0].user, new_lines[0].from_state, new_lines[0].to_state) == (
        "bob",
        state,
        expected,
    )


def test_owner_rules(mgr: AlarmManager) -> None:
    a = raise_(mgr)
    assert a.owner is None
    a = mgr.assign(a.id, "lead", "ann")
    assert (a.owner, a.state) == ("ann", "new")
    # Acknowledging keeps an owner who was assigned before.
    a = mgr.acknowledge(a.id, "bob")
    assert a.owner == "ann"
    with pytest.raises(AlarmStateError, match="already assigned to ann"):
        mgr.assign(a.id, "lead", "ann")
    a = mgr.assign(a.id, "lead", None)
    assert a.owner is None
    with pytest.raises(AlarmStateError, match="already unassigned"):
        mgr.assign(a.id, "lead", None)
    # An operator cannot act, or assign, as the station itself.
    with pytest.raises(ValueError, match="reserved"):
        mgr.comment(a.id, "system", "forged")
    with pytest.raises(ValueError, match="reserved"):
        mgr.assign(a.id, "lead", "system")
    b = raise_(mgr, "other")
    assert mgr.acknowledge(b.id, "bob").owner == "bob"


def test_close_category_must_be_configured(mgr: AlarmManager) -> None:
    a = raise_(mgr, category="Intrusion")
    with pytest.raises(ValueError, match="unknown category 'Burglary'"):
        mgr.close(a.id, "ann", category="Burglary")
    assert mgr.get(a.id).state == "new"
    # None keeps the category the rule gave.
    assert mgr.close(a.id, "ann").category == "Intrusion"


def test_missing_alarm(mgr: AlarmManager) -> None:
    with pytest.raises(AlarmNotFoundError) as err:
        mgr.get(999)
    assert isinstance(err.value, LookupError)
    for call in (
        lambda: mgr.acknowledge(999, "ann"),
        lambda: mgr.history(999),
        lambda: mgr.snapshot(999),
        lambda: mgr.set_recording(999, 1, 2),
    ):
        with pytest.raises(AlarmNotFoundError):
            call()


# -- history ---------------------------------------------------------------------------------


def test_full_workflow_history(mgr: AlarmManager, clock: Clock) -> None:
    """The audit trail of a whole night's work on one alarm: who, when, from and to which
    state, and what (comment, assignee, category)."""
    a = raise_(mgr, at_us=T0)
    clock.advance(10)
    mgr.acknowledge(a.id, "ann")
    clock.advance(5)
    mgr.comment(a.id, "ann", "Person at the door, calling the guard")
    clock.advance(5)
    mgr.hold(a.id, "ann", "guard on the way")
    clock.advance(600)
    mgr.resume(a.id, "ann")
    clock.advance(5)
    mgr.assign(a.id, "ann", "bob")
    clock.advance(60)
    mgr.close(a.id, "bob", "guard found nobody", "False alarm")
    clock.advance(3600)
    mgr.reopen(a.id, "carl", "the guard saw a broken window later")
    clock.advance(60)
    final = mgr.close(a.id, "carl", "police informed", "Vandalism")

    rows = [
        (h.at_us - T0, h.user, h.action, h.from_state, h.to_state, h.detail, h.comment)
        for h in mgr.history(a.id)
    ]
    assert rows == [
        (0, "system", "raised", None, "new", "high", ""),
        (10 * S, "ann", "acknowledged", "new", "in_progress", "", ""),
        (15 * S, "ann", "commented", "in_progress", "in_progress",
         "Person at the door, calling the guard", ""),
        (20 * S, "ann", "on_hold", "in_progress", "on_hold", "", "guard on the way"),
        (620 * S, "ann", "resumed", "on_hold", "in_progress", "", ""),
        (625 * S, "ann", "assigned", "in_progress", "in_progress", "bob", ""),
        (685 * S, "bob", "closed", "in_progress", "closed", "False alarm", "guard found nobody"),
        (4285 * S, "carl", "reopened", "closed", "in_progress", "",
         "the guard saw a broken window later"),
        (4345 * S, "carl", "closed", "in_progress", "closed", "Vandalism", "police informed"),
    ]  # fmt: skip
    seqs = [h.seq for h in mgr.history(a.id)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert (final.state, final.owner, final.category) == ("closed", "bob", "Vandalism")
    assert final.closed_us == T0 + 4345 * S
    assert final.version == 9


# -- conditions ------------------------------------------------------------------------------


def test_retrigger_open_condition_vs_new_alarm_after_close(mgr: AlarmManager, clock: Clock) -> None:
    a = raise_(mgr, at_us=T0, record_start_us=T0 - 5 * S, record_end_us=T0 + 10 * S, event_id=7)
    mgr.acknowledge(a.id, "ann")
    b = raise_(mgr, at_us=T0 + 30 * S, record_end_us=T0 + 40 * S, event_id=8)
    assert b.id == a.id
    assert (b.count, b.state, b.owner) == (2, "in_progress", "ann")
    assert b.updated_us == T0 + 30 * S
    # The recorded range grows to the last trigger's post-roll; the first event row stays.
    assert (b.record_start_us, b.record_end_us, b.event_id) == (T0 - 5 * S, T0 + 40 * S, 7)
    assert mgr.count() == 1
    last = mgr.history(a.id)[-1]
    assert (last.action, last.user, last.at_us, last.detail) == (
        "retriggered",
        "system",
        T0 + 30 * S,
        "count 2",
    )
    # A more urgent trigger of the same condition escalates the alarm.
    c = raise_(mgr, priority="critical", at_us=T0 + 50 * S)
    assert (c.id, c.priority, c.priority_level, c.count) == (a.id, "critical", 1, 3)
    assert mgr.history(a.id)[-1].detail == "high -> critical"
    # A less urgent one does not lower it.
    assert raise_(mgr, priority="low").priority == "critical"

    mgr.close(a.id, "ann")
    d = raise_(mgr, at_us=T0 + 100 * S)
    assert d.id != a.id and (d.count, d.state) == (1, "new")
    assert mgr.count() == 2
    # The closed alarm cannot be reopened while the new one is open: never two open alarms
    # for one condition.
    with pytest.raises(AlarmStateError, match=f"alarm {d.id} is open for the same condition"):
        mgr.reopen(a.id, "ann")
    mgr.close(d.id, "ann")
    assert mgr.reopen(a.id, "ann").state == "in_progress"


def test_condition_ended(mgr: AlarmManager, clock: Clock) -> None:
    key = "camera_offline/school-1/cam-1"
    assert mgr.condition_ended(key, T0, close=True, reason="camera back") is None

    a = raise_(mgr, key, title="Camera offline")
    b = mgr.condition_ended(key, T0 + 60 * S, close=False, reason="camera back online")
    assert b is not None and (b.id, b.state, b.ended_us, b.closed_us) == (
        a.id,
        "new",
        T0 + 60 * S,
        None,
    )
    h = mgr.history(a.id)[-1]
    assert (h.action, h.user, h.at_us, h.from_state, h.to_state, h.detail) == (
        "condition_ended",
        "system",
        T0 + 60 * S,
        "new",
        "new",
        "camera back online",
    )
    # The condition comes back: the open alarm re-triggers and is no longer ended.
    c = raise_(mgr, key, at_us=T0 + 90 * S)
    assert (c.id, c.count, c.ended_us) == (a.id, 2, None)

    d = mgr.condition_ended(key, T0 + 120 * S, close=True, reason="camera back online")
    assert d is not None and (d.state, d.ended_us, d.closed_us) == (
        "closed",
        T0 + 120 * S,
        T0 + 120 * S,
    )
    h = mgr.history(a.id)[-1]
    assert (h.action, h.user, h.from_state, h.to_state) == (
        "condition_ended",
        "system",
        "new",
        "closed",
    )
    assert mgr.condition_ended(key, T0 + 130 * S, close=True, reason="again") is None


# -- time: auto-close and retention ------------------------------------------------------------


def test_auto_close_and_retention(make: Callable[..., AlarmManager], clock: Clock) -> None:
    m = make(AlarmSettings(auto_close_s=3600, closed_keep_s=3 * 86400, housekeeping_batch=2))
    stale = [raise_(m, f"k{i}", at_us=T0) for i in range(3)]
    worked = raise_(m, "worked", at_us=T0)
    m.acknowledge(worked.id, "ann")
    fresh = raise_(m, "fresh", at_us=T0 + 1800 * S)
    m.set_snapshot(stale[0].id, JPEG)

    assert m.housekeeping(T0 + 3599 * S) == {"auto_closed": 0, "deleted": 0}
    # Bounded work: at most two per call; the backlog drains on the next call.
    assert m.housekeeping(T0 + 3600 * S) == {"auto_closed": 2, "deleted": 0}
    assert m.housekeeping(T0 + 3600 * S) == {"auto_closed": 1, "deleted": 0}
    for a in stale:
        got = m.get(a.id)
        assert (got.state, got.closed_us) == ("closed", T0 + 3600 * S)
        h = m.history(a.id)[-1]
        assert (h.action, h.user, h.from_state, h.to_state) == (
            "auto_closed",
            "system",
            "new",
            "closed",
        )
    assert m.get(worked.id).state == "in_progress"
    assert m.get(fresh.id).state == "new"

    # Kept exactly closed_keep_s, then deleted with snapshot, history and stored changes.
    m.close(worked.id, "ann")  # closed at the clock's time, T0
    keep = 3 * 86400 * S
    assert m.housekeeping(T0 + keep - 1) == {"auto_closed": 1, "deleted": 0}  # fresh
    assert m.housekeeping(T0 + keep) == {"auto_closed": 0, "deleted": 1}  # worked
    assert m.housekeeping(T0 + 3600 * S + keep) == {"auto_closed": 0, "deleted": 2}
    assert m.housekeeping(T0 + 3600 * S + keep) == {"auto_closed": 0, "deleted": 1}
    assert [a.id for a in m.list(states=["closed"])] == [fresh.id]
    for gone in (*stale, worked):
        with pytest.raises(AlarmNotFoundError):
            m.get(gone.id)
    assert {c.alarm.id for c in m.changes_since(0)} == {fresh.id}
    with sqlite3.connect(m.path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM alarm_snapshot").fetchone() == (0,)
        assert raw.execute(
            "SELECT COUNT(*) FROM alarm_history WHERE alarm_id != ?", (fresh.id,)
        ).fetchone() == (0,)
    raw.close()


def test_auto_close_waits_for_idle_and_is_off_by_default(
    make: Callable[..., AlarmManager], clock: Clock
) -> None:
    m = make()
    raise_(m, at_us=T0)
    assert m.housekeeping(T0 + 10**6 * S)["auto_closed"] == 0
    m.close()
    m = make(AlarmSettings(auto_close_s=600))
    a = m.list()[0]
    # A re-trigger is activity: the alarm stays New for another auto_close_s.
    raise_(m, at_us=T0 + 500 * S)
    assert m.housekeeping(T0 + 700 * S)["auto_closed"] == 0
    assert m.housekeeping(T0 + 1100 * S)["auto_closed"] == 1
    assert m.get(a.id).state == "closed"


# -- statistics -------------------------------------------------------------------------------


def test_false_alarm_stats_per_zone(mgr: AlarmManager, clock: Clock) -> None:
    def closed(camera: str, zone: str | None, category: str | None, n: int) -> None:
        for _ in range(n):
            a = raise_(mgr, f"motion/s/{camera}/{zone}", camera=camera, zone=zone)
            mgr.close(a.id, "ann", category=category)

    closed("cam-1", "door", "False alarm", 3)
    closed("cam-1", "door", "Intrusion", 1)
    closed("cam-1", "fence", "False alarm", 1)
    closed("cam-2", None, "Test", 2)
    raise_(mgr, "motion/s/cam-1/door/open", camera="cam-1", zone="door")  # open: not counted
    sys_closed = raise_(mgr, "offline", camera="cam-2", zone=None)
    mgr.condition_ended("offline", clock(), close=True, reason="back")

    stats = {(s.camera, s.zone): s for s in mgr.false_alarm_stats()}
    assert set(stats) == {("cam-1", "door"), ("cam-1", "fence"), ("cam-2", None)}
    door = stats["cam-1", "door"]
    assert (door.closed, door.false_alarms, door.ratio, door.closed_by_system) == (4, 3, 0.75, 0)
    assert (stats["cam-1", "fence"].ratio, stats["cam-2", None].false_alarms) == (1.0, 0)
    assert (stats["cam-2", None].closed, stats["cam-2", None].closed_by_system) == (3, 1)
    assert mgr.false_alarm_stats()[0].camera == "cam-1"  # most false alarms first
    assert sys_closed.id

    # since_us counts alarms closed from then on.
    clock.advance(3600)
    closed("cam-3", "gate", "False alarm", 1)
    recent = mgr.false_alarm_stats(since_us=clock() - S)
    assert [(s.camera, s.closed, s.false_alarms) for s in recent] == [("cam-3", 1, 1)]


def test_open_count_by_priority(mgr: AlarmManager) -> None:
    raise_(mgr, "a", priority="low")
    raise_(mgr, "b", priority="critical")
    raise_(mgr, "c", priority="critical")
    mgr.close(raise_(mgr, "d", priority="high").id, "ann")
    counts = mgr.open_count_by_priority()
    assert counts == {"critical": 2, "high": 0, "medium": 0, "low": 1}
    assert list(counts) == ["critical", "high", "medium", "low"]


# -- concurrency ------------------------------------------------------------------------------


def test_optimistic_concurrency(mgr: AlarmManager) -> None:
    a = raise_(mgr)
    # Two operators opened the alarm at version 1; the first to act wins.
    b = mgr.acknowledge(a.id, "ann", expect_version=a.version)
    with pytest.raises(AlarmConflictError) as err:
        mgr.close(a.id, "bob", "nothing", "False alarm", expect_version=a.version)
    assert err.value.current == b
    assert isinstance(err.value, AlarmStateError)
    assert "changed meanwhile" in str(err.value)
    assert mgr.get(a.id).state == "in_progress"
    assert mgr.close(a.id, "bob", expect_version=b.version).state == "closed"
    # Comments conflict too, so a note is not filed against a state the operator never saw.
    with pytest.raises(AlarmConflictError):
        mgr.comment(a.id, "ann", "late", expect_version=b.version)


def test_threads_hammering(mgr: AlarmManager) -> None:
    """8 threads raise and work alarms at once: no duplicate open alarm per condition, every
    alarm's history chains state to state, versions and seqs have no holes or repeats, and the
    listener saw every change once, in seq order."""
    seen: list[AlarmChange] = []
    mgr.add_listener(seen.append)
    keys = [f"motion/s/cam-{i}/z" for i in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        rng = random.Random(n)
        try:
            start.wait()
            for _ in range(40):
                key = rng.choice(keys)
                a = mgr.raise_alarm(title="t", priority="medium", source_key=key, camera=key)
                action = rng.choice(list(ACTIONS))
                # Another thread may have moved the alarm on: a refusal is a legal outcome.
                with contextlib.suppress(AlarmStateError):
                    ACTIONS[action](mgr, a.id)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)

    alarms = mgr.list(limit=1000)
    open_keys = [a.source_key for a in alarms if a.state != "closed"]
    assert len(open_keys) == len(set(open_keys))
    assert sum(a.count for a in alarms) == 8 * 40  # every trigger counted exactly once
    seqs = [c.seq for c in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    by_alarm: dict[int, list[AlarmChange]] = {}
    for c in seen:
        by_alarm.setdefault(c.alarm.id, []).append(c)
    for a in alarms:
        changes = by_alarm[a.id]
        assert [c.alarm.version for c in changes] == list(range(1, a.version + 1))
        assert changes[-1].alarm == a
        for prev, cur in itertools.pairwise(changes):
            assert cur.before == prev.alarm
        history = mgr.history(a.id)
        assert history[0].action == "raised"
        for prev_h, cur_h in itertools.pairwise(history):
            assert cur_h.from_state == prev_h.to_state
        assert history[-1].to_state == a.state


# -- listeners --------------------------------------------------------------------------------


def test_listeners(mgr: AlarmManager, caplog: pytest.LogCaptureFixture) -> None:
    got: list[tuple[str, int, str | None, str]] = []
    calls_into_manager: list[int] = []

    def broken(change: AlarmChange) -> None:
        raise RuntimeError("listener bug")

    def recorder(change: AlarmChange) -> None:
        before = change.before.state if change.before else None
        got.append((change.kind, change.seq, before, change.alarm.state))

    def reentrant(change: AlarmChange) -> None:
        # Runs outside the lock: reading (and even acting) from a listener must not deadlock.
        calls_into_manager.append(mgr.get(change.alarm.id).version)
        if change.kind == "new" and change.alarm.source_key == "echo":
            mgr.comment(change.alarm.id, "bot", "seen")

    mgr.add_listener(broken)
    mgr.add_listener(recorder)
    mgr.add_listener(reentrant)
    a = raise_(mgr)
    mgr.acknowledge(a.id, "ann")
    mgr.set_snapshot(a.id, JPEG)
    mgr.close(a.id, "ann")
    mgr.reopen(a.id, "ann")
    with pytest.raises(AlarmStateError):
        mgr.resume(a.id, "ann")  # refused: rolled back, nothing to tell
    e = raise_(mgr, "echo")
    assert [(k, b, s) for k, _, b, s in got] == [
        ("new", None, "new"),
        ("update", "new", "in_progress"),
        ("update", "in_progress", "in_progress"),
        ("end", "in_progress", "closed"),
        ("update", "closed", "in_progress"),
        ("new", None, "new"),
        ("update", "new", "new"),  # the comment made by the listener, delivered after
    ]
    seqs = [s for _, s, _, _ in got]
    assert seqs == sorted(seqs)
    assert len(calls_into_manager) == len(got)
    assert mgr.history(e.id)[-1].user == "bot"
    failures = [r for r in caplog.records if r.name == "vmscore.alarms.manager"]
    assert len(failures) == len(got) and all("failed on change" in r.message for r in failures)
    # The stored stream says the same as the listeners were told.
    assert [(c.kind, c.seq) for c in mgr.changes_since(0)] == [(k, s) for k, s, _, _ in got]
    mgr.remove_listener(recorder)
    raise_(mgr, "quiet")
    assert len(got) == 7


def test_listeners_one_change_at_a_time(mgr: AlarmManager) -> None:
    """While a listener is busy with one change, a change committed by another thread waits
    for it (its call returns at once): listeners never run concurrently or out of seq order."""
    entered = threading.Event()
    release = threading.Event()
    delivered: list[str] = []

    def slow(change: AlarmChange) -> None:
        delivered.append(change.alarm.source_key)
        if change.alarm.source_key == "slow":
            entered.set()
            release.wait(10)

    mgr.add_listener(slow)
    t = threading.Thread(target=lambda: raise_(mgr, "slow"))
    t.start()
    assert entered.wait(10)
    fast = raise_(mgr, "fast")  # committed and returned, not delivered yet
    assert fast.id and delivered == ["slow"]
    release.set()
    t.join(10)
    assert not t.is_alive()
    assert delivered == ["slow", "fast"]


def test_changes_since_and_retrigger_compaction(make: Callable[..., AlarmManager]) -> None:
    m = make(AlarmSettings(retrigger_history_max=3))
    a = raise_(m)
    first = m.changes_since(0)
    assert [c.kind for c in first] == ["new"] and first[0].before is None
    for _ in range(10):
        raise_(m)
    # Ten re-triggers in a row are stored as their latest one: the stream of a flapping
    # condition does not grow, and a resuming client still gets the alarm as it is.
    stored = m.changes_since(0)
    assert [c.kind for c in stored] == ["new", "update"]
    assert stored[-1].alarm.count == 11 and stored[-1].alarm == m.get(a.id)
    assert stored[-1].seq == m.last_seq() == 11
    # The history logs three re-triggers, then only counts them.
    h = [x for x in m.history(a.id) if x.action == "retriggered"]
    assert [x.detail for x in h] == [
        "count 2",
        "count 3",
        "count 4; further re-triggers are counted, not logged",
    ]
    m.acknowledge(a.id, "ann")
    raise_(m)
    assert [c.kind for c in m.changes_since(stored[-1].seq)] == ["update", "update"]
    assert m.changes_since(0, limit=1)[0].seq == first[0].seq
    with pytest.raises(ValueError, match="limit"):
        m.changes_since(0, limit=100_000)


# -- persistence ------------------------------------------------------------------------------


def test_persistence_across_reopening(db: Path, clock: Clock) -> None:
    with AlarmManager(db, clock=clock) as m:
        a = raise_(m, related_cameras=["cam-2", "cam-3", "cam-2"], data={"score": 0.8, "n": [1]})
        m.set_snapshot(a.id, JPEG)
        m.acknowledge(a.id, "ann")
        m.close(a.id, "ann", category="False alarm")
        b = raise_(m, "second")
        seq = m.last_seq()
        alarm_a, history_a = m.get(a.id), m.history(a.id)
        for _ in range(2):
            raise_(m, "second")  # stored as one re-trigger change
        m.close(b.id, "ann")
        last = m.last_seq()
    with AlarmManager(db, clock=clock) as m:
        assert m.get(a.id) == alarm_a
        assert alarm_a.related_cameras == ("cam-2", "cam-3")
        assert alarm_a.data == {"score": 0.8, "n": [1]}
        assert m.history(a.id) == history_a
        assert m.snapshot(a.id) == JPEG
        assert m.last_seq() == last
        assert [c.kind for c in m.changes_since(seq)] == ["update", "end"]
        # The sequence goes on from where it was, even though a stored change was dropped.
        c = raise_(m, "third")
        assert m.changes_since(last)[0].seq == last + 1 and c.id > b.id
        assert raise_(m, "second").id != b.id  # b is closed: a new alarm


def test_closed_manager_and_close_signature(db: Path) -> None:
    m = AlarmManager(db)
    a = raise_(m)
    with pytest.raises(ValueError, match="user must be text"):
        m.close(a.id, None)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="alarm id must be an integer"):
        m.close(None, "ann")  # type: ignore[call-overload]
    m.close()
    m.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        m.get(a.id)
    with pytest.raises(RuntimeError, match="closed"):
        raise_(m)


def test_schema_shares_the_file_and_is_versioned(db: Path) -> None:
    # Another store got there first and uses user_version for itself.
    with sqlite3.connect(db) as raw:
        raw.execute("CREATE TABLE station_config (version INTEGER PRIMARY KEY, document TEXT)")
        raw.execute("INSERT INTO station_config VALUES (1, 'x')")
        raw.execute("PRAGMA user_version = 7")
    raw.close()
    with AlarmManager(db) as m:
        raise_(m)
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (7,)
        assert raw.execute("SELECT document FROM station_config").fetchone() == ("x",)
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {t for t in tables if not t.startswith("sqlite_")} == {
            "station_config",
            "alarm",
            "alarm_meta",
            "alarm_snapshot",
            "alarm_history",
            "alarm_change",
        }
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        raw.execute(
            "UPDATE alarm_meta SET value = ? WHERE key = 'schema_version'",
            (str(SCHEMA_VERSION + 1),),
        )
    raw.close()
    with pytest.raises(RuntimeError, match="newer than this vmscore"):
        AlarmManager(db)


def test_managers_opening_a_new_file_at_once(db: Path) -> None:
    """Station processes starting together must not both create the schema (the second waits
    for the first's transaction, then finds the tables), and two managers on one file still
    never duplicate an open condition."""
    managers: list[AlarmManager] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        try:
            start.wait()
            managers.append(AlarmManager(db))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert not errors, errors
        ids = {raise_(m).id for m in managers}
        assert len(ids) == 1 and managers[0].get(ids.pop()).count == 4
    finally:
        for m in managers:
            m.close()


# -- snapshots and recordings ------------------------------------------------------------------


def test_snapshot(make: Callable[..., AlarmManager]) -> None:
    m = make(AlarmSettings(snapshot_max_bytes=4096))
    a = raise_(m)
    assert m.snapshot(a.id) is None and not a.has_snapshot
    with pytest.raises(ValueError, match="larger than 4096 bytes"):
        m.set_snapshot(a.id, b"\xff\xd8\xff" + b"\x00" * 4094)
    with pytest.raises(ValueError, match="JPEG"):
        m.set_snapshot(a.id, b"GIF89a")
    with pytest.raises(ValueError, match="bytes"):
        m.set_snapshot(a.id, "not bytes")  # type: ignore[arg-type]
    assert m.get(a.id) == a  # nothing stored, no version spent
    exact = b"\xff\xd8\xff" + b"\x01" * 4093
    b = m.set_snapshot(a.id, exact)
    assert b.has_snapshot and b.version == a.version + 1
    assert m.snapshot(a.id) == exact
    m.set_snapshot(a.id, JPEG)  # a better picture replaces it
    assert m.snapshot(a.id) == JPEG


def test_set_recording(mgr: AlarmManager) -> None:
    a = raise_(mgr, record_start_us=T0 - 10 * S, event_id=3)
    mgr.close(a.id, "ann")
    # The post-roll ends after the alarm was closed: still recorded on the alarm.
    b = mgr.set_recording(a.id, T0 - 10 * S, T0 + 30 * S)
    assert (b.record_start_us, b.record_end_us, b.event_id, b.state) == (
        T0 - 10 * S,
        T0 + 30 * S,
        3,
        "closed",
    )
    assert mgr.set_recording(a.id, T0, T0 + S, event_id=4).event_id == 4
    with pytest.raises(ValueError, match="ends"):
        mgr.set_recording(a.id, T0, T0 - 1)
    with pytest.raises(ValueError, match="ends"):
        raise_(mgr, "x", record_start_us=5, record_end_us=4)


# -- queries ----------------------------------------------------------------------------------


def test_filters_and_sorting(mgr: AlarmManager, clock: Clock) -> None:
    made = {}
    specs = [
        ("a", "low", "north", "cam-1", 1),
        ("b", "critical", "north", "cam-2", 2),
        ("c", "high", "south", "cam-3", 3),
        ("d", "critical", "south", None, 4),
        ("e", "high", None, None, 5),
        ("f", "low", "north", "cam-1", 6),
    ]
    for key, prio, site, cam, t in specs:
        made[key] = mgr.raise_alarm(
            title=f"Alarm {key.upper()} 100%_done", priority=prio, source_key=key, site=site,
            camera=cam, at_us=T0 + t * S,
        )  # fmt: skip
    mgr.acknowledge(made["c"].id, "ann")
    mgr.close(made["f"].id, "bob")

    def keys(alarms: list[Alarm]) -> str:
        return "".join(a.source_key for a in alarms)

    assert keys(mgr.list()) == "dbecfa"  # most urgent first, then the newest
    assert keys(mgr.list(sort="newest")) == "fedcba"
    assert keys(mgr.list(sort="oldest")) == "abcdef"
    assert keys(mgr.list(sort="oldest", limit=2, offset=1)) == "bc"
    assert keys(mgr.list(states=["new"])) == "dbea"
    assert keys(mgr.list(states="closed")) == "f"
    assert keys(mgr.list(sites=["north"], sort="oldest")) == "abf"
    assert keys(mgr.list(cameras=["cam-1", "cam-3"], sort="oldest")) == "acf"
    assert keys(mgr.list(priorities=["high", "low"], sort="oldest")) == "acef"
    assert keys(mgr.list(owner="ann")) == "c"
    assert keys(mgr.list(since_us=T0 + 2 * S, until_us=T0 + 4 * S, sort="oldest")) == "bc"
    assert keys(mgr.list(text="alarm c")) == "c"  # case-insensitive
    assert keys(mgr.list(text="100%_", sort="oldest")) == "abcdef"  # wildcards are literal
    assert keys(mgr.list(text="%")) == "dbecfa"
    assert keys(mgr.list(text="_x")) == ""
    assert keys(mgr.list(text="Alarm%done")) == ""
    assert keys(mgr.list(text="Alarm_A")) == ""
    assert mgr.count(states=["new", "in_progress"]) == 5
    assert mgr.count(sites="north", priorities="low") == 2

    # Visibility: by camera; an alarm without a camera by its site; station-wide ones only
    # with the station right.
    scope = AlarmScope(cameras=frozenset({"cam-1"}), sites=frozenset({"south"}))
    assert keys(mgr.list(scope=scope, sort="oldest")) == "adf"
    assert all(scope.allows(a) for a in mgr.list(scope=scope))
    assert not scope.allows(made["b"]) and not scope.allows(made["e"])
    station = AlarmScope(station=True)
    assert keys(mgr.list(scope=station)) == "e"
    assert mgr.count(scope=AlarmScope()) == 0
    big = AlarmScope(cameras=frozenset(f"cam-{i}" for i in range(50_000)))
    assert mgr.count(scope=big) == 4

    for bad, message in (
        ({"sort": "random"}, "unknown sort"),
        ({"limit": 0}, "out of range"),
        ({"limit": 100_000}, "larger than"),
        ({"offset": -1}, "out of range"),
        ({"states": ["open"]}, "unknown state"),
        ({"priorities": ["urgent"]}, "unknown priority"),
    ):
        with pytest.raises(ValueError, match=message):
            mgr.list(**bad)  # type: ignore[arg-type]


def test_priority_levels_from_settings(make: Callable[..., AlarmManager]) -> None:
    levels = [
        PriorityLevel(name="low", level=1, colour="#000001", sound="bell"),
        PriorityLevel(name="medium", level=2, colour="#000002"),
        PriorityLevel(name="high", level=3, colour="#000003"),
        PriorityLevel(name="critical", level=4, colour="#000004"),
    ]
    m = make(AlarmSettings(priorities=levels))
    a = raise_(m, "x", priority="low")
    raise_(m, "y", priority="critical")
    assert (a.priority_level, a.colour, a.sound) == (1, "#000001", "bell")
    assert [x.source_key for x in m.list()] == ["x", "y"]
    assert list(m.open_count_by_priority()) == ["low", "medium", "high", "critical"]


def test_settings_validation() -> None:
    with pytest.raises(ValidationError, match="exactly once"):
        AlarmSettings(priorities=[PriorityLevel(name="high", level=1, colour="#ffffff")])
    with pytest.raises(ValidationError, match="false-alarm category"):
        AlarmSettings(categories=["Intrusion"])
    with pytest.raises(ValidationError, match="unique"):
        AlarmSettings(categories=["False alarm", "False alarm"])
    with pytest.raises(ValidationError, match="Extra inputs"):
        AlarmSettings(keep_days=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        PriorityLevel(name="high", level=1, colour="red")
    with pytest.raises(ValidationError):
        AlarmSettings(snapshot_max_bytes=10)
    s = AlarmSettings(categories=["Fehlalarm", "Einbruch"], false_alarm_category="Fehlalarm")
    assert s.categories == ["Fehlalarm", "Einbruch"]
    assert AlarmSettings().closed_keep_s == 90 * 86400
    assert AlarmSettings().snapshot_max_bytes == 2 * 1024 * 1024


# -- hostile input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "'; DROP TABLE alarm; --",
        "Robert'); DELETE FROM alarm_history WHERE ('1'='1",
        '" OR 1=1 --',
        "%_\\",
        "Ünïcödé ✓ 监控 🚨",
        "line one\nline two\ttabbed\r\n",
        "x" * 4000,
    ],
)
def test_hostile_comments_stored_verbatim(mgr: AlarmManager, text: str) -> None:
    a = raise_(mgr)
    mgr.comment(a.id, "ann", text)
    mgr.close(a.id, "ann", comment=text)
    h = mgr.history(a.id)
    assert (h[-2].detail, h[-1].comment) == (text, text)
    assert mgr.count() == 1 and mgr.get(a.id).state == "closed"


def test_hostile_names_stored_verbatim(mgr: AlarmManager) -> None:
    name = "cam'); DROP TABLE alarm; --"
    a = mgr.raise_alarm(
        title="O'Brien's \"yard\"", priority="low", source_key=f"motion//{name}/z",
        site="St. Mary's", camera=name, zone="z%", data={"k'": "v\x00ok"},
    )  # fmt: skip
    got = mgr.get(a.id)
    assert (got.title, got.camera, got.site, got.zone) == (
        "O'Brien's \"yard\"",
        name,
        "St. Mary's",
        "z%",
    )
    assert got.data == {"k'": "v\x00ok"}  # data is JSON: a NUL inside it is escaped, not raw
    assert [x.id for x in mgr.list(cameras=[name])] == [a.id]
    assert mgr.acknowledge(a.id, "o'hara").owner == "o'hara"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, i: m.comment(i, "ann", "a\x00b"), "control character"),
        (lambda m, i: m.comment(i, "ann", "x" * 4001), "at most 4000"),
        (lambda m, i: m.comment(i, "ann", "   "), "empty"),
        (lambda m, i: m.comment(i, "ann", "\ud800"), "lone surrogate"),
        (lambda m, i: m.comment(i, "a\nb", "hi"), "control character"),
        (lambda m, i: m.comment(i, "u" * 101, "hi"), "at most 100"),
        (lambda m, i: m.comment(i, "", "hi"), "empty"),
        (lambda m, i: m.comment(i, 5, "hi"), "must be text"),
        (lambda m, i: m.hold(i, "ann", "x\x00"), "control character"),
        (lambda m, i: m.set_priority(i, "ann", "urgent"), "unknown priority"),
        (lambda m, i: m.acknowledge(i, "ann", expect_version="1"), "integer"),
        (lambda m, i: m.acknowledge(True, "ann"), "integer"),
        (lambda m, i: raise_(m, "x", camera="cam\x00"), "control character"),
        (lambda m, i: raise_(m, "x", title="t" * 501), "at most 500"),
        (lambda m, i: raise_(m, ""), "source_key must not be empty"),
        (lambda m, i: raise_(m, "k" * 1001), "at most 1000"),
        (lambda m, i: raise_(m, "x", data={"n": float("nan")}), "JSON"),
        (lambda m, i: raise_(m, "x", data={"big": "x" * 70_000}), "larger than"),
        (lambda m, i: raise_(m, "x", data={1: object()}), "JSON"),
        (lambda m, i: raise_(m, "x", related_cameras=[f"c{n}" for n in range(16)]), "at most 15"),
        (lambda m, i: raise_(m, "x", at_us=-1), "out of range"),
    ],
)
def test_bad_input_rejected_cleanly(
    mgr: AlarmManager, call: Callable[[AlarmManager, int], object], message: str
) -> None:
    a = raise_(mgr)
    seq = mgr.last_seq()
    with pytest.raises(ValueError, match=message):
        call(mgr, a.id)
    assert mgr.get(a.id) == a and mgr.count() == 1 and mgr.last_seq() == seq


def test_empty_title_falls_back_to_the_condition(mgr: AlarmManager) -> None:
    """A rule may leave the title empty; the alarm is raised anyway (never lost over a title)."""
    a = raise_(mgr, "tamper/s/cam-1/covered", title="  ")
    assert a.title == "tamper/s/cam-1/covered"
    assert json.loads(a.model_dump_json())["title"] == a.title
