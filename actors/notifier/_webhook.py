"""Webhook deliveries: each notified event POSTed once to the configured URL, retried until
it is accepted or the attempts run out.

A delivery is a row of ``webhook_deliveries``, written by the notifier in the transaction
that stores the event's notifications, so none is lost and none is made twice. The sender
runs as a service of the notifier's incarnation (never in its mailbox): it takes the pending
delivery that is due first, POSTs the stored JSON body with ``Idempotency-Key: <event_id>``
and records the outcome:

    pending --2xx--> delivered
    pending --other status, timeout, connection error--> pending (next_attempt_at later)
                                                     --> abandoned (after max attempts)

The wait after the n-th failed attempt is ``webhook_backoff_min_s * 2 ** (n - 1)``, capped at
``webhook_backoff_max_s``, with jitter (between half and all of it, so waits still grow).
After a restart the pending rows are taken up where they were; an attempt cut short by the
restart is repeated with the same key, which is what the key is for.
"""

from __future__ import annotations

import logging
import random
import time

import httpx
import trio

from actors.store import Store, Transaction
from config import NotifierSettings

log = logging.getLogger("framehub.notifier")

MAX_ERROR_LENGTH = 500


class WebhookSender:
    """Delivers ``webhook_deliveries`` one at a time; ``wake`` after adding one."""

    def __init__(self, store: Store, settings: NotifierSettings) -> None:
        self._store = store
        self._settings = settings
        self._wake = trio.Event()
        self._random = random.Random()

    def wake(self) -> None:
        """A delivery was added: look again now rather than at the next due time."""
        self._wake.set()

    def backoff(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt."""
        settings = self._settings
        base = settings.webhook_backoff_min_s * 2.0 ** min(failures - 1, 62)
        delay = min(settings.webhook_backoff_max_s, base)
        return delay * self._random.uniform(0.5, 1.0)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver for as long as the notifier's incarnation lives."""
        task_status.started()
        async with httpx.AsyncClient(
            timeout=self._settings.webhook_timeout_s, follow_redirects=False
        ) as client:
            while True:
                # A fresh event before looking: a delivery committed after the query wakes
                # the wait below, one committed before it is in the query's answer.
                self._wake = wake = trio.Event()
                row = await self._store.fetch_one(
                    "SELECT delivery_id, event_id, payload, attempts, next_attempt_at "
                    "FROM webhook_deliveries WHERE state = 'pending' "
                    "ORDER BY next_attempt_at, delivery_id LIMIT 1"
                )
                if row is None:
                    await wake.wait()
                    continue
                delivery_id, event_id, payload, attempts, due = row
                wait = float(due) - time.time()
                if wait > 0:
                    with trio.move_on_after(wait):
                        await wake.wait()
                    continue
                await self._attempt(client, int(delivery_id), str(event_id), payload, attempts)

    async def _attempt(
        self,
        client: httpx.AsyncClient,
        delivery_id: int,
        event_id: str,
        payload: bytes,
        attempts: int,
    ) -> None:
        error = await self._post(client, event_id, payload)
        attempts += 1
        now = time.time()
        tx = Transaction()
        if error is None:
            tx.execute(
                "UPDATE webhook_deliveries SET state = 'delivered', attempts = ?, "
                "finished_at = ?, last_error = '' WHERE delivery_id = ?",
                (attempts, now, delivery_id),
            )
        elif attempts >= self._settings.webhook_max_attempts:
            tx.execute(
                "UPDATE webhook_deliveries SET state = 'abandoned', attempts = ?, "
                "finished_at = ?, last_error = ? WHERE delivery_id = ?",
                (attempts, now, error, delivery_id),
            )
            log.warning(
                "webhook: gave up on event %s after %d attempts: %s", event_id, attempts, error
            )
        else:
            delay = self.backoff(attempts)
            tx.execute(
                "UPDATE webhook_deliveries SET attempts = ?, next_attempt_at = ?, "
                "last_error = ? WHERE delivery_id = ?",
                (attempts, now + delay, error, delivery_id),
            )
            log.info(
                "webhook: attempt %d for event %s failed (%s); next in %.2fs",
                attempts,
                event_id,
                error,
                delay,
            )
        await self._store.commit(tx)

    async def _post(self, client: httpx.AsyncClient, event_id: str, payload: bytes) -> str | None:
        """POST once; None if the receiver accepted it (2xx), else what went wrong."""
        timeout = self._settings.webhook_timeout_s
        with trio.move_on_after(timeout):
            try:
                async with client.stream(
                    "POST",
                    self._settings.webhook_url,
                    content=payload,
                    headers={"Idempotency-Key": event_id, "Content-Type": "application/json"},
                ) as response:
                    status = response.status_code
            except (httpx.HTTPError, httpx.InvalidURL) as error:
                return _short(f"{type(error).__name__}: {error}")
            return None if 200 <= status <= 299 else f"HTTP {status}"
        return f"timed out after {timeout:g}s"


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"
