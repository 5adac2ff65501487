"""Helpers for tests of the HTTP API's security: a user store with a cheap hasher, logged-in test
clients per role, and a walk over every route of an app proving that none answers without the
right credentials and role.

The walk is meant for the full station app too: build it, install the auth module, log in one
client per role with :func:`role_clients`, then ``walk_routes(app, clients, anonymous)``.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import argon2
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from starlette.exceptions import StarletteDeprecationWarning
from starlette.websockets import WebSocketDisconnect

from vmscore.web.auth import (
    CSRF_HEADER,
    ROLES,
    SESSION_COOKIE,
    Role,
    UserStore,
    role_at_least,
    route_policy,
)

with warnings.catch_warnings():
    # Starlette's test client asks for the httpx2 package; with httpx it works the same and warns.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

__all__ = [
    "FAST_HASHER",
    "PASSWORD",
    "Clock",
    "LoggedInClient",
    "TestClient",
    "WalkReport",
    "login",
    "make_store",
    "role_clients",
    "walk_routes",
    "ws_headers",
]

# Seconds of argon2 per hash would make a test file take minutes; the parameters do not change
# what is tested (the encoding, verification and rehash logic).
FAST_HASHER = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PASSWORD = "correct horse battery staple"
BASE_URL = "https://testserver"  # https, so the Secure session cookie is sent back


class Clock:
    """A settable UTC-microsecond clock for the store and the limiter."""

    def __init__(self, start_us: int = 1_700_000_000_000_000) -> None:
        self.now_us = start_us

    def __call__(self) -> int:
        return self.now_us

    def advance(self, seconds: float) -> None:
        self.now_us += int(seconds * 1_000_000)


def make_store(path: Path, **options: Any) -> UserStore:
    options.setdefault("hasher", FAST_HASHER)
    return UserStore(path, **options)


class LoggedInClient(TestClient):
    """A test client holding a session cookie and sending its CSRF token on every request."""

    user: str
    password: str

    def relogin(self) -> None:
        response = self.post("/api/auth/login", json={"user": self.user, "password": self.password})
        assert response.status_code == 200, response.text
        self.headers[CSRF_HEADER] = response.json()["csrf_token"]


def login(
    app: FastAPI,
    user: str,
    password: str = PASSWORD,
    *,
    client: tuple[str, int] = ("127.0.0.1", 50000),
) -> LoggedInClient:
    c = LoggedInClient(app, base_url=BASE_URL, client=client)
    c.user, c.password = user, password
    c.relogin()
    return c


def ws_headers(client: TestClient) -> dict[str, str]:
    """The test client opens WebSockets as ws://, so its Secure session cookie is not sent by
    itself (a browser on https sends it with wss://): pass it explicitly."""
    cookie = client.cookies.get(SESSION_COOKIE)
    return {"Cookie": f"{SESSION_COOKIE}={cookie}"} if cookie else {}


def role_clients(
    app: FastAPI, store: UserStore, password: str = PASSWORD
) -> dict[Role, LoggedInClient]:
    """Adds one user per role (``walk-viewer``...) and logs each in."""
    clients: dict[Role, LoggedInClient] = {}
    for role in ROLES:
        name = f"walk-{role}"
        if store.get_user(name) is None:
            store.add_user(name, password, role)
        clients[role] = login(app, name, password)
    return clients


_PLACEHOLDERS = {
    "StringConvertor": "walk-nonexistent",
    "PathConvertor": "walk/nonexistent",
    "IntegerConvertor": "987654321",
    "FloatConvertor": "1.5",
    "UUIDConvertor": str(uuid.UUID(int=1)),
}
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class WalkReport:
    """What the walk called and what it found; ``failures`` is empty when the walk passed."""

    routes: dict[str, str] = field(default_factory=dict)  # "METHOD /path" -> policy
    checks: list[tuple[str, str, str, int | str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def count(self, policy: str) -> int:
        return sum(1 for p in self.routes.values() if p == policy)

    def summary(self) -> str:
        by_policy = ", ".join(
            f"{p}: {self.count(p)}" for p in ("public", "viewer", "operator", "admin")
        )
        return f"{len(self.routes)} routes ({by_policy}), {len(self.checks)} requests"


def _url(path: str, convertors: Mapping[str, Any], values: Mapping[str, str]) -> str:
    for name, convertor in convertors.items():
        value = values.get(name, _PLACEHOLDERS.get(type(convertor).__name__, "walk-nonexistent"))
        path = path.replace("{" + name + "}", value).replace("{" + name + ":path}", value)
    return path


def walk_routes(
    app: FastAPI,
    clients: Mapping[Role, TestClient],
    anonymous: TestClient,
    *,
    path_values: Mapping[str, str] | None = None,
    public_paths: Collection[str] = (),
) -> WalkReport:
    """Calls every route of ``app`` as nobody and as each role, and fails on any breach.

    For each HTTP route (path parameters replaced by ``path_values`` or placeholders that name
    nothing real, body ``{}``): anonymous and a made-up bearer token get 401; a role below the
    route's declared minimum gets 403; a cookie client of a sufficient role gets 403 on an unsafe
    method without its CSRF token, and neither 401 nor 403 with it; nothing answers 5xx. A
    WebSocket route refuses the handshake to anonymous and to roles below its minimum. A route
    that declares no policy fails the walk (so every new route must declare one), except
    FastAPI's own documentation routes and ``public_paths``, which must merely not fail.

    Routes marked ``openapi_extra={"x-ends-session": True}`` (logout) are called last, and a
    :class:`LoggedInClient` logs in again after one. Raises AssertionError listing every failure.
    """
    values = dict(path_values or {})
    report = WalkReport()
    docs = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    clients = dict(clients)
    contexts = sorted(
        iter_route_contexts(app.routes),
        key=lambda rc: bool((getattr(rc, "openapi_extra", None) or {}).get("x-ends-session")),
    )

    def call(who: str, client: TestClient, method: str, url: str, **kw: Any) -> int | str:
        try:
            response = client.request(method, url, **kw)
        except Exception as e:  # a server error surfaced by the test client
            status: int | str = f"raised {type(e).__name__}: {e}"
        else:
            status = response.status_code
            if status == 401 and "www-authenticate" not in response.headers:
                report.failures.append(f"{method} {url} as {who}: 401 without WWW-Authenticate")
        report.checks.append((method, url, who, status))
        return status

    def expect(ok: bool, what: str) -> None:
        if not ok:
            report.failures.append(what)

    bogus = {"Authorization": "Bearer vmst_0000000000000000_not-a-token"}
    for rc in contexts:
        original = rc.original_route
        path = rc.path
        convertors = getattr(rc, "param_convertors", {}) or {}
        url = _url(path, convertors, values)
        if isinstance(original, APIWebSocketRoute):
            policy = route_policy(rc)
            report.routes[f"WS {path}"] = str(policy)
            if policy is None:
                report.failures.append(f"WS {path}: no declared policy")
                continue
            if policy == "public":
                continue
            denied = {"anonymous": anonymous} | {
                r: c for r, c in clients.items() if not role_at_least(r, policy)
            }
            for who, client in denied.items():
                reason = ""
                try:
                    with client.websocket_connect(url, headers=ws_headers(client)) as ws:
                        ws.close()
                    outcome: int | str = "accepted"
                except WebSocketDisconnect as e:
                    outcome, reason = e.code, e.reason
                except Exception as e:  # an HTTP denial of the upgrade counts as refused
                    outcome = f"refused ({type(e).__name__})"
                report.checks.append(("WS", url, who, outcome))
                expect(outcome != "accepted", f"WS {path}: {who} was let in")
                if who != "anonymous":  # refused for the role, not for a missing cookie
                    expect("requires" in reason, f"WS {path}: {who} refused with {reason!r}")
            continue
        if not isinstance(original, APIRoute):
            methods = sorted((getattr(rc, "methods", None) or {"GET"}) - {"HEAD"})
            if path in docs or path in public_paths:
                for method in methods:
                    report.routes[f"{method} {path}"] = "public"
                    status = call("anonymous", anonymous, method, url)
                    expect(isinstance(status, int) and status < 500, f"{path}: {status}")
            else:
                report.failures.append(f"{path}: not a FastAPI route, so no declared policy")
            continue
        policy = route_policy(rc)
        ends_session = bool((rc.openapi_extra or {}).get("x-ends-session"))
        for method in sorted(rc.methods - {"HEAD"}):
            report.routes[f"{method} {path}"] = str(policy)
            name = f"{method} {path}"
            if policy is None:
                report.failures.append(f"{name}: no declared policy (require(...) or public)")
                continue
            body = {"json": {}} if method in _UNSAFE else {}
            status = call("anonymous", anonymous, method, url, **body)
            if policy == "public":
                expect(
                    isinstance(status, int) and status < 500 and status not in (401, 403),
                    f"{name} is public but answered anonymous with {status}",
                )
                continue
            expect(status == 401, f"{name} answered anonymous with {status}, not 401")
            status = call("bogus token", anonymous, method, url, headers=bogus, **body)
            expect(status == 401, f"{name} answered a made-up token with {status}, not 401")
            for role, client in clients.items():
                if not role_at_least(role, policy):
                    status = call(role, client, method, url, **body)
                    expect(status == 403, f"{name} (min {policy}) answered {role} with {status}")
                    continue
                if method in _UNSAFE and CSRF_HEADER in client.headers:
                    headers = {CSRF_HEADER: "wrong"}
                    status = call(
                        f"{role} without CSRF", client, method, url, headers=headers, **body
                    )
                    expect(status == 403, f"{name} answered {role} without CSRF with {status}")
                status = call(role, client, method, url, **body)
                expect(
                    isinstance(status, int) and status < 500 and status not in (401, 403),
                    f"{name} (min {policy}) answered {role} with {status}",
                )
                relogin: Callable[[], None] | None = getattr(client, "relogin", None)
                if ends_session and relogin is not None:
                    relogin()
    if not report.routes:
        report.failures.append("the app has no routes to walk")
    assert not report.failures, "route walk failed:\n  " + "\n  ".join(report.failures)
    return report
