"""``/api/v1/me`` and ``/api/v1/users``: the caller, and users made by an admin."""

from __future__ import annotations

from typing import Annotated

import msgspec

from actors.accounts import (
    MAX_NAME_LENGTH,
    NAME_PATTERN,
    AccountsMessage,
    CreateUser,
    NewUser,
    Principal,
)
from supervision import ActorRef

from ._routing import ApiRoute, RequestContext, api_route


class NewUserRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[
        str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN)
    ]
    admin: bool = False


def account_routes(accounts: ActorRef[AccountsMessage]) -> tuple[ApiRoute, ...]:
    """``/api/v1/me`` and ``/api/v1/users``, answered by ``accounts``."""

    async def who_am_i(context: RequestContext, _: None) -> Principal:
        return context.principal

    async def create_user(context: RequestContext, body: NewUserRequest) -> NewUser:
        return await accounts.ask(CreateUser(name=body.name, admin=body.admin))

    return (
        api_route(
            "GET",
            "/api/v1/me",
            who_am_i,
            response=Principal,
            auth="user_or_frame",
            summary="who the token belongs to",
            tags=("accounts",),
        ),
        api_route(
            "POST",
            "/api/v1/users",
            create_user,
            body=NewUserRequest,
            response=NewUser,
            status=201,
            auth="admin",
            summary="create a user; its API token is in this reply only",
            errors=(409,),
            tags=("accounts",),
        ),
    )
