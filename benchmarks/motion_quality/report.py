"""Markdown tables of a run's results, and the goal check of one detector against the others."""

from __future__ import annotations

from motion_quality.runner import Results, Tally
from motion_quality.scoring import (
    MERGE_GAP_S,
    MIN_AREA_FRACTION,
    MIN_EVENT_S,
    TAIL_S,
    WARMUP_S,
    Score,
)

__all__ = ["goal_check", "markdown"]


def _ratio(value: float | None, num: int, den: int) -> str:
    return "-" if value is None else f"{value:.2f} ({num}/{den})"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _alarms(n: int) -> str:
    return f"{n} false alarm{'' if n == 1 else 's'}"


def _row(scene: str, detector: str, t: Tally) -> str:
    s = t.score
    cells = [
        scene,
        detector,
        str(s.gt_events),
        _ratio(s.recall, s.detected, s.gt_events),
        str(s.alarm_events),
        _ratio(s.precision, s.true_alarms, s.true_alarms + s.false_alarms),
        str(s.false_alarms),
        f"{s.false_per_hour:.1f}",
        f"{_seconds(s.delay(0.5))} / {_seconds(s.delay(0.9))}",
        f"{t.ms_per_frame:.2f}",
    ]
    return "| " + " | ".join(cells) + " |"


def _tamper_row(scene: str, detector: str, s: Score) -> str:
    cells = [
        scene,
        detector,
        f"{s.tamper_flagged}/{s.tamper_episodes}",
        ", ".join(f"{k} {s.tamper_kinds_flagged[k]}/{n}" for k, n in sorted(s.tamper_kinds.items()))
        or "-",
        f"{_seconds(s.tamper_delay(0.5))} / {_seconds(s.tamper_delay(1.0))}",
        str(s.false_tamper),
        f"{s.false_tamper_per_hour:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def markdown(results: Results, *, machine: str = "", notes: list[str] | None = None) -> str:
    """The run as Markdown: parameters, one row per scene type and detector plus totals, tamper
    reports of the detectors that give them, and ``notes`` (e.g. the goal check)."""
    r = results
    lines = [
        "# Motion quality",
        "",
        f"{len(r.scenes)} scene types, {r.width}x{r.height} at {r.fps:g} fps; per scene "
        f"{len(r.seeds)} clips of {r.clip_s:g} s (seeds {', '.join(map(str, r.seeds))}), "
        f"{r.camera_minutes_per_scene:.1f} camera-minutes; {r.clips} clips in {r.wall_s:.0f} s "
        f"(rendering {r.render_s:.0f} s)."
        + ("" if r.zones else " Zones off: the whole picture counts."),
    ]
    if machine:
        lines.append(f"Machine: {machine}.")
    lines += [
        "",
        f"Object events: an object's presence in the zones; required when its silhouette is at "
        f"least {MIN_AREA_FRACTION:g} of the frame for {MIN_EVENT_S:g} s. Alarm events: motion "
        f"frames merged over gaps under {MERGE_GAP_S:g} s; true when overlapping a required event "
        f"(+{TAIL_S:g} s). The first {WARMUP_S:g} s of each clip and tampered frames are set "
        "aside. "
        "Delay: from the object's first frame at the minimum size to the first motion frame.",
        "",
        "| scene | detector | GT events | recall | alarm events | precision | false alarms "
        "| FA / camera-hour | delay median / p90 s | ms/frame |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scene in r.scenes:
        lines += [_row(scene, d, r.tally(scene, d)) for d in r.detectors]
    lines += [_row("**all**", f"**{d}**", r.total(d)) for d in r.detectors]

    tampering = [d for d in r.detectors if r.total(d).score.tamper_scored]
    if tampering:
        lines += [
            "",
            "Tamper reports (detectors that give them): episodes flagged, delay from the episode's "
            "start, tamper report events outside episodes.",
            "",
            "| scene | detector | flagged | by kind | delay median / max s | false reports "
            "| per camera-hour |",
            "|---|---|---|---|---|---|---|",
        ]
        for scene in r.scenes:
            for d in tampering:
                s = r.tally(scene, d).score
                if s.tamper_episodes or s.false_tamper:
                    lines.append(_tamper_row(scene, d, s))
        lines += [_tamper_row("**all**", f"**{d}**", r.total(d).score) for d in tampering]

    suppressed = [
        f"- {scene}, {d}: "
        + ", ".join(f"{reason} {n}" for reason, n in r.tally(scene, d).notes.most_common())
        for scene in r.scenes
        for d in r.detectors
        if r.tally(scene, d).notes
    ]
    if suppressed:
        lines += ["", "Frames with motion suppressed, by reason:", "", *suppressed]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def goal_check(results: Results, ours: str) -> tuple[bool, list[str]]:
    """Whether ``ours`` has fewer false alarms than every other detector at equal or better recall,
    per scene type (where no detector has a false alarm, none is fewer and that is fine), and one
    line per scene saying why."""
    others = [d for d in results.detectors if d != ours]
    lines = [
        f"Goal: {ours} has fewer false alarms than {', '.join(others)} at equal or better recall, "
        "per scene type (none at all, like the others, counts as fewer)."
    ]
    met = True
    for scene in results.scenes:
        mine = results.tally(scene, ours).score
        problems: list[str] = []
        for d in others:
            theirs = results.tally(scene, d).score
            fewer = mine.false_alarms < theirs.false_alarms or (
                mine.false_alarms == theirs.false_alarms == 0
            )
            if not fewer:
                problems.append(f"{_alarms(mine.false_alarms)} against {theirs.false_alarms} ({d})")
            if mine.gt_events and (mine.recall or 0.0) < (theirs.recall or 0.0):
                problems.append(
                    f"recall {mine.recall or 0.0:.2f} against {theirs.recall or 0.0:.2f} ({d})"
                )
        met = met and not problems
        verdict = "met" if not problems else "not met: " + "; ".join(problems)
        lines.append(f"- {scene}: {verdict}")
    lines.append("Goal met on every scene type." if met else "Goal not met on every scene type.")
    return met, lines
