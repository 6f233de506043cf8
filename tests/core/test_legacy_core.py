"""The legacy socket server's bytes, and the settle decision a legacy client must make."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ditherapp.core.errors import LocalProtocolError, RemoteProtocolError
from ditherapp.core.phd2 import events as ev
from ditherapp.core.phd2.appstate import Phd2State
from ditherapp.core.phd2.legacy import (
    DITHER_LEVELS,
    SETTLE_TIMEOUT_REASON,
    UNKNOWN_COMMAND_REPLY,
    Command,
    LegacySettleDetector,
    Verdict,
    encode_command,
    encode_lock_position,
    move_accepted,
    move_command,
    move_pixels,
    reqdist_in_range,
    reqdist_pixels,
    state_from_status,
)

TRANSCRIPT = (
    Path(__file__).resolve().parent.parent / "data" / "transcripts" / "g-legacy-socket-server.jsonl"
)

# ------------------------------------------------------------------ commands


def test_command_bytes_are_phd2s():
    expected = {
        "MSG_PAUSE": 1,
        "MSG_RESUME": 2,
        "MSG_MOVE1": 3,
        "MSG_MOVE2": 4,
        "MSG_MOVE3": 5,
        "MSG_REQDIST": 10,
        "MSG_MOVE4": 12,
        "MSG_MOVE5": 13,
        "MSG_AUTOFINDSTAR": 14,
        "MSG_SETLOCKPOSITION": 15,
        "MSG_FLIPRACAL": 16,
        "MSG_GETSTATUS": 17,
        "MSG_STOP": 18,
        "MSG_LOOP": 19,
        "MSG_STARTGUIDING": 20,
        "MSG_LOOPFRAMECOUNT": 21,
        "MSG_CLEARCAL": 22,
        "MSG_FLIP_SIM_CAMERA": 23,
        "MSG_DESELECT": 24,
    }
    assert {c.name: c.value for c in Command} == expected


@pytest.mark.parametrize("command", [c for c in Command if c is not Command.MSG_SETLOCKPOSITION])
def test_every_plain_command_is_its_one_byte(command):
    assert encode_command(command) == bytes([command.value])


def test_lock_position_carries_two_little_endian_uint16():
    assert encode_lock_position(0x0102, 0x0304) == bytes([15, 0x02, 0x01, 0x04, 0x03])
    assert encode_lock_position(640, 377) == bytes([15]) + (640).to_bytes(2, "little") + (
        377
    ).to_bytes(2, "little")


def test_lock_position_is_not_a_plain_command():
    with pytest.raises(LocalProtocolError):
        encode_command(Command.MSG_SETLOCKPOSITION)


@pytest.mark.parametrize(("x", "y"), [(-1, 0), (0, 65536), (70000, 5)])
def test_lock_position_outside_uint16_is_our_mistake(x, y):
    with pytest.raises(LocalProtocolError):
        encode_lock_position(x, y)


@pytest.mark.parametrize(
    ("code", "state"),
    [
        (0, Phd2State.STOPPED),
        (1, Phd2State.SELECTED),
        (2, Phd2State.CALIBRATING),
        (3, Phd2State.GUIDING),
        (4, Phd2State.LOST_LOCK),
        (100, Phd2State.PAUSED),
        (101, Phd2State.LOOPING),
        (5, Phd2State.UNKNOWN),
        (255, Phd2State.UNKNOWN),
    ],
)
def test_getstatus_codes(code, state):
    assert state_from_status(code) is state


# ------------------------------------------------------------------ dithers


@pytest.mark.parametrize(
    ("amount", "command"),
    [
        (0.5, Command.MSG_MOVE1),
        (1.0, Command.MSG_MOVE2),
        (2.0, Command.MSG_MOVE3),
        (3.0, Command.MSG_MOVE4),
        (5.0, Command.MSG_MOVE5),
        (0.0, Command.MSG_MOVE1),
        (0.1, Command.MSG_MOVE1),
        (0.9, Command.MSG_MOVE2),
        (1.6, Command.MSG_MOVE3),
        (2.6, Command.MSG_MOVE4),
        (4.1, Command.MSG_MOVE5),
        (10.0, Command.MSG_MOVE5),  # the app's default amount: PHD2 has nothing bigger
        (-2.0, Command.MSG_MOVE3),  # PHD2 ignores the sign of an amount
    ],
)
def test_move_level_is_the_nearest(amount, command):
    assert move_command(amount) is command


@pytest.mark.parametrize(
    ("tie", "smaller"),
    [
        (0.75, Command.MSG_MOVE1),
        (1.5, Command.MSG_MOVE2),
        (2.5, Command.MSG_MOVE3),
        (4.0, Command.MSG_MOVE4),
    ],
)
def test_move_level_tie_goes_to_the_smaller_move(tie, smaller):
    assert move_command(tie) is smaller


@given(st.floats(min_value=0, max_value=100, allow_nan=False))
def test_no_move_level_is_nearer_than_the_chosen_one(amount):
    chosen = move_pixels(move_command(amount))
    assert all(abs(chosen - amount) <= abs(size - amount) for size, _ in DITHER_LEVELS)


def test_move_pixels_only_for_moves():
    assert [move_pixels(c) for _, c in DITHER_LEVELS] == [0.5, 1.0, 2.0, 3.0, 5.0]
    with pytest.raises(LocalProtocolError):
        move_pixels(Command.MSG_PAUSE)


def test_move_reply_is_exposure_seconds_or_zero_for_refused():
    assert not move_accepted(0)
    assert move_accepted(1)
    assert move_accepted(4)


def test_reqdist_is_hundredths_capped_at_255():
    assert reqdist_pixels(0) == 0.0
    assert reqdist_pixels(42) == pytest.approx(0.42)
    assert reqdist_pixels(255) == pytest.approx(2.55)
    with pytest.raises(RemoteProtocolError):
        reqdist_pixels(256)


def test_capped_reqdist_is_never_in_range():
    assert reqdist_in_range(150, 1.5)
    assert not reqdist_in_range(151, 1.5)
    assert reqdist_in_range(254, 3.0)
    assert not reqdist_in_range(255, 3.0)  # "2.55 px or more": could be 100 px


# ------------------------------------------------------------------ settle detection

GUIDING, LOST, STOPPED, PAUSED, LOOPING = 3, 4, 0, 100, 101


def run(detector, samples):
    """Feed (now, status, reqdist) samples; return every update."""
    return [detector.feed(now, status, reqdist) for now, status, reqdist in samples]


def test_settles_when_in_range_long_enough():
    d = LegacySettleDetector(pixels=1.0, time_s=3.0, timeout_s=60.0)
    d.begin(0.0)
    ups = run(
        d,
        [(1, GUIDING, 250), (2, GUIDING, 90), (3, GUIDING, 60), (4, GUIDING, 40), (5, GUIDING, 40)],
    )
    assert [u.verdict for u in ups] == [Verdict.WAITING] * 4 + [Verdict.SETTLED]
    assert [u.in_range_s for u in ups] == [0.0, 0.0, 1.0, 2.0, 3.0]
    assert ups[0].distance == pytest.approx(2.5)
    assert ups[-1].elapsed_s == 5.0


def test_an_out_of_range_sample_resets_the_clock():
    d = LegacySettleDetector(pixels=1.0, time_s=3.0, timeout_s=60.0)
    d.begin(0.0)
    ups = run(
        d,
        [
            (1, GUIDING, 50),
            (2, GUIDING, 50),
            (3, GUIDING, 50),
            (3.5, GUIDING, 101),  # 2.5 s in range, then one sample out
            (4, GUIDING, 50),
            (5, GUIDING, 50),
            (6, GUIDING, 50),
            (7, GUIDING, 50),
        ],
    )
    assert ups[3].in_range_s == 0.0
    assert [u.verdict for u in ups[:7]] == [Verdict.WAITING] * 7
    assert ups[7].verdict is Verdict.SETTLED
    assert ups[7].in_range_s == 3.0


def test_lost_lock_resets_the_clock_but_keeps_waiting():
    d = LegacySettleDetector(pixels=1.0, time_s=2.0, timeout_s=60.0)
    d.begin(0.0)
    ups = run(d, [(1, GUIDING, 30), (2, LOST, 30), (3, GUIDING, 30), (4, GUIDING, 30)])
    assert ups[1].verdict is Verdict.WAITING
    assert not ups[1].star_locked
    assert ups[1].state is Phd2State.LOST_LOCK
    assert ups[1].in_range_s == 0.0
    assert ups[3].verdict is Verdict.WAITING  # the clock restarted at 3
    assert d.feed(5, GUIDING, 30).verdict is Verdict.SETTLED


def test_zero_settle_time_settles_on_the_first_in_range_sample():
    d = LegacySettleDetector(pixels=1.5, time_s=0.0, timeout_s=60.0)
    d.begin(0.0)
    assert d.feed(1, GUIDING, 200).verdict is Verdict.WAITING
    assert d.feed(2, GUIDING, 150).verdict is Verdict.SETTLED


def test_timeout_fails_with_phd2s_reason():
    d = LegacySettleDetector(pixels=0.5, time_s=2.0, timeout_s=5.0)
    d.begin(10.0)
    ups = run(d, [(11, GUIDING, 90), (12, GUIDING, 40), (13, GUIDING, 90), (14.9, LOST, 0)])
    assert all(u.verdict is Verdict.WAITING for u in ups)
    last = d.feed(15.0, GUIDING, 40)
    assert last.verdict is Verdict.FAILED
    assert last.reason == SETTLE_TIMEOUT_REASON == "timed-out waiting for guider to settle"
    assert last.elapsed_s == 5.0


def test_settling_on_the_deadline_sample_wins_over_the_timeout():
    d = LegacySettleDetector(pixels=0.5, time_s=2.0, timeout_s=5.0)
    d.begin(0.0)
    run(d, [(3, GUIDING, 40), (4, GUIDING, 40)])
    assert d.feed(5, GUIDING, 40).verdict is Verdict.SETTLED


@pytest.mark.parametrize(
    ("status", "shown"),
    [(STOPPED, "Stopped"), (PAUSED, "Paused"), (LOOPING, "Looping"), (2, "Calibrating")],
)
def test_phd2_no_longer_guiding_fails_at_once(status, shown):
    d = LegacySettleDetector(pixels=1.0, time_s=5.0, timeout_s=60.0)
    d.begin(0.0)
    d.feed(1, GUIDING, 20)
    update = d.feed(2, status, 0)  # REQDIST reads 0 when not guiding: never "in range"
    assert update.verdict is Verdict.FAILED
    assert update.reason == f"PHD2 stopped guiding ({shown})"


def test_reqdist_zero_while_not_guiding_is_not_settled():
    d = LegacySettleDetector(pixels=1.0, time_s=0.0, timeout_s=60.0)
    assert d.feed(0, STOPPED, 0).verdict is Verdict.FAILED


def test_clock_starts_at_the_first_sample_without_begin():
    d = LegacySettleDetector(pixels=1.0, time_s=1.0, timeout_s=3.0)
    assert d.feed(100.0, GUIDING, 200).elapsed_s == 0.0
    assert d.feed(103.0, GUIDING, 200).verdict is Verdict.FAILED


def test_a_decided_settle_takes_no_more_samples():
    d = LegacySettleDetector(pixels=1.0, time_s=0.0, timeout_s=3.0)
    d.feed(0, GUIDING, 10)
    with pytest.raises(LocalProtocolError):
        d.feed(1, GUIDING, 10)


@pytest.mark.parametrize(("pixels", "time_s", "timeout_s"), [(0, 1, 10), (1, -1, 10), (1, 1, 0)])
def test_nonsense_settle_parameters_are_our_mistake(pixels, time_s, timeout_s):
    with pytest.raises(LocalProtocolError):
        LegacySettleDetector(pixels, time_s, timeout_s)


def test_synthesised_events_look_like_phd2s():
    d = LegacySettleDetector(pixels=1.5, time_s=8.0, timeout_s=40.0)
    d.begin(0.0)
    update = d.feed(1.234, GUIDING, 42)
    settling = d.settling_event(update)
    assert settling == ev.Settling(distance=0.42, time=0.0, settle_time=8.0, star_locked=True)
    update = d.feed(3.46, LOST, 30)
    assert d.settling_event(update).star_locked is False
    assert settling.timestamp is None  # synthesised, not from PHD2

    failed = d.feed(4, STOPPED, 0)
    done = d.done_event(failed)
    assert done == ev.SettleDone(status=1, error="PHD2 stopped guiding (Stopped)")
    assert not done.succeeded
    ok = LegacySettleDetector(pixels=1.5, time_s=0.0, timeout_s=40.0)
    assert ok.done_event(ok.feed(0, GUIDING, 10)) == ev.SettleDone(status=0)


# ------------------------------------------------------------------ the real PHD2 transcript


def legacy_exchanges() -> list[tuple[float, str, int, int]]:
    """(time, connection, command byte, reply byte) from the recorded PHD2 session."""
    pending: dict[str, tuple[float, int]] = {}
    out = []
    for line in TRANSCRIPT.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec["conn"] not in ("L", "L2") or "bytes" not in rec:
            continue
        if rec["dir"] == "C->S":
            pending[rec["conn"]] = (rec["t"], rec["bytes"][0])
        else:
            t, command = pending.pop(rec["conn"])
            out.append((t, rec["conn"], command, rec["bytes"][0]))
    return out


def test_real_phd2_replies_decode():
    seen = {}
    for _, _, command, reply in legacy_exchanges():
        if command == Command.MSG_GETSTATUS:
            seen.setdefault(state_from_status(reply), reply)
        elif command in {c for _, c in DITHER_LEVELS}:
            seen.setdefault(("move", move_accepted(reply)), reply)
        elif command == 99:
            assert reply == UNKNOWN_COMMAND_REPLY
    assert seen[Phd2State.GUIDING] == 3
    assert seen[Phd2State.PAUSED] == 100
    assert seen[Phd2State.STOPPED] == 0
    assert seen[Phd2State.SELECTED] == 1
    assert seen[("move", True)] == 1  # 1 s exposures
    assert seen[("move", False)] == 0  # MOVE1 while stopped


def test_real_settle_polls_after_move1():
    """The polls recorded after PHD2's MOVE1 (1 s apart, 0.42 px falling to 0.20 px)."""
    exchanges = legacy_exchanges()
    move_at = next(i for i, x in enumerate(exchanges) if x[2] == Command.MSG_MOVE1 and x[3] != 0)
    polls = []
    status = None
    for t, _, command, reply in exchanges[move_at + 1 :]:
        if command == Command.MSG_GETSTATUS:
            status = reply
        elif command == Command.MSG_REQDIST:
            polls.append((t, status, reply))
        else:
            break
    assert [p[2] for p in polls[:3]] == [42, 20, 20]
    d = LegacySettleDetector(pixels=0.3, time_s=3.0, timeout_s=30.0)
    d.begin(exchanges[move_at][0])
    verdicts = [d.feed(t, s, r).verdict for t, s, r in polls[:5]]
    # 0.42 is out; 0.20 at +2 s starts the stopwatch; +3, +4 in range; +5 is 3 s in range.
    assert verdicts == [Verdict.WAITING] * 4 + [Verdict.SETTLED]
