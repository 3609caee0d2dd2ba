"""The domain errors actors answer with: expected failures, never crashes.

The HTTP gateway maps each to its status (problem+json); the console to its error reply.
"""

from supervision import DomainError


class BadRequest(DomainError):
    """Malformed input: not JSON, a missing part, a bad parameter."""


class Unauthorized(DomainError):
    """No credentials, or credentials that match nobody."""


class Forbidden(DomainError):
    """Known caller, not allowed to do this (e.g. not an admin)."""


class NotFound(DomainError):
    """Unknown id — also the answer for another user's things, so ids leak nothing."""


class Conflict(DomainError):
    """The request contradicts the current state (a duplicate name, a finished campaign)."""


class TooLarge(DomainError):
    """Over a size limit: bytes, pixels."""


class UnsupportedMedia(DomainError):
    """Not a kind of content the hub accepts."""


class Invalid(DomainError):
    """Well-formed but wrong: a corrupt image, a value out of range."""


class RateLimited(DomainError):
    """Too many requests; ``retry_after`` seconds until the next one is allowed."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageFull(DomainError):
    """The disk refused the write (ENOSPC): nothing was kept."""
