"""Prometheus metrics of a station, named like Frigate's (``vmscore_camera_fps{camera=...}``).

Collected on demand from the station's health snapshot into a registry of its own (nothing is
global, so several stations in one process, as in the tests, do not mix their figures).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from vmscore.station.station import Station


class _StationCollector(Collector):
    def __init__(self, station: Station) -> None:
        self._station = station

    def collect(self) -> Iterator[Metric]:
        h = self._station.health()
        yield _gauge("vmscore_cameras", "Cameras configured", h["cameras_total"])
        yield _gauge("vmscore_cameras_online", "Cameras delivering video", h["cameras_online"])
        open_alarms = GaugeMetricFamily(
            "vmscore_alarms_open", "Open alarms by priority", labels=["priority"]
        )
        for prio, n in sorted(h["alarms_open"].items()):
            open_alarms.add_metric([prio], n)
        yield open_alarms
        yield CounterMetricFamily(
            "vmscore_station_events_dropped",
            "Events dropped (queue full)",
            value=h["events_dropped"],
        )
        yield _gauge("vmscore_sse_subscribers", "Open event streams", h["sse_subscribers"])
        cam_metrics: dict[str, Any] = {
            "online": GaugeMetricFamily(
                "vmscore_camera_online", "1 when delivering video", labels=["camera", "site"]
            ),
            "fps": GaugeMetricFamily(
                "vmscore_camera_fps",
                "Frames per second received",
                labels=["camera", "site", "stream"],
            ),
            "bitrate": GaugeMetricFamily(
                "vmscore_camera_bitrate_bps",
                "Bits per second received",
                labels=["camera", "site", "stream"],
            ),
            "lost": CounterMetricFamily(
                "vmscore_camera_packets_lost",
                "RTP packets lost",
                labels=["camera", "site", "stream"],
            ),
            "reconnects": CounterMetricFamily(
                "vmscore_camera_reconnects", "Reconnections", labels=["camera", "site", "stream"]
            ),
            "analysed": CounterMetricFamily(
                "vmscore_camera_frames_analysed",
                "Frames given to motion analysis",
                labels=["camera", "site"],
            ),
            "skipped": CounterMetricFamily(
                "vmscore_camera_frames_skipped",
                "Frames skipped by analysis (fell behind or errors)",
                labels=["camera", "site"],
            ),
        }
        for cam in h["cameras"]:
            c, s = cam["camera"], cam["site"]
            cam_metrics["online"].add_metric([c, s], 1 if cam["online"] else 0)
            for role, st in cam["streams"].items():
                cam_metrics["fps"].add_metric([c, s, role], st["fps"])
                cam_metrics["bitrate"].add_metric([c, s, role], st["bitrate_bps"])
                cam_metrics["lost"].add_metric([c, s, role], st["packets_lost"])
                cam_metrics["reconnects"].add_metric([c, s, role], st["reconnects"])
            an = cam.get("analysis")
            if an:
                cam_metrics["analysed"].add_metric([c, s], an["frames_analysed"])
                cam_metrics["skipped"].add_metric([c, s], an["frames_skipped"])
        yield from cam_metrics.values()
        storage_free = GaugeMetricFamily(
            "vmscore_storage_free_bytes", "Free bytes", labels=["storage"]
        )
        for st in h["storage"]:
            if "free_bytes" in st:
                storage_free.add_metric([str(st.get("name", ""))], st["free_bytes"])
        yield storage_free


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def render(station: Station) -> tuple[bytes, str]:
    """The station's metrics in Prometheus' text format, and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StationCollector(station))
    return generate_latest(registry), CONTENT_TYPE_LATEST
