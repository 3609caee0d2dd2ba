"""Users, frames and their API tokens: who may call the hub.

``Accounts`` answers ``Authenticate`` with a ``Principal``; the HTTP
gateway asks it for every request. ``create_user`` is the one way users are made, by the actor
and by ``run.py users add`` alike.
"""

from ._accounts import (
    ACCOUNTS_MIGRATIONS,
    MAX_NAME_LENGTH,
    NAME_PATTERN,
    Accounts,
    AccountsMessage,
    Authenticate,
    CreateUser,
    IssueFrameToken,
    ListUsers,
    NewUser,
    RevokeTokens,
    UserSummary,
    check_name,
    create_user,
    hash_token,
    migrate_accounts,
)
from ._principal import Principal

__all__ = [
    "ACCOUNTS_MIGRATIONS",
    "MAX_NAME_LENGTH",
    "NAME_PATTERN",
    "Accounts",
    "AccountsMessage",
    "Authenticate",
    "CreateUser",
    "IssueFrameToken",
    "ListUsers",
    "NewUser",
    "Principal",
    "RevokeTokens",
    "UserSummary",
    "check_name",
    "create_user",
    "hash_token",
    "migrate_accounts",
]
