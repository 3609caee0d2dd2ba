"""The accounts actor: users, hashed API tokens, frames' tokens, revocation."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from actors import DATABASE_NAME
from actors.accounts import (
    Accounts,
    Authenticate,
    CreateUser,
    IssueFrameToken,
    NewUser,
    Principal,
    RevokeTokens,
    create_user,
)
from actors.errors import Conflict, Invalid, Unauthorized
from actors.store import Store
from supervision import ActorRef, ChildSpec, open_asyncio_bridge, open_system, supervisor


def database_bytes(directory: Path) -> bytes:
    """The database file with its WAL and shared-memory files, as stored."""
    return b"".join(path.read_bytes() for path in directory.glob(f"{DATABASE_NAME}*"))


@asynccontextmanager
async def accounts_in(path: Path) -> AsyncIterator[tuple[ActorRef[object], Store]]:
    async with open_asyncio_bridge() as bridge, Store.open(path / DATABASE_NAME, bridge) as store:
        tree = supervisor(
            "root", [supervisor("domain", [ChildSpec("accounts", lambda: Accounts(store))])]
        )
        async with open_system(tree, bridge=bridge) as system:
            yield system.lookup("/domain/accounts"), store


async def test_a_new_users_token_authenticates_and_only_its_hash_is_stored(
    tmp_path: Path,
) -> None:
    async with accounts_in(tmp_path) as (accounts, store):
        user: NewUser = await accounts.ask(CreateUser(name="alice", admin=True))
        assert await accounts.ask(Authenticate(token=user.token)) == Principal(
            kind="user", id=user.user_id, name="alice", admin=True
        )
        rows = await store.fetch_all("SELECT token_hash, kind, principal_id FROM api_tokens")
        assert rows == [(hashlib.sha256(user.token.encode()).hexdigest(), "user", user.user_id)]
    stored = database_bytes(tmp_path)
    assert b"alice" in stored
    assert user.token.encode() not in stored


async def test_tokens_carry_at_least_256_random_bits(tmp_path: Path) -> None:
    async with accounts_in(tmp_path) as (accounts, _):
        tokens = [(await accounts.ask(CreateUser(name=f"user{n}"))).token for n in range(20)]
    assert len(set(tokens)) == 20
    assert all(len(token) >= 43 for token in tokens)  # token_urlsafe(32): 43 characters


async def test_user_names_are_unique_regardless_of_case(tmp_path: Path) -> None:
    async with accounts_in(tmp_path) as (accounts, _):
        await accounts.ask(CreateUser(name="Alice"))
        with pytest.raises(Conflict, match="already exists"):
            await accounts.ask(CreateUser(name="alice"))


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "1 to 64 characters"),
        ("x" * 65, "1 to 64 characters"),
        ("bob\n", "white space"),
        (" bob", "white space"),
        ("bo\x00b", "control characters"),
        ("bo\x1bb", "control characters"),
        ("zero\u200bwidth", "control characters"),
    ],
)
async def test_bad_user_names_are_refused(tmp_path: Path, name: str, problem: str) -> None:
    async with accounts_in(tmp_path) as (accounts, store):
        with pytest.raises(Invalid, match=problem):
            await accounts.ask(CreateUser(name=name))
        assert await store.fetch_all("SELECT * FROM users") == []


async def test_names_may_be_any_printable_text(tmp_path: Path) -> None:
    async with accounts_in(tmp_path) as (accounts, _):
        user: NewUser = await accounts.ask(CreateUser(name="Zoë 🙂 Müller-Lüdenscheidt"))
        principal = await accounts.ask(Authenticate(token=user.token))
        assert principal.name == "Zoë 🙂 Müller-Lüdenscheidt"


@pytest.mark.parametrize(
    "token", ["", "short", "x" * 1000, "not a token at all!", secrets.token_urlsafe(32)]
)
async def test_unknown_or_malformed_tokens_are_unauthorized(tmp_path: Path, token: str) -> None:
    async with accounts_in(tmp_path) as (accounts, _):
        await accounts.ask(CreateUser(name="alice"))
        with pytest.raises(Unauthorized):
            await accounts.ask(Authenticate(token=token))


async def test_tokens_still_work_after_a_restart(tmp_path: Path) -> None:
    async with accounts_in(tmp_path) as (accounts, _):
        user: NewUser = await accounts.ask(CreateUser(name="alice"))
        frame_token = await accounts.ask(IssueFrameToken(frame_id="f1", name="kitchen"))
    async with accounts_in(tmp_path) as (accounts, _):
        assert (await accounts.ask(Authenticate(token=user.token))).id == user.user_id
        assert await accounts.ask(Authenticate(token=frame_token)) == Principal(
            kind="frame", id="f1", name="kitchen", admin=False
        )


async def test_a_user_written_to_the_database_by_another_writer_authenticates_at_once(
    tmp_path: Path,
) -> None:
    async with accounts_in(tmp_path) as (accounts, store):
        # What `run.py users add` does, without the actor knowing.
        user = await create_user(store, "carol", admin=False)
        assert (await accounts.ask(Authenticate(token=user.token))).name == "carol"


async def test_frame_tokens_are_replaced_when_reissued_and_can_be_revoked(
    tmp_path: Path,
) -> None:
    async with accounts_in(tmp_path) as (accounts, _):
        first = await accounts.ask(IssueFrameToken(frame_id="f1", name="hall"))
        second = await accounts.ask(IssueFrameToken(frame_id="f1", name="hall"))
        with pytest.raises(Unauthorized):
            await accounts.ask(Authenticate(token=first))
        assert (await accounts.ask(Authenticate(token=second))).kind == "frame"
        assert await accounts.ask(RevokeTokens(kind="frame", principal_id="f1")) == 1
        with pytest.raises(Unauthorized):
            await accounts.ask(Authenticate(token=second))
        user: NewUser = await accounts.ask(CreateUser(name="dave"))
        assert await accounts.ask(RevokeTokens(kind="user", principal_id=user.user_id)) == 1
        with pytest.raises(Unauthorized):
            await accounts.ask(Authenticate(token=user.token))
    async with accounts_in(tmp_path) as (accounts, _):
        for token in (first, second, user.token):
            with pytest.raises(Unauthorized):
                await accounts.ask(Authenticate(token=token))


def test_messages_that_carry_a_token_never_show_it() -> None:
    token = secrets.token_urlsafe(32)
    user = NewUser(user_id="u1", name="alice", admin=False, token=token)
    for text in (repr(Authenticate(token=token)), str(Authenticate(token=token)), repr(user)):
        assert token not in text
