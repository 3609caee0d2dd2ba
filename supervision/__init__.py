"""framehub's actor runtime on Trio: actors, refs, supervision trees, timers, fault injection.

Anchors: Erlang/OTP supervisors (strategies, restart types, intensity), Akka (watch, backoff),
pykka (tell / ask, lifecycle hooks). This package knows nothing of framehub's domain.
"""

from ._actor import (
    DEFAULT_ASK_TIMEOUT,
    Actor,
    ActorContext,
    ActorRef,
    DeferredReply,
    Request,
    Supervisor,
    Terminated,
    Timer,
    supervisor,
)
from ._asyncio_bridge import AsyncioBridge, open_asyncio_bridge
from ._cell import State
from ._directory import ChildDirectory
from ._errors import (
    ActorCrashed,
    ActorError,
    ActorNotFound,
    ActorStopped,
    AskTimeout,
    DomainError,
    InjectedFault,
    MailboxFull,
    RestartIntensityExceeded,
    SystemFailure,
)
from ._faults import FaultAction, FaultInjector, FaultRule, InstalledFault
from ._spec import Backoff, ChildSpec, Intensity, Restart, Strategy, Supervision
from ._system import ActorSnapshot, ActorSystem, DeadLetter, DeadLetters, open_system

__all__ = [
    "DEFAULT_ASK_TIMEOUT",
    "Actor",
    "ActorContext",
    "ActorCrashed",
    "ActorError",
    "ActorNotFound",
    "ActorRef",
    "ActorSnapshot",
    "ActorStopped",
    "ActorSystem",
    "AskTimeout",
    "AsyncioBridge",
    "Backoff",
    "ChildDirectory",
    "ChildSpec",
    "DeadLetter",
    "DeadLetters",
    "DeferredReply",
    "DomainError",
    "FaultAction",
    "FaultInjector",
    "FaultRule",
    "InjectedFault",
    "InstalledFault",
    "Intensity",
    "MailboxFull",
    "Request",
    "Restart",
    "RestartIntensityExceeded",
    "State",
    "Strategy",
    "Supervision",
    "Supervisor",
    "SystemFailure",
    "Terminated",
    "Timer",
    "open_asyncio_bridge",
    "open_system",
    "supervisor",
]
