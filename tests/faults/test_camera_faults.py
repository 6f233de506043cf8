"""A camera agent dies in the middle of a dither cycle: the others are resumed, the
cycle completes without waiting for the dead one, and a camera that comes back while a
dither is still under way is paused before it can save a frame of a moving mount."""

from __future__ import annotations

from ditherapp.core.machine import Phase

SLOW_SETTLE = {"settledelay": 5}


async def test_a_camera_killed_mid_settle_is_not_waited_for_and_the_other_resumes(
    make_world, wait_until, error_trap
):
    world = await make_world(settings=SLOW_SETTLE)
    a = world.add_camera("A", 0.15)
    b = world.add_camera("B", 0.25)
    await world.wait_connected()
    await world.wait_phase(Phase.SETTLING)
    assert a.paused
    assert b.paused
    await world.kill_camera(a)
    assert not a.paused  # the dying agent released its own pause
    await world.wait_records(1)
    record = world.tap.records[0]
    assert record["outcome"] == "settled", record
    assert [c["name"] for c in record["cameras"]] == ["A", "B"]
    await world.wait_phase(Phase.IDLE)
    assert not b.paused
    status = await world.status()
    assert [(c["name"], c["connected"]) for c in status["cameras"]] == [("A", False), ("B", True)]

    # It comes back: same id, and it takes part in the next dither again.
    world.start_camera(a)
    await world.wait_connected()
    assert [c["id"] for c in (await world.status())["cameras"]] == ["cam-1", "cam-2"]
    await world.wait_records(2)
    assert [c["name"] for c in world.tap.records[1]["cameras"]] == ["A", "B"]
    await world.wait_phase(Phase.IDLE)
    assert not world.paused_cameras()
    assert not world.saved_during_dither()
    assert not error_trap.problems()


async def test_a_camera_killed_before_confirming_its_pause_does_not_hold_the_dither(
    make_world, wait_until, error_trap
):
    world = await make_world()
    a = world.add_camera("A", 0.15)
    b = world.add_camera("B", 0.25)
    await world.wait_connected()
    world.when_phase(Phase.PAUSING, a.stop)
    await world.wait_records(1)
    record = world.tap.records[0]
    # Not "no pause confirmation from A" after 5 s: a camera that is gone is not asked.
    assert record["outcome"] == "settled", record
    await world.wait_phase(Phase.IDLE)
    assert not a.paused
    assert not b.paused
    assert not [e for e in world.saved_during_dither() if e in b.exposures]
    assert not error_trap.problems()


async def test_a_camera_that_comes_back_mid_dither_is_paused_at_once(
    make_world, wait_until, error_trap
):
    world = await make_world(settings=SLOW_SETTLE)
    a = world.add_camera("A", 0.15)
    world.add_camera("B", 0.25)
    await world.wait_connected()
    await world.wait_phase(Phase.SETTLING)
    await world.kill_camera(a)
    world.start_camera(a)
    await wait_until(lambda: a.paused, 2, "the returning camera to be paused")
    assert world.phase is Phase.SETTLING
    assert a.paused_by == "app"
    await world.wait_records(1)
    assert world.tap.records[0]["outcome"] == "settled"
    await world.wait_phase(Phase.IDLE)
    await wait_until(lambda: not world.paused_cameras(), 2, "both cameras to resume")
    assert not world.saved_during_dither()
    assert not error_trap.problems()


async def test_the_ledger_counts_every_unsaved_frame_of_a_camera_that_came_back_mid_dither(
    make_world, wait_until, error_trap
):
    world = await make_world(settings=SLOW_SETTLE)
    a = world.add_camera("A", 0.05)
    world.add_camera("B", 0.25)
    await world.wait_connected()
    await world.wait_phase(Phase.SETTLING)
    before = world.unsaved_reports["A"]
    await wait_until(
        lambda: world.unsaved_reports["A"] >= before + 2, 2, "A to report unsaved frames"
    )
    await world.kill_camera(a)
    world.start_camera(a)
    await wait_until(lambda: a.paused, 2, "A to be paused again")
    await world.wait_records(1)
    [record_a] = [c for c in world.tap.records[0]["cameras"] if c["name"] == "A"]
    assert record_a["frames_not_saved"] == world.unsaved_reports["A"]
    assert not error_trap.problems()
