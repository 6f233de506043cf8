"""Guider backends: what the service needs from PHD2, whichever protocol carries it.

``EventGuider`` drives PHD2's event server (JSON-RPC). The legacy one-byte server has
its own backend with the same shape, so the dither machine never knows which it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

from ditherapp.core.dither import DitherOutcome, DitherRequest, OutcomeKind
from ditherapp.core.errors import ConnectionLost
from ditherapp.core.phd2 import events as ev
from ditherapp.core.phd2.appstate import Phd2State
from ditherapp.core.phd2.rpc import settle_params
from ditherapp.core.settle_judge import EndRule, SettleCriteria, SettleJudge, SettleVerdict
from ditherapp.net.phd2_client import LinkStatus, Phd2Client, Phd2RpcError
from ditherapp.net.settle_exposure import ExposureKeeper, RestoreFile

log = logging.getLogger(__name__)

MIN_DEADLINE_MARGIN_S = 10.0
"""PHD2 notices a settle timeout only at the next guide frame, and never if frames
stop: our own deadline is the settle timeout plus at least this, or two frames."""


def deadline_margin(exposure_s: float, delay_s: float = 0.0) -> float:
    return max(MIN_DEADLINE_MARGIN_S, 2.0 * (exposure_s + delay_s))


PREFLIGHT_FRESH_S = 2.0
"""Answers to the preflight asked while the cameras paused are used for the dither only
this long after they came, and only if PHD2 sent no event but GuideStep since."""

_HARMLESS_EVENTS: tuple[type[ev.Phd2Event], ...] = (ev.GuideStep,)
"""Events that say nothing about PHD2's state or settling. Every other event (StarLost,
Paused, GuidingStopped, SettleBegin, an event we do not know, ...) may, so it makes an
answer asked before it stale."""


class Guider(Protocol):
    @property
    def backend(self) -> str:
        """The protocol in use now: "event" or "legacy"."""

    @property
    def status(self) -> LinkStatus: ...

    def add_event_listener(
        self, callback: Callable[[ev.Phd2Event], None]
    ) -> Callable[[], None]: ...

    def add_link_listener(self, callback: Callable[[LinkStatus], None]) -> Callable[[], None]: ...

    async def run(self) -> None: ...

    def reconnect_now(self) -> None: ...

    def retarget(self, host: str, event_port: int, legacy_port: int) -> None:
        """Talk to PHD2 at this address from now on (the link drops and reconnects)."""

    def prepare(self) -> None:
        """A dither is coming (the cameras are being paused): ask PHD2 now what the
        dither will need, so the answer is in hand when the last camera has paused."""

    async def dither(
        self, request: DitherRequest, on_settle_started: Callable[[], None]
    ) -> DitherOutcome: ...


_REFUSE_STATES = {
    Phd2State.PAUSED: "PHD2 is paused",
    Phd2State.LOST_LOCK: "PHD2 has lost the guide star",
}


_Ending = ev.SettleDone | SettleVerdict
"""How a settle ends: PHD2's SettleDone, or our settle judge's verdict."""


class _SettleWatch:
    """Binds the SettleBegin/SettleDone that belong to our own request, and feeds the
    settle judge (when there is one) with the raw GuideStep distances of our settle.

    Registered before the request is written (PHD2 sends SettleBegin before the reply).
    Once our SettleBegin has come, the next SettleDone is ours: PHD2 refuses a dither
    while another settle runs, and a legacy or manual dither that interrupts ours ends
    ours first. A SettleDone before our SettleBegin belongs to someone else's settle
    (another client, PHD2's own dither button) and is forgotten when a SettleBegin
    comes. The reply and the SettleDone may be read in one chunk, before the request's
    caller runs again, so an ending is kept until ``replied`` decides.
    ``accept_early`` is for ``guide``, whose SettleDone can precede its reply.

    With a judge, GuideSteps after our SettleBegin are the distances to the new lock
    position; the judge's verdict ends the settle (PHD2's rule or the calm one), and
    PHD2's SettleDone is its second signal: a failure ends the settle, a success does so
    only if no GuideStep came to judge by (a guide-paused PHD2 settles without them) or
    the judge takes PHD2's word for its own rule (after PHD2's own dither).
    """

    def __init__(
        self,
        on_begin: Callable[[], None],
        *,
        accept_early: bool = False,
        judge: Callable[[float], SettleJudge] | None = None,
        clock: Callable[[], float] = time.monotonic,
        time_scale: float = 1.0,
    ) -> None:
        self.done: asyncio.Future[_Ending] = asyncio.get_running_loop().create_future()
        self.began_at: float | None = None
        self.calibration_failed: str | None = None
        self.judge: SettleJudge | None = None
        self._make_judge = judge
        self._clock = clock
        self._time_scale = time_scale
        self._replied = False
        self._pending: _Ending | None = None
        self._on_begin = on_begin
        self._accept_early = accept_early
        self._timer: asyncio.TimerHandle | None = None
        self.dropped = 0
        """Frames without a star (StarLost) while judging."""

    def replied(self) -> None:
        """PHD2 accepted our request."""
        self._replied = True
        if self._pending is not None and self.began_at is not None and not self.done.done():
            self.done.set_result(self._pending)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _end(self, ending: _Ending) -> None:
        if self.done.done():
            return
        if self._replied or self._accept_early:
            self.close()
            self.done.set_result(ending)
        else:
            self._pending = ending

    def __call__(self, event: ev.Phd2Event) -> None:
        if self.done.done():
            return
        if isinstance(event, ev.SettleBegin):
            self.began_at = time.monotonic()
            self._pending = None  # any earlier SettleDone was someone else's
            if self._make_judge is not None:
                self.judge = self._make_judge(self._clock())
                self._arm_timeout()
            with contextlib.suppress(Exception):
                self._on_begin()
        elif isinstance(event, ev.SettleDone):
            judge = self.judge
            if judge is None or self.began_at is None:
                if self._replied or self._accept_early:
                    self.done.set_result(event)
                else:
                    self._pending = event
                return
            verdict = judge.phd2_done(self._clock(), event.succeeded, event.error)
            if verdict is not None and verdict.rule is EndRule.FAILED:
                self._end(event)  # PHD2's failure, with PHD2's frame counts
            elif event.succeeded and judge.frames == 0:
                self._end(event)  # no distance to judge by: PHD2's word it is
            elif verdict is not None:
                self._end(verdict)
        elif isinstance(event, ev.GuideStep) and self.judge is not None:
            distance = math.hypot(event.ra_distance_raw, event.dec_distance_raw)
            verdict = self.judge.feed(self._clock(), distance)
            if verdict is not None:
                self._end(verdict)
        elif isinstance(event, ev.StarLost) and self.judge is not None:
            self.dropped += 1
            verdict = self.judge.star_lost(self._clock())
            if verdict is not None:
                self._end(verdict)
        elif isinstance(event, ev.CalibrationFailed) and self._accept_early:
            self.calibration_failed = event.reason or "calibration failed"
            self.done.set_result(
                ev.SettleDone(status=1, error=f"calibration failed: {self.calibration_failed}")
            )

    def _arm_timeout(self) -> None:
        """settlemax passes even if frames stop coming: check the judge then."""
        judge = self.judge
        if judge is None:
            return
        delay = max(0.0, judge.deadline() - self._clock()) / self._time_scale
        self._timer = asyncio.get_running_loop().call_later(delay + 0.01, self._check)

    def _check(self) -> None:
        self._timer = None
        judge = self.judge
        if judge is None or self.done.done():
            return
        verdict = judge.check(self._clock())
        if verdict is not None:
            self._end(verdict)
        else:
            self._arm_timeout()


def scaled_clock(time_scale: float) -> Callable[[], float]:
    """Monotonic time, running ``time_scale`` times faster than life from now on."""
    if time_scale == 1.0:
        return time.monotonic
    origin = time.monotonic()
    return lambda: origin + (time.monotonic() - origin) * time_scale


_Answers = tuple[Any, Any, Any]
"""PHD2's answers to get_app_state, get_settling and get_exposure."""


class _Preflight:
    """The preflight questions, asked once; stale after a telling event or a reconnect,
    old PREFLIGHT_FRESH_S after the answers came."""

    def __init__(self, client: Phd2Client) -> None:
        self.stale = False
        self.answered_at: float | None = None
        self.task: asyncio.Task[_Answers] = asyncio.get_running_loop().create_task(
            self._ask(client), name="phd2-preflight"
        )
        self.task.add_done_callback(_retrieve)

    async def _ask(self, client: Phd2Client) -> _Answers:
        answers = await _ask_preflight(client)
        self.answered_at = time.monotonic()
        return answers

    def fresh(self) -> bool:
        return (
            not self.stale
            and self.answered_at is not None
            and time.monotonic() - self.answered_at <= PREFLIGHT_FRESH_S
        )


async def _ask_preflight(client: Phd2Client) -> _Answers:
    asked = [
        asyncio.ensure_future(client.request(method))
        for method in ("get_app_state", "get_settling", "get_exposure")
    ]
    try:
        state, settling, exposure = await asyncio.gather(*asked)
    except BaseException:
        for request in asked:
            request.cancel()  # one failed: the others' answers are of no use
        raise
    return state, settling, exposure


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # whoever awaits it sees it; unawaited, it must not be logged


class EventGuider:
    """PHD2 through its event server."""

    backend = "event"

    def __init__(
        self,
        client: Phd2Client,
        *,
        restore_path: Path | None = None,
        clock: Callable[[], float] | None = None,
        time_scale: float = 1.0,
    ) -> None:
        self.client = client
        self._clock = clock or scaled_clock(time_scale)
        """The settle judge's clock: PHD2's settle time is counted in PHD2's time, which
        a simulator (``ditherapp --simulate``, a benchmark, the fault suite) runs
        ``time_scale`` times faster than life."""
        self._time_scale = time_scale
        self.exposure = ExposureKeeper(client, RestoreFile(restore_path))
        """Short guide exposures while settling (``settleexposure``)."""
        self._checks: set[asyncio.Task[None]] = set()
        self._preflight: _Preflight | None = None
        self.profile: str | None = None
        """PHD2's current equipment profile, once asked (None before, or unknown)."""
        self._profile_task: asyncio.Task[None] | None = None
        client.add_event_listener(self._on_event)
        client.add_link_listener(self._on_link)

    def _on_event(self, event: ev.Phd2Event) -> None:
        if self._preflight is not None and not isinstance(event, _HARMLESS_EVENTS):
            self._preflight.stale = True

    def _on_link(self, status: LinkStatus) -> None:
        # A reconnect, a drop or a line we could not read (it may have been StarLost).
        if self._preflight is not None:
            self._preflight.stale = True
        if not status.connected:
            self.profile = None
        elif self.profile is None and self._profile_task is None:
            self._profile_task = asyncio.get_running_loop().create_task(
                self._ask_profile(), name="phd2-profile"
            )

    async def _ask_profile(self) -> None:
        """PHD2's profile name, for the ledger (settle suggestions compare one profile's
        dithers only)."""
        try:
            answer = await self.client.request("get_profile", time_limit=5.0)
        except (ConnectionLost, TimeoutError, Phd2RpcError):
            return
        finally:
            self._profile_task = None
        if isinstance(answer, dict) and isinstance(answer.get("name"), str):
            self.profile = answer["name"][:200]

    @property
    def status(self) -> LinkStatus:
        return self.client.status

    def add_event_listener(self, callback: Callable[[ev.Phd2Event], None]) -> Callable[[], None]:
        return self.client.add_event_listener(callback)

    def add_link_listener(self, callback: Callable[[LinkStatus], None]) -> Callable[[], None]:
        return self.client.add_link_listener(callback)

    async def run(self) -> None:
        await self.client.run()

    def reconnect_now(self) -> None:
        self.client.reconnect_now()

    def retarget(self, host: str, event_port: int, legacy_port: int) -> None:  # noqa: ARG002
        self.client.retarget(host, event_port)

    def prepare(self) -> None:
        if self._preflight is not None:
            self._preflight.task.cancel()
        self._preflight = _Preflight(self.client)

    async def _answers(self) -> _Answers:
        """PHD2's answers as of now: those asked while the cameras paused if nothing
        since can have changed them, otherwise asked afresh. A timeout or error reply to
        the early questions is the answer (asking again would keep the cameras paused
        for a second time limit); only a link that dropped since is asked again."""
        prepared = self._preflight
        try:
            if prepared is not None and not prepared.stale:
                try:
                    answers = await prepared.task  # (events can come while we wait)
                except ConnectionLost:
                    pass  # the link dropped since; the fresh try says whether it is back
                else:
                    if prepared.fresh():
                        return answers
        finally:
            if prepared is not None:
                prepared.task.cancel()  # used once at most (and harmless once done)
            if self._preflight is prepared:
                self._preflight = None
        return await _ask_preflight(self.client)

    async def dither(
        self, request: DitherRequest, on_settle_started: Callable[[], None] = lambda: None
    ) -> DitherOutcome:
        """Dither and wait for the settle outcome. Never raises for PHD2's or the
        network's reasons: every way it can end is an outcome."""
        try:
            outcome = await self._dither(request, on_settle_started)
        except ConnectionLost as exc:
            return DitherOutcome(kind=OutcomeKind.LOST, message=str(exc))
        return dataclasses.replace(outcome, profile=self.profile)

    async def _dither(
        self, request: DitherRequest, on_settle_started: Callable[[], None]
    ) -> DitherOutcome:
        try:
            raw_state, settling, exposure_ms = await self._answers()
            state = Phd2State.parse(raw_state)
            if state is not Phd2State.GUIDING:
                reason = _REFUSE_STATES.get(state, f"PHD2 is not guiding (state {state.value})")
                return DitherOutcome(kind=OutcomeKind.REFUSED, message=reason)
            if settling:
                return DitherOutcome(kind=OutcomeKind.REFUSED, message="PHD2 is already settling")
            exposure_s = float(exposure_ms) / 1000.0
            user_ms = int(exposure_ms)
        except (TimeoutError, Phd2RpcError, TypeError, ValueError, OverflowError) as exc:
            return DitherOutcome(kind=OutcomeKind.REFUSED, message=f"PHD2 preflight: {exc}")
        if request.settle_exposure_s > 0:
            try:
                user_ms = await self.exposure.shorten(user_ms, request.settle_exposure_s)
                exposure_s = max(exposure_s, user_ms / 1000.0)
            except (TimeoutError, Phd2RpcError) as exc:
                log.warning("settling at the user's exposure: %s", exc)
        try:
            criteria = SettleCriteria(
                target_px=request.settle_pixels,
                time_s=request.settle_time,
                timeout_s=request.settle_timeout,
                mode=request.settle_mode,
                phd2_decides=True,  # after PHD2's own dither, its SettleDone is sound
            )
        except ValueError as exc:
            return DitherOutcome(kind=OutcomeKind.REFUSED, message=str(exc))
        try:
            return await self._run_settle(
                "dither",
                request.rpc_params(),
                timeout_s=request.settle_timeout,
                exposure_s=exposure_s,
                on_settle_started=on_settle_started,
                judge=lambda t: SettleJudge(criteria, t, request.baseline),
            )
        except asyncio.CancelledError:
            await self.exposure.restore_on_quit()  # ditherapp quits, or our deadline passed
            raise
        finally:
            if not _cancelling():
                with contextlib.suppress(TimeoutError, ConnectionLost):
                    await self.exposure.restore()  # a lost link: restored at the reconnect

    async def guide(
        self,
        *,
        pixels: float,
        time_s: float,
        timeout_s: float,
        recalibrate: bool = False,
        on_settle_started: Callable[[], None] = lambda: None,
    ) -> DitherOutcome:
        """Start guiding and wait for the settle. Calibration failure ends it (PHD2 sends
        no SettleDone then and stays stuck until stop_capture, which we send)."""
        params: dict[str, Any] = {
            "settle": settle_params(pixels=pixels, time=time_s, timeout=timeout_s),
            "recalibrate": recalibrate,
        }
        try:
            exposure_s = float(await self.client.request("get_exposure")) / 1000.0
            outcome = await self._run_settle(
                "guide",
                params,
                timeout_s=timeout_s + 600.0,  # calibration takes minutes before the settle
                exposure_s=exposure_s,
                on_settle_started=on_settle_started,
                accept_early=True,
            )
        except ConnectionLost as exc:
            return DitherOutcome(kind=OutcomeKind.LOST, message=str(exc))
        except (TimeoutError, Phd2RpcError, TypeError, ValueError) as exc:
            return DitherOutcome(kind=OutcomeKind.REFUSED, message=str(exc))
        if outcome.message.startswith("calibration failed"):
            with contextlib.suppress(ConnectionLost, TimeoutError, Phd2RpcError):
                await self.client.request("stop_capture")
        return outcome

    async def _run_settle(
        self,
        method: str,
        params: dict[str, Any],
        *,
        timeout_s: float,
        exposure_s: float,
        on_settle_started: Callable[[], None],
        accept_early: bool = False,
        judge: Callable[[float], SettleJudge] | None = None,
    ) -> DitherOutcome:
        client = self.client
        watch = _SettleWatch(
            on_settle_started,
            accept_early=accept_early,
            judge=judge,
            clock=self._clock,
            time_scale=self._time_scale,
        )
        remove = client.add_event_listener(watch)

        bad_lines = client.status.bad_lines

        def on_link(status: LinkStatus) -> None:
            nonlocal bad_lines
            if not status.connected and not watch.done.done():
                watch.done.set_exception(ConnectionLost("the connection to PHD2 dropped"))
            elif status.bad_lines != bad_lines:
                # PHD2 drops what a slow reader cannot take: the lost line may have been
                # our SettleDone. Ask rather than wait for our deadline.
                bad_lines = status.bad_lines
                self._spawn(self._check_still_settling(watch))

        remove_link = client.add_link_listener(on_link)
        started = time.monotonic()
        try:
            try:
                await client.request(method, params)
            except Phd2RpcError as exc:
                if watch.done.done() and accept_early:
                    return _outcome(watch.done.result(), watch.began_at or started, watch)
                return DitherOutcome(kind=OutcomeKind.REFUSED, message=exc.message)
            except TimeoutError as exc:
                # The reply may be what was lost: if the settle began, PHD2 took it.
                if watch.began_at is None:
                    return DitherOutcome(kind=OutcomeKind.TIMED_OUT, message=str(exc))
                log.warning("no reply to %s, but PHD2 began to settle: waiting for it", method)
            watch.replied()
            limit = timeout_s + deadline_margin(exposure_s)
            try:
                async with asyncio.timeout(limit):
                    done = await asyncio.shield(watch.done)
            except TimeoutError:
                return await self._deadline_passed(limit)
            return _outcome(done, watch.began_at or started, watch)
        finally:
            watch.close()
            remove()
            remove_link()
            if not watch.done.done():
                watch.done.cancel()
            elif not watch.done.cancelled():
                watch.done.exception()  # mark it retrieved, whatever it was

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro, name="phd2-settle-check")
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check_still_settling(self, watch: _SettleWatch) -> None:
        try:
            settling = await self.client.request("get_settling", time_limit=5.0)
        except (ConnectionLost, TimeoutError, Phd2RpcError):
            return
        judge = watch.judge
        if judge is not None and judge.frames > 0 and not judge.criteria.phd2_decides:
            return  # the judge goes on from the frames, whatever PHD2's settle did
        if not settling and watch.began_at is not None and not watch.done.done():
            watch.done.set_result(
                ev.SettleDone(status=1, error="PHD2's SettleDone was lost; the settle is over")
            )

    async def _deadline_passed(self, limit: float) -> DitherOutcome:
        still = "unknown"
        with contextlib.suppress(TimeoutError, Phd2RpcError):
            still = (
                "still settling"
                if await self.client.request("get_settling", time_limit=2.0)
                else "idle"
            )
        return DitherOutcome(
            kind=OutcomeKind.TIMED_OUT,
            message=f"no SettleDone within {limit:.0f} s (PHD2 {still})",
        )


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _outcome(done: _Ending, began_at: float, watch: _SettleWatch) -> DitherOutcome:
    if isinstance(done, SettleVerdict):
        return _judged(done, watch.judge, watch.dropped)
    settle_s = time.monotonic() - began_at
    if done.succeeded:
        return DitherOutcome(
            kind=OutcomeKind.SETTLED,
            settle_s=settle_s,
            total_frames=done.total_frames,
            dropped_frames=done.dropped_frames,
            rule=EndRule.PHD2.value,
        )
    return DitherOutcome(
        kind=OutcomeKind.SETTLE_FAILED,
        message=done.error or "settle failed",
        settle_s=settle_s,
        total_frames=done.total_frames,
        dropped_frames=done.dropped_frames,
        rule=EndRule.FAILED.value,
    )


def _judged(verdict: SettleVerdict, judge: SettleJudge | None, dropped: int) -> DitherOutcome:
    """The judge's verdict as the dither's outcome (its clock gives the settle time)."""
    frames = judge.frames if judge is not None else 0
    return DitherOutcome(
        kind=OutcomeKind.SETTLED if verdict.settled else OutcomeKind.SETTLE_FAILED,
        message="" if verdict.settled else verdict.error or "settle failed",
        settle_s=verdict.elapsed_s,
        total_frames=frames + dropped,
        dropped_frames=dropped,
        rule=verdict.rule.value,
        in_range_after_s=judge.in_range_after_s if judge is not None else None,
        broken_run_s=judge.longest_broken_run_s if judge is not None else None,
    )
