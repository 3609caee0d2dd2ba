"""A frame's commands: how one is checked, sent (``frame.command_issued``, through the
journal, which the MQTT bridge publishes), sent again, and finished
(``frame.command_finished``), and the commands still waiting for the frame's answer.

Each pending command has its own timer, armed when it is sent for the whole timeout, and at
start for what is left of the deadline kept in ``frame_commands``: a restart does not give a
command more time. The timer delivers ``CommandDeadline`` to the proxy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container

import msgspec

import wire
from actors.errors import Invalid, NotFound
from actors.events import Audit, FrameCommandFinished, FrameCommandIssued, new_id, utc_now
from actors.store import Store, Transaction
from supervision import Timer

from ._messages import USER_COMMANDS, CommandView, Outcome, SendCommand
from ._tables import (
    COMMANDS,
    SELECT_COMMAND,
    SELECT_PENDING_COMMANDS,
    finish_command,
    insert_command,
)


class CommandDeadline(msgspec.Struct, frozen=True):
    """The frame did not answer ``command_id`` in time (unless it did meanwhile)."""

    command_id: str


def new_command(frame_id: str, message: SendCommand, shown: Container[str]) -> CommandView:
    """The pending command ``message`` asks for: ``Invalid`` for a command the API may not
    send or a ``file_id`` that does not fit it, ``NotFound`` when ``show`` names a photo not
    in ``shown`` (the photos the frame was told to show)."""
    if message.command not in USER_COMMANDS:
        raise Invalid(f"command must be one of {', '.join(USER_COMMANDS)}")
    args: dict[str, str] = {}
    if message.command == "show":
        if not message.file_id:
            raise Invalid("show needs args.file_id")
        if message.file_id not in shown:
            raise NotFound(f"photo {message.file_id} is not in this frame's albums")
        args["file_id"] = message.file_id
    elif message.file_id is not None:
        raise Invalid(f"{message.command} takes no file_id")
    return CommandView(
        command_id=new_id(),
        frame_id=frame_id,
        command=message.command,
        args=args,
        state="pending",
        error="",
        created_at=utc_now(),
        finished_at=None,
    )


class Commands:
    """The commands of one frame that wait for its answer, by command id.

    Writes go into the caller's transaction; what is pending changes only once it committed
    (``wait_for``, ``forget``)."""

    __slots__ = ("_frame_id", "_pending", "_send_after", "_store", "_timeout_s")

    def __init__(
        self,
        frame_id: str,
        store: Store,
        timeout_s: float,
        send_after: Callable[[float, CommandDeadline], Timer],
    ) -> None:
        self._frame_id = frame_id
        self._store = store
        self._timeout_s = timeout_s
        self._send_after = send_after
        self._pending: dict[str, CommandView] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, command_id: object) -> bool:
        return command_id in self._pending

    def get(self, command_id: str) -> CommandView | None:
        return self._pending.get(command_id)

    async def restore(self) -> None:
        """Take up the commands left pending by the previous incarnation, deadlines and all."""
        now = time.time()
        for row in await self._store.fetch_all(SELECT_PENDING_COMMANDS, (self._frame_id,)):
            view = COMMANDS.of(row)
            self._pending[view.command_id] = view
            deadline = row[len(COMMANDS)]
            self._send_after(max(0.0, deadline - now), CommandDeadline(view.command_id))

    async def find(self, command_id: str) -> CommandView:
        """A command of this frame, pending or finished (``NotFound`` if it never had it)."""
        view = self._pending.get(command_id)
        if view is not None:
            return view
        row = await self._store.fetch_one(SELECT_COMMAND, (command_id, self._frame_id))
        if row is None:
            raise NotFound(f"no command {command_id} for frame {self._frame_id}")
        return COMMANDS.of(row)

    def issue(
        self, tx: Transaction, view: CommandView, audit: Audit, correlation_id: str | None
    ) -> None:
        """Store ``view`` with its deadline and publish it for the frame."""
        insert_command(tx, view, time.time() + self._timeout_s)
        tx.publish(
            FrameCommandIssued(
                audit=audit,
                correlation_id=correlation_id or new_id(),
                frame_id=self._frame_id,
                command_id=view.command_id,
                command=view.command,
                args=wire.CommandArgs(file_id=view.args.get("file_id")),
            )
        )

    def wait_for(self, view: CommandView) -> None:
        """``view`` was issued: it is pending until answered or its timeout passes."""
        self._pending[view.command_id] = view
        self._send_after(self._timeout_s, CommandDeadline(view.command_id))

    def reissue(self, tx: Transaction) -> None:
        """Publish every pending command again, with its own id."""
        for view in self._pending.values():
            tx.publish(
                FrameCommandIssued(
                    audit=Audit.system("frames"),
                    frame_id=self._frame_id,
                    command_id=view.command_id,
                    command=view.command,
                    args=wire.CommandArgs(file_id=view.args.get("file_id")),
                )
            )

    def finish(
        self,
        tx: Transaction,
        view: CommandView,
        outcome: Outcome,
        error: str,
        finished_at: str,
    ) -> None:
        """Record the pending ``view``'s outcome and publish it."""
        finish_command(tx, self._frame_id, view.command_id, outcome, error, finished_at)
        tx.publish(
            FrameCommandFinished(
                audit=Audit.frame(self._frame_id),
                frame_id=self._frame_id,
                command_id=view.command_id,
                command=view.command,
                outcome=outcome,
                error=error,
            )
        )

    def forget(self, command_id: str) -> None:
        """The outcome of ``command_id`` committed: it is pending no more."""
        del self._pending[command_id]
