"""PHD2's app state, tracked from events (research note §4).

Use it for display. Decisions query ``get_app_state`` as well, since several events are
ambiguous (Resumed returns to an unknown state; GuideStep also comes from dead-reckoning
moves and can arrive after stop_capture).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ditherapp.core.phd2 import events as ev


class Phd2State(StrEnum):
    STOPPED = "Stopped"
    SELECTED = "Selected"
    CALIBRATING = "Calibrating"
    GUIDING = "Guiding"
    LOST_LOCK = "LostLock"
    PAUSED = "Paused"
    LOOPING = "Looping"
    UNKNOWN = "Unknown"

    @classmethod
    def parse(cls, text: object) -> Phd2State:
        try:
            return cls(str(text))
        except ValueError:
            return cls.UNKNOWN


_GUIDING_STATES = frozenset({Phd2State.GUIDING, Phd2State.LOST_LOCK})


@dataclass(slots=True)
class AppStateTracker:
    state: Phd2State = Phd2State.UNKNOWN
    needs_query: bool = True
    """True after an event whose consequence cannot be known from the event alone."""
    _before_pause: Phd2State = field(default=Phd2State.UNKNOWN, repr=False)

    def set(self, state: Phd2State) -> None:
        self._remember_before_pause(state)
        self.state = state
        self.needs_query = False

    def _remember_before_pause(self, new: Phd2State) -> None:
        if new is Phd2State.PAUSED and self.state is not Phd2State.PAUSED:
            self._before_pause = self.state

    def apply(self, event: ev.Phd2Event) -> Phd2State:
        s = self.state
        match event:
            case ev.AppState(state=state):
                self.set(Phd2State.parse(state))
            case ev.StartCalibration() | ev.Calibrating():
                self.state = Phd2State.CALIBRATING
            case ev.CalibrationFailed():
                self.state = Phd2State.LOOPING
                self.needs_query = True
            case ev.StartGuiding():
                self.state = Phd2State.GUIDING
            case ev.GuideStep():
                if s not in (Phd2State.PAUSED, Phd2State.STOPPED):
                    self.state = Phd2State.GUIDING
            case ev.StarLost():
                if s in _GUIDING_STATES:
                    self.state = Phd2State.LOST_LOCK
                elif s == Phd2State.SELECTED:
                    self.state = Phd2State.LOOPING
            case ev.LoopingExposures():
                # PHD2 reports looping frames while paused too, and Paused wins.
                if s not in _GUIDING_STATES and s not in (Phd2State.CALIBRATING, Phd2State.PAUSED):
                    has_star = event.star_mass is not None and not event.status
                    self.state = Phd2State.SELECTED if has_star else Phd2State.LOOPING
            case ev.StarSelected() | ev.LockPositionSet():
                if s not in _GUIDING_STATES and s not in (Phd2State.CALIBRATING, Phd2State.PAUSED):
                    self.state = Phd2State.SELECTED
            case ev.LockPositionLost():
                if s not in _GUIDING_STATES and s not in (Phd2State.STOPPED, Phd2State.PAUSED):
                    self.state = Phd2State.LOOPING
            case ev.GuidingStopped():
                self.state = Phd2State.LOOPING
                self.needs_query = True
            case ev.LoopingExposuresStopped():
                self.state = Phd2State.STOPPED
            case ev.Paused():
                self._remember_before_pause(Phd2State.PAUSED)
                self.state = Phd2State.PAUSED
            case ev.Resumed():
                # Back to the state before the pause (GuideStep cannot tell, since PHD2
                # sends it while paused too); a query confirms it.
                if s is Phd2State.PAUSED:
                    self.state = self._before_pause
                self.needs_query = True
            case _:
                pass
        return self.state
