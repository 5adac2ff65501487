"""Webhook delivery for rules: a bounded queue and one worker thread that POSTs (or PUTs, or GETs)
JSON to a rule's URL, with retries and exponential backoff.

Retries belong here rather than in the station because they are the rule's settings
(:class:`~vmscore.rules.models.WebhookAction` ``retries`` and ``timeout_s``). A connection error,
a timeout, a 5xx or a 429 is retried after 0.5 s, 1 s, 2 s ... (capped); another 4xx is the
receiver refusing the request, so it is not retried. A 2xx is delivered; anything else failed.

Credentials never reach a log: user and password in the URL are taken out of it and sent as
Basic authentication, and the logs show the URL without user information or query.

Thread-safe: :meth:`WebhookSender.send` may be called from any thread and never blocks (a full
queue drops the request, counted). One worker thread owns the HTTP client.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from vmscore.rules.engine import Firing
from vmscore.rules.models import WebhookAction

__all__ = ["WebhookSender", "redact_url", "webhook_body"]

log = logging.getLogger("vmscore.rules.webhook")


def redact_url(url: str) -> str:
    """The URL as it may be logged: scheme, host, port and path; no user information (it holds
    passwords) and no query (it often holds tokens)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
    except ValueError:
        return "<invalid url>"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def webhook_body(firing: Firing, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON body a webhook receives for a firing: the rule's name, the event, the moment
    the rule fired and the condition's key, plus what the station adds (an alarm id, a link)."""
    body: dict[str, Any] = {
        "rule": firing.rule.name,
        "event": firing.event.to_json(),
        "at_us": firing.at_us,
        "key": firing.key,
    }
    if extra:
        body.update(extra)
    return body


@dataclass(frozen=True)
class _Request:
    action: WebhookAction
    url: str
    """Without user information."""
    auth: tuple[str, str] | None
    content: bytes


_STOP = object()


class WebhookSender:
    """Delivers webhooks in the background; see the module docstring."""

    def __init__(
        self,
        *,
        queue_size: int = 1000,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, not {queue_size}")
        if backoff_s < 0 or max_backoff_s < backoff_s:
            raise ValueError("backoff_s must be >= 0 and max_backoff_s >= backoff_s")
        self._queue: queue.Queue[_Request | object] = queue.Queue(maxsize=queue_size)
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._lock = threading.Lock()
        self._counts = {"sent": 0, "failed": 0, "retried": 0, "dropped": 0}
        self._closing = threading.Event()
        self._deadline = float("inf")
        """Monotonic time after which the worker gives up what it still holds (set by close)."""
        self._closed = False
        self._client = httpx.Client(follow_redirects=False)
        self._thread = threading.Thread(target=self._run, name="webhook-sender", daemon=True)
        self._thread.start()

    def send(self, action: WebhookAction, body: Mapping[str, Any]) -> bool:
        """Queues one delivery; returns False when it was dropped (queue full or closed).
        Raises ValueError at once when ``body`` cannot be encoded as JSON, in the caller's
        thread where the mistake is."""
        if not isinstance(action, WebhookAction):
            raise TypeError(f"send takes a WebhookAction, not {type(action).__name__}")
        try:
            content = json.dumps(dict(body), separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as e:
            raise ValueError(f"webhook body is not JSON: {e}") from None
        url, auth = _split_credentials(action.url)
        request = _Request(action, url, auth, content)
        if self._closed:
            self._drop(request, "the sender is closed")
            return False
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            self._drop(request, "the queue is full")
            return False
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stops taking requests, delivers what is queued for at most ``timeout`` seconds (no
        retry waits or new attempts past it), then gives up the rest (counted as dropped).

        Returns within ``timeout`` + 1 seconds. An attempt already in flight cannot be cut
        short; it ends by its own ``timeout_s`` in the background (the worker is a daemon
        thread), is counted, and the worker then stops and closes its HTTP client."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._deadline = time.monotonic() + max(0.0, timeout)
        self._closing.set()
        # With a full queue the worker sees _closing and stops when the deadline passes.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_STOP)
        self._thread.join(max(0.0, timeout) + 1.0)
        if self._thread.is_alive():
            log.warning("webhook worker still in an attempt after close(%.1f s)", timeout)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self._counts, "queued": self._queue.qsize()}

    # -- worker -----------------------------------------------------------------------------------

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _drop(self, request: _Request, why: str) -> None:
        self._count("dropped")
        log.warning("webhook to %s dropped: %s", redact_url(request.url), why)

    def _run(self) -> None:
        try:
            self._work()
        finally:
            self._client.close()

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.2 if self._closing.is_set() else None)
            except queue.Empty:
                if time.monotonic() >= self._deadline:
                    return
                continue
            if item is _STOP:
                # Anything queued after the stop marker raced with close(): give it up.
                self._drain("the sender closed")
                return
            if not isinstance(item, _Request):
                continue
            if time.monotonic() >= self._deadline:
                self._drop(item, "the sender closed before it was sent")
                self._drain("the sender closed before it was sent")
                return
            self._deliver(item)

    def _drain(self, why: str) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Request):
                self._drop(item, why)

    def _deliver(self, req: _Request) -> None:
        action = req.action
        where = redact_url(req.url)
        delay = self._backoff_s
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                self._count("failed")
                log.warning("webhook to %s given up at close after %d attempts", where, attempt - 1)
                return
            try:
                response = self._client.request(
                    action.method,
                    req.url,
                    content=req.content if action.method != "GET" else None,
                    headers={
                        **({"content-type": "application/json"} if action.method != "GET" else {}),
                        **action.headers,
                    },
                    auth=req.auth,
                    timeout=min(action.timeout_s, remaining),
                )
            except httpx.TransportError as e:
                # Connection refused, DNS, TLS, timeouts: the receiver may come back.
                outcome = type(e).__name__
                retryable = True
            except Exception as e:
                # A malformed URL or header value: retrying cannot help, and the worker must
                # live on for the other rules' webhooks.
                outcome = type(e).__name__
                retryable = False
            else:
                status = response.status_code
                if 200 <= status < 300:
                    self._count("sent")
                    return
                outcome = f"HTTP {status}"
                retryable = status >= 500 or status == 429
                retry_after = _retry_after_s(response)
            if not retryable or attempt > action.retries:
                self._count("failed")
                log.warning("webhook to %s failed after %d attempt(s): %s", where, attempt, outcome)
                return
            self._count("retried")
            wait = min(max(delay, retry_after or 0.0), self._max_backoff_s)
            log.info("webhook to %s: %s; retry %d in %.1f s", where, outcome, attempt, wait)
            delay = min(delay * 2, self._max_backoff_s)
            self._pause(wait)

    def _pause(self, seconds: float) -> None:
        """Waits before a retry, never past the close deadline (close() wakes the wait so
        the deadline it sets is seen at once)."""
        end = time.monotonic() + seconds
        while True:
            left = min(end, self._deadline) - time.monotonic()
            if left <= 0:
                return
            if self._closing.is_set():
                time.sleep(left)
                return
            self._closing.wait(left)


def _split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without user information, and that information as Basic authentication."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    netloc = parts.netloc.rpartition("@")[2]
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, (unquote(parts.username or ""), unquote(parts.password or ""))


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: keep our own backoff
