"""The multi-site broker layer on its own, against real mosquitto on loopback: a central broker
and three site brokers running the configurations shipped in ``deploy/mosquitto/`` (TLS and
per-site users included), each site bridged through a relay that can cut its link. What reaches
central and when, what a cut link and a restarted site broker keep, the bridge's link state,
retained state, and the figures docs/mqtt-bridging.md quotes (printed with ``-s``)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqtt_bridge_helpers import (
    CENTRAL_ACL,
    CENTRAL_CONF,
    PLACEHOLDER,
    SITE_ACL,
    SITE_CONF,
    BridgedSites,
    Publisher,
    bridge_user,
    bridged_sites,
    link_state_topic,
    render,
)
from mqtt_helpers import Message, Subscriber, wait_until

pytestmark = pytest.mark.timeout(60)

DOC = Path(__file__).resolve().parents[1] / "docs" / "mqtt-bridging.md"


@pytest.fixture
def topo(tmp_path: Path) -> Iterator[BridgedSites]:
    with bridged_sites(tmp_path) as t:
        yield t


def alarm(seq: int, **extra: object) -> str:
    return json.dumps({"seq": seq, "t": time.monotonic_ns(), "type": "new", **extra})


def seqs(messages: list[Message]) -> list[int]:
    return [int(json.loads(m.payload)["seq"]) for m in messages]


def first_arrivals(received: list[int]) -> list[int]:
    seen: set[int] = set()
    out = []
    for s in received:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def inversions(order: list[int]) -> int:
    """How many messages arrived before one published earlier (first arrivals only)."""
    return sum(1 for a, b in itertools.pairwise(order) if b < a)


def report(line: str) -> None:
    print(f"\n[mqtt-bridge] {line}", end="")


def wait_link_state(sub: Subscriber, site: str, payload: bytes, count: int = 1) -> float:
    """Waits for the ``count``-th ``payload`` on the site's link state topic; returns when."""
    sub.wait_for(link_state_topic(site), payload, timeout=30, count=count)
    return time.monotonic()


# --- the shipped files --------------------------------------------------------------------------


def test_shipped_configs_are_what_the_tests_render_and_the_doc_describes() -> None:
    """Every placeholder of the shipped files is explained in the document, and the ACL the tests
    give the central broker is the one the document tells the installer to write."""
    doc = DOC.read_text()
    for path in (SITE_CONF, CENTRAL_CONF):
        text = path.read_text()
        names = set(PLACEHOLDER.findall(text))
        assert names, path
        for name in names:
            assert f"`@{name}@`" in doc, f"{path.name}: @{name}@ is not explained in {DOC.name}"
        assert not PLACEHOLDER.search(render(text, dict.fromkeys(names, "x")))
    assert CENTRAL_ACL in doc
    assert SITE_ACL in doc


# --- delivery -----------------------------------------------------------------------------------


def test_alarm_reaches_central_and_command_reaches_only_its_site(topo: BridgedSites) -> None:
    """An alarm published at a site reaches the central station's persistent session within 2 s,
    and is kept for it while it is away; a command published at central for one site reaches
    that site once, no other site, and does not come back to central."""
    central = topo.central_client(
        ["vmscore/+/alarms", "vmscore/north/cmd/#", "vmscore/north/test-marker"],
        session="central-station",
    )
    at_site = {s: topo.site_client(s, "vmscore/#") for s in topo.sites}
    try:
        t0 = time.monotonic()
        at_site["north"].publish("vmscore/north/alarms", alarm(1))
        central.wait_for("vmscore/north/alarms", timeout=2)
        report(f"alarm site->central: {1000 * (time.monotonic() - t0):.1f} ms")

        # The central station's session keeps what arrives while it is disconnected.
        central.close()
        at_site["north"].publish("vmscore/north/alarms", alarm(2))
        at_site["north"].publish("vmscore/north/test-marker", b"m1")
        time.sleep(0.3)
        central = topo.central_client(
            ["vmscore/+/alarms", "vmscore/north/cmd/#", "vmscore/north/test-marker"],
            session="central-station",
        )
        central.wait_for("vmscore/north/test-marker", b"m1")
        assert seqs(central.of("vmscore/north/alarms")) == [2]

        ack = json.dumps({"alarm_id": 7, "user": "operator"})
        central.publish("vmscore/north/cmd/ack", ack)
        at_site["north"].wait_for("vmscore/north/cmd/ack", ack.encode())
        # A command for every site, sent after: once it is everywhere, the ack would have been.
        central.publish("vmscore/cmd/arm", b"{}")
        for sub in at_site.values():
            sub.wait_for("vmscore/cmd/arm")
        assert len(at_site["north"].of("vmscore/north/cmd/ack")) == 1
        assert at_site["south"].of("vmscore/north/cmd/ack") == []
        assert at_site["east"].of("vmscore/north/cmd/ack") == []
        # Nothing loops back: the site's out pattern covers cmd/ too, yet central sees its own
        # command once (a marker sent by the site after it has arrived proves it).
        at_site["north"].publish("vmscore/north/test-marker", b"m2")
        central.wait_for("vmscore/north/test-marker", b"m2")
        assert len(central.of("vmscore/north/cmd/ack")) == 1
    finally:
        central.close()
        for sub in at_site.values():
            sub.close()


def test_a_site_cannot_write_or_read_another_sites_topics(topo: BridgedSites) -> None:
    """The shipped ACL: a site's credentials (as in its bridge configuration) publish into that
    site's tree only, and cannot subscribe to another site's."""
    central = topo.central_client("vmscore/#")
    south = Subscriber(
        topo.central,
        ["vmscore/north/#", "vmscore/south/cmd/#"],
        username=bridge_user("south"),
        password=topo.central.site_passwords["south"],
    )
    try:
        south.publish("vmscore/north/alarms", alarm(1))
        south.publish("vmscore/south/test-marker", b"end")
        central.wait_for("vmscore/south/test-marker", b"end")
        assert central.of("vmscore/north/alarms") == []
        central.publish("vmscore/north/alarms", alarm(2))
        central.publish("vmscore/south/cmd/test-marker", b"end")
        south.wait_for("vmscore/south/cmd/test-marker", b"end")
        assert south.of("vmscore/north/alarms") == []
    finally:
        south.close()
        central.close()


def test_cut_link_queues_at_the_site_and_delivers_all_in_order(topo: BridgedSites) -> None:
    """While north's link is cut, 50 alarms published there wait in the site broker's queue for
    the bridge and the other sites keep flowing; after the link returns all 50 reach the central
    station, none lost, in order of first arrival. Duplicates are counted, not assumed away. The
    link state topic at central shows north going down and up."""
    central = topo.central_client(
        ["vmscore/+/alarms", "$SYS/broker/connection/+/state"], session="central-station"
    )
    north = topo.site_client("north", link_state_topic("north"))
    south = topo.site_client("south")
    try:
        central.wait_for(link_state_topic("north"), b"1")
        t_cut = time.monotonic()
        topo.cut("north")
        t_down = wait_link_state(central, "north", b"0")
        # The site's own broker says so too (the station could watch this).
        north.wait_for(link_state_topic("north"), b"0")

        for i in range(50):
            north.publish("vmscore/north/alarms", alarm(i))
        for i in range(10):
            south.publish("vmscore/south/alarms", alarm(i))
        central.wait_for("vmscore/south/alarms", count=10, timeout=5)
        assert central.of("vmscore/north/alarms") == []

        t_restore = time.monotonic()
        topo.restore("north")
        t_up = wait_link_state(central, "north", b"1", count=2)
        wait_until(
            lambda: len(set(seqs(central.of("vmscore/north/alarms")))) == 50,
            15,
            "the 50 alarms published during the cut",
        )
        t_all = time.monotonic()
        time.sleep(0.2)  # late duplicates, if any
        received = seqs(central.of("vmscore/north/alarms"))
        assert first_arrivals(received) == list(range(50)), received
        states = [m.payload for m in central.of(link_state_topic("north"))]
        assert states == [b"1", b"0", b"1"]
        assert seqs(central.of("vmscore/south/alarms")) == list(range(10))
        report(
            f"cut: central saw the link down after {t_down - t_cut:.3f} s; after restore, link up "
            f"after {t_up - t_restore:.2f} s, the 50 queued alarms after "
            f"{t_all - t_restore:.2f} s; duplicates: {len(received) - 50}"
        )
    finally:
        for sub in (central, north, south):
            sub.close()


def test_cut_under_load_loses_nothing(topo: BridgedSites) -> None:
    """A cut in the middle of a stream (messages in flight on the bridge when the link goes): none
    is lost. QoS 1 resends what was in flight, so duplicates can appear, and a message published
    while the bridge reconnects can overtake the queue: both are counted and printed."""
    total = 2000
    central = topo.central_client("vmscore/north/events", session="central-station")
    errors: list[BaseException] = []

    def stream() -> None:
        try:
            with Publisher(topo.sites["north"]) as pub:
                for i in range(total):
                    pub.publish("vmscore/north/events", alarm(i))
                    time.sleep(0.001)
                pub.flush()
        except BaseException as e:  # reported by the test's thread
            errors.append(e)

    publisher = threading.Thread(target=stream, name="test-stream")
    publisher.start()
    try:
        wait_until(lambda: len(central.of("vmscore/north/events")) >= 300, 10, "the stream")
        topo.cut("north")
        at_cut = len(central.of("vmscore/north/events"))
        time.sleep(0.5)
        topo.restore("north")
        publisher.join(30)
        assert not publisher.is_alive() and not errors, errors
        wait_until(
            lambda: len(set(seqs(central.of("vmscore/north/events")))) == total,
            20,
            "every message of the stream",
        )
        time.sleep(0.2)
        received = seqs(central.of("vmscore/north/events"))
        order = first_arrivals(received)
        assert sorted(order) == list(range(total))
        report(
            f"cut under load ({total} messages, cut after {at_cut}): lost 0, duplicates "
            f"{len(received) - total}, overtaken {inversions(order)}"
        )
    finally:
        publisher.join(30)
        central.close()


def test_site_broker_restarted_during_a_cut_keeps_its_queue(topo: BridgedSites) -> None:
    """Persistence: the site broker stopped (SIGTERM, it saves) and started again on the same data
    directory while its link is cut still delivers what it had queued for the bridge."""
    central = topo.central_client("vmscore/north/alarms", session="central-station")
    try:
        topo.cut("north")
        topo.wait_links(up=False, sites=["north"])
        with topo.site_client("north") as north:
            for i in range(50):
                north.publish("vmscore/north/alarms", alarm(i))
        site = topo.sites["north"]
        site.stop()
        assert "Saving in-memory database" in site.log()
        site.start()
        time.sleep(0.3)
        assert central.of("vmscore/north/alarms") == []
        topo.restore("north")
        wait_until(
            lambda: len(set(seqs(central.of("vmscore/north/alarms")))) == 50, 20, "the queue"
        )
        time.sleep(0.2)
        received = seqs(central.of("vmscore/north/alarms"))
        assert first_arrivals(received) == list(range(50))
        report(f"site restarted during a cut: 50 of 50 delivered, duplicates {len(received) - 50}")
    finally:
        central.close()


def test_site_broker_crash_keeps_only_what_was_saved(topo: BridgedSites) -> None:
    """The limit of persistence: mosquitto writes its queue to disk on a clean stop and every
    autosave_interval (or on SIGUSR1), so a crash loses what was queued since the last save.
    Here: 20 alarms, a save, 20 more, SIGKILL; after restart and restore, the first 20 arrive and
    the last 20 never do (a marker sent after the restart shows the link carries on)."""
    central = topo.central_client(
        ["vmscore/north/alarms", "vmscore/north/test-marker"], session="central-station"
    )
    site = topo.sites["north"]
    try:
        topo.cut("north")
        topo.wait_links(up=False, sites=["north"])
        with topo.site_client("north") as north:
            for i in range(20):
                north.publish("vmscore/north/alarms", alarm(i))
            saves = site.log().count("Saving in-memory database")
            assert site.proc is not None
            os.kill(site.proc.pid, signal.SIGUSR1)
            wait_until(lambda: site.log().count("Saving in-memory database") > saves, 5, "the save")
            for i in range(20, 40):
                north.publish("vmscore/north/alarms", alarm(i))
        site.kill()
        site.start()
        with topo.site_client("north") as north:
            north.publish("vmscore/north/test-marker", b"after-restart")
        topo.restore("north")
        central.wait_for("vmscore/north/test-marker", timeout=20)
        time.sleep(0.2)
        received = seqs(central.of("vmscore/north/alarms"))
        assert first_arrivals(received) == list(range(20))
        report(
            f"site crash during a cut: 20 saved delivered, 20 unsaved lost, dups "
            f"{len(received) - 20}"
        )
    finally:
        central.close()


def test_central_broker_restart_keeps_sessions_and_queues(topo: BridgedSites) -> None:
    """Persistence at central: the central broker stopped and started again. Meanwhile every
    site queues for its bridge; the central station's persistent session (subscriptions and
    what was queued for it) is restored from the file, so it gets every site's messages."""
    central = topo.central_client("vmscore/+/alarms", session="central-station")
    central.close()
    topo.central.stop()
    with topo.site_client("north") as north, topo.site_client("south") as south:
        for i in range(20):
            north.publish("vmscore/north/alarms", alarm(i))
            south.publish("vmscore/south/alarms", alarm(i))
    topo.central.start()
    central = topo.central_client((), session="central-station")
    try:

        def all_arrived() -> bool:
            return all(
                len(set(seqs(central.of(f"vmscore/{s}/alarms")))) == 20 for s in ("north", "south")
            )

        wait_until(all_arrived, 20, "the 2 x 20 alarms queued at the sites")
        time.sleep(0.2)
        dups = 0
        for site in ("north", "south"):
            received = seqs(central.of(f"vmscore/{site}/alarms"))
            assert first_arrivals(received) == list(range(20))
            dups += len(received) - 20
        report(f"central restarted: 2 x 20 queued at the sites delivered, duplicates {dups}")
    finally:
        central.close()


def test_retained_availability_reaches_central(topo: BridgedSites) -> None:
    """A site's retained availability reaches central, where a new subscriber gets it; changed
    during a cut, central ends with the latest value once the link returns. Each reconnection
    attempt of the bridge sends the site's retained messages again (mosquitto re-subscribes
    locally): counted and printed, they are what makes the outage buffer fill faster."""
    topic = "vmscore/north/available"
    site = topo.sites["north"]
    with topo.site_client("north") as north:
        north.publish(topic, b"online", retain=True)
        wait_until(lambda: topo.central_retained(topic).get(topic) == b"online", 5, "online")
        watcher = topo.central_client(topic, session="central-station")
        try:
            watcher.wait_for(topic, b"online")
            attempts = site.log().count("Connecting bridge (step 1)")
            topo.cut("north")
            topo.wait_links(up=False, sites=["north"])
            north.publish(topic, b"stopped", retain=True)
            topo.restore("north")
            topo.wait_links(up=True, sites=["north"])
            watcher.wait_for(topic, b"stopped", timeout=20)
            time.sleep(0.3)
            attempts = site.log().count("Connecting bridge (step 1)") - attempts
            assert topo.central_retained(topic) == {topic: b"stopped"}
            assert watcher.of(topic)[-1].payload == b"stopped"
            seen = [m.payload.decode() for m in watcher.of(topic)]
            report(
                f"retained availability at a persistent central subscriber: {seen} "
                f"({attempts} reconnection attempt(s) during the cut)"
            )
        finally:
            watcher.close()


# --- figures ------------------------------------------------------------------------------------


def test_measure_latency_and_throughput(topo: BridgedSites) -> None:
    """Latency of a QoS 1 alarm from a site client to a central client (500 messages, one every
    2 ms) and the rate one bridge sustains for ~500-byte JSON at QoS 1; the consumer runs in its
    own process."""
    with topo.central_consumer("vmscore/north/alarms", 500) as consumer:
        with topo.site_client("north") as north:
            for i in range(500):
                north.publish("vmscore/north/alarms", alarm(i))
                time.sleep(0.002)
        rows = consumer.result()
    assert sorted(r[0] for r in rows) == list(range(500))
    lat = sorted((arrived - sent) / 1e6 for _, sent, arrived in rows)
    median, p99 = statistics.median(lat), lat[int(0.99 * len(lat)) - 1]
    report(
        f"latency site->central, 500 QoS 1: median {median:.2f} ms, p99 {p99:.2f} ms, "
        f"max {lat[-1]:.2f} ms"
    )
    assert p99 < 2000

    total = 20000
    pad = "x" * 400
    with topo.central_consumer("vmscore/north/events", total) as consumer:
        with Publisher(topo.sites["north"]) as pub:
            t0 = time.monotonic_ns()
            for i in range(total):
                body = {"seq": i, "t": time.monotonic_ns(), "kind": "motion", "pad": pad}
                pub.publish("vmscore/north/events", json.dumps(body))
            pub.flush()
            t_acked = time.monotonic_ns()
        size = len(json.dumps(body))
        rows = consumer.result()
    received = [r[0] for r in rows]
    assert sorted(received) == list(range(total))
    last = rows[-1][2]
    rate = total / ((last - t0) / 1e9)
    report(
        f"throughput one bridge, {total} x {size}-byte JSON at QoS 1: {rate:.0f} msg/s at central "
        f"(the site broker acknowledged {total / ((t_acked - t0) / 1e9):.0f} msg/s)"
    )
