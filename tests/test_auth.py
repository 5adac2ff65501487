"""The station's HTTP API security: users and roles, per-camera permissions, argon2 passwords,
session cookies with CSRF, bearer tokens, login rate limiting, the audit log, and a walk over every
route of an app proving none answers without the right credentials."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import argon2
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, WebSocket
from pydantic import ValidationError
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketDisconnect

from auth_helpers import (
    FAST_HASHER,
    PASSWORD,
    Clock,
    LoggedInClient,
    TestClient,
    login,
    make_store,
    role_clients,
    walk_routes,
    ws_headers,
)
from vmscore.web.auth import (
    CAMERA_NOT_FOUND,
    CSRF_HEADER,
    SESSION_COOKIE,
    AdminPrincipal,
    AuditChainError,
    LastAdminError,
    LoginLimiter,
    OperatorPrincipal,
    Principal,
    RoleRequirement,
    UserConfig,
    UserExistsError,
    UserStore,
    ViewerPrincipal,
    audit_action,
    check_camera,
    install_auth,
    public,
    require,
    route_policy,
)

CAMERAS = {"cam1": "north", "cam2": "north", "cam3": "south"}


def station_app(store: UserStore, limiter: LoginLimiter | None = None) -> FastAPI:
    """A small app shaped like the station's: the auth routes plus one route per role."""
    app = FastAPI()
    install_auth(app, store, limiter or LoginLimiter(), secure_cookies=True)
    router = APIRouter()

    @router.get("/api/health", dependencies=[Depends(public)])
    def health() -> dict[str, bool]:
        return {"ok": True}

    @router.get("/api/cameras/{camera}/live")
    def live(camera: str, who: ViewerPrincipal) -> dict[str, str]:
        site = CAMERAS.get(camera)
        if site is None:
            raise HTTPException(404, CAMERA_NOT_FOUND)
        check_camera(who, camera, site)
        return {"camera": camera, "site": site}

    @router.post("/api/alarms/{alarm_id}/ack")
    def ack(alarm_id: int, request: Request, who: OperatorPrincipal) -> dict[str, int]:
        audit_action(request, who, "alarm.ack", target=str(alarm_id), detail={"note": "seen"})
        return {"acknowledged": alarm_id}

    @router.put("/api/settings")
    def settings(body: dict[str, Any], who: AdminPrincipal) -> dict[str, Any]:
        return body

    @router.websocket("/api/cameras/{camera}/ws")
    async def live_ws(websocket: WebSocket, camera: str, who: ViewerPrincipal) -> None:
        check_camera(who, camera, CAMERAS.get(camera))
        await websocket.accept()
        await websocket.send_json({"camera": camera, "user": who.user})
        await websocket.close()

    app.include_router(router)
    return app


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[UserStore]:
    s = make_store(tmp_path / "station.db", clock=clock, session_idle_s=600, session_max_s=3600)
    s.add_user("root", PASSWORD, "admin")
    yield s
    s.close()


@pytest.fixture
def app(store: UserStore, clock: Clock) -> FastAPI:
    return station_app(store, LoginLimiter(clock=clock))


def anon(app: FastAPI, ip: str = "127.0.0.1") -> TestClient:
    return TestClient(app, base_url="https://testserver", client=(ip, 40000))


def db_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


# -- passwords


def test_passwords_are_argon2id_and_no_secret_is_stored_in_clear(
    store: UserStore, tmp_path: Path
) -> None:
    """A stolen database file must give neither passwords nor live sessions or tokens."""
    secret_password = "Unique-Pässwörd-4711"
    store.add_user("alice", secret_password, "operator")
    session_id, _ = store.create_session("alice", ip="10.0.0.1", user_agent="t")
    token = store.create_token("alice", "script")
    raw = db_bytes(tmp_path / "station.db")
    # A token is vmst_<id hex>_<secret>; the secret itself may contain "_".
    token_secret = token.split("_", 2)[2]
    assert len(token_secret) >= 40
    for secret in (secret_password, session_id, token, token_secret):
        assert secret.encode() not in raw, secret
    with sqlite3.connect(tmp_path / "station.db") as db:
        (encoded,) = db.execute("SELECT password_hash FROM auth_user WHERE name='alice'").fetchone()
    db.close()
    assert encoded.startswith("$argon2id$")
    assert store.verify("alice", secret_password) is not None


def test_default_hasher_uses_the_libraries_recommended_parameters(tmp_path: Path) -> None:
    with UserStore(tmp_path / "d.db") as s:
        assert s._hasher.time_cost == argon2.PasswordHasher().time_cost
        assert s._hasher.memory_cost == argon2.PasswordHasher().memory_cost


def test_verify_right_wrong_unknown_and_disabled(store: UserStore) -> None:
    store.add_user("bob", PASSWORD, "viewer")
    assert store.verify("bob", PASSWORD) is not None
    assert store.verify("BOB", PASSWORD) is not None  # names compare without case
    assert store.verify("bob", PASSWORD + "x") is None
    assert store.verify("nobody", PASSWORD) is None
    assert store.verify("bad name!", PASSWORD) is None
    store.disable("bob")
    assert store.verify("bob", PASSWORD) is None
    store.disable("bob", False)
    assert store.verify("bob", PASSWORD) is not None


class CountingHasher(argon2.PasswordHasher):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.verifications = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verifications += 1
        return super().verify(hash, password)


def test_unknown_user_costs_an_argon2_verification_too(tmp_path: Path) -> None:
    """Otherwise the response time tells an attacker which user names exist."""
    hasher = CountingHasher(time_cost=1, memory_cost=8, parallelism=1)
    with make_store(tmp_path / "c.db", hasher=hasher) as s:
        s.add_user("carol", PASSWORD, "viewer")
        for name in ("carol", "nobody", "not a valid name"):
            before = hasher.verifications
            s.verify(name, "wrong password")
            assert hasher.verifications == before + 1, name


def test_hash_with_old_parameters_is_replaced_at_login(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    with make_store(path) as s:
        s.add_user("dave", PASSWORD, "viewer")
    stronger = argon2.PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    with make_store(path, hasher=stronger) as s:
        assert s.verify("dave", "wrong password") is None
        old = s._read("SELECT password_hash FROM auth_user")[0][0]
        assert argon2.extract_parameters(old).time_cost == 1  # no rehash on a failure
        assert s.verify("dave", PASSWORD) is not None
        new = s._read("SELECT password_hash FROM auth_user")[0][0]
        assert argon2.extract_parameters(new).time_cost == 2
        assert argon2.extract_parameters(new).memory_cost == 16
        assert s.verify("dave", PASSWORD) is not None


def test_password_policy_and_names(store: UserStore) -> None:
    with pytest.raises(ValueError, match="at least 8"):
        store.add_user("eve", "short", "viewer")
    for bad in ("", "a" * 65, "has space", "ünïcode", "x'; DROP TABLE auth_user; --"):
        with pytest.raises(ValueError, match="user name"):
            store.add_user(bad, PASSWORD, "viewer")
    with pytest.raises(ValueError, match="role"):
        store.add_user("eve", PASSWORD, "root")  # type: ignore[arg-type]
    store.add_user("eve", PASSWORD, "viewer")
    with pytest.raises(UserExistsError):
        store.add_user("EVE", PASSWORD, "viewer")


# -- configuration


def test_user_config_validation() -> None:
    encoded = FAST_HASHER.hash(PASSWORD)
    assert UserConfig(name="a", role="admin", password_hash=encoded).cameras == ["*"]
    with pytest.raises(ValidationError, match="exactly one"):
        UserConfig(name="a", role="admin")
    with pytest.raises(ValidationError, match="exactly one"):
        UserConfig(name="a", role="admin", password_hash=encoded, password=PASSWORD)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="argon2"):
        UserConfig(name="a", role="admin", password_hash="$2b$12$notargon")
    with pytest.raises(ValidationError, match="argon2id"):
        UserConfig(
            name="a",
            role="admin",
            password_hash=argon2.PasswordHasher(type=argon2.Type.I).hash("x"),
        )
    with pytest.raises(ValidationError, match="extra"):
        UserConfig.model_validate({"name": "a", "role": "admin", "password": PASSWORD, "x": 1})
    with pytest.raises(ValidationError):
        UserConfig(name="a b", role="admin", password=PASSWORD)  # type: ignore[arg-type]
    # Listing cameras alone restricts to them; listing sites alone restricts to the sites.
    only_cams = UserConfig.model_validate(
        {"name": "a", "role": "viewer", "password": PASSWORD, "cameras": ["cam1"]}
    )
    assert (only_cams.cameras, only_cams.sites) == (["cam1"], [])
    only_sites = UserConfig.model_validate(
        {"name": "a", "role": "viewer", "password": PASSWORD, "sites": ["north"]}
    )
    assert (only_sites.cameras, only_sites.sites) == ([], ["north"])


def test_upsert_from_config_keeps_a_password_changed_at_run_time(store: UserStore) -> None:
    config = UserConfig.model_validate(
        {"name": "op", "role": "operator", "password": "from-the-yaml-1", "cameras": ["cam1"]}
    )
    assert store.upsert_from_config(config) == "created"
    assert store.verify("op", "from-the-yaml-1") is not None
    assert store.upsert_from_config(config) == "unchanged"
    store.set_password("op", "changed-at-run-time")
    # A restart with the same file keeps the run-time password.
    assert store.upsert_from_config(config) == "unchanged"
    assert store.verify("op", "changed-at-run-time") is not None
    # The administrator edits the password in the file: it wins, and sessions end.
    session_id, _ = store.create_session("op")
    edited = config.model_copy(update={"password": "from-the-yaml-2"})
    assert store.upsert_from_config(UserConfig.model_validate(edited.model_dump())) == "updated"
    assert store.verify("op", "from-the-yaml-2") is not None
    assert store.verify("op", "changed-at-run-time") is None
    assert store.session(session_id) is None
    # The file is authoritative for role and permissions.
    store.set_role("op", "viewer")
    assert store.upsert_from_config(UserConfig.model_validate(edited.model_dump())) == "updated"
    record = store.get_user("op")
    assert record is not None and record.role == "operator" and record.source == "config"
    assert record.cameras == ("cam1",) and record.sites == ()
    # The same rule with an encoded hash in the file.
    hashed = UserConfig(name="op", role="operator", password_hash=FAST_HASHER.hash("hash-one-1"))
    assert store.upsert_from_config(hashed) == "updated"
    store.set_password("op", "changed-again-2")
    assert store.upsert_from_config(hashed) == "unchanged"
    assert store.verify("op", "changed-again-2") is not None
    actions = [e.action for e in store.audit_log(user="system")]
    assert actions.count("user.config") == 4


def test_config_cannot_demote_the_last_admin(store: UserStore) -> None:
    config = UserConfig(name="root", role="viewer", password=PASSWORD)  # type: ignore[arg-type]
    with pytest.raises(LastAdminError):
        store.upsert_from_config(config)
    assert store.get_user("root").role == "admin"  # type: ignore[union-attr]


# -- sessions


def test_session_idle_and_absolute_expiry(store: UserStore, clock: Clock) -> None:
    store.add_user("vic", PASSWORD, "viewer")
    session_id, csrf = store.create_session("vic", ip="1.2.3.4", user_agent="ua")
    principal = store.session(session_id)
    assert principal is not None and principal.csrf == csrf and principal.via == "session"
    assert principal.session_id != session_id  # the principal carries the hash, not the secret
    clock.advance(30)
    assert store.session(session_id) is not None
    # Touching is bounded to once a minute: no write 30 s in.
    assert store._read("SELECT last_seen_us FROM auth_session")[0][0] == clock.now_us - 30_000_000
    # Idle limit 600 s, counted from the last write: a request every 590 s keeps it alive...
    login_us = clock.now_us - 30_000_000
    clock.advance(560)
    assert store.session(session_id) is not None
    for _ in range(5):
        clock.advance(590)
        assert store.session(session_id) is not None
    # ...until the absolute limit (3600 s since login).
    clock.advance(590)
    assert clock.now_us - login_us > 3600_000_000
    assert store.session(session_id) is None
    other, _ = store.create_session("vic")
    clock.advance(601)
    assert store.session(other) is None  # idle
    assert store.session("made-up") is None and store.session("") is None


def test_sessions_end_on_logout_password_change_disable_and_removal(store: UserStore) -> None:
    store.add_user("wendy", PASSWORD, "operator")
    a, _ = store.create_session("wendy")
    b, _ = store.create_session("wendy")
    assert store.end_session(a) and not store.end_session(a)
    assert store.session(a) is None and store.session(b) is not None
    store.set_password("wendy", "a-new-password")
    assert store.session(b) is None
    c, _ = store.create_session("wendy")
    store.disable("wendy")
    assert store.session(c) is None
    store.disable("wendy", False)
    d, _ = store.create_session("wendy")
    assert store.end_sessions_of("wendy") == 1 and store.session(d) is None
    e, _ = store.create_session("wendy")
    store.remove_user("wendy")
    assert store.session(e) is None


def test_sessions_per_user_are_bounded(store: UserStore) -> None:
    first, _ = store.create_session("root")
    for _ in range(60):
        store.create_session("root")
    assert store._read("SELECT count(*) FROM auth_session")[0][0] == 50
    assert store.session(first) is None


def test_role_changes_apply_to_live_sessions(store: UserStore) -> None:
    store.add_user("max", PASSWORD, "operator")
    session_id, _ = store.create_session("max")
    store.set_role("max", "viewer")
    assert store.session(session_id).role == "viewer"  # type: ignore[union-attr]


# -- HTTP login, cookie and CSRF


def test_login_sets_a_strict_http_only_cookie_and_me_answers(
    app: FastAPI, store: UserStore
) -> None:
    client = anon(app)
    r = client.post("/api/auth/login", json={"user": "root", "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"] == "root" and body["role"] == "admin" and len(body["csrf_token"]) >= 40
    cookie = r.headers["set-cookie"].lower()
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    for attribute in ("httponly", "samesite=strict", "path=/", "secure"):
        assert attribute in cookie, attribute
    assert r.headers["cache-control"] == "no-store"
    me = client.get("/api/auth/me")
    assert me.status_code == 200 and me.json()["csrf_token"] == body["csrf_token"]
    # Without TLS the cookie is not marked Secure.
    plain = FastAPI()
    install_auth(plain, store, LoginLimiter(), secure_cookies=False)
    r = anon(plain).post("/api/auth/login", json={"user": "root", "password": PASSWORD})
    assert "secure" not in r.headers["set-cookie"].lower()


def test_bad_credentials_get_one_generic_401(app: FastAPI, store: UserStore) -> None:
    store.add_user("off", PASSWORD, "viewer")
    store.disable("off")
    answers = set()
    for user, password in (("root", "wrong-password"), ("nobody", PASSWORD), ("off", PASSWORD)):
        r = anon(app).post("/api/auth/login", json={"user": user, "password": password})
        assert r.status_code == 401 and "set-cookie" not in r.headers
        answers.add(r.text)
    assert len(answers) == 1


def test_csrf_is_required_for_cookie_writes_only(app: FastAPI, store: UserStore) -> None:
    client = login(app, "root")
    csrf = client.headers.pop(CSRF_HEADER)
    assert client.post("/api/alarms/1/ack").status_code == 403
    assert "CSRF" in client.post("/api/alarms/1/ack").json()["detail"]
    assert client.post("/api/alarms/1/ack", headers={CSRF_HEADER: "x" + csrf}).status_code == 403
    assert client.put("/api/settings", json={}, headers={CSRF_HEADER: ""}).status_code == 403
    assert client.post("/api/alarms/1/ack", headers={CSRF_HEADER: csrf}).status_code == 200
    assert client.get("/api/cameras/cam1/live").status_code == 200  # reads need none
    # Another session's token does not fit this session.
    other = login(app, "root")
    assert (
        client.post(
            "/api/alarms/1/ack", headers={CSRF_HEADER: other.headers[CSRF_HEADER]}
        ).status_code
        == 403
    )
    # Bearer requests need no CSRF token: a browser never adds that header by itself.
    token = store.create_token("root", "ci")
    bearer = anon(app)
    assert (
        bearer.post("/api/alarms/1/ack", headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )


def test_logout_ends_the_session(app: FastAPI, store: UserStore) -> None:
    client = login(app, "root")
    cookie = client.cookies[SESSION_COOKIE]
    r = client.post("/api/auth/logout")
    assert r.status_code == 204 and f'{SESSION_COOKIE}=""' in r.headers["set-cookie"]
    assert store.session(cookie) is None
    replay = anon(app)
    replay.cookies.set(SESSION_COOKIE, cookie, domain="testserver.local")
    r = replay.get("/api/auth/me")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_login_replaces_a_previous_session_cookie(app: FastAPI, store: UserStore) -> None:
    client = login(app, "root")
    first = client.cookies[SESSION_COOKIE]
    client.relogin()
    assert client.cookies[SESSION_COOKIE] != first and store.session(first) is None


def test_session_expiry_over_http(app: FastAPI, clock: Clock) -> None:
    client = login(app, "root")
    clock.advance(601)
    r = client.get("/api/auth/me")
    assert r.status_code == 401 and "log in again" in r.json()["detail"]


# -- tokens


def test_tokens_create_use_list_revoke_and_expire(
    app: FastAPI, store: UserStore, clock: Clock, tmp_path: Path
) -> None:
    store.add_user("ops", PASSWORD, "operator", cameras=["cam1"])
    client = login(app, "ops")
    r = client.post("/api/auth/tokens", json={"name": "alarm-receiver", "expires_s": 3000})
    assert r.status_code == 201, r.text
    created = r.json()
    token = created["token"]
    assert token.startswith("vmst_") and created["expires_us"] == clock.now_us + 3000_000_000
    assert token.encode() not in db_bytes(tmp_path / "station.db")
    bearer = anon(app)
    auth = {"Authorization": f"Bearer {token}"}
    me = bearer.get("/api/auth/me", headers=auth).json()
    assert me["via"] == "token" and me["user"] == "ops" and me["csrf_token"] is None
    assert bearer.get("/api/cameras/cam1/live", headers=auth).status_code == 200
    assert bearer.get("/api/cameras/cam3/live", headers=auth).status_code == 404
    listed = client.get("/api/auth/tokens").json()
    assert [t["id"] for t in listed] == [created["id"]] and "token" not in listed[0]
    assert listed[0]["last_used_us"] == clock.now_us
    # A token cannot mint tokens, and a token cannot exceed its owner's role.
    assert bearer.post("/api/auth/tokens", json={"name": "x"}, headers=auth).status_code == 403
    assert client.post("/api/auth/tokens", json={"name": "x", "role": "admin"}).status_code == 403
    # Revocation; someone else's token answers 404.
    token2 = client.post("/api/auth/tokens", json={"name": "wall"}).json()
    auth2 = {"Authorization": f"Bearer {token2['token']}"}
    assert bearer.get("/api/auth/me", headers=auth2).status_code == 200
    store.add_user("ops2", PASSWORD, "operator")
    assert login(app, "ops2").delete(f"/api/auth/tokens/{token2['id']}").status_code == 404
    assert client.delete(f"/api/auth/tokens/{token2['id']}").status_code == 204
    assert bearer.get("/api/auth/me", headers=auth2).status_code == 401
    assert client.delete(f"/api/auth/tokens/{token2['id']}").status_code == 404
    # Expiry (the session, idle for 600 s, has ended too by then).
    clock.advance(3001)
    assert bearer.get("/api/auth/me", headers=auth).status_code == 401
    assert client.get("/api/auth/me").status_code == 401


def test_token_role_cap_owner_disable_and_malformed_tokens(app: FastAPI, store: UserStore) -> None:
    store.add_user("opx", PASSWORD, "operator")
    capped = store.create_token("opx", "display", role="viewer")
    principal = store.token(capped)
    assert principal is not None and principal.role == "viewer" and principal.via == "token"
    bearer = anon(app)
    auth = {"Authorization": f"Bearer {capped}"}
    assert bearer.post("/api/alarms/1/ack", headers=auth).status_code == 403
    full = store.create_token("opx", "full")
    assert (
        bearer.post("/api/alarms/1/ack", headers={"Authorization": f"Bearer {full}"}).status_code
        == 200
    )
    store.set_password("opx", "another-password")  # tokens outlive a password change
    assert store.token(full) is not None
    store.disable("opx")
    assert store.token(full) is None
    store.disable("opx", False)
    assert store.token(full) is not None
    assert store.token(full[:-1] + ("A" if full[-1] != "A" else "B")) is None
    for bad in ("", "vmst_", "vmst__", "vmst_abc", "x" * 10_000, full.replace("vmst_", "vmsx_")):
        assert store.token(bad) is None
    for header in ("Basic cm9vdDpwdw==", "Bearer", "Bearer " + "a" * 5000, "bearer\x7f"):
        r = bearer.get("/api/auth/me", headers={"Authorization": header})
        assert r.status_code == 401, header
    # Explicit credentials that fail do not fall back to a valid cookie.
    client = login(app, "root")
    assert client.get("/api/auth/me", headers={"Authorization": "Bearer nope"}).status_code == 401
    # Viewers do not create tokens.
    store.add_user("viv", PASSWORD, "viewer")
    assert login(app, "viv").post("/api/auth/tokens", json={"name": "x"}).status_code == 403
    # Admins list and revoke anyone's.
    assert [t["name"] for t in client.get("/api/auth/tokens?user=opx").json()] == [
        "display",
        "full",
    ]
    assert login(app, "viv").get("/api/auth/tokens?user=opx").status_code == 403
    store.remove_user("opx")
    assert store.token(full) is None and store.list_tokens("opx") == []


# -- rate limiting


def test_login_rate_limit_per_user_with_retry_after(app: FastAPI, clock: Clock) -> None:
    client = anon(app)
    for _ in range(5):
        r = client.post("/api/auth/login", json={"user": "root", "password": "wrong-password"})
        assert r.status_code == 401
        clock.advance(10)
    # Locked: even the right password is refused until the oldest failure leaves the window.
    r = client.post("/api/auth/login", json={"user": "root", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) == 300 - 50
    # Other users from elsewhere are not affected.
    assert (
        anon(app, "10.9.9.9")
        .post("/api/auth/login", json={"user": "nobody", "password": "x"})
        .status_code
        == 401
    )
    clock.advance(251)
    r = client.post("/api/auth/login", json={"user": "root", "password": PASSWORD})
    assert r.status_code == 200


def test_login_rate_limit_per_address(app: FastAPI) -> None:
    attacker = anon(app, "203.0.113.7")
    for i in range(20):
        r = attacker.post("/api/auth/login", json={"user": f"guess{i}", "password": "x"})
        assert r.status_code == 401
    r = attacker.post("/api/auth/login", json={"user": "root", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert (
        anon(app, "198.51.100.1")
        .post("/api/auth/login", json={"user": "root", "password": PASSWORD})
        .status_code
        == 200
    )


def test_success_resets_the_users_counter(clock: Clock) -> None:
    limiter = LoginLimiter(clock=clock)
    for _ in range(4):
        limiter.failure("Root", "1.1.1.1")
    limiter.success("root", "1.1.1.1")  # names count without case
    for _ in range(4):
        assert limiter.failure("root", "2.2.2.2") is None
    assert limiter.failure("ROOT", "2.2.2.2") == 300
    clock.advance(299.5)
    assert limiter.retry_after("root", "3.3.3.3") == 1
    clock.advance(0.5)
    assert limiter.retry_after("root", "3.3.3.3") is None


def test_limiter_memory_is_bounded_under_a_flood_of_names(clock: Clock) -> None:
    limiter = LoginLimiter(clock=clock, max_entries=5000)
    for i in range(100_000):
        limiter.failure(f"user{i}", f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}")
    assert limiter.size <= 10_000
    assert len(limiter._users) == 5000 and len(limiter._ips) == 5000
    # The most recent keys are kept.
    for _ in range(4):
        limiter.failure("user99999", "9.9.9.9")
    assert limiter.retry_after("user99999", "8.8.8.8") is not None


def test_password_change_needs_the_old_password_and_is_rate_limited(
    app: FastAPI, store: UserStore
) -> None:
    store.add_user("pam", PASSWORD, "viewer")
    client = login(app, "pam")
    old_cookie = client.cookies[SESSION_COOKIE]
    other = login(app, "pam")
    r = client.post(
        "/api/auth/password", json={"old_password": "wrong-one", "new_password": "new-password-1"}
    )
    assert r.status_code == 403
    r = client.post("/api/auth/password", json={"old_password": PASSWORD, "new_password": "tiny7"})
    assert r.status_code == 422 and "tiny7" not in r.text  # the input is never echoed
    r = client.post(
        "/api/auth/password", json={"old_password": PASSWORD, "new_password": "new-password-1"}
    )
    assert r.status_code == 200, r.text
    client.headers[CSRF_HEADER] = r.json()["csrf_token"]
    assert client.cookies[SESSION_COOKIE] != old_cookie  # the session was rotated
    assert client.get("/api/auth/me").status_code == 200
    assert other.get("/api/auth/me").status_code == 401  # every other session ended
    assert store.verify("pam", "new-password-1") is not None
    for _ in range(5):
        client.post(
            "/api/auth/password", json={"old_password": "guess-guess", "new_password": "x" * 9}
        )
    r = client.post(
        "/api/auth/password", json={"old_password": "new-password-1", "new_password": "y" * 9}
    )
    assert r.status_code == 429


# -- roles and permissions


def test_principal_roles_and_camera_visibility() -> None:
    def p(role: str, cameras: set[str], sites: set[str]) -> Principal:
        return Principal("u", role, frozenset(cameras), frozenset(sites), "session")  # type: ignore[arg-type]

    viewer = p("viewer", {"cam1"}, {"south"})
    assert viewer.has_role("viewer") and not viewer.has_role("operator")
    assert viewer.can_view("cam1", "north") and viewer.can_view("cam9", "south")
    assert not viewer.can_view("cam2", "north") and not viewer.can_view("cam2", None)
    assert viewer.can_view_site("south") and not viewer.can_view_site("north")
    everything = p("viewer", {"*"}, {"*"})
    assert everything.can_view("any", "where") and everything.can_view_site("x")
    nothing = p("operator", set(), set())
    assert nothing.has_role("viewer") and not nothing.can_view("cam1", "north")
    admin = p("admin", set(), set())
    assert admin.has_role("operator") and admin.can_view("cam1", "north")
    assert admin.can_view_site("north")


def test_per_camera_route_hides_cameras_as_not_found(app: FastAPI, store: UserStore) -> None:
    store.add_user("north", PASSWORD, "viewer", sites=["north"])
    store.add_user("one", PASSWORD, "viewer", cameras=["cam3"])
    north, one = login(app, "north"), login(app, "one")
    assert north.get("/api/cameras/cam1/live").status_code == 200
    assert north.get("/api/cameras/cam2/live").status_code == 200
    denied = north.get("/api/cameras/cam3/live")
    missing = north.get("/api/cameras/cam404/live")
    assert denied.status_code == missing.status_code == 404 and denied.json() == missing.json()
    assert one.get("/api/cameras/cam3/live").status_code == 200
    assert one.get("/api/cameras/cam1/live").status_code == 404
    # Permissions changed by an admin apply at once.
    root = login(app, "root")
    r = root.patch("/api/users/one", json={"cameras": ["cam1"]})
    assert r.status_code == 200 and r.json()["cameras"] == ["cam1"]
    assert one.get("/api/cameras/cam1/live").status_code == 200
    assert one.get("/api/cameras/cam3/live").status_code == 404


def test_websocket_handshake_is_authenticated(app: FastAPI, store: UserStore) -> None:
    url = "/api/cameras/cam1/ws"
    with pytest.raises(WebSocketDisconnect) as refused, anon(app).websocket_connect(url):
        pass
    assert refused.value.code == 1008
    client = login(app, "root")
    with client.websocket_connect(url, headers=ws_headers(client)) as ws:
        assert ws.receive_json() == {"camera": "cam1", "user": "root"}
    # A page on another origin cannot ride the cookie (no CSRF header exists for WebSockets).
    evil = {**ws_headers(client), "Origin": "https://evil.example"}
    with pytest.raises(WebSocketDisconnect) as foreign, client.websocket_connect(url, headers=evil):
        pass
    assert foreign.value.code == 1008 and "cross-origin" in foreign.value.reason
    same = {**ws_headers(client), "Origin": "https://testserver"}
    with client.websocket_connect(url, headers=same) as ws:
        assert ws.receive_json()["user"] == "root"
    token = store.create_token("root", "ws")
    bearer = {"Authorization": f"Bearer {token}"}
    with anon(app).websocket_connect(url, headers=bearer) as ws:
        assert ws.receive_json()["user"] == "root"
    # A viewer restricted to other cameras is refused by the route's own check.
    store.add_user("southy", PASSWORD, "viewer", sites=["south"])
    southy = login(app, "southy")
    with (
        pytest.raises(WebSocketDisconnect),
        client.websocket_connect(url, headers=ws_headers(southy)),
    ):
        pass


# -- user administration


def test_user_admin_routes_are_admin_only(app: FastAPI, store: UserStore) -> None:
    store.add_user("v", PASSWORD, "viewer")
    store.add_user("o", PASSWORD, "operator")
    for name in ("v", "o"):
        client = login(app, name)
        assert client.get("/api/users").status_code == 403
        new = {"name": "x1", "password": PASSWORD, "role": "admin"}
        assert client.post("/api/users", json=new).status_code == 403
        assert client.patch(f"/api/users/{name}", json={"role": "admin"}).status_code == 403
        assert client.delete("/api/users/root").status_code == 403
        assert client.get("/api/audit").status_code == 403
    assert store.get_user("v").role == "viewer"  # type: ignore[union-attr]
    assert store.get_user("x1") is None


def test_admin_adds_changes_and_removes_users(app: FastAPI, store: UserStore) -> None:
    root = login(app, "root")
    new = {"name": "newbie", "password": "newbie-password", "role": "viewer", "sites": ["north"]}
    r = root.post("/api/users", json=new)
    assert r.status_code == 201, r.text
    assert r.json()["cameras"] == [] and r.json()["sites"] == ["north"]
    assert "newbie-password" not in r.text and "argon2" not in r.text
    assert root.post("/api/users", json=new).status_code == 409
    assert root.post("/api/users", json={**new, "name": "NEWBIE"}).status_code == 409
    listed = root.get("/api/users").json()
    assert {u["name"] for u in listed} == {"root", "newbie"}
    assert not any("hash" in key for u in listed for key in u)
    newbie = login(app, "newbie", "newbie-password")
    r = root.patch("/api/users/newbie", json={"role": "operator", "display_name": "New Bie"})
    assert r.status_code == 200 and r.json()["role"] == "operator"
    assert newbie.post("/api/alarms/7/ack").status_code == 200
    r = root.patch("/api/users/newbie", json={"password": "reset-by-admin"})
    assert r.status_code == 200
    assert newbie.get("/api/auth/me").status_code == 401  # the reset ended its sessions
    newbie = login(app, "newbie", "reset-by-admin")
    assert root.patch("/api/users/newbie", json={"disabled": True}).status_code == 200
    assert newbie.get("/api/auth/me").status_code == 401
    assert (
        anon(app)
        .post("/api/auth/login", json={"user": "newbie", "password": "reset-by-admin"})
        .status_code
        == 401
    )
    assert root.get("/api/users/newbie").json()["disabled"] is True
    assert root.delete("/api/users/newbie").status_code == 204
    assert root.get("/api/users/newbie").status_code == 404
    assert root.delete("/api/users/newbie").status_code == 404
    assert root.patch("/api/users/ghost", json={"role": "admin"}).status_code == 404


def test_the_last_admin_cannot_be_removed_demoted_or_disabled(
    app: FastAPI, store: UserStore
) -> None:
    root = login(app, "root")
    for method, body in (("DELETE", None), ("PATCH", {"role": "operator"}),
                         ("PATCH", {"disabled": True})):  # fmt: skip
        r = root.request(method, "/api/users/root", json=body)
        assert r.status_code == 409 and "last enabled admin" in r.json()["detail"], (method, body)
    assert store.get_user("root").role == "admin"  # type: ignore[union-attr]
    with pytest.raises(LastAdminError):
        store.remove_user("root")
    # With a second admin, the first may go; then the second is the last.
    root.post("/api/users", json={"name": "root2", "password": PASSWORD, "role": "admin"})
    store.disable("root2")
    assert root.delete("/api/users/root").status_code == 409  # a disabled admin does not count
    store.disable("root2", False)
    assert root.patch("/api/users/root", json={"role": "viewer"}).status_code == 200
    root2 = login(app, "root2")
    assert root2.delete("/api/users/root").status_code == 204
    assert root2.delete("/api/users/root2").status_code == 409


# -- audit


def test_audit_rows_for_logins_logout_tokens_and_user_changes(
    app: FastAPI, store: UserStore
) -> None:
    anon(app, "192.0.2.1").post("/api/auth/login", json={"user": "root", "password": "bad-bad"})
    anon(app).post("/api/auth/login", json={"user": "ghost", "password": "bad-bad"})
    root = login(app, "root")
    token = root.post("/api/auth/tokens", json={"name": "ci"}).json()
    root.post("/api/users", json={"name": "aud", "password": PASSWORD, "role": "viewer"})
    root.patch("/api/users/aud", json={"role": "operator", "password": "another-pass"})
    anon(app).post("/api/alarms/3/ack", headers={"Authorization": f"Bearer {token['token']}"})
    root.delete(f"/api/auth/tokens/{token['id']}")
    root.delete("/api/users/aud")
    root.post("/api/auth/logout")
    entries = list(reversed(store.audit_log()))
    seen = [(e.user, e.action, e.ok) for e in entries]
    assert seen == [
        ("root", "login", False),
        ("ghost", "login", False),
        ("root", "login", True),
        ("root", "token.create", True),
        ("root", "user.add", True),
        ("root", "user.update", True),
        ("root", "alarm.ack", True),
        ("root", "token.revoke", True),
        ("root", "user.remove", True),
        ("root", "logout", True),
    ]
    assert entries[0].ip == "192.0.2.1" and entries[0].detail == {"reason": "mismatch"}
    assert entries[1].detail == {"reason": "unknown"}
    assert entries[5].target == "aud"
    assert entries[5].detail == {"role": "operator", "password": "changed"}
    assert entries[6].detail == {"note": "seen", "token": token["id"]}
    assert "another-pass" not in json.dumps([e.to_json() for e in entries])
    # The audit route: admin only, filtered, newest first.
    r = login(app, "root").get("/api/audit", params={"action": "user.", "limit": 2})
    assert r.status_code == 200
    assert [e["action"] for e in r.json()] == ["user.remove", "user.update"]
    assert store.verify_audit() == len(store.audit_log(limit=1000))


def test_locking_is_audited(app: FastAPI, store: UserStore) -> None:
    for _ in range(5):
        anon(app).post("/api/auth/login", json={"user": "root", "password": "bad-bad"})
    locked = store.audit_log(action="login.locked")
    assert len(locked) == 1 and locked[0].detail == {"retry_after_s": 300}


def test_audit_log_is_append_only_and_chained(
    store: UserStore, tmp_path: Path, clock: Clock
) -> None:
    for i in range(5):
        store.audit("root", "alarm.ack", str(i), {"i": i}, ip="10.0.0.1")
        clock.advance(10)
    assert store.verify_audit() == 5
    with pytest.raises(sqlite3.DatabaseError, match="append-only"), store._write() as db:
        db.execute("UPDATE auth_audit SET target = 'x'")
    assert not hasattr(store, "delete_audit") and not hasattr(store, "update_audit")
    # Someone with the file drops the trigger and edits a row: the chain shows it.
    raw = sqlite3.connect(tmp_path / "station.db")
    raw.execute("DROP TRIGGER auth_audit_append_only")
    raw.execute("UPDATE auth_audit SET detail = '{\"i\":9}' WHERE target = '2'")
    raw.commit()
    with pytest.raises(AuditChainError, match="altered"):
        store.verify_audit()
    raw.execute("UPDATE auth_audit SET detail = '{\"i\":2}' WHERE target = '2'")
    raw.execute("DELETE FROM auth_audit WHERE target = '3'")
    raw.commit()
    raw.close()
    with pytest.raises(AuditChainError, match="predecessor"):
        store.verify_audit()


def test_audit_prune_keeps_a_verifiable_chain(store: UserStore, clock: Clock) -> None:
    start = clock.now_us
    for i in range(6):
        store.audit("root", "export", f"clip{i}")
        clock.advance(60)
    gone = store.prune_audit(start + 3 * 60_000_000)
    assert gone == 3
    targets = [e.target for e in reversed(store.audit_log())]
    assert targets == ["clip3", "clip4", "clip5", ""]
    assert store.audit_log()[0].action == "audit.prune"
    assert store.verify_audit() == 4


def test_audit_bounds_hostile_fields(store: UserStore) -> None:
    row_id = store.audit("x" * 10_000, "a" * 500, "t" * 5000, {"blob": "z" * 100_000}, ip="i" * 999)
    (entry,) = [e for e in store.audit_log() if e.id == row_id]
    assert len(entry.user) == 256 and len(entry.action) == 64 and len(entry.target) == 256
    assert len(entry.ip) == 64 and len(json.dumps(entry.detail)) < 5000
    store.audit("\ud800lone", "login", detail="\udfff")  # lone surrogates are stored, replaced
    assert store.audit_log(limit=1)[0].user == "?lone"
    with pytest.raises(ValueError, match="limit"):
        store.audit_log(limit=0)
    with pytest.raises(ValueError, match="limit"):
        store.audit_log(limit=10_001)


# -- hostile inputs


def test_hostile_inputs_get_4xx_never_5xx(app: FastAPI, store: UserStore) -> None:
    """Bad input from anyone is refused with a clear 4xx: never a 500, never an echo of a secret."""
    nobody, root = anon(app), login(app, "root")
    j = {"content-type": "application/json"}

    def raw(text: bytes) -> dict[str, Any]:
        return {"content": text, "headers": j}

    def new_user(**fields: Any) -> dict[str, Any]:
        return {"json": {"name": "ok", "password": PASSWORD, "role": "viewer", **fields}}

    login_url, users_url = "/api/auth/login", "/api/users"
    cases: list[tuple[TestClient, str, str, dict[str, Any]]] = [
        (nobody, "POST", login_url, raw(b"{" + b" " * (2 << 20) + b"}")),  # 2 MiB
        (nobody, "POST", login_url, raw(b"[" * 50_000)),
        (nobody, "POST", login_url, raw(b"1e999999")),
        (nobody, "POST", login_url, raw(b"\xff\xfe\x00")),
        (nobody, "POST", login_url, {"content": b'{"user":"root","password":"x"}'}),
        (nobody, "POST", login_url, {"json": {"user": "root", "password": 1}}),
        (nobody, "POST", login_url, raw(b'{"user":"r","password":1e999}')),
        (nobody, "POST", login_url, {"json": {"user": "root", "password": "x" * 2000}}),
        (nobody, "POST", login_url, {"json": {"user": "\u7ba1\u7406\u8005", "password": PASSWORD}}),
        (nobody, "POST", login_url, {"json": {"user": "ro\u0000ot", "password": PASSWORD}}),
        (nobody, "POST", login_url, {"json": {"user": "root' OR '1'='1", "password": "' OR 1=1"}}),
        (nobody, "POST", login_url, raw(b'{"user":"\\ud800","password":"\\udfffxxxxxxxx"}')),
        (nobody, "POST", login_url, {"json": {"user": "root", "password": PASSWORD, "x": 1}}),
        (root, "POST", users_url, new_user(name="\uff52\uff4f\uff4f\uff54")),  # fullwidth
        (root, "POST", users_url, new_user(name="a'--")),
        (root, "POST", users_url, new_user(role="god")),
        (root, "POST", users_url, new_user(cameras=["\u0000"])),
        (root, "POST", users_url, new_user(cameras=["c"] * 10_001)),
        (root, "POST", users_url, new_user(password="x" * 2000)),
        (root, "POST", users_url, raw(b'{"name":"ok","password":"\\ud800xxxxxxxxx",'
                                      b'"role":"viewer"}')),
        (root, "POST", users_url, raw(b'{"name":"ok","password":"long-enough","role":"viewer",'
                                      b'"display_name":"\\ud800"}')),
        (root, "POST", users_url, raw(b'{"\\ud800":1}')),
        (root, "PATCH", "/api/users/root'%20OR%20'1'='1", {"json": {"role": "viewer"}}),
        (root, "PATCH", "/api/users/root", {"json": {"role": "viewer", "is_admin": True}}),
        (root, "GET", "/api/users/" + "x" * 5000, {}),
        (root, "GET", "/api/audit", {"params": {"limit": "999999999999999999999"}}),
        (root, "GET", "/api/audit", {"params": {"since_us": "-1"}}),
        (root, "POST", "/api/auth/tokens", raw(b'{"name":"\\ud800"}')),
        (root, "POST", "/api/auth/tokens", {"json": {"name": "n", "expires_s": 10**30}}),
        (root, "POST", "/api/auth/tokens", {"json": {"name": "a\nb"}}),
        (root, "DELETE", "/api/auth/tokens/" + "%27" * 100, {}),
    ]  # fmt: skip
    for client, method, url, kw in cases:
        r = client.request(method, url, **kw)
        what = (method, url[:60], str(kw)[:100], r.status_code, r.text[:200])
        assert 400 <= r.status_code < 500, what
        assert PASSWORD not in r.text and "x" * 2000 not in r.text, what
    # SQL in a filter is just a value that matches nothing.
    sqlish = {"user": "' OR 1=1 --", "action": "x'; DROP TABLE auth_audit; --"}
    r = root.get("/api/audit", params=sqlish)
    assert r.status_code == 200 and r.json() == []
    r = root.get("/api/auth/tokens", params={"user": "\u00e9' OR '1'='1"})
    assert r.status_code == 200 and r.json() == []
    # A cookie of any shape is just not a session.
    weird = anon(app)
    for value in ("", "a" * 4000, "' OR 1=1 --", "%00"):
        weird.cookies.set(SESSION_COOKIE, value, domain="testserver.local")
        assert weird.get("/api/auth/me").status_code == 401
        weird.cookies.clear()
    assert {u.name for u in store.list_users()} == {"root"}
    assert store.get_user("root").role == "admin"  # type: ignore[union-attr]
    assert store.verify_audit() > 0


# -- route policies and the walk


def test_route_policy_reads_the_declared_minimum() -> None:
    app = FastAPI()
    inner = APIRouter(dependencies=[Depends(require("operator"))])

    @inner.get("/a")
    def a() -> None: ...

    @inner.get("/b", dependencies=[Depends(require("admin"))])
    def b() -> None: ...

    @app.get("/c", dependencies=[Depends(public)])
    def c() -> None: ...

    @app.get("/d")
    def d() -> None: ...

    @app.get("/e")
    def e(who: ViewerPrincipal) -> None: ...

    app.include_router(inner, prefix="/x")
    from fastapi.routing import iter_route_contexts

    policies = {rc.path: route_policy(rc) for rc in iter_route_contexts(app.routes)}
    assert policies["/x/a"] == "operator" and policies["/x/b"] == "admin"
    assert policies["/c"] == "public" and policies["/d"] is None and policies["/e"] == "viewer"
    assert policies["/openapi.json"] is None


def test_walk_every_route(app: FastAPI, store: UserStore) -> None:
    clients = role_clients(app, store)
    report = walk_routes(app, clients, anon(app), path_values={"camera": "cam1"})
    print(report.summary())
    assert report.count("admin") >= 7 and report.count("operator") >= 2
    assert report.count("viewer") >= 5 and report.count("public") >= 2
    assert "WS /api/cameras/{camera}/ws" in report.routes
    assert "POST /api/auth/logout" in report.routes
    walked = {(m, u, w): status for m, u, w, status in report.checks}
    assert walked["PUT", "/api/settings", "operator"] == 403
    assert walked["PUT", "/api/settings", "admin without CSRF"] == 403
    assert walked["GET", "/api/cameras/cam1/live", "viewer"] == 200
    assert walked["WS", "/api/cameras/cam1/ws", "anonymous"] == 1008
    assert all(isinstance(c, LoggedInClient) for c in clients.values())
    # The clients are still logged in after the walk (logout was followed by a new login).
    assert all(c.get("/api/auth/me").status_code == 200 for c in clients.values())


def test_walk_fails_on_an_undeclared_route(app: FastAPI, store: UserStore) -> None:
    @app.get("/api/forgotten")
    def forgotten() -> dict[str, str]:
        return {"secret": "leaked"}

    async def raw(request: Request) -> Any:
        return None

    app.add_route("/raw", raw)
    with pytest.raises(AssertionError) as failed:
        walk_routes(app, role_clients(app, store), anon(app))
    assert "GET /api/forgotten: no declared policy" in str(failed.value)
    assert "/raw: not a FastAPI route" in str(failed.value)


def test_walk_fails_when_a_route_lets_a_lower_role_in(app: FastAPI, store: UserStore) -> None:
    """A route that claims admin in a way the dependency cannot enforce is caught."""

    class Lenient(RoleRequirement):
        def __call__(self, conn: HTTPConnection) -> Principal:
            return require("viewer")(conn)  # declares admin but enforces viewer

    @app.get("/api/misdeclared", dependencies=[Depends(Lenient("admin"))])
    def misdeclared() -> dict[str, str]:
        return {}

    with pytest.raises(
        AssertionError, match=re.escape("misdeclared (min admin) answered viewer with 200")
    ):
        walk_routes(app, role_clients(app, store), anon(app))


def test_store_is_safe_across_threads(store: UserStore) -> None:
    """FastAPI runs the routes in a thread pool: concurrent writes keep one valid audit chain."""
    errors: list[BaseException] = []

    # One user per thread: a user keeps at most 50 sessions, so 8 threads sharing one would
    # evict each other's sessions between creating and reading them.
    for n in range(8):
        store.add_user(f"worker{n}", PASSWORD, "operator")

    def work(n: int) -> None:
        try:
            for i in range(40):
                session_id, _ = store.create_session(f"worker{n}", ip=f"10.0.0.{n}")
                assert store.session(session_id) is not None
                store.audit(f"worker{n}", "alarm.ack", f"{n}-{i}")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not errors and not any(t.is_alive() for t in threads)
    assert store.verify_audit() == 8 * 40
