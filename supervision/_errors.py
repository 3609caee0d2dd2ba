"""The runtime's exceptions: what ``tell`` and ``ask`` may raise, and the domain error base."""

from __future__ import annotations


class DomainError(Exception):
    """An expected failure of a request: bad input, not found, not allowed, conflict.

    A handler that raises a ``DomainError`` answers the asker with it and keeps running; the
    actor is not restarted. Subclass it for each kind of domain failure.
    """


class ActorError(Exception):
    """Base of the runtime's own errors."""


class ActorCrashed(ActorError):
    """The handler of this request raised a non-domain exception; the actor is being restarted."""

    def __init__(self, path: str, cause: BaseException) -> None:
        super().__init__(f"actor {path} crashed: {cause!r}")
        self.path = path
        self.cause = cause


class ActorStopped(ActorError):
    """The actor has stopped for good (or stopped before it handled this request)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"actor {path} is stopped")
        self.path = path


class AskTimeout(ActorError):
    """No reply arrived within the ask timeout. A request the actor had taken by then is
    finished; one still queued is dropped unhandled."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__(f"no reply from {path} within {timeout:g} s")
        self.path = path
        self.timeout = timeout


class MailboxFull(ActorError):
    """``tell_nowait`` found the mailbox at capacity."""

    def __init__(self, path: str, capacity: int) -> None:
        super().__init__(f"mailbox of {path} is full ({capacity} messages)")
        self.path = path
        self.capacity = capacity


class ActorNotFound(ActorError, LookupError):
    """No live actor has this path."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no actor at {path}")
        self.path = path


class RestartIntensityExceeded(ActorError):
    """A supervisor saw more restarts than its intensity allows and gives up (escalates)."""

    def __init__(self, path: str, restarts: int, within_s: float) -> None:
        super().__init__(
            f"supervisor {path}: more than {restarts} restarts within {within_s:g} s, giving up"
        )
        self.path = path


class SystemFailure(ActorError):
    """The root of the tree failed: the actor system cannot go on."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"the actor system's root failed: {cause}")
        self.cause = cause


def lone_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The single exception inside nested one-member groups, else None.

    Nurseries that exist only as plumbing (the asyncio loop's, the system's) wrap whatever the
    user's block raised; callers deserve the error they raised, not a group of one.
    """
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        if len(error.exceptions) != 1:
            return None
        error = error.exceptions[0]
    return error


class InjectedFault(Exception):
    """Raised inside a handler by a fault-injection rule with the ``crash`` action."""
