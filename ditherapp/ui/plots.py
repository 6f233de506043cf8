"""The settle graph and the guide graph (pyqtgraph).

Both keep their data in bounded buffers that the bridge's signals append to, create
their curves once, and redraw from a timer (2 Hz) only when something changed, never
on every PHD2 message.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsRectItem, QWidget

from ditherapp.ui.bridge import ServiceBridge
from ditherapp.ui.format import RULE_WORDS
from ditherapp.ui.theme import DARK, Theme

REDRAW_MS = 500  # 2 Hz: PHD2 guides at about one frame a second; 5 Hz cost 13% of a core at 50/s
PAST_SETTLES = 4
"""Earlier settles drawn fading behind the current one."""
MAX_SETTLE_SAMPLES = 3000
GUIDE_WINDOW_S = 300.0
GUIDE_MIN_SPAN_S = 60.0
IDLE_SLIDE_S = 1.0
MAX_GUIDE_STEPS = 4000
LEFT_AXIS_WIDTH = 48


def _pen(
    colour: str, width: float = 1.5, alpha: int = 255, style: Qt.PenStyle | None = None
) -> QPen:
    c = QColor(colour)
    c.setAlpha(alpha)
    pen = QPen(c)
    pen.setWidthF(width)
    if style is not None:
        pen.setStyle(style)
    pen.setCosmetic(True)
    return pen


class _Graph(pg.PlotWidget):  # type: ignore[misc]
    """A plot that redraws from a timer when marked dirty."""

    def __init__(self, parent: QWidget | None = None, **kwargs: object) -> None:
        super().__init__(parent, **kwargs)
        self.theme = DARK
        self._dirty = True
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.setMinimumHeight(110)
        left = self.getAxis("left")
        left.setWidth(LEFT_AXIS_WIDTH)
        left.enableAutoSIPrefix(False)  # pixels, never millipixels
        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self._on_timer)
        self._timer.start()

    def _on_timer(self) -> None:
        if self.isVisible():
            self.refresh()

    def mark_dirty(self) -> None:
        self._dirty = True

    def refresh(self) -> None:
        raise NotImplementedError

    def _style_axes(self, theme: Theme) -> None:
        self.setBackground(theme.plot_bg)
        for name in ("left", "bottom"):
            axis = self.getAxis(name)
            axis.setPen(_pen(theme.plot_fg, 1))
            axis.setTextPen(_pen(theme.plot_fg, 1))
        self.showGrid(x=True, y=True, alpha=0.18)


@dataclass(slots=True)
class _Settle:
    target: float
    need: float
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    streak_start: float | None = None
    ended: bool = False
    succeeded: bool = False
    rule: str | None = None
    """Which rule ended it (the settle judge's), once it has ended."""
    ended_at: float | None = None


class SettleGraph(_Graph):
    """Distance from the lock position against time since the dither began: the
    current settle, the last few fading behind it, the settle target as a line, and
    what PHD2 waits for as a box: the distance must stay under the target for the settle
    time, from when it last came in range."""

    def __init__(self, bridge: ServiceBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        s = bridge.settings
        self.current: _Settle | None = None
        self.past: deque[_Settle] = deque(maxlen=PAST_SETTLES)
        self._target = s.settletarget
        self._need = float(s.settledelay)
        self._titled = (0.0, 0.0)
        self.setLabel("left", "distance", units="px")
        self.setLabel("bottom", "seconds since the dither")
        self.past_curves = [self.plot() for _ in range(PAST_SETTLES)]
        self.curve = self.plot()
        self.box = QGraphicsRectItem()
        self.box.setVisible(False)
        self.box.setZValue(-10)
        self.target_line = pg.InfiniteLine(
            pos=self._target,
            angle=0,
            movable=False,
            label="target {value:.2f} px",
            labelOpts={"position": 0.92, "anchors": [(1, 1), (1, 1)]},
        )
        self.end_line = pg.InfiniteLine(
            angle=90,
            movable=False,
            label="",
            labelOpts={"position": 0.85, "anchors": [(0, 0), (0, 0)]},
        )
        self.end_line.setVisible(False)
        self.addItem(self.box, ignoreBounds=True)
        self.addItem(self.target_line, ignoreBounds=True)
        self.addItem(self.end_line, ignoreBounds=True)
        self.apply_theme(DARK)
        bridge.settleBegun.connect(self.begin)
        bridge.settleSample.connect(self.add_sample)
        bridge.settleEnded.connect(self.end)
        bridge.settleJudged.connect(self.judged)
        bridge.settingChanged.connect(self._setting_changed)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self._style_axes(theme)
        self.curve.setPen(_pen(theme.settle, 2.5))
        for age, curve in enumerate(self.past_curves, start=1):
            curve.setPen(_pen(theme.settle, 1.5, alpha=max(40, 190 - 40 * age)))
        self.box.setBrush(pg.mkBrush(*theme.window_fill))
        self.box.setPen(_pen(theme.target, 1, alpha=180, style=Qt.PenStyle.DotLine))
        self.target_line.setPen(_pen(theme.target, 1.5, style=Qt.PenStyle.DashLine))
        self.target_line.label.setColor(QColor(theme.target))
        self.end_line.setPen(_pen(theme.plot_fg, 1, alpha=160, style=Qt.PenStyle.DotLine))
        self.end_line.label.setColor(QColor(theme.plot_fg))
        self._title()
        self.mark_dirty()

    def _title(self) -> None:
        theme = self.theme
        self._titled = (self._target, self._need)
        self.setTitle(
            f"Settle &nbsp; <span style='color:{theme.settle}'>━━ this dither</span> &nbsp; "
            f"<span style='color:{theme.settle}'>── earlier ones</span> &nbsp; "
            f"<span style='color:{theme.target}'>▒ stay under {self._target:g} px "
            f"for {self._need:g} s</span>",
            size="10pt",
            color=theme.plot_fg,
        )

    def _setting_changed(self, name: str, value: object) -> None:
        # Between dithers, show the target and time the next dither will use.
        if self.current is not None and not self.current.ended:
            return
        if name == "settletarget" and isinstance(value, float | int):
            self._target = float(value)
            self.mark_dirty()
        elif name == "settledelay" and isinstance(value, float | int):
            self._need = float(value)
            self.mark_dirty()

    def begin(self, target: float, need: float, timeout: float) -> None:
        del timeout
        if self.current is not None and self.current.xs:
            self.past.appendleft(self.current)
        self.current = _Settle(target=target, need=need)
        self._target, self._need = target, need
        self.mark_dirty()

    def add_sample(self, seconds: float, distance: float, in_range: float) -> None:
        settle = self.current
        if settle is None or settle.ended:
            return  # (PHD2 may go on settling after a calm settle ended ours)
        if len(settle.xs) >= MAX_SETTLE_SAMPLES:
            del settle.xs[0], settle.ys[0]
        settle.xs.append(seconds)
        settle.ys.append(distance)
        settle.streak_start = seconds - in_range if in_range > 0 else None
        self.mark_dirty()

    def judged(self, rule: str, succeeded: bool, settle_s: float) -> None:
        """Our settle judge ended the settle by ``rule`` after ``settle_s``."""
        settle = self.current
        if settle is None:
            return
        settle.ended = True
        settle.succeeded = succeeded
        settle.rule = rule
        settle.ended_at = settle_s
        self.mark_dirty()

    def end(self, succeeded: bool, error: str) -> None:
        del error
        if self.current is not None:
            self.current.ended = True
            self.current.succeeded = succeeded
            self.mark_dirty()

    def refresh(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        settle = self.current
        xs = settle.xs if settle is not None else []
        ys = settle.ys if settle is not None else []
        self.curve.setData(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float))
        for i, curve in enumerate(self.past_curves):
            if i < len(self.past):
                old = self.past[i]
                curve.setData(np.asarray(old.xs, dtype=float), np.asarray(old.ys, dtype=float))
            else:
                curve.setData([], [])
        self.target_line.setValue(self._target)
        if (self._target, self._need) != self._titled:
            self._title()
        if settle is not None and settle.rule is not None and settle.ended_at is not None:
            words = RULE_WORDS.get(settle.rule, settle.rule)
            verb = "settled" if settle.succeeded else "ended"
            self.end_line.setValue(settle.ended_at)
            self.end_line.label.setText(f"{verb}: {words}, {settle.ended_at:.1f} s")
            self.end_line.setVisible(True)
        else:
            self.end_line.setVisible(False)
        if settle is not None and settle.streak_start is not None and not settle.ended:
            self.box.setRect(QRectF(settle.streak_start, 0.0, settle.need, settle.target))
            self.box.setVisible(True)
        else:
            self.box.setVisible(False)
        shown = [settle, *self.past] if settle is not None else list(self.past)
        x_max = max([self._need * 1.5, 5.0] + [s.xs[-1] for s in shown if s.xs])
        if settle is not None and settle.ended_at is not None:
            x_max = max(x_max, settle.ended_at * 1.25)
        if settle is not None and settle.streak_start is not None:
            x_max = max(x_max, settle.streak_start + settle.need)
        y_max = max([self._target * 2.0] + [max(s.ys) for s in shown if s.ys])
        self.setXRange(0, x_max * 1.03, padding=0)
        self.setYRange(0, y_max * 1.08, padding=0)

    def points(self) -> int:
        """How many samples the current settle's curve shows."""
        x, _ = self.curve.getData()
        return 0 if x is None else len(x)


class GuideGraph(_Graph):
    """RA and Dec error over the last minutes, with each dither marked: a line where
    PHD2 moved the lock position and a shaded span while saving was paused."""

    def __init__(
        self,
        bridge: ServiceBridge,
        *,
        window_s: float = GUIDE_WINDOW_S,
        wall_clock: Callable[[], float] = time.time,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent, axisItems={"bottom": pg.DateAxisItem()})
        self._wall = wall_clock
        self.window_s = window_s
        self.steps: deque[tuple[float, float, float]] = deque(maxlen=MAX_GUIDE_STEPS)
        self._slid_at = 0.0
        self.setLabel("left", "error", units="px")
        self.ra = self.plot()
        self.dec = self.plot()
        for curve in (self.ra, self.dec):
            curve.setClipToView(True)
            curve.setSkipFiniteCheck(True)
        self.zero = pg.InfiniteLine(pos=0, angle=0, movable=False)
        self.addItem(self.zero, ignoreBounds=True)
        self.markers: deque[pg.InfiniteLine] = deque()
        self.pauses: deque[tuple[pg.LinearRegionItem, float, float | None]] = deque()
        self.getPlotItem().setAutoVisible(y=True)
        self.enableAutoRange(axis="y")
        self.apply_theme(DARK)
        bridge.guideStep.connect(self.add_step)
        bridge.ditherMoved.connect(self.add_dither)
        bridge.ditherBegun.connect(self.pause_began)
        bridge.ditherEnded.connect(self.pause_ended)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self._style_axes(theme)
        self.ra.setPen(_pen(theme.ra, 1.6))
        self.dec.setPen(_pen(theme.dec, 1.6, style=theme.dec_style))
        self.zero.setPen(_pen(theme.plot_fg, 1, alpha=110))
        for marker in self.markers:
            marker.setPen(_pen(theme.marker, 1.5, style=Qt.PenStyle.DashLine))
        for region, _, _ in self.pauses:
            self._style_pause(region)
        # The key is in the title, where it never covers a curve.
        dec_line = "━━" if theme.dec_style is Qt.PenStyle.SolidLine else "╍╍"
        self.setTitle(
            f"Guiding error &nbsp; <span style='color:{theme.ra}'>━━ RA</span> &nbsp; "
            f"<span style='color:{theme.dec}'>{dec_line} Dec</span> &nbsp; "
            f"<span style='color:{theme.marker}'>┆ dither</span>",
            size="10pt",
            color=theme.plot_fg,
        )
        self.mark_dirty()

    def _style_pause(self, region: pg.LinearRegionItem) -> None:
        region.setBrush(pg.mkBrush(*self.theme.paused_fill))
        for line in region.lines:
            line.setPen(pg.mkPen(None))

    def add_step(self, wall: float, ra: float, dec: float) -> None:
        self.steps.append((wall, ra, dec))
        self.mark_dirty()

    def add_dither(self, wall: float, dx: float, dy: float) -> None:
        del dx, dy
        marker = pg.InfiniteLine(
            pos=wall, angle=90, movable=False, pen=_pen(self.theme.marker, 1.5)
        )
        marker.setPen(_pen(self.theme.marker, 1.5, style=Qt.PenStyle.DashLine))
        self.addItem(marker, ignoreBounds=True)
        self.markers.append(marker)
        self.mark_dirty()

    def pause_began(self, wall: float) -> None:
        region = pg.LinearRegionItem(values=(wall, wall), movable=False)
        region.setZValue(-10)
        self._style_pause(region)
        self.addItem(region, ignoreBounds=True)
        self.pauses.append((region, wall, None))
        self.mark_dirty()

    def pause_ended(self, wall: float, outcome: str, message: str) -> None:
        del outcome, message
        if self.pauses and self.pauses[-1][2] is None:
            region, start, _ = self.pauses.pop()
            region.setRegion((start, wall))
            self.pauses.append((region, start, wall))
        self.mark_dirty()

    def refresh(self) -> None:
        now = self._wall()
        if not self._dirty and now - self._slid_at < IDLE_SLIDE_S:
            return  # nothing new: scroll once a second, not five times
        self._slid_at = now
        # The window fills up from the first step, then scrolls.
        first = self.steps[0][0] if self.steps else now
        start = max(now - self.window_s, min(first, now - GUIDE_MIN_SPAN_S))
        while self.markers and self.markers[0].value() < start:
            self.removeItem(self.markers.popleft())
        while self.pauses and self.pauses[0][2] is not None and self.pauses[0][2] < start:
            self.removeItem(self.pauses.popleft()[0])
        if self.pauses and self.pauses[-1][2] is None:
            region, began, _ = self.pauses[-1]
            region.setRegion((began, now))
        if self._dirty:
            self._dirty = False
            if self.steps:
                data = np.asarray(self.steps, dtype=float)
                self.ra.setData(data[:, 0], data[:, 1])
                self.dec.setData(data[:, 0], data[:, 2])
            else:
                self.ra.setData([], [])
                self.dec.setData([], [])
        self.setXRange(start, now, padding=0)

    def points(self) -> int:
        x, _ = self.ra.getData()
        return 0 if x is None else len(x)
