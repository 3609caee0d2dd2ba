"""A small real hub for HTTP tests: SQLite file, actor tree, Hypercorn on loopback, httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from actors import DATABASE_NAME
from actors.accounts import Accounts, AccountsMessage, CreateUser, NewUser
from actors.http import ApiRoute, GetHttpAddress, HttpAddress, HttpGateway
from actors.store import Store
from config import HttpSettings
from supervision import (
    ActorRef,
    ActorSystem,
    ChildSpec,
    open_asyncio_bridge,
    open_system,
    supervisor,
)

LOOPBACK = HttpSettings(host="127.0.0.1", port=0)


@dataclass
class Hub:
    system: ActorSystem
    store: Store
    address: HttpAddress
    client: httpx.AsyncClient
    staging_dir: Path
    accounts: ActorRef[AccountsMessage]

    async def new_user(self, name: str, *, admin: bool = False) -> NewUser:
        return await self.accounts.ask(CreateUser(name=name, admin=admin))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def running_hub(
    data_dir: Path,
    *,
    http: HttpSettings = LOOPBACK,
    routes: Sequence[ApiRoute] = (),
    domain: Sequence[ChildSpec[Any]] = (),
    failed_auth_per_minute: int = 30,
) -> AsyncIterator[Hub]:
    """Accounts under ``/domain`` (plus ``domain``), the gateway at ``/edge/http``."""
    staging_dir = data_dir / "staging"
    accounts: ActorRef[AccountsMessage] = ActorRef.declare("accounts")
    async with (
        open_asyncio_bridge() as bridge,
        Store.open(data_dir / DATABASE_NAME, bridge) as store,
    ):
        tree = supervisor(
            "root",
            [
                supervisor(
                    "domain",
                    [ChildSpec("accounts", lambda: Accounts(store), ref=accounts), *domain],
                ),
                supervisor(
                    "edge",
                    [
                        ChildSpec(
                            "http",
                            lambda: HttpGateway(
                                http,
                                store=store,
                                staging_dir=staging_dir,
                                accounts=accounts,
                                routes=routes,
                                failed_auth_per_minute=failed_auth_per_minute,
                            ),
                        )
                    ],
                ),
            ],
        )
        async with open_system(tree, bridge=bridge) as system:
            address: HttpAddress = await system.lookup("/edge/http").ask(GetHttpAddress())
            direct = f"http://{address.host}:{address.port}"
            async with httpx.AsyncClient(base_url=direct, timeout=30.0) as client:
                yield Hub(system, store, address, client, staging_dir, accounts)
