"""PHD2's legacy socket server (TCP 4300 + instance - 1), sans-IO.

The protocol is one command byte out, one reply byte back (research note §6). This
module holds what the bytes mean; the asyncio backend in ``ditherapp.net.legacy`` moves
them.

Settling is the client's job on this port. PHD2 dithers a MOVEn with its own settle of
"10 frames, any distance", so the SettleDone an event-server client sees afterwards only
means that ten frames passed. A legacy client polls MSG_GETSTATUS and MSG_REQDIST and
decides for itself: ``LegacySettleDetector`` is that decision.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from ditherapp.core.errors import LocalProtocolError, RemoteProtocolError
from ditherapp.core.guiding_stats import ErrorStats
from ditherapp.core.phd2 import events as ev
from ditherapp.core.phd2.appstate import Phd2State
from ditherapp.core.settle_judge import EndRule, SettleCriteria, SettleJudge, SettleMode


class Command(IntEnum):
    """Command bytes (``socket_server.cpp``). 6-9 and 11 were never implemented."""

    MSG_PAUSE = 1
    MSG_RESUME = 2
    MSG_MOVE1 = 3
    MSG_MOVE2 = 4
    MSG_MOVE3 = 5
    MSG_REQDIST = 10
    MSG_MOVE4 = 12
    MSG_MOVE5 = 13
    MSG_AUTOFINDSTAR = 14
    MSG_SETLOCKPOSITION = 15
    MSG_FLIPRACAL = 16
    MSG_GETSTATUS = 17
    MSG_STOP = 18
    MSG_LOOP = 19
    MSG_STARTGUIDING = 20
    MSG_LOOPFRAMECOUNT = 21
    MSG_CLEARCAL = 22
    MSG_FLIP_SIM_CAMERA = 23
    MSG_DESELECT = 24


UNKNOWN_COMMAND_REPLY = 1
"""What PHD2 answers to a byte it does not know (including 6-9 and 11)."""


def encode_command(command: Command) -> bytes:
    """The byte for every command except MSG_SETLOCKPOSITION, which carries a position."""
    if command is Command.MSG_SETLOCKPOSITION:
        raise LocalProtocolError("MSG_SETLOCKPOSITION needs a position: use encode_lock_position")
    return bytes((command,))


def encode_lock_position(x: int, y: int) -> bytes:
    """MSG_SETLOCKPOSITION and its two unsigned 16-bit coordinates, as one buffer to write
    at once. PHD2 reads them in host byte order (little-endian on every platform it ships
    for), then discards whatever else is waiting on the socket, so nothing may be
    pipelined behind them."""
    if not (0 <= x <= 0xFFFF and 0 <= y <= 0xFFFF):
        raise LocalProtocolError(f"lock position ({x}, {y}) does not fit two 16-bit integers")
    return bytes((Command.MSG_SETLOCKPOSITION,)) + struct.pack("<HH", x, y)


# ---------------------------------------------------------------------- GETSTATUS

STATUS_STATES: dict[int, Phd2State] = {
    0: Phd2State.STOPPED,
    1: Phd2State.SELECTED,
    2: Phd2State.CALIBRATING,
    3: Phd2State.GUIDING,
    4: Phd2State.LOST_LOCK,
    100: Phd2State.PAUSED,
    101: Phd2State.LOOPING,
}
STATUS_GUIDING = 3
STATUS_LOST_LOCK = 4


def state_from_status(code: int) -> Phd2State:
    """The MSG_GETSTATUS reply as an app state; a code PHD2 never sends is UNKNOWN."""
    return STATUS_STATES.get(code, Phd2State.UNKNOWN)


# ---------------------------------------------------------------------- dithers

DITHER_LEVELS: tuple[tuple[float, Command], ...] = (
    (0.5, Command.MSG_MOVE1),
    (1.0, Command.MSG_MOVE2),
    (2.0, Command.MSG_MOVE3),
    (3.0, Command.MSG_MOVE4),
    (5.0, Command.MSG_MOVE5),
)
"""Each MOVEn dithers up to this many pixels, times PHD2's DitherScale (default 1.0),
which PHD2 applies to JSON-RPC dither amounts as well."""


def move_command(amount: float) -> Command:
    """The MOVEn whose size is nearest to ``amount`` pixels.

    A tie (0.75, 1.5, 2.5, 4.0) goes to the smaller move: a smaller dither still
    dithers, and settles sooner. Amounts above 5 px get MOVE5, the largest PHD2 has;
    the sign is ignored as PHD2 does; 0 gets MOVE1, the smallest.
    """
    size = abs(amount)
    return min(DITHER_LEVELS, key=lambda level: (abs(level[0] - size), level[0]))[1]


def move_pixels(command: Command) -> float:
    """The dither size of a MOVEn command, in pixels before DitherScale."""
    for pixels, move in DITHER_LEVELS:
        if move is command:
            return pixels
    raise LocalProtocolError(f"{command.name} is not a dither command")


def move_accepted(reply: int) -> bool:
    """A MOVEn reply: the exposure in seconds (at least 1) if PHD2 dithered, 0 if not."""
    return reply != 0


# ---------------------------------------------------------------------- REQDIST

REQDIST_CAP = 255
"""PHD2 caps the reply, so 255 means "2.55 px or more"."""


def reqdist_pixels(reply: int) -> float:
    """MSG_REQDIST's reply (the smoothed guide error in hundredths of a pixel) in pixels.

    It is 0 when PHD2 is not guiding, so it means something only next to a GETSTATUS of
    3 (Guiding)."""
    if not 0 <= reply <= REQDIST_CAP:
        raise RemoteProtocolError(f"REQDIST reply {reply} is not a byte")
    return reply / 100.0


def reqdist_in_range(reply: int, pixels: float) -> bool:
    """Whether the distance is within ``pixels``. A capped reply never is: it says only
    that the error is 2.55 px or more, so with a tolerance above 2.55 px anything from
    2.55 px up counts as out of range."""
    return reply < REQDIST_CAP and reqdist_pixels(reply) <= pixels


# ---------------------------------------------------------------------- settling


class Verdict(StrEnum):
    WAITING = "waiting"
    SETTLED = "settled"
    FAILED = "failed"


SETTLE_TIMEOUT_REASON = "timed-out waiting for guider to settle"
"""PHD2's own wording for the same failure on the event server."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SettleUpdate:
    """What one poll (GETSTATUS + REQDIST) told the detector."""

    verdict: Verdict
    state: Phd2State
    distance: float
    """Pixels (REQDIST / 100); 2.55 means 2.55 or more."""
    in_range_s: float
    """How long the distance has stayed in range, 0 when it is out of range."""
    elapsed_s: float
    """Since the dither was accepted."""
    star_locked: bool
    reason: str = ""
    """Why it failed (empty unless ``verdict`` is FAILED)."""

    @property
    def done(self) -> bool:
        return self.verdict is not Verdict.WAITING


class LegacySettleDetector:
    """Decides when a legacy dither has settled, from polled samples.

    The rule is the one settle judge's (:mod:`ditherapp.core.settle_judge`), fed with
    polls instead of frames: a poll is in range when PHD2 is guiding on a locked star
    (GETSTATUS 3) and REQDIST is within ``pixels`` (a capped REQDIST never is); LostLock
    restarts the run in range; ``timeout_s`` is the hard limit. On top of the judge, a
    poll that finds PHD2 no longer guiding (neither Guiding nor LostLock: stopped,
    paused or put back to looping) fails the settle at once, since it cannot finish
    then. LostLock is not a failure: the star may come back before the timeout, as in
    PHD2. ``mode`` and ``baseline`` are the judge's (calm mode needs a baseline).

    Time comes in as ``now`` (seconds, any monotonic origin). The clock starts at
    ``begin(now)``, or at the first sample if ``begin`` was not called.
    """

    def __init__(
        self,
        pixels: float,
        time_s: float,
        timeout_s: float,
        *,
        mode: str = SettleMode.PHD2,
        baseline: ErrorStats | None = None,
    ) -> None:
        if pixels <= 0 or time_s < 0 or timeout_s <= 0:
            raise LocalProtocolError(
                f"settle needs pixels > 0, time >= 0, timeout > 0 "
                f"(got {pixels}, {time_s}, {timeout_s})"
            )
        self.pixels = pixels
        self.time_s = time_s
        self.timeout_s = timeout_s
        self.criteria = SettleCriteria(
            target_px=pixels, time_s=time_s, timeout_s=timeout_s, mode=mode
        )
        self.baseline = baseline
        self.started_at: float | None = None
        self.judge: SettleJudge | None = None
        self._final: SettleUpdate | None = None

    def begin(self, now: float) -> None:
        if self.judge is None:
            self.started_at = now
            self.judge = SettleJudge(self.criteria, now, self.baseline)

    @property
    def rule(self) -> EndRule | None:
        """Which rule ended the settle, once it has ended."""
        verdict = self.judge.verdict if self.judge is not None else None
        if verdict is not None:
            return verdict.rule
        return EndRule.FAILED if self._final is not None else None

    def feed(self, now: float, status: int, reqdist: int) -> SettleUpdate:
        """Take one poll: the GETSTATUS and REQDIST replies read at ``now``."""
        if self._final is not None:
            raise LocalProtocolError("the settle is already decided")
        self.begin(now)
        judge = self.judge
        if judge is None:  # pragma: no cover - begin() always makes one
            raise LocalProtocolError("the settle has no judge")
        state = state_from_status(status)
        distance = reqdist_pixels(reqdist)
        elapsed = now - judge.started_at
        locked = status == STATUS_GUIDING

        def update(verdict: Verdict, reason: str = "") -> SettleUpdate:
            return SettleUpdate(
                verdict=verdict,
                state=state,
                distance=distance,
                in_range_s=judge.in_range_s(now),
                elapsed_s=elapsed,
                star_locked=locked,
                reason=reason,
            )

        if status not in (STATUS_GUIDING, STATUS_LOST_LOCK):
            judge.star_lost(now)
            return self._decide(update(Verdict.FAILED, reason=_stopped_reason(state, status)))
        if locked:
            fed = distance if reqdist < REQDIST_CAP else math.inf
            verdict = judge.feed(now, fed)
        else:
            verdict = judge.star_lost(now)
        if verdict is None:
            return update(Verdict.WAITING)
        if verdict.settled:
            return self._decide(update(Verdict.SETTLED))
        return self._decide(update(Verdict.FAILED, verdict.error or SETTLE_TIMEOUT_REASON))

    def _decide(self, result: SettleUpdate) -> SettleUpdate:
        self._final = result
        return result

    # Synthesised events: the legacy port sends none, but the window's settle graph and
    # the service read the event-server ones, so the backend hands out look-alikes.

    def settling_event(self, update: SettleUpdate) -> ev.Settling:
        """A ``Settling`` event like PHD2's (Time is the time in range, 1 dp)."""
        return ev.Settling(
            distance=round(update.distance, 2),
            time=round(update.in_range_s, 1),
            settle_time=float(self.time_s),
            star_locked=update.star_locked,
        )

    @staticmethod
    def done_event(update: SettleUpdate) -> ev.SettleDone:
        """A ``SettleDone`` like PHD2's, without TotalFrames/DroppedFrames: the legacy
        port does not say how many frames PHD2 took (as from servers before 2.6.3)."""
        failed = update.verdict is Verdict.FAILED
        return ev.SettleDone(status=1 if failed else 0, error=update.reason if failed else None)


def _stopped_reason(state: Phd2State, status: int) -> str:
    shown = state.value if state is not Phd2State.UNKNOWN else f"status {status}"
    return f"PHD2 stopped guiding ({shown})"
