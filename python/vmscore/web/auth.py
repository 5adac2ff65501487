"""Who may do what at the station: users, roles, per-camera permissions, sessions, API tokens,
login rate limiting and the audit log, with the FastAPI pieces the HTTP API is built from.

Roles, each including everything of the roles below it (viewer < operator < admin):

* ``viewer``: live view, playback and the alarm list of the cameras the user is permitted to see.
* ``operator``: + alarm handling (acknowledge, comment, put on hold, close...), bookmarks, evidence
  locks, export, arming and disarming, external events, and creating API tokens for themselves.
* ``admin``: + cameras, zones, rules, time profiles, users, settings and the audit log. An admin
  sees every camera whatever their camera and site lists say.

Per-camera permissions: a user sees a camera when the camera is listed by name in ``cameras`` or
its site is listed in ``sites``; ``"*"`` in either list means all. Listing only cameras restricts
the user to those cameras (``sites`` then defaults to none), listing only sites restricts them to
those sites; listing neither gives everything. A camera the user may not see answers 404 exactly
like a camera that does not exist (:func:`check_camera`), so names cannot be probed.

Credentials:

* Passwords are hashed with argon2id (argon2-cffi's recommended parameters); a hash made with
  older parameters is replaced at the next successful login.
* Browsers log in with ``POST /api/auth/login`` and get the ``vmscore_session`` cookie (HttpOnly,
  SameSite=Strict, Path=/, Secure behind TLS) and a CSRF token. Every cookie-authenticated request
  other than GET/HEAD/OPTIONS must carry the token in ``X-CSRF-Token``. Sessions end after
  ``session_idle_s`` without a request or ``session_max_s`` after login, whichever comes first,
  and when the user's password changes or the user is disabled or removed.
* API clients send ``Authorization: Bearer <token>``; no CSRF token is needed since a browser
  never adds that header by itself. Operators and admins create tokens for themselves from a
  logged-in session (never from another token, so a leaked token cannot mint more); a token may
  carry a lower role than its owner's and an expiry. Tokens outlive a password change (they are
  listed and revoked one by one) but stop working when the owner is disabled or removed.
* Session ids and token secrets are 256-bit random values stored only as SHA-256 hashes, so a copy
  of the database gives no live credential.

Login rate limiting (:class:`LoginLimiter`): at most 5 failures per user name and 20 per client
address in any 300 s window, then 429 with ``Retry-After``. Behind a reverse proxy run uvicorn
with ``--proxy-headers --forwarded-allow-ips=<proxy>`` so the client address is the real one.

Audit: every change made through this module is written to an append-only table whose rows are
chained by SHA-256 (:meth:`UserStore.verify_audit`). The rest of the API records operator actions
with :func:`audit_action`; action names are dotted and lower case: ``alarm.ack``,
``alarm.comment``, ``alarm.close``, ``bookmark.add``, ``evidence.lock``, ``export``, ``arm``,
``disarm``, ``event.external``, ``camera.update``, ``rule.update``...

Wiring (one way): the application keeps the store at ``app.state.users``; :func:`require` and the
annotated principals (:data:`ViewerPrincipal`...) read it from ``request.app.state.users``, so
routers are built without passing the store around. :func:`install_auth` sets it and includes
:func:`auth_router`::

    store = UserStore(db_path)
    app = FastAPI(max_body_size=1 << 20)
    install_auth(app, store, LoginLimiter(), secure_cookies=True)

    @router.post("/api/alarms/{alarm_id}/ack")
    def ack(alarm_id: int, request: Request, who: OperatorPrincipal) -> ...:
        alarm = alarms.get(alarm_id)
        check_camera(who, alarm.camera, alarm.site)
        ...
        audit_action(request, who, "alarm.ack", target=str(alarm_id))

Every route declares its minimum role through one of these dependencies (or ``Depends(public)``
for the few that need no login); :func:`route_policy` reads it back so a test can walk every route.

Threading: :class:`UserStore` and :class:`LoginLimiter` may be used from any thread; each guards
its state with its own lock, and password hashing runs outside the lock. The routes are plain
functions, which FastAPI runs in its thread pool, so the event loop never waits on argon2 or
SQLite.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Final, Literal, Self, cast
from urllib.parse import urlsplit

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    HTTPException,
    Query,
    Request,
    Response,
    WebSocketException,
    status,
)
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    model_validator,
)
from starlette.requests import HTTPConnection

from vmscore.errors import VmsError

__all__ = [
    "CAMERA_NOT_FOUND",
    "CSRF_HEADER",
    "NAME_PATTERN",
    "ROLES",
    "SESSION_COOKIE",
    "AdminPrincipal",
    "AuditChainError",
    "AuditEntry",
    "AuthError",
    "LastAdminError",
    "LoginLimiter",
    "OperatorPrincipal",
    "Policy",
    "Principal",
    "PublicRoute",
    "Role",
    "RoleRequirement",
    "TokenInfo",
    "UnknownUserError",
    "UserConfig",
    "UserExistsError",
    "UserRecord",
    "UserStore",
    "ViewerPrincipal",
    "audit_action",
    "auth_router",
    "check_camera",
    "client_ip",
    "install_auth",
    "principal_dependency",
    "public",
    "require",
    "role_at_least",
    "route_policy",
    "validation_error_handler",
]

Role = Literal["viewer", "operator", "admin"]
Policy = Literal["public", "viewer", "operator", "admin"]
ROLES: Final[tuple[Role, ...]] = ("viewer", "operator", "admin")
_RANK: Final[dict[str, int]] = {"public": -1, "viewer": 0, "operator": 1, "admin": 2}

NAME_PATTERN: Final = r"^[A-Za-z0-9_.@-]{1,64}$"
SESSION_COOKIE: Final = "vmscore_session"
CSRF_HEADER: Final = "X-CSRF-Token"
CAMERA_NOT_FOUND: Final = "no such camera"
MIN_PASSWORD_LENGTH: Final = 8
# argon2 itself takes any length; the bound keeps hostile requests cheap to refuse.
MAX_PASSWORD_LENGTH: Final = 1024
MAX_PERMISSION_ENTRIES: Final = 10_000
MAX_SESSIONS_PER_USER: Final = 50
MAX_TOKENS_PER_USER: Final = 100
MAX_TOKEN_LIFETIME_S: Final = 10 * 366 * 86400
_TOUCH_EVERY_US: Final = 60_000_000
_TOKEN_PREFIX: Final = "vmst_"
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_GENERIC_LOGIN_ERROR: Final = "wrong user name or password"
_ZERO_HASH: Final = "0" * 64
_AUDIT_LIMITS: Final = {"user": 256, "action": 64, "target": 256, "ip": 64, "detail": 4096}

_NAME_RE = re.compile(NAME_PATTERN)


def _now_us() -> int:
    return time.time_ns() // 1000


def role_at_least(role: str, minimum: str) -> bool:
    """True when ``role`` includes everything ``minimum`` may do."""
    return _RANK[role] >= _RANK[minimum]


def _lower_role(a: Role, b: Role) -> Role:
    return a if _RANK[a] <= _RANK[b] else b


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class AuthError(VmsError):
    """Root of the errors of users, sessions, tokens and the audit log."""


class UnknownUserError(AuthError, LookupError):
    """No user by that name."""


class UserExistsError(AuthError, ValueError):
    """A user by that name (compared without case) exists already."""


class LastAdminError(AuthError, ValueError):
    """The change would leave the station without an enabled admin."""


class AuditChainError(AuthError, ValueError):
    """An audit row does not match its hash or its predecessor: the table was altered."""


def _encodable(text: str) -> str:
    """JSON may carry lone surrogates, which UTF-8 (SQLite, argon2) cannot: refuse them early."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text holds a lone surrogate, which is not valid Unicode") from None
    return text


def _printable(text: str) -> str:
    if not text.isprintable():
        raise ValueError("text holds control or unassigned characters")
    return text


def _secret_encodable(secret: SecretStr) -> SecretStr:
    _encodable(secret.get_secret_value())
    return secret


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"user name {name!r:.80} must be 1 to 64 characters of letters, digits, _ . @ -"
        )
    return name


def _check_password(password: str) -> str:
    if not isinstance(password, str):
        raise TypeError("a password is a str")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    _encodable(password)
    return password


def _check_role(role: str) -> Role:
    if role not in ROLES:
        raise ValueError(f"role {role!r:.40} is not one of {', '.join(ROLES)}")
    return role


def _check_entries(what: str, entries: Iterable[str]) -> tuple[str, ...]:
    """Camera or site names of a permission list: bounded, unique, order kept."""
    if isinstance(entries, str):
        raise TypeError(f"{what} is a list of names, not one string")
    out: dict[str, None] = {}
    for entry in entries:
        if not isinstance(entry, str) or not 1 <= len(entry) <= 128 or not entry.isprintable():
            raise ValueError(f"{what}: {entry!r:.80} is not a name of 1 to 128 characters")
        out[entry] = None
        if len(out) > MAX_PERMISSION_ENTRIES:
            raise ValueError(f"{what} lists more than {MAX_PERMISSION_ENTRIES} names")
    return tuple(out)


def _permission_lists(
    cameras: Iterable[str] | None, sites: Iterable[str] | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Applies the defaults rule: neither list given means all; one given restricts to it."""
    if cameras is None and sites is None:
        return ("*",), ("*",)
    return (
        _check_entries("cameras", cameras if cameras is not None else ()),
        _check_entries("sites", sites if sites is not None else ()),
    )


# --------------------------------------------------------------------------------------------
# Configuration and records


_Text = Annotated[str, AfterValidator(_encodable)]
_PermissionName = Annotated[
    str, StringConstraints(min_length=1, max_length=128), AfterValidator(_printable)
]


class UserConfig(BaseModel):
    """A user as the station's YAML file declares it.

    Exactly one of ``password_hash`` (an argon2 encoded hash, e.g. from ``vmscore`` tooling or
    ``argon2.PasswordHasher().hash``) and ``password`` (plain, normally substituted from an
    environment variable by the configuration loader) is given. For the ``cameras``/``sites``
    defaults see the module docstring: listing one of them alone restricts to it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    role: Role
    password_hash: str | None = None
    password: SecretStr | None = Field(
        default=None, min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH
    )
    cameras: list[_PermissionName] = Field(default=["*"], max_length=MAX_PERMISSION_ENTRIES)
    sites: list[_PermissionName] = Field(default=["*"], max_length=MAX_PERMISSION_ENTRIES)
    display_name: _Text = Field(default="", max_length=128)
    disabled: bool = False

    @model_validator(mode="before")
    @classmethod
    def _one_list_restricts(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            if "cameras" in data and "sites" not in data:
                return {**data, "sites": []}
            if "sites" in data and "cameras" not in data:
                return {**data, "cameras": []}
        return data

    @model_validator(mode="after")
    def _one_password(self) -> Self:
        if (self.password_hash is None) == (self.password is None):
            raise ValueError(f"user {self.name}: give exactly one of password_hash and password")
        if self.password_hash is not None:
            try:
                parameters = argon2.extract_parameters(self.password_hash)
            except InvalidHashError:
                raise ValueError(
                    f"user {self.name}: password_hash is not an argon2 encoded hash"
                ) from None
            if parameters.type is not argon2.Type.ID:
                raise ValueError(f"user {self.name}: password_hash must be argon2id")
        return self


@dataclass(frozen=True)
class UserRecord:
    """A user as stored, without the password hash."""

    name: str
    role: Role
    cameras: tuple[str, ...]
    sites: tuple[str, ...]
    display_name: str
    disabled: bool
    source: Literal["config", "api"]
    created_us: int
    updated_us: int
    password_changed_us: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "cameras": list(self.cameras),
            "sites": list(self.sites),
            "display_name": self.display_name,
            "disabled": self.disabled,
            "source": self.source,
            "created_us": self.created_us,
            "updated_us": self.updated_us,
            "password_changed_us": self.password_changed_us,
        }


@dataclass(frozen=True)
class TokenInfo:
    """An API token as listed: never its secret."""

    id: str
    user: str
    name: str
    role: Role | None
    created_us: int
    expires_us: int | None
    last_used_us: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user": self.user,
            "name": self.name,
            "role": self.role,
            "created_us": self.created_us,
            "expires_us": self.expires_us,
            "last_used_us": self.last_used_us,
        }


@dataclass(frozen=True)
class AuditEntry:
    """One audit row."""

    id: int
    at_us: int
    user: str
    action: str
    target: str
    detail: Any
    ip: str
    ok: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at_us": self.at_us,
            "user": self.user,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
            "ip": self.ip,
            "ok": self.ok,
        }


@dataclass(frozen=True)
class Principal:
    """Who is calling, as resolved for one request.

    ``session_id`` is the session's key (the SHA-256 of the cookie value), never the cookie value
    itself, so a principal may be logged. ``role`` of a token principal is the lower of the
    owner's role and the token's own.
    """

    user: str
    role: Role
    cameras: frozenset[str]
    sites: frozenset[str]
    via: Literal["session", "token"]
    session_id: str | None = None
    token_id: str | None = None
    csrf: str | None = None

    def has_role(self, role: Role) -> bool:
        return role_at_least(self.role, role)

    def can_view(self, camera: str, site: str | None) -> bool:
        """Whether the camera (of ``site``, None when it has none) is visible to this user."""
        if self.role == "admin" or "*" in self.cameras or camera in self.cameras:
            return True
        return "*" in self.sites or (site is not None and site in self.sites)

    def can_view_site(self, site: str) -> bool:
        """Whether every camera of the site is visible (site-wide views: arming, status...)."""
        return (
            self.role == "admin" or "*" in self.sites or site in self.sites or "*" in self.cameras
        )


# --------------------------------------------------------------------------------------------
# The store

_SCHEMA_VERSION: Final = 1
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS auth_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS auth_user (
    name TEXT PRIMARY KEY COLLATE NOCASE,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash TEXT NOT NULL,
    seed_hash TEXT,
    cameras TEXT NOT NULL,
    sites TEXT NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    disabled INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL CHECK (source IN ('config', 'api')),
    created_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL,
    password_changed_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS auth_session (
    key TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES auth_user (name) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    last_seen_us INTEGER NOT NULL,
    ip TEXT NOT NULL,
    user_agent TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_session_user ON auth_session (user, created_us);
CREATE TABLE IF NOT EXISTS auth_token (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES auth_user (name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    role TEXT CHECK (role IS NULL OR role IN ('viewer', 'operator', 'admin')),
    created_us INTEGER NOT NULL,
    expires_us INTEGER,
    last_used_us INTEGER
);
CREATE INDEX IF NOT EXISTS auth_token_user ON auth_token (user);
CREATE TABLE IF NOT EXISTS auth_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_us INTEGER NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    ip TEXT NOT NULL,
    ok INTEGER NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_audit_time ON auth_audit (at_us);
CREATE INDEX IF NOT EXISTS auth_audit_user ON auth_audit (user, id);
CREATE TRIGGER IF NOT EXISTS auth_audit_append_only BEFORE UPDATE ON auth_audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
"""

_USER_COLUMNS: Final = (
    "name, role, cameras, sites, display_name, disabled, source, created_us, updated_us, "
    "password_changed_us"
)


def _user_from_row(row: sqlite3.Row) -> UserRecord:
    return UserRecord(
        name=row["name"],
        role=row["role"],
        cameras=tuple(json.loads(row["cameras"])),
        sites=tuple(json.loads(row["sites"])),
        display_name=row["display_name"],
        disabled=bool(row["disabled"]),
        source=row["source"],
        created_us=row["created_us"],
        updated_us=row["updated_us"],
        password_changed_us=row["password_changed_us"],
    )


def _clip(text: str, limit: int) -> str:
    """Bounds a free text for storage; lone surrogates (valid in JSON, not in UTF-8) become '?'."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.encode("utf-8", "replace").decode("utf-8")


def _audit_digest(
    prev_hash: str, at_us: int, user: str, action: str, target: str, detail: str, ip: str, ok: bool
) -> str:
    canonical = json.dumps(
        [prev_hash, at_us, user, action, target, detail, ip, ok],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class UserStore:
    """Users, sessions, API tokens and the audit log in SQLite (WAL).

    The tables are prefixed ``auth_`` and the schema version lives in ``auth_meta``, so the store
    may share a database file with other parts of the station. One connection, guarded by a lock;
    argon2 runs outside it so a slow hash never holds up other requests.
    """

    def __init__(
        self,
        database: str | Path,
        *,
        clock: Callable[[], int] = _now_us,
        session_idle_s: float = 8 * 3600,
        session_max_s: float = 7 * 86400,
        hasher: argon2.PasswordHasher | None = None,
    ) -> None:
        if not 0 < session_idle_s <= session_max_s:
            raise ValueError("need 0 < session_idle_s <= session_max_s")
        self._clock = clock
        self.session_idle_us = int(session_idle_s * 1_000_000)
        self.session_max_us = int(session_max_s * 1_000_000)
        # argon2-cffi's defaults are RFC 9106's recommended low-memory profile for argon2id.
        self._hasher = hasher if hasher is not None else argon2.PasswordHasher()
        # A real hash verified when the user does not exist, so that answer takes as long as a
        # wrong password and the response time does not reveal which user names exist.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(database), check_same_thread=False, isolation_level=None, timeout=10.0
        )
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            # executescript commits by itself: the schema is idempotent, the version check is not.
            self._db.executescript(_SCHEMA)
            with self._write():
                row = self._db.execute(
                    "SELECT value FROM auth_meta WHERE key = 'schema_version'"
                ).fetchone()
                if row is None:
                    self._db.execute(
                        "INSERT INTO auth_meta (key, value) VALUES ('schema_version', ?)",
                        (str(_SCHEMA_VERSION),),
                    )
                elif int(row["value"]) != _SCHEMA_VERSION:
                    raise AuthError(
                        f"auth tables have schema version {row['value']}; "
                        f"this vmscore knows {_SCHEMA_VERSION}"
                    )
        except BaseException:
            self._db.close()
            raise

    # -- plumbing

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction under the lock: read-check-write sequences are atomic."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _hash(self, password: str) -> str:
        return self._hasher.hash(_check_password(password))

    def _matches(self, encoded: str, password: str) -> bool:
        try:
            return self._hasher.verify(encoded, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError, UnicodeError):
            # UnicodeError: a JSON string with a lone surrogate, which no stored password holds.
            return False

    # -- users

    def _user_row(self, db: sqlite3.Connection, name: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM auth_user WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise UnknownUserError(f"no user {name!r:.80}")
        return cast(sqlite3.Row, row)

    @staticmethod
    def _check_keeps_admin(
        db: sqlite3.Connection, row: sqlite3.Row, *, role: str, disabled: bool
    ) -> None:
        """Refuses a change that takes away the last enabled admin."""
        if row["role"] != "admin" or row["disabled"] or (role == "admin" and not disabled):
            return
        others = db.execute(
            "SELECT count(*) FROM auth_user WHERE role = 'admin' AND disabled = 0 AND name != ?",
            (row["name"],),
        ).fetchone()[0]
        if others == 0:
            raise LastAdminError(
                f"{row['name']} is the last enabled admin: add or enable another admin first"
            )

    def add_user(
        self,
        name: str,
        password: str,
        role: Role,
        *,
        cameras: Iterable[str] | None = None,
        sites: Iterable[str] | None = None,
        display_name: str = "",
    ) -> UserRecord:
        """Adds a user. ``cameras``/``sites`` follow the defaults rule of the module docstring."""
        _check_name(name)
        _check_role(role)
        cams, sits = _permission_lists(cameras, sites)
        encoded = self._hash(password)
        now = self._clock()
        with self._write() as db:
            if db.execute("SELECT 1 FROM auth_user WHERE name = ?", (name,)).fetchone():
                raise UserExistsError(f"a user {name!r} exists already")
            db.execute(
                "INSERT INTO auth_user (name, role, password_hash, seed_hash, cameras, sites, "
                "display_name, disabled, source, created_us, updated_us, password_changed_us) "
                "VALUES (?, ?, ?, NULL, ?, ?, ?, 0, 'api', ?, ?, ?)",
                (
                    name,
                    role,
                    encoded,
                    json.dumps(cams),
                    json.dumps(sits),
                    _clip(display_name, 128),
                    now,
                    now,
                    now,
                ),
            )
            return _user_from_row(self._user_row(db, name))

    def upsert_from_config(self, config: UserConfig) -> Literal["created", "updated", "unchanged"]:
        """Brings a configured user in line with the YAML file at start-up.

        The file is authoritative for role, cameras, sites, display name and disabled: a restart
        applies it even over changes made through the API (the user's ``source`` says so). The
        password is the exception, because users change their own: the store remembers the hash
        it last took from the file (for a plain ``password``, the hash it made of it). The stored
        password is replaced only when the file's password differs from that one, i.e. when the
        administrator edited the file; otherwise a password changed at run time is kept. Sessions
        end when the password or the disabled flag changes. Refused with
        :class:`LastAdminError` when it would leave no enabled admin.
        """
        plain = config.password.get_secret_value() if config.password is not None else None
        cams, sits = _permission_lists(config.cameras, config.sites)
        existing = self._read("SELECT seed_hash FROM auth_user WHERE name = ?", (config.name,))
        new_hash: str | None = None
        if config.password_hash is not None:
            if not existing or existing[0]["seed_hash"] != config.password_hash:
                new_hash = config.password_hash
        elif plain is not None and (
            not existing
            or existing[0]["seed_hash"] is None
            or not self._matches(existing[0]["seed_hash"], plain)
        ):
            new_hash = self._hasher.hash(plain)
        now = self._clock()
        with self._write() as db:
            row = db.execute("SELECT * FROM auth_user WHERE name = ?", (config.name,)).fetchone()
            if row is None:
                if new_hash is None:  # removed between the check and now: hash afresh
                    new_hash = config.password_hash or self._hasher.hash(plain or "")
                db.execute(
                    "INSERT INTO auth_user (name, role, password_hash, seed_hash, cameras, sites, "
                    "display_name, disabled, source, created_us, updated_us, "
                    "password_changed_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'config', ?, ?, ?)",
                    (
                        config.name,
                        config.role,
                        new_hash,
                        new_hash,
                        json.dumps(cams),
                        json.dumps(sits),
                        config.display_name,
                        int(config.disabled),
                        now,
                        now,
                        now,
                    ),
                )
                self._append_audit(
                    db, "system", "user.config", config.name, {"created": True, "role": config.role}
                )
                return "created"
            changes: dict[str, Any] = {}
            if row["role"] != config.role:
                changes["role"] = config.role
            if tuple(json.loads(row["cameras"])) != cams:
                changes["cameras"] = list(cams)
            if tuple(json.loads(row["sites"])) != sits:
                changes["sites"] = list(sits)
            if row["display_name"] != config.display_name:
                changes["display_name"] = config.display_name
            if bool(row["disabled"]) != config.disabled:
                changes["disabled"] = config.disabled
            if new_hash is not None:
                changes["password"] = "from configuration"
            if not changes and row["source"] == "config":
                return "unchanged"
            if row["source"] != "config":
                changes["source"] = "config"
            self._check_keeps_admin(db, row, role=config.role, disabled=config.disabled)
            db.execute(
                "UPDATE auth_user SET role = ?, cameras = ?, sites = ?, display_name = ?, "
                "disabled = ?, source = 'config', updated_us = ? WHERE name = ?",
                (
                    config.role,
                    json.dumps(cams),
                    json.dumps(sits),
                    config.display_name,
                    int(config.disabled),
                    now,
                    row["name"],
                ),
            )
            if new_hash is not None:
                db.execute(
                    "UPDATE auth_user SET password_hash = ?, seed_hash = ?, "
                    "password_changed_us = ? WHERE name = ?",
                    (new_hash, new_hash, now, row["name"]),
                )
            if new_hash is not None or config.disabled:
                db.execute("DELETE FROM auth_session WHERE user = ?", (row["name"],))
            self._append_audit(db, "system", "user.config", row["name"], changes)
            return "updated"

    def set_password(self, name: str, password: str) -> None:
        """Replaces the password and ends the user's sessions (its API tokens stay valid)."""
        encoded = self._hash(password)
        with self._write() as db:
            row = self._user_row(db, name)
            now = self._clock()
            db.execute(
                "UPDATE auth_user SET password_hash = ?, password_changed_us = ?, updated_us = ? "
                "WHERE name = ?",
                (encoded, now, now, row["name"]),
            )
            db.execute("DELETE FROM auth_session WHERE user = ?", (row["name"],))

    def set_role(self, name: str, role: Role) -> None:
        _check_role(role)
        with self._write() as db:
            row = self._user_row(db, name)
            self._check_keeps_admin(db, row, role=role, disabled=bool(row["disabled"]))
            db.execute(
                "UPDATE auth_user SET role = ?, updated_us = ? WHERE name = ?",
                (role, self._clock(), row["name"]),
            )

    def set_permissions(self, name: str, *, cameras: Iterable[str], sites: Iterable[str]) -> None:
        """Replaces both lists (no defaults here: what is given is what the user sees)."""
        cams, sits = _check_entries("cameras", cameras), _check_entries("sites", sites)
        with self._write() as db:
            row = self._user_row(db, name)
            db.execute(
                "UPDATE auth_user SET cameras = ?, sites = ?, updated_us = ? WHERE name = ?",
                (json.dumps(cams), json.dumps(sits), self._clock(), row["name"]),
            )

    def set_display_name(self, name: str, display_name: str) -> None:
        with self._write() as db:
            row = self._user_row(db, name)
            db.execute(
                "UPDATE auth_user SET display_name = ?, updated_us = ? WHERE name = ?",
                (_clip(display_name, 128), self._clock(), row["name"]),
            )

    def disable(self, name: str, disabled: bool = True) -> None:
        """Disables (or enables again) a user; disabling ends their sessions and tokens' use."""
        with self._write() as db:
            row = self._user_row(db, name)
            self._check_keeps_admin(db, row, role=row["role"], disabled=disabled)
            db.execute(
                "UPDATE auth_user SET disabled = ?, updated_us = ? WHERE name = ?",
                (int(disabled), self._clock(), row["name"]),
            )
            if disabled:
                db.execute("DELETE FROM auth_session WHERE user = ?", (row["name"],))

    def remove_user(self, name: str) -> None:
        """Removes a user with their sessions and tokens; their audit rows stay."""
        with self._write() as db:
            row = self._user_row(db, name)
            self._check_keeps_admin(db, row, role="viewer", disabled=True)
            db.execute("DELETE FROM auth_user WHERE name = ?", (row["name"],))

    def get_user(self, name: str) -> UserRecord | None:
        rows = self._read(f"SELECT {_USER_COLUMNS} FROM auth_user WHERE name = ?", (name,))
        return _user_from_row(rows[0]) if rows else None

    def list_users(self) -> list[UserRecord]:
        rows = self._read(f"SELECT {_USER_COLUMNS} FROM auth_user ORDER BY name")
        return [_user_from_row(row) for row in rows]

    def _check_credentials(
        self, name: str, password: str
    ) -> tuple[UserRecord | None, Literal["ok", "unknown", "disabled", "mismatch"]]:
        """Verifies a password; the reason is for the audit log only, never for the client."""
        if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
            return None, "mismatch"
        rows = (
            self._read("SELECT * FROM auth_user WHERE name = ?", (name,))
            if isinstance(name, str) and _NAME_RE.match(name)
            else []
        )
        if not rows:
            self._matches(self._dummy_hash, password)
            return None, "unknown"
        row = rows[0]
        if not self._matches(row["password_hash"], password):
            return None, "mismatch"
        if row["disabled"]:
            return None, "disabled"
        if self._hasher.check_needs_rehash(row["password_hash"]):
            fresh = self._hasher.hash(password)
            with self._write() as db:
                # Only if nobody changed the password meanwhile.
                db.execute(
                    "UPDATE auth_user SET password_hash = ? WHERE name = ? AND password_hash = ?",
                    (fresh, row["name"], row["password_hash"]),
                )
        return _user_from_row(row), "ok"

    def verify(self, name: str, password: str) -> UserRecord | None:
        """The user when the password is right and the user enabled, else None.

        An unknown user costs one argon2 verification too. A hash made with other parameters than
        the store's hasher is replaced by a fresh one.
        """
        return self._check_credentials(name, password)[0]

    # -- sessions

    def create_session(self, user: str, *, ip: str = "", user_agent: str = "") -> tuple[str, str]:
        """Starts a session; returns (session id for the cookie, CSRF token).

        Only the id's SHA-256 is stored. A user keeps at most 50 sessions: the oldest goes.
        """
        secret = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = self._clock()
        with self._write() as db:
            row = self._user_row(db, user)
            if row["disabled"]:
                raise AuthError(f"user {row['name']} is disabled")
            self._prune_sessions(db, now)
            db.execute(
                "DELETE FROM auth_session WHERE key IN (SELECT key FROM auth_session "
                "WHERE user = ? ORDER BY created_us DESC LIMIT -1 OFFSET ?)",
                (row["name"], MAX_SESSIONS_PER_USER - 1),
            )
            db.execute(
                "INSERT INTO auth_session (key, user, csrf, created_us, last_seen_us, ip, "
                "user_agent) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    _sha256(secret),
                    row["name"],
                    csrf,
                    now,
                    now,
                    _clip(ip, 64),
                    _clip(user_agent, 256),
                ),
            )
        return secret, csrf

    def _prune_sessions(self, db: sqlite3.Connection, now: int) -> None:
        db.execute(
            "DELETE FROM auth_session WHERE created_us <= ? OR last_seen_us <= ?",
            (now - self.session_max_us, now - self.session_idle_us),
        )

    def session(self, session_id: str) -> Principal | None:
        """The principal of a live session, or None (unknown, expired, user disabled).

        ``last_seen`` is written at most once a minute, so the idle limit is exact to a minute
        and a busy page does not cost a write per request.
        """
        if not isinstance(session_id, str) or not 0 < len(session_id) <= 128:
            return None
        key = _sha256(session_id)
        now = self._clock()
        with self._lock:
            row = self._db.execute(
                "SELECT s.*, u.role, u.cameras, u.sites, u.disabled FROM auth_session s "
                "JOIN auth_user u ON u.name = s.user WHERE s.key = ?",
                (key,),
            ).fetchone()
            if row is None:
                return None
            if (
                row["disabled"]
                or now - row["created_us"] >= self.session_max_us
                or now - row["last_seen_us"] >= self.session_idle_us
            ):
                self._db.execute("DELETE FROM auth_session WHERE key = ?", (key,))
                return None
            if now - row["last_seen_us"] >= _TOUCH_EVERY_US:
                self._db.execute(
                    "UPDATE auth_session SET last_seen_us = ? WHERE key = ?", (now, key)
                )
        return Principal(
            user=row["user"],
            role=row["role"],
            cameras=frozenset(json.loads(row["cameras"])),
            sites=frozenset(json.loads(row["sites"])),
            via="session",
            session_id=key,
            csrf=row["csrf"],
        )

    def end_session(self, session_id: str) -> bool:
        """Ends the session of this cookie value; False when there was none."""
        key = _sha256(session_id) if isinstance(session_id, str) else ""
        return self._end_session_key(key)

    def _end_session_key(self, key: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM auth_session WHERE key = ?", (key,)).rowcount > 0

    def end_sessions_of(self, user: str) -> int:
        """Ends every session of the user; returns how many."""
        with self._lock:
            return self._db.execute("DELETE FROM auth_session WHERE user = ?", (user,)).rowcount

    # -- API tokens

    def create_token(
        self, user: str, name: str, *, expires_s: float | None = None, role: Role | None = None
    ) -> str:
        """Creates an API token and returns it; it is shown this once and stored hashed.

        ``role`` caps the token below the owner's role (a viewer token for a wall display made
        by an operator). A user holds at most 100 tokens.
        """
        if not isinstance(name, str) or not 1 <= len(name) <= 64 or not name.isprintable():
            raise ValueError("a token name has 1 to 64 printable characters")
        if expires_s is not None and not 0 < expires_s <= MAX_TOKEN_LIFETIME_S:
            raise ValueError(f"expires_s must be in (0, {MAX_TOKEN_LIFETIME_S}]")
        if role is not None:
            _check_role(role)
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = self._clock()
        with self._write() as db:
            row = self._user_row(db, user)
            if row["disabled"]:
                raise AuthError(f"user {row['name']} is disabled")
            count = db.execute(
                "SELECT count(*) FROM auth_token WHERE user = ?", (row["name"],)
            ).fetchone()[0]
            if count >= MAX_TOKENS_PER_USER:
                raise AuthError(
                    f"{row['name']} holds {MAX_TOKENS_PER_USER} tokens: revoke some first"
                )
            db.execute(
                "INSERT INTO auth_token (id, user, name, secret_sha256, role, created_us, "
                "expires_us, last_used_us) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    token_id,
                    row["name"],
                    name,
                    _sha256(secret),
                    role,
                    now,
                    None if expires_s is None else now + int(expires_s * 1_000_000),
                ),
            )
        return f"{_TOKEN_PREFIX}{token_id}_{secret}"

    def token(self, secret: str) -> Principal | None:
        """The principal of a valid token, or None (unknown, revoked, expired, owner disabled)."""
        if not isinstance(secret, str) or len(secret) > 128 or not secret.startswith(_TOKEN_PREFIX):
            return None
        token_id, _, rest = secret[len(_TOKEN_PREFIX) :].partition("_")
        if not rest:
            return None
        now = self._clock()
        with self._lock:
            row = self._db.execute(
                "SELECT t.*, u.role AS user_role, u.cameras, u.sites, u.disabled FROM auth_token t "
                "JOIN auth_user u ON u.name = t.user WHERE t.id = ?",
                (token_id,),
            ).fetchone()
            if row is None or not hmac.compare_digest(row["secret_sha256"], _sha256(rest)):
                return None
            if row["disabled"] or (row["expires_us"] is not None and now >= row["expires_us"]):
                return None
            if row["last_used_us"] is None or now - row["last_used_us"] >= _TOUCH_EVERY_US:
                self._db.execute(
                    "UPDATE auth_token SET last_used_us = ? WHERE id = ?", (now, token_id)
                )
        role: Role = row["user_role"]
        return Principal(
            user=row["user"],
            role=_lower_role(role, row["role"]) if row["role"] else role,
            cameras=frozenset(json.loads(row["cameras"])),
            sites=frozenset(json.loads(row["sites"])),
            via="token",
            token_id=token_id,
        )

    def list_tokens(self, user: str) -> list[TokenInfo]:
        rows = self._read(
            "SELECT id, user, name, role, created_us, expires_us, last_used_us FROM auth_token "
            "WHERE user = ? ORDER BY created_us, rowid",
            (user,),
        )
        return [TokenInfo(**dict(row)) for row in rows]

    def get_token(self, token_id: str) -> TokenInfo | None:
        rows = self._read(
            "SELECT id, user, name, role, created_us, expires_us, last_used_us FROM auth_token "
            "WHERE id = ?",
            (token_id,),
        )
        return TokenInfo(**dict(rows[0])) if rows else None

    def revoke_token(self, token_id: str) -> bool:
        """Revokes a token; False when there was none."""
        with self._lock:
            return self._db.execute("DELETE FROM auth_token WHERE id = ?", (token_id,)).rowcount > 0

    # -- audit

    def _append_audit(
        self,
        db: sqlite3.Connection,
        user: str,
        action: str,
        target: str,
        detail: Mapping[str, Any] | str,
        ip: str = "",
        ok: bool = True,
    ) -> int:
        detail_json = json.dumps(
            dict(detail) if isinstance(detail, Mapping) else str(detail),
            ensure_ascii=False,
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        detail_json = _clip(detail_json, len(detail_json) + 1)
        if len(detail_json) > _AUDIT_LIMITS["detail"]:
            detail_json = json.dumps(
                {"truncated": detail_json[: _AUDIT_LIMITS["detail"] - 64]}, ensure_ascii=False
            )
        user, action, target, ip = (
            _clip(str(user), _AUDIT_LIMITS["user"]),
            _clip(str(action), _AUDIT_LIMITS["action"]),
            _clip(str(target), _AUDIT_LIMITS["target"]),
            _clip(str(ip), _AUDIT_LIMITS["ip"]),
        )
        last = db.execute("SELECT hash FROM auth_audit ORDER BY id DESC LIMIT 1").fetchone()
        prev_hash = last["hash"] if last else _ZERO_HASH
        at_us = self._clock()
        digest = _audit_digest(prev_hash, at_us, user, action, target, detail_json, ip, ok)
        cursor = db.execute(
            "INSERT INTO auth_audit (at_us, user, action, target, detail, ip, ok, prev_hash, "
            "hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (at_us, user, action, target, detail_json, ip, int(ok), prev_hash, digest),
        )
        return cast(int, cursor.lastrowid)

    def audit(
        self,
        user: str,
        action: str,
        target: str = "",
        detail: Mapping[str, Any] | str = "",
        *,
        ip: str = "",
        ok: bool = True,
    ) -> int:
        """Appends an audit row; returns its id. Over-long fields are shortened, never refused."""
        with self._write() as db:
            return self._append_audit(db, user, action, target, detail, ip, ok)

    def audit_log(
        self,
        *,
        user: str | None = None,
        action: str | None = None,
        since_us: int | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> list[AuditEntry]:
        """Audit rows, newest first. ``action`` ending in ``.`` matches as a prefix."""
        if not 1 <= limit <= 1000 or offset < 0:
            raise ValueError("limit must be in [1, 1000] and offset >= 0")
        where: list[str] = []
        args: list[object] = []
        if user is not None:
            where.append("user = ?")
            args.append(user)
        if action is not None:
            if action.endswith("."):
                where.append("substr(action, 1, ?) = ?")
                args.extend([len(action), action])
            else:
                where.append("action = ?")
                args.append(action)
        if since_us is not None:
            where.append("at_us >= ?")
            args.append(since_us)
        sql = "SELECT * FROM auth_audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ? OFFSET ?"
        rows = self._read(sql, [*args, limit, offset])
        return [
            AuditEntry(
                id=row["id"],
                at_us=row["at_us"],
                user=row["user"],
                action=row["action"],
                target=row["target"],
                detail=json.loads(row["detail"]),
                ip=row["ip"],
                ok=bool(row["ok"]),
            )
            for row in rows
        ]

    def prune_audit(self, before_us: int) -> int:
        """Retention: drops the oldest rows up to the first one at or after ``before_us``.

        Only a prefix goes, so the remaining rows still form one chain; the pruning itself is
        audited. Returns how many rows went.
        """
        with self._write() as db:
            first_kept = db.execute(
                "SELECT min(id) FROM auth_audit WHERE at_us >= ?", (before_us,)
            ).fetchone()[0]
            if first_kept is None:
                gone = db.execute("DELETE FROM auth_audit").rowcount
            else:
                gone = db.execute("DELETE FROM auth_audit WHERE id < ?", (first_kept,)).rowcount
            self._append_audit(
                db, "system", "audit.prune", "", {"before_us": before_us, "rows": gone}
            )
            return gone

    def verify_audit(self) -> int:
        """Checks every row's hash and link; returns the number of rows checked.

        Raises :class:`AuditChainError` naming the first row that was altered, inserted or
        removed out of order. After pruning, the oldest remaining row anchors the chain.
        """
        checked = 0
        prev: str | None = None
        after_id = 0
        while True:
            rows = self._read(
                "SELECT * FROM auth_audit WHERE id > ? ORDER BY id LIMIT 1000", (after_id,)
            )
            if not rows:
                return checked
            for row in rows:
                if prev is not None and row["prev_hash"] != prev:
                    raise AuditChainError(f"audit row {row['id']} does not follow its predecessor")
                digest = _audit_digest(
                    row["prev_hash"],
                    row["at_us"],
                    row["user"],
                    row["action"],
                    row["target"],
                    row["detail"],
                    row["ip"],
                    bool(row["ok"]),
                )
                if not hmac.compare_digest(digest, row["hash"]):
                    raise AuditChainError(f"audit row {row['id']} was altered")
                prev = row["hash"]
                after_id = row["id"]
                checked += 1


# --------------------------------------------------------------------------------------------
# Login rate limiting


class LoginLimiter:
    """Counts failed logins per user name and per client address, in memory.

    A key is locked once it has ``max_per_user`` (or ``max_per_ip``) failures within the last
    ``window_s`` seconds, until the oldest of them leaves the window. Failures count for unknown
    names too, so locking does not reveal which names exist. Each table keeps at most
    ``max_entries`` keys, dropping the least recently failed first, so a flood of made-up names
    costs bounded memory (such a flood from one address is stopped by the address limit first).
    A successful login clears the user's counter, not the address's.
    """

    def __init__(
        self,
        *,
        max_per_user: int = 5,
        max_per_ip: int = 20,
        window_s: float = 300.0,
        max_entries: int = 10_000,
        clock: Callable[[], int] = _now_us,
    ) -> None:
        if min(max_per_user, max_per_ip, max_entries) < 1 or window_s <= 0:
            raise ValueError("limits, window and max_entries must be positive")
        self.max_per_user = max_per_user
        self.max_per_ip = max_per_ip
        self.window_us = int(window_s * 1_000_000)
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._users: OrderedDict[str, deque[int]] = OrderedDict()
        self._ips: OrderedDict[str, deque[int]] = OrderedDict()

    @staticmethod
    def _user_key(user: str) -> str:
        return user[:256].casefold()

    def _wait_us(self, table: OrderedDict[str, deque[int]], key: str, limit: int, now: int) -> int:
        failures = table.get(key)
        if failures is None or len(failures) < limit:
            return 0
        return max(0, failures[0] + self.window_us - now)

    def retry_after(self, user: str, ip: str) -> int | None:
        """Seconds until a login for this user from this address may be tried, or None."""
        now = self._clock()
        with self._lock:
            wait = max(
                self._wait_us(self._users, self._user_key(user), self.max_per_user, now),
                self._wait_us(self._ips, ip[:64], self.max_per_ip, now),
            )
        return math.ceil(wait / 1_000_000) if wait > 0 else None

    def _record(self, table: OrderedDict[str, deque[int]], key: str, limit: int, now: int) -> None:
        failures = table.get(key)
        if failures is None:
            while len(table) >= self.max_entries:
                table.popitem(last=False)
            failures = table[key] = deque(maxlen=limit)
        else:
            table.move_to_end(key)
        failures.append(now)

    def failure(self, user: str, ip: str) -> int | None:
        """Counts a failed login; returns the lock's retry-after seconds if it now applies."""
        now = self._clock()
        with self._lock:
            self._record(self._users, self._user_key(user), self.max_per_user, now)
            self._record(self._ips, ip[:64], self.max_per_ip, now)
        return self.retry_after(user, ip)

    def success(self, user: str, ip: str) -> None:
        with self._lock:
            self._users.pop(self._user_key(user), None)

    @property
    def size(self) -> int:
        """Keys held (user names plus addresses): the memory bound is 2 x max_entries.

        A property, not ``__len__``, so an empty limiter is not falsy.
        """
        with self._lock:
            return len(self._users) + len(self._ips)


# --------------------------------------------------------------------------------------------
# FastAPI dependencies


_STATE_PRINCIPAL: Final = "vmscore_principal"


def _store_of(conn: HTTPConnection, store: UserStore | None) -> UserStore:
    if store is not None:
        return store
    found = getattr(conn.app.state, "users", None)
    if not isinstance(found, UserStore):
        raise RuntimeError("app.state.users is not set: call install_auth(app, store, ...)")
    return found


def _deny(conn: HTTPConnection, code: int, detail: str) -> Exception:
    if conn.scope["type"] == "websocket":
        # 1008 (policy violation) before the handshake completes: the client sees a refusal.
        return WebSocketException(code=status.WS_1008_POLICY_VIOLATION, reason=detail)
    headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
    return HTTPException(code, detail, headers=headers)


def _same_origin(conn: HTTPConnection) -> bool:
    """For WebSockets, which carry no CSRF header: a browser's Origin must be this host."""
    origin = conn.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == conn.headers.get("host", "").lower()


def _resolve(conn: HTTPConnection, store: UserStore | None) -> Principal:
    """The caller's principal (cached on the request), or raises 401 / 403."""
    cached = getattr(conn.state, _STATE_PRINCIPAL, None)
    if isinstance(cached, Principal):
        return cached
    users = _store_of(conn, store)
    authorization = conn.headers.get("authorization")
    principal: Principal | None
    if authorization is not None:
        # Explicit credentials that fail are a failure: no fallback to the cookie.
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer":
            raise _deny(conn, 401, "use a Bearer token")
        principal = users.token(credentials.strip())
        if principal is None:
            raise _deny(conn, 401, "invalid or expired token")
    else:
        cookie = conn.cookies.get(SESSION_COOKIE)
        if cookie is None:
            raise _deny(conn, 401, "authentication required")
        principal = users.session(cookie)
        if principal is None:
            raise _deny(conn, 401, "session expired: log in again")
        if conn.scope["type"] == "websocket":
            if not _same_origin(conn):
                raise _deny(conn, 403, "cross-origin WebSocket refused")
        elif conn.scope.get("method", "GET") not in _SAFE_METHODS:
            sent = conn.headers.get(CSRF_HEADER, "")
            if not principal.csrf or not hmac.compare_digest(
                sent.encode(), principal.csrf.encode()
            ):
                raise _deny(conn, 403, f"missing or wrong {CSRF_HEADER} header")
    setattr(conn.state, _STATE_PRINCIPAL, principal)
    return principal


class RoleRequirement:
    """A FastAPI dependency: the caller's :class:`Principal` when their role is at least ``role``.

    ``role`` is read by :func:`route_policy`. Without an explicit store it uses
    ``app.state.users``.
    """

    def __init__(self, role: Role, store: UserStore | None = None) -> None:
        self.role: Policy = _check_role(role)
        self._store = store

    def __call__(self, conn: HTTPConnection) -> Principal:
        principal = _resolve(conn, self._store)
        if not principal.has_role(cast(Role, self.role)):
            raise _deny(conn, 403, f"requires the {self.role} role")
        return principal

    def __repr__(self) -> str:
        return f"require({self.role!r})"


class PublicRoute:
    """Declares a route open to anyone (login, health): ``dependencies=[Depends(public)]``."""

    role: Policy = "public"

    def __call__(self) -> None:
        return None

    def __repr__(self) -> str:
        return "public"


public = PublicRoute()


def require(role: Role, *, store: UserStore | None = None) -> RoleRequirement:
    """The dependency for a route that needs at least ``role``: ``Depends(require("admin"))``."""
    return RoleRequirement(role, store)


def principal_dependency(store: UserStore | None = None) -> RoleRequirement:
    """Any logged-in user (viewer and up), optionally bound to a store instead of app.state."""
    return RoleRequirement("viewer", store)


ViewerPrincipal = Annotated[Principal, Depends(require("viewer"))]
OperatorPrincipal = Annotated[Principal, Depends(require("operator"))]
AdminPrincipal = Annotated[Principal, Depends(require("admin"))]


def principal_again(
    users: UserStore, authorization: str | None, cookie: str | None
) -> Principal | None:
    """The caller of a long-lived request (an event stream, live video) looked up again from
    the credentials it opened with: None once the session ended, the user was disabled or the
    token revoked; permissions as they are now."""
    if authorization is not None:
        return users.token(authorization.partition(" ")[2].strip())
    return users.session(cookie) if cookie is not None else None


def check_camera(principal: Principal, camera: str, site: str | None) -> None:
    """Raises 404 unless the principal may see the camera.

    404 and not 403, so a restricted user cannot learn which camera names exist: routes must
    answer an unknown camera with the same status and :data:`CAMERA_NOT_FOUND` detail.
    """
    if not principal.can_view(camera, site):
        raise HTTPException(status.HTTP_404_NOT_FOUND, CAMERA_NOT_FOUND)


def route_policy(route: object) -> Policy | None:
    """The minimum role a route declares through its dependencies, or None when it declares none.

    Accepts an ``APIRoute``, ``APIWebSocketRoute`` or ``fastapi.routing.RouteContext`` (what
    ``iter_route_contexts(app.routes)`` yields, prefixes and router dependencies included). The
    strictest declaration wins; ``"public"`` only when nothing stricter is declared.
    """
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    found: set[str] = set()
    stack = [dependant]
    while stack:
        node = stack.pop()
        declared = getattr(getattr(node, "call", None), "role", None)
        if isinstance(getattr(node, "call", None), RoleRequirement | PublicRoute) and declared:
            found.add(declared)
        stack.extend(getattr(node, "dependencies", ()))
    if not found:
        return None
    return cast(Policy, max(found, key=_RANK.__getitem__))


def client_ip(conn: HTTPConnection) -> str:
    """The peer address as the ASGI server reports it (the real client behind a trusted proxy
    when uvicorn runs with ``--proxy-headers --forwarded-allow-ips``)."""
    return conn.client.host if conn.client is not None else "unknown"


def audit_action(
    request: HTTPConnection,
    principal: Principal,
    action: str,
    target: str = "",
    detail: Mapping[str, Any] | str = "",
    *,
    ok: bool = True,
) -> int:
    """Records an operator action in the audit log of ``app.state.users``.

    The client address comes from the request; a token's id is added to the detail so an action
    is traced to the integration that made it.
    """
    if principal.token_id is not None:
        detail = (
            {**detail, "token": principal.token_id}
            if isinstance(detail, Mapping)
            else {"detail": detail, "token": principal.token_id}
        )
    return _store_of(request, None).audit(
        principal.user, action, target, detail, ip=client_ip(request), ok=ok
    )


# --------------------------------------------------------------------------------------------
# Routes


_Password = Annotated[
    SecretStr, Field(max_length=MAX_PASSWORD_LENGTH), AfterValidator(_secret_encodable)
]
_NewPassword = Annotated[
    SecretStr,
    Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH),
    AfterValidator(_secret_encodable),
]
_UserName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
_Permissions = Annotated[list[_PermissionName], Field(max_length=MAX_PERMISSION_ENTRIES)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginBody(_Body):
    user: _Text = Field(max_length=256)
    password: _Password


class PasswordChangeBody(_Body):
    old_password: _Password
    new_password: _NewPassword


class TokenBody(_Body):
    name: Annotated[str, AfterValidator(_printable)] = Field(min_length=1, max_length=64)
    expires_s: int | None = Field(default=None, gt=0, le=MAX_TOKEN_LIFETIME_S)
    role: Role | None = None


class NewUserBody(_Body):
    name: _UserName
    password: _NewPassword
    role: Role
    cameras: _Permissions | None = None
    sites: _Permissions | None = None
    display_name: _Text = Field(default="", max_length=128)


class UserPatchBody(_Body):
    role: Role | None = None
    cameras: _Permissions | None = None
    sites: _Permissions | None = None
    display_name: _Text | None = Field(default=None, max_length=128)
    disabled: bool | None = None
    password: _NewPassword | None = None


def _no_store(response: Response) -> None:
    response.headers["Cache-Control"] = "no-store"


def _principal_json(principal: Principal, users: UserStore) -> dict[str, Any]:
    record = users.get_user(principal.user)
    return {
        "user": principal.user,
        "role": principal.role,
        "display_name": record.display_name if record else "",
        "cameras": sorted(principal.cameras),
        "sites": sorted(principal.sites),
        "via": principal.via,
        "csrf_token": principal.csrf,
    }


def auth_router(store: UserStore, limiter: LoginLimiter, *, secure_cookies: bool) -> APIRouter:
    """The routes of login, logout, self, API tokens, users (admin) and the audit log (admin).

    ``secure_cookies`` marks the session cookie Secure: true whenever the station is reached over
    TLS (always, except on a development machine). Request bodies are limited to 64 KiB.
    """
    router = APIRouter(max_body_size=64 * 1024, tags=["auth"])
    # Parameter defaults rather than Annotated: string annotations cannot see these locals.
    viewer: Any = Depends(require("viewer", store=store))
    operator: Any = Depends(require("operator", store=store))
    admin: Any = Depends(require("admin", store=store))
    # Marks routes that end or rotate the caller's session, so a route walk calls them last.
    ends_session = {"x-ends-session": True}

    def set_session_cookie(response: Response, secret: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            secret,
            max_age=store.session_max_us // 1_000_000,
            path="/",
            secure=secure_cookies,
            httponly=True,
            samesite="strict",
        )

    @router.post("/api/auth/login", dependencies=[Depends(public)])
    def login(body: LoginBody, request: Request, response: Response) -> dict[str, Any]:
        ip = client_ip(request)
        wait = limiter.retry_after(body.user, ip)
        if wait is not None:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                "too many failed logins: try again later",
                headers={"Retry-After": str(wait)},
            )
        record, reason = store._check_credentials(body.user, body.password.get_secret_value())
        if record is None:
            locked = limiter.failure(body.user, ip)
            store.audit(body.user, "login", detail={"reason": reason}, ip=ip, ok=False)
            if locked is not None:
                store.audit(body.user, "login.locked", detail={"retry_after_s": locked}, ip=ip)
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, _GENERIC_LOGIN_ERROR)
        limiter.success(body.user, ip)
        old = request.cookies.get(SESSION_COOKIE)
        if old is not None:
            store.end_session(old)
        secret, csrf = store.create_session(
            record.name, ip=ip, user_agent=request.headers.get("user-agent", "")
        )
        set_session_cookie(response, secret)
        _no_store(response)
        store.audit(record.name, "login", ip=ip)
        return {
            "user": record.name,
            "role": record.role,
            "display_name": record.display_name,
            "cameras": list(record.cameras),
            "sites": list(record.sites),
            "csrf_token": csrf,
        }

    @router.post(
        "/api/auth/logout", status_code=204, response_class=Response, openapi_extra=ends_session
    )
    def logout(request: Request, who: Principal = viewer) -> Response:
        if who.session_id is not None:
            store._end_session_key(who.session_id)
        response = Response(status_code=204)
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=secure_cookies, httponly=True, samesite="strict"
        )
        store.audit(who.user, "logout", ip=client_ip(request))
        return response

    @router.get("/api/auth/me")
    def me(response: Response, who: Principal = viewer) -> dict[str, Any]:
        _no_store(response)
        return _principal_json(who, store)

    @router.post("/api/auth/password", openapi_extra=ends_session)
    def change_own_password(
        body: PasswordChangeBody,
        request: Request,
        response: Response,
        who: Principal = viewer,
    ) -> dict[str, Any]:
        """Changes the caller's password given the old one; every session ends, and a session
        caller gets a fresh one (new cookie and CSRF token)."""
        ip = client_ip(request)
        wait = limiter.retry_after(who.user, ip)
        if wait is not None:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                "too many wrong passwords: try again later",
                headers={"Retry-After": str(wait)},
            )
        record, _ = store._check_credentials(who.user, body.old_password.get_secret_value())
        if record is None:
            limiter.failure(who.user, ip)
            store.audit(who.user, "password.change", ip=ip, ok=False)
            raise HTTPException(status.HTTP_403_FORBIDDEN, "the old password is wrong")
        limiter.success(who.user, ip)
        store.set_password(who.user, body.new_password.get_secret_value())
        store.audit(who.user, "password.change", target=who.user, ip=ip)
        _no_store(response)
        if who.via != "session":
            return {"csrf_token": None}
        secret, csrf = store.create_session(
            who.user, ip=ip, user_agent=request.headers.get("user-agent", "")
        )
        set_session_cookie(response, secret)
        return {"csrf_token": csrf}

    @router.post("/api/auth/tokens", status_code=201)
    def create_token(
        body: TokenBody,
        request: Request,
        response: Response,
        who: Principal = operator,
    ) -> dict[str, Any]:
        """Operators and admins create tokens for themselves, from a logged-in session only."""
        if who.via != "session":
            raise HTTPException(status.HTTP_403_FORBIDDEN, "tokens are created from a session")
        if body.role is not None and not role_at_least(who.role, body.role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "a token cannot exceed your role")
        try:
            secret = store.create_token(
                who.user, body.name, expires_s=body.expires_s, role=body.role
            )
        except AuthError as e:
            raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
        except ValueError as e:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
        info = store.get_token(secret[len(_TOKEN_PREFIX) :].partition("_")[0])
        assert info is not None
        store.audit(
            who.user,
            "token.create",
            target=info.id,
            detail={"name": info.name, "role": info.role, "expires_us": info.expires_us},
            ip=client_ip(request),
        )
        _no_store(response)
        return {**info.to_json(), "token": secret}

    @router.get("/api/auth/tokens")
    def list_tokens(
        who: Principal = viewer,
        user: Annotated[str | None, Query(max_length=64)] = None,
    ) -> list[dict[str, Any]]:
        """The caller's tokens; an admin may name another user."""
        if user is not None and user.casefold() != who.user.casefold() and who.role != "admin":
            raise HTTPException(status.HTTP_403_FORBIDDEN, "only an admin lists others' tokens")
        return [t.to_json() for t in store.list_tokens(user or who.user)]

    @router.delete("/api/auth/tokens/{token_id}", status_code=204, response_class=Response)
    def revoke_token(
        token_id: Annotated[str, PathParam(max_length=32)],
        request: Request,
        who: Principal = viewer,
    ) -> Response:
        """Revokes one of the caller's tokens (an admin: anyone's); others' answer 404."""
        info = store.get_token(token_id)
        if info is None or (info.user.casefold() != who.user.casefold() and who.role != "admin"):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such token")
        store.revoke_token(token_id)
        store.audit(
            who.user,
            "token.revoke",
            target=token_id,
            detail={"owner": info.user},
            ip=client_ip(request),
        )
        return Response(status_code=204)

    def user_or_404(name: str) -> UserRecord:
        record = store.get_user(name)
        if record is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such user")
        return record

    @router.get("/api/users")
    def list_users(who: Principal = admin) -> list[dict[str, Any]]:
        return [u.to_json() for u in store.list_users()]

    @router.post("/api/users", status_code=201)
    def add_user(body: NewUserBody, request: Request, who: Principal = admin) -> dict[str, Any]:
        try:
            record = store.add_user(
                body.name,
                body.password.get_secret_value(),
                body.role,
                cameras=body.cameras,
                sites=body.sites,
                display_name=body.display_name,
            )
        except UserExistsError as e:
            raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
        except ValueError as e:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
        store.audit(
            who.user,
            "user.add",
            target=record.name,
            detail={
                "role": record.role,
                "cameras": list(record.cameras),
                "sites": list(record.sites),
            },
            ip=client_ip(request),
        )
        return record.to_json()

    @router.get("/api/users/{name}")
    def get_user(
        name: Annotated[str, PathParam(max_length=64)], who: Principal = admin
    ) -> dict[str, Any]:
        return user_or_404(name).to_json()

    @router.patch("/api/users/{name}")
    def update_user(
        name: Annotated[str, PathParam(max_length=64)],
        body: UserPatchBody,
        request: Request,
        who: Principal = admin,
    ) -> dict[str, Any]:
        """Changes role, permissions, display name, disabled or password (sessions then end).

        Refused with 409 when it would leave no enabled admin.
        """
        record = user_or_404(name)
        changes: dict[str, Any] = {}
        try:
            if body.role is not None and body.role != record.role:
                store.set_role(record.name, body.role)
                changes["role"] = body.role
            if body.cameras is not None or body.sites is not None:
                cameras = body.cameras if body.cameras is not None else list(record.cameras)
                sites = body.sites if body.sites is not None else list(record.sites)
                store.set_permissions(record.name, cameras=cameras, sites=sites)
                changes.update(cameras=cameras, sites=sites)
            if body.display_name is not None:
                store.set_display_name(record.name, body.display_name)
                changes["display_name"] = body.display_name
            if body.disabled is not None and body.disabled != record.disabled:
                store.disable(record.name, body.disabled)
                changes["disabled"] = body.disabled
            if body.password is not None:
                store.set_password(record.name, body.password.get_secret_value())
                changes["password"] = "changed"
        except LastAdminError as e:
            raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
        except UnknownUserError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such user") from None
        except ValueError as e:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
        finally:
            if changes:
                store.audit(
                    who.user,
                    "user.update",
                    target=record.name,
                    detail=changes,
                    ip=client_ip(request),
                )
        return user_or_404(record.name).to_json()

    @router.delete("/api/users/{name}", status_code=204, response_class=Response)
    def remove_user(
        name: Annotated[str, PathParam(max_length=64)],
        request: Request,
        who: Principal = admin,
    ) -> Response:
        record = user_or_404(name)
        try:
            store.remove_user(record.name)
        except LastAdminError as e:
            raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
        except UnknownUserError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such user") from None
        store.audit(who.user, "user.remove", target=record.name, ip=client_ip(request))
        return Response(status_code=204)

    @router.get("/api/audit")
    def audit_log(
        who: Principal = admin,
        user: Annotated[str | None, Query(max_length=256)] = None,
        action: Annotated[str | None, Query(max_length=64)] = None,
        since_us: Annotated[int | None, Query(ge=0)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> list[dict[str, Any]]:
        entries = store.audit_log(
            user=user, action=action, since_us=since_us, limit=limit, offset=offset
        )
        return [e.to_json() for e in entries]

    return router


def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """A 422 that never echoes the input back.

    FastAPI's default puts each offending value in the answer: a password that failed a length
    check would be sent back (and logged by whatever sits in between), and a value JSON allows but
    the response encoder refuses (``1e999``, a lone surrogate) turns the 422 into a 500. This keeps
    the type, location and message of at most 50 errors.
    """
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {
            "type": _clip(str(error.get("type", "")), 64),
            "loc": [p if isinstance(p, int) else _clip(str(p), 128) for p in error.get("loc", ())],
            "msg": _clip(str(error.get("msg", "")), 512),
        }
        for error in errors[:50]
    ]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def install_auth(
    app: FastAPI, store: UserStore, limiter: LoginLimiter, *, secure_cookies: bool
) -> None:
    """Wires the store into ``app.state.users`` (read by :func:`require`), adds the routes and
    :func:`validation_error_handler`."""
    app.state.users = store
    app.state.login_limiter = limiter
    app.include_router(auth_router(store, limiter, secure_cookies=secure_cookies))
    app.add_exception_handler(RequestValidationError, validation_error_handler)
