"""Time profiles evaluated at a moment: is a profile active, and when does that next change.

A profile is read in the local wall-clock time of its time zone (IANA, through :mod:`zoneinfo`),
so "18:00" means 18:00 on the clocks of the site in winter and in summer. The profile is active
when the local wall time falls in a range; that one definition settles the DST days too: on the
spring-forward night the skipped hour never occurs (a range inside it is not active that night,
a range across it ends at the jump), and on the fall-back night the repeated hour is active both
times it occurs. A range whose end is before its start runs past midnight: "18:00"-"07:00" on
``fri`` covers Friday 18:00 to Saturday 07:00. A range whose start equals its end is empty.
An exception date removes the local calendar day on which a moment falls, also for the morning
part of an overnight range that started the evening before.

Pure functions of their arguments (no clock is read). Thread-safe: the only shared state is a
small cache of parsed profiles, replaced whole.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from vmscore.rules.models import DAYS, TimeProfile

__all__ = ["is_active", "next_change", "validate_profile"]

_US = 1_000_000
_DAY_S = 86_400
_CHUNK_S = 6 * 3600
"""Offset changes are looked for in steps this long: no zone changes its offset twice within
six hours, so one bisection per step finds every DST transition."""
_CACHE_MAX = 1024


@dataclass(frozen=True)
class _Range:
    days: frozenset[int]
    """Weekdays on which the range starts, Monday 0."""
    start_s: int
    end_s: int


@dataclass(frozen=True)
class _Compiled:
    zone: ZoneInfo
    ranges: tuple[_Range, ...]
    except_dates: frozenset[date]
    boundaries_s: tuple[int, ...]
    """Seconds of the local day at which coverage can change (midnight always is one)."""


_cache: dict[int, tuple[TimeProfile, _Compiled]] = {}


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _seconds(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 3600 + int(minutes) * 60


def _compile(profile: TimeProfile) -> _Compiled:
    """Parses a profile once; the cache is keyed by the object and checks identity, because
    configured models are immutable but not hashable (they hold lists)."""
    hit = _cache.get(id(profile))
    if hit is not None and hit[0] is profile:
        return hit[1]
    dates: set[date] = set()
    for text in profile.except_dates:
        try:
            dates.add(date.fromisoformat(text))
        except ValueError:
            raise ValueError(
                f"time profile {profile.name!r}: exception date {text!r} is not an ISO date "
                "(YYYY-MM-DD)"
            ) from None
    ranges = tuple(
        _Range(frozenset(DAYS.index(d) for d in r.days), _seconds(r.start), _seconds(r.end))
        for r in profile.ranges
    )
    bounds = {0}
    for r in ranges:
        bounds.add(r.start_s % _DAY_S)
        bounds.add(r.end_s % _DAY_S)
    compiled = _Compiled(_zone(profile.timezone), ranges, frozenset(dates), tuple(sorted(bounds)))
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[id(profile)] = (profile, compiled)
    return compiled


def validate_profile(profile: TimeProfile) -> None:
    """Raises ValueError naming the profile when it cannot be evaluated (a malformed exception
    date: the model accepts any string there)."""
    _compile(profile)


def _covered(c: _Compiled, local: datetime) -> bool:
    if local.date() in c.except_dates:
        return False
    weekday = local.weekday()
    yesterday = (weekday - 1) % 7
    second = local.hour * 3600 + local.minute * 60 + local.second
    for r in c.ranges:
        if r.start_s < r.end_s:
            if weekday in r.days and r.start_s <= second < r.end_s:
                return True
        elif r.start_s > r.end_s:
            # Past midnight: the evening part belongs to the day the range is listed on, the
            # morning part to the day after.
            if weekday in r.days and second >= r.start_s:
                return True
            if yesterday in r.days and second < r.end_s:
                return True
    return False


def _local(c: _Compiled, at_s: int) -> datetime:
    return datetime.fromtimestamp(at_s, tz=UTC).astimezone(c.zone)


def is_active(profile: TimeProfile, at_us: int) -> bool:
    """Whether the profile is active at ``at_us`` (UTC microseconds). Ranges are half-open:
    active from the first second of the start to just before the end."""
    c = _compile(profile)
    return _covered(c, _local(c, at_us // _US))


def _offset_s(c: _Compiled, at_s: int) -> int:
    off = _local(c, at_s).utcoffset()
    return int(off.total_seconds()) if off is not None else 0


def _transitions(c: _Compiled, from_s: int, to_s: int) -> list[int]:
    """The first second of each UTC offset change in (from_s, to_s]."""
    found: list[int] = []
    lo = from_s
    lo_off = _offset_s(c, lo)
    while lo < to_s:
        hi = min(lo + _CHUNK_S, to_s)
        hi_off = _offset_s(c, hi)
        if hi_off != lo_off:
            a, b = lo, hi  # offset(a) == lo_off, offset(b) != lo_off
            while b - a > 1:
                mid = (a + b) // 2
                if _offset_s(c, mid) == lo_off:
                    a = mid
                else:
                    b = mid
            found.append(b)
        lo, lo_off = hi, hi_off
    return found


def next_change(profile: TimeProfile, at_us: int, horizon_s: int = 8 * _DAY_S) -> int | None:
    """The first moment after ``at_us`` at which :func:`is_active` differs from its value at
    ``at_us`` (UTC microseconds, a whole second), or None when it stays the same for
    ``horizon_s`` seconds.

    Computed from the boundaries, not by stepping: activity depends only on the local date and
    the local second of the day, so it can change only where the local wall time reaches a range
    boundary or midnight (each wall time mapped to UTC on both sides of a fall-back fold) or
    where the wall time jumps (a DST transition). Those candidates are tested in order.
    """
    if horizon_s <= 0:
        raise ValueError(f"horizon_s must be positive, not {horizon_s}")
    c = _compile(profile)
    at_s = at_us // _US
    end_s = at_s + int(horizon_s)
    current = _covered(c, _local(c, at_s))
    candidates: set[int] = set(_transitions(c, at_s, end_s))
    day = _local(c, at_s).date() - timedelta(days=1)
    last_day = _local(c, end_s).date() + timedelta(days=1)
    while day <= last_day:
        for second in c.boundaries_s:
            hour, rest = divmod(second, 3600)
            for fold in (0, 1):
                wall = datetime(
                    day.year, day.month, day.day, hour, rest // 60, rest % 60,
                    tzinfo=c.zone, fold=fold,
                )  # fmt: skip
                candidates.add(int(wall.timestamp()))
        day += timedelta(days=1)
    ordered = sorted(candidates)
    # Candidates at or before at_s cannot be the next change: at_us itself lies in [at_s, at_s+1).
    for t in ordered[bisect.bisect_right(ordered, at_s) :]:
        if t > end_s:
            break
        if _covered(c, _local(c, t)) != current:
            return t * _US
    return None
