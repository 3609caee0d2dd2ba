"""Who is calling: the identity the gateway passes to the actors behind it."""

from __future__ import annotations

from typing import Literal

import msgspec


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticated caller: a user (``admin`` may manage the hub) or a frame.

    Domain actors take ``principal.id`` as their ``user_id``; only the gateway and the
    accounts actor deal in whole principals.
    """

    kind: Literal["user", "frame"]
    id: str
    name: str
    admin: bool
