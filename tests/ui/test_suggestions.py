"""Settle suggestions and the rule that ended a settle, in the window."""

from __future__ import annotations

from typing import Any

from ditherapp.core.settle_advice import MIN_DITHERS
from ditherapp.ui.main_window import MainWindow


def ledger_line(**values: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "outcome": "settled",
        "amount": 10.0,
        "ra_only": False,
        "settle": {"pixels": 2.0, "time": 10, "timeout": 60},
        "settle_s": 4.0,
        "in_range_after_s": 1.0,
        "broken_run_s": 0.5,
        "phd2_profile": None,
    }
    line.update(values)
    return line


async def test_suggestions_appear_once_there_are_enough_dithers_and_a_click_applies_one(
    window: MainWindow, rig: Any, tmp_path: Any
) -> None:
    panel = window.suggestions
    assert not panel.isVisibleTo(window), "nothing to suggest from an empty ledger"
    rig.service.ledger_lines.extend(ledger_line() for _ in range(MIN_DITHERS - 1))
    panel.refresh()
    assert not panel.isVisibleTo(window)
    rig.service.ledger_lines.append(ledger_line())
    panel.refresh()
    assert panel.isVisibleTo(window)
    assert (rig.service.settings.settledelay, rig.service.settings.settlemax) == (3, 30)
    texts = [b.text() for b in panel.buttons]
    assert texts == ["Set settle time to 2 s", "Set settle timeout to 20 s"]
    assert rig.service.settings.settledelay == 3, "nothing changes by itself"
    panel.buttons[0].click()
    assert rig.service.settings.settledelay == 2
    assert [b.text() for b in panel.buttons] == ["Set settle timeout to 20 s"]
    window.grab().save(str(tmp_path / "suggestions.png"))


async def test_the_settle_graph_says_which_rule_ended_the_settle(
    window: MainWindow, rig: Any, until: Any
) -> None:
    graph = window.settle_graph
    graph.begin(2.0, 10.0, 60.0)
    graph.add_sample(1.0, 3.0, 0.0)
    graph.add_sample(2.0, 0.8, 0.5)
    window.bridge.settleJudged.emit("calm", True, 2.4)
    graph.refresh()
    assert graph.end_line.isVisible()
    assert graph.end_line.value() == 2.4
    assert "calm" in graph.end_line.label.toPlainText()
    graph.add_sample(3.0, 0.5, 1.5)  # PHD2 goes on settling: not ours any more
    graph.refresh()
    assert graph.points() == 2
