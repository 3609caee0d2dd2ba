"""The accounts actor: users, frames' API tokens, and who a presented token belongs to.

Tokens are 256-bit random strings shown once, when issued; only their SHA-256 is stored.
The actor keeps every active token's hash in memory (rebuilt in ``on_start``, changed only
when a transaction commits) and falls back to one database read on a miss, so a user created
by ``run.py users add`` while the hub runs can call the API at once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from actors.errors import Conflict, Invalid, Unauthorized
from actors.events import new_id
from actors.store import Rows, Store, StoreError, Transaction
from actors.text import check_text
from supervision import Actor, Request

from ._principal import Principal

TOKEN_BYTES = 32
"""Random bytes in a token (``secrets.token_urlsafe`` makes 43 URL-safe characters of them)."""

MAX_NAME_LENGTH = 64

ACCOUNTS_MIGRATIONS = (
    """
    CREATE TABLE users (
        user_id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        admin INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE api_tokens (
        token_hash TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('user', 'frame')),
        principal_id TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE INDEX api_tokens_principal ON api_tokens (kind, principal_id);
    """,
)
"""The ``accounts`` schema. ``api_tokens.name`` is a frame's name (users' come from ``users``)."""

_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{32,128}$")

_FORBIDDEN = (
    r"\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f"
    r"\ufeff\ufff9-\ufffb"
)
NAME_PATTERN = rf"^[^\s{_FORBIDDEN}](?:[^{_FORBIDDEN}]*[^\s{_FORBIDDEN}])?$"
"""A user name: no control or invisible formatting characters (C0, C1, soft hyphen,
zero-width and bidi controls, line separators), no white space at either end. The HTTP API
puts it in its schema; ``check_name`` applies the same rule."""
_FORBIDDEN_CHAR = re.compile(f"[{_FORBIDDEN}]")

_PRINCIPALS = Rows(
    Principal,
    renames={
        "kind": "t.kind",
        "id": "t.principal_id",
        "name": "coalesce(u.name, t.name)",
        "admin": "coalesce(u.admin, 0)",
    },
)
_ACTIVE_TOKENS = f"""
    SELECT {_PRINCIPALS.columns}, t.token_hash
    FROM api_tokens AS t
    LEFT JOIN users AS u ON t.kind = 'user' AND u.user_id = t.principal_id
    WHERE t.revoked_at IS NULL AND (t.kind = 'frame' OR u.user_id IS NOT NULL)
"""


# -- messages ----------------------------------------------------------------------------------


class CreateUser(Request["NewUser"], frozen=True, kw_only=True):
    """Create a user and its first API token; answers ``NewUser`` (``Conflict``, ``Invalid``)."""

    name: str
    admin: bool = False


class NewUser(msgspec.Struct, frozen=True, kw_only=True):
    """A created user with its token: the only time the token is ever shown."""

    user_id: str
    name: str
    admin: bool
    token: str

    def __repr__(self) -> str:
        return f"NewUser(user_id={self.user_id!r}, name={self.name!r}, admin={self.admin!r})"


class Authenticate(Request["Principal"], frozen=True, kw_only=True):
    """Who holds ``token``? Answers a ``Principal``, or ``Unauthorized``."""

    token: str

    def __repr__(self) -> str:
        return "Authenticate(token=<redacted>)"


class IssueFrameToken(Request["str"], frozen=True, kw_only=True):
    """A new API token for a frame; answers the token (a ``str``).

    The frame's earlier tokens are revoked in the same transaction: a frame has one token,
    and pairing it again replaces it.
    """

    frame_id: str
    name: str


class RevokeTokens(Request["int"], frozen=True, kw_only=True):
    """Revoke every active token of a user or frame; answers how many were revoked."""

    kind: Literal["user", "frame"]
    principal_id: str


class ListUsers(Request["list[UserSummary]"], frozen=True, kw_only=True):
    """Every user, oldest first (only the admins with ``admins_only``); answers
    ``list[UserSummary]``. Read from the table, so users made by ``run.py users add`` while
    the hub runs are included."""

    admins_only: bool = False


class UserSummary(msgspec.Struct, frozen=True, kw_only=True):
    """A user without secrets: who to tell about something."""

    user_id: str
    name: str
    admin: bool


_USERS = Rows(UserSummary)


AccountsMessage = CreateUser | Authenticate | IssueFrameToken | RevokeTokens | ListUsers


# -- what the actor and the command line share -------------------------------------------------


def hash_token(token: str) -> str:
    """The stored form of a token: its SHA-256 in hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def check_name(name: str) -> str:
    """``name`` if it is a valid user name (``NAME_PATTERN``), else ``Invalid`` saying why."""
    return check_text(
        name, "name", MAX_NAME_LENGTH, surrounding_space="refuse", forbidden=_FORBIDDEN_CHAR
    )


async def migrate_accounts(store: Store) -> None:
    """Create or upgrade the ``accounts`` tables."""
    await store.migrate("accounts", ACCOUNTS_MIGRATIONS)


async def create_user(
    store: Store,
    name: str,
    *,
    admin: bool,
    on_commit: Callable[[str, Principal], None] | None = None,
) -> NewUser:
    """Create a user with its first token, in one transaction.

    The single code path behind ``CreateUser`` and ``run.py users add`` (which may run while a
    hub uses the same database). ``on_commit(token_hash, principal)`` runs once it is durable.
    Raises ``Invalid`` for a bad name and ``Conflict`` when the name (case-insensitively) is
    taken.
    """
    check_name(name)
    if await store.fetch_one("SELECT 1 FROM users WHERE name = ?", (name,)) is not None:
        raise Conflict(f"a user named {name!r} already exists")
    user_id = new_id()
    token = new_token()
    digest = hash_token(token)
    now = time.time()
    tx = Transaction()
    tx.execute(
        "INSERT INTO users (user_id, name, admin, created_at) VALUES (?, ?, ?, ?)",
        (user_id, name, int(admin), now),
    )
    tx.execute(
        "INSERT INTO api_tokens (token_hash, kind, principal_id, created_at) VALUES (?, ?, ?, ?)",
        (digest, "user", user_id, now),
    )
    if on_commit is not None:
        principal = Principal(kind="user", id=user_id, name=name, admin=admin)
        tx.on_commit(lambda: on_commit(digest, principal))
    try:
        await store.commit(tx)
    except StoreError as error:
        # Another process (the command line, or a hub) took the name since the check.
        if isinstance(error.__cause__, sqlite3.IntegrityError):
            raise Conflict(f"a user named {name!r} already exists") from None
        raise
    return NewUser(user_id=user_id, name=name, admin=admin, token=token)


# -- the actor ---------------------------------------------------------------------------------


class Accounts(Actor[AccountsMessage]):
    """The accounts actor: owns the ``users`` and ``api_tokens`` tables."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._principals: dict[str, Principal] = {}

    async def on_start(self) -> None:
        await migrate_accounts(self._store)
        rows = await self._store.fetch_all(_ACTIVE_TOKENS)
        self._principals = {str(row[-1]): _PRINCIPALS.of(row) for row in rows}

    async def receive(self, message: AccountsMessage) -> Any:
        match message:
            case Authenticate(token=token):
                return await self._authenticate(token)
            case CreateUser(name=name, admin=admin):
                return await create_user(self._store, name, admin=admin, on_commit=self._remember)
            case IssueFrameToken(frame_id=frame_id, name=name):
                return await self._issue_frame_token(frame_id, name)
            case RevokeTokens(kind=kind, principal_id=principal_id):
                return await self._revoke(kind, principal_id)
            case ListUsers(admins_only=admins_only):
                return await self._users(admins_only)

    async def _authenticate(self, token: str) -> Principal:
        if not _TOKEN_SHAPE.match(token):
            raise Unauthorized("the token is not valid")
        digest = hash_token(token)
        principal = self._principals.get(digest)
        if principal is None:
            # Issued by another process (the command line) since on_start: one read.
            row = await self._store.fetch_one(f"{_ACTIVE_TOKENS} AND t.token_hash = ?", (digest,))
            if row is None or not hmac.compare_digest(str(row[-1]), digest):
                raise Unauthorized("the token is not valid")
            principal = _PRINCIPALS.of(row)
            self._principals[digest] = principal
        return principal

    async def _users(self, admins_only: bool) -> list[UserSummary]:
        rows = await self._store.fetch_all(
            f"SELECT {_USERS.columns} FROM users WHERE (? = 0 OR admin = 1) "
            "ORDER BY created_at, user_id",
            (int(admins_only),),
        )
        return _USERS.all(rows)

    async def _issue_frame_token(self, frame_id: str, name: str) -> str:
        if not frame_id:
            raise Invalid("frame_id must not be empty")
        token = new_token()
        digest = hash_token(token)
        now = time.time()
        principal = Principal(kind="frame", id=frame_id, name=name, admin=False)
        tx = Transaction()
        tx.execute(
            "UPDATE api_tokens SET revoked_at = ? "
            "WHERE kind = 'frame' AND principal_id = ? AND revoked_at IS NULL",
            (now, frame_id),
        )
        tx.execute(
            "INSERT INTO api_tokens (token_hash, kind, principal_id, name, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (digest, "frame", frame_id, name, now),
        )

        def replace() -> None:
            self._forget("frame", frame_id)
            self._remember(digest, principal)

        tx.on_commit(replace)
        await self._store.commit(tx)
        return token

    async def _revoke(self, kind: str, principal_id: str) -> int:
        row = await self._store.fetch_one(
            "SELECT count(*) FROM api_tokens "
            "WHERE kind = ? AND principal_id = ? AND revoked_at IS NULL",
            (kind, principal_id),
        )
        count = int(row[0]) if row else 0
        tx = Transaction()
        tx.execute(
            "UPDATE api_tokens SET revoked_at = ? "
            "WHERE kind = ? AND principal_id = ? AND revoked_at IS NULL",
            (time.time(), kind, principal_id),
        )
        tx.on_commit(lambda: self._forget(kind, principal_id))
        await self._store.commit(tx)
        return count

    def _remember(self, digest: str, principal: Principal) -> None:
        self._principals[digest] = principal

    def _forget(self, kind: str, principal_id: str) -> None:
        self._principals = {
            digest: principal
            for digest, principal in self._principals.items()
            if not (principal.kind == kind and principal.id == principal_id)
        }
