"""The listener list both PHD2 backends tell their events and link changes to."""

from __future__ import annotations

import logging

import pytest

from ditherapp.net.listeners import Listeners


def test_a_failing_listener_is_logged_and_the_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    heard: list[str] = []
    listeners: Listeners[int] = Listeners("PHD2 event")

    def broken(value: int) -> None:
        raise RuntimeError(f"cannot take {value}")

    listeners.add(lambda v: heard.append(f"first {v}"))
    listeners.add(broken)
    listeners.add(lambda v: heard.append(f"last {v}"))
    with caplog.at_level(logging.ERROR):
        listeners(7)
    assert heard == ["first 7", "last 7"]
    assert "PHD2 event listener failed" in caplog.text
    assert "cannot take 7" in caplog.text


def test_a_listener_may_remove_itself_while_called() -> None:
    heard: list[tuple[str, int]] = []
    listeners: Listeners[int] = Listeners("test")

    def once(value: int) -> None:
        heard.append(("once", value))
        remove()

    remove = listeners.add(once)
    listeners.add(lambda v: heard.append(("always", v)))
    listeners(1)
    listeners(2)
    remove()  # a second time does no harm
    assert heard == [("once", 1), ("always", 1), ("always", 2)]
