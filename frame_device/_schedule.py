"""What the screen should show when: rotation order, the shuffle bag and quiet hours.

Pure logic over an injected clock, so tests move time by hand instead of sleeping. The frame
asks ``Schedule.due()`` what to do now, does it, and tells the schedule what it did
(``shown`` / ``went_dark``); ``seconds_until_due()`` says how long it may sleep.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import Protocol

import msgspec

import wire

IDLE_WAIT_S = 3600.0
"""How long the frame sleeps when nothing is scheduled (a change wakes it earlier)."""
MIN_INTERVAL_S = 1.0
"""The fastest rotation a frame accepts, whatever a sync says (0 would spin)."""


class Clock(Protocol):
    def now(self) -> datetime:
        """The frame's local wall-clock time, timezone-aware."""
        ...


class LocalClock:
    def now(self) -> datetime:
        return datetime.now().astimezone()


class ShowPhoto(msgspec.Struct, frozen=True):
    """Put ``file_id`` on the screen (None: a blank screen, there is nothing to show)."""

    file_id: str | None


class ScreenOff(msgspec.Struct, frozen=True):
    """Quiet hours began: turn the screen off."""


Step = ShowPhoto | ScreenOff


def parse_hhmm(text: str) -> time:
    """``"HH:MM"`` as a time of day; ValueError for anything else."""
    hours, _, minutes = text.partition(":")
    return time(int(hours), int(minutes))


def quiet_window(display: wire.DisplaySettings) -> tuple[time, time] | None:
    """The quiet hours as (start, end); None when unset, malformed or empty."""
    if display.quiet_start is None or display.quiet_end is None:
        return None
    try:
        start, end = parse_hhmm(display.quiet_start), parse_hhmm(display.quiet_end)
    except ValueError:
        return None
    return None if start == end else (start, end)


def in_quiet_hours(display: wire.DisplaySettings, at: datetime) -> bool:
    """True when ``at`` lies in [quiet_start, quiet_end), which may cross midnight."""
    window = quiet_window(display)
    if window is None:
        return False
    start, end = window
    now = at.time().replace(tzinfo=None)
    if start < end:
        return start <= now < end
    return now >= start or now < end


def _seconds_to_next(boundary: time, at: datetime) -> float:
    candidate = datetime.combine(at.date(), boundary, tzinfo=at.tzinfo)
    if candidate <= at:
        candidate += timedelta(days=1)
    return (candidate - at).total_seconds()


class Rotation:
    """The order photos come in: the playlist's order, or a shuffle bag.

    The shuffle bag deals every photo once per round in random order; a new round never
    starts with the photo that ended the last one (when there are two or more), so the
    screen never shows the same photo twice in a row.
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._file_ids: list[str] = []
        self._bag: list[str] = []
        self.shuffle = False

    @property
    def file_ids(self) -> Sequence[str]:
        return self._file_ids

    def update(self, file_ids: Sequence[str]) -> None:
        """A new playlist: dropped photos leave the bag, new ones join the current round."""
        known = set(self._file_ids)
        self._file_ids = list(dict.fromkeys(file_ids))
        keep = set(self._file_ids)
        self._bag = [file_id for file_id in self._bag if file_id in keep]
        for file_id in self._file_ids:
            if file_id not in known:
                self._bag.insert(self._rng.randint(0, len(self._bag)), file_id)

    def next_after(self, current: str | None) -> str | None:
        if not self._file_ids:
            return None
        if not self.shuffle:
            if current not in self._file_ids:
                return self._file_ids[0]
            return self._file_ids[(self._file_ids.index(current) + 1) % len(self._file_ids)]
        while True:
            if not self._bag:
                self._bag = self._new_round(current)
            file_id = self._bag.pop()
            if file_id != current or len(self._file_ids) == 1:
                return file_id

    def _new_round(self, last: str | None) -> list[str]:
        """A shuffled round whose first deal (the end of the list) is not ``last``."""
        bag = list(self._file_ids)
        self._rng.shuffle(bag)
        if len(bag) >= 2 and bag[-1] == last:
            swap = self._rng.randrange(len(bag) - 1)
            bag[-1], bag[swap] = bag[swap], bag[-1]
        return bag


class Schedule:
    """Decides what the screen shows: rotation every ``interval_s``, dark in quiet hours.

    ``photos`` are the playlist's photos the frame can show now (cached), in order.
    """

    def __init__(self, clock: Clock, rng: random.Random) -> None:
        self._clock = clock
        self._rotation = Rotation(rng)
        self.display = wire.DisplaySettings()
        self.current: str | None = None
        """The photo on the screen, or the one to show when it lights up again."""
        self.screen_on = True
        self._since = clock.now()
        self._replace = False

    def configure(self, display: wire.DisplaySettings) -> None:
        self.display = display
        self._rotation.shuffle = display.shuffle

    def set_photos(self, file_ids: Sequence[str]) -> None:
        """The playlist changed: a photo on screen that left it is replaced at once, and a
        blank screen gets a photo. A photo shown on request that was never in the playlist
        stays until the next rotation."""
        before = set(self._rotation.file_ids)
        self._rotation.update(file_ids)
        after = self._rotation.file_ids
        if self.current is None:
            self._replace = bool(after)
        elif self.current in before and self.current not in after:
            self._replace = True

    @property
    def photos(self) -> Sequence[str]:
        return self._rotation.file_ids

    def quiet(self) -> bool:
        return in_quiet_hours(self.display, self._clock.now())

    def next_photo(self) -> str | None:
        return self._rotation.next_after(self.current)

    def shown(self, file_id: str | None) -> None:
        """``file_id`` is on the screen now; the rotation interval starts again."""
        self.current = file_id
        self.screen_on = True
        self._since = self._clock.now()
        self._replace = False

    def went_dark(self, file_id: str | None) -> None:
        """The screen is off; ``file_id`` comes back when it lights up."""
        self.current = file_id
        self.screen_on = False
        self._replace = False

    def due(self) -> Step | None:
        """What to do now, or None until ``seconds_until_due()`` has passed."""
        if self.quiet():
            return ScreenOff() if self.screen_on else None
        if not self.screen_on:
            keep = self.current in self.photos
            return ShowPhoto(self.current if keep else self.next_photo())
        if self._replace:
            return ShowPhoto(self.next_photo())
        if len(self.photos) >= 2 and self._elapsed() >= self._interval_s():
            return ShowPhoto(self.next_photo())
        return None

    def seconds_until_due(self) -> float:
        quiet = self.quiet()
        if (quiet and self.screen_on) or (not quiet and (self._replace or not self.screen_on)):
            return 0.0
        waits = [IDLE_WAIT_S]
        if not quiet and len(self.photos) >= 2:
            waits.append(max(0.0, self._interval_s() - self._elapsed()))
        window = quiet_window(self.display)
        if window is not None:
            now = self._clock.now()
            waits.extend(_seconds_to_next(boundary, now) for boundary in window)
        return min(waits)

    def _interval_s(self) -> float:
        return max(MIN_INTERVAL_S, float(self.display.interval_s))

    def _elapsed(self) -> float:
        return (self._clock.now() - self._since).total_seconds()
