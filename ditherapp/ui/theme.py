"""The two themes: a dark one, and a red night-vision one in which every text, line and
plot is a dim red on black, so the window does not spoil dark adaptation.

Widgets never pick colours themselves: a label that shows a state gets the ``state``
property (``ok``, ``busy``, ``warn``, ``bad``, ``off``) and the theme's style sheet
colours it; the plots ask the theme for pens. The red theme tells states apart by
brightness and weight, since it has only one hue.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QWidget


class State(StrEnum):
    OK = "ok"
    BUSY = "busy"
    WARN = "warn"
    BAD = "bad"
    OFF = "off"
    GUARD = "guard"
    """The frame guard holds saving: not an error of ours, not a normal state either."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Theme:
    name: str
    title: str
    window: str
    base: str
    panel: str
    text: str
    dim: str
    border: str
    highlight: str
    highlight_text: str
    ok: str
    busy: str
    warn: str
    bad: str
    bad_fill: str
    """Background of the banner when something needs the user (PHD2 lost, a failure)."""
    plot_bg: str
    plot_fg: str
    ra: str
    dec: str
    dec_style: Qt.PenStyle
    settle: str
    target: str
    window_fill: tuple[int, int, int, int]
    """The settle graph's box: under the target for the settle time (RGBA)."""
    paused_fill: tuple[int, int, int, int]
    """Saving paused, on the guide graph (RGBA)."""
    marker: str
    flat_controls: bool = False
    """Draw controls with Qt's plain style, from the palette alone: Fusion's bevels add
    grey and white highlights, which night vision cannot have."""
    guard: str = "#d98cff"
    """GUARDING: a colour of its own, unlike saving (ok) or a dither (busy)."""
    guard_fill: str = "#34173f"
    """Background of the banner while the frame guard holds saving."""

    def colour(self, state: State) -> str:
        return {
            State.OK: self.ok,
            State.BUSY: self.busy,
            State.WARN: self.warn,
            State.BAD: self.bad,
            State.OFF: self.dim,
            State.GUARD: self.guard,
        }[state]


DARK = Theme(
    name="dark",
    title="Dark",
    window="#1b1e24",
    base="#121419",
    panel="#23272f",
    text="#e6e9ef",
    dim="#8d95a3",
    border="#3a404c",
    highlight="#3d7bd9",
    highlight_text="#ffffff",
    ok="#4cc27a",
    busy="#4aa3ff",
    warn="#f0b43c",
    bad="#ff5a4f",
    bad_fill="#5a1714",
    plot_bg="#121419",
    plot_fg="#aab2bf",
    ra="#4aa3ff",
    dec="#ff6b5a",
    dec_style=Qt.PenStyle.SolidLine,
    settle="#f0b43c",
    target="#4cc27a",
    window_fill=(76, 194, 122, 45),
    paused_fill=(240, 180, 60, 40),
    marker="#f0b43c",
)

RED = Theme(
    name="red",
    title="Red (night vision)",
    window="#000000",
    base="#000000",
    panel="#0c0000",
    text="#b8281b",
    dim="#7a180e",
    border="#3c0904",
    highlight="#4a0b05",
    highlight_text="#e0392a",
    ok="#9c2214",
    busy="#c8301f",
    warn="#dd3b28",
    bad="#ff3b28",
    bad_fill="#3a0500",
    plot_bg="#000000",
    plot_fg="#7a170d",
    ra="#d0321f",
    dec="#8a1a0e",
    dec_style=Qt.PenStyle.DashLine,
    settle="#d0321f",
    target="#8a1a0e",
    window_fill=(160, 25, 12, 50),
    paused_fill=(120, 15, 8, 45),
    marker="#a8261a",
    flat_controls=True,
    guard="#ff5a3c",
    guard_fill="#260200",
)

THEMES: dict[str, Theme] = {DARK.name: DARK, RED.name: RED}


def theme_named(name: str | None) -> Theme:
    return THEMES.get(name or "", DARK)


def palette(theme: Theme) -> QPalette:
    p = QPalette()
    roles = {
        QPalette.ColorRole.Window: theme.window,
        QPalette.ColorRole.WindowText: theme.text,
        QPalette.ColorRole.Base: theme.base,
        QPalette.ColorRole.AlternateBase: theme.panel,
        QPalette.ColorRole.Text: theme.text,
        QPalette.ColorRole.Button: theme.panel,
        QPalette.ColorRole.ButtonText: theme.text,
        QPalette.ColorRole.BrightText: theme.bad,
        QPalette.ColorRole.Highlight: theme.highlight,
        QPalette.ColorRole.HighlightedText: theme.highlight_text,
        QPalette.ColorRole.ToolTipBase: theme.panel,
        QPalette.ColorRole.ToolTipText: theme.text,
        QPalette.ColorRole.PlaceholderText: theme.dim,
        QPalette.ColorRole.Link: theme.busy,
        QPalette.ColorRole.Light: theme.border,
        QPalette.ColorRole.Midlight: theme.border,
        QPalette.ColorRole.Mid: theme.border,
        # The plain style draws every bevel from these: one colour, flat frames.
        QPalette.ColorRole.Dark: theme.border if theme.flat_controls else theme.base,
        QPalette.ColorRole.Shadow: theme.base,
    }
    for role, colour in roles.items():
        p.setColor(role, QColor(colour))
    for role in (
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
    ):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(theme.dim))
    return p


def style_sheet(theme: Theme) -> str:
    t = theme
    states = "\n".join(f'QLabel[state="{s.value}"] {{ color: {t.colour(s)}; }}' for s in State)
    return f"""
{states}
QLabel[state="bad"] {{ font-weight: bold; }}
QLabel[state="guard"] {{ font-weight: bold; font-style: italic; }}
QLabel#phaseLabel {{ font-size: 24pt; font-weight: bold; }}
QLabel#phd2Label {{ font-size: 16pt; font-weight: bold; }}
QLabel#enabledLabel {{ font-size: 13pt; font-weight: bold; }}
QLabel#bigValue {{ font-size: 15pt; font-weight: bold; }}
QLabel#caption, QLabel#detail {{ color: {t.dim}; }}
QFrame#banner {{ background: {t.panel}; border-bottom: 1px solid {t.border}; }}
QFrame#banner[state="bad"] {{ background: {t.bad_fill}; }}
QFrame#banner[state="guard"] {{ background: {t.guard_fill}; }}
QFrame#problems {{ background: {t.bad_fill}; border: 1px solid {t.bad}; }}
QFrame#problems QLabel {{ color: {t.text}; }}
QPushButton {{
    min-height: 30px; padding: 2px 12px; font-weight: bold;
    border: 1px solid {t.border}; border-radius: 4px; background: {t.panel}; color: {t.text};
}}
QPushButton:hover {{ border-color: {t.dim}; }}
QPushButton:focus {{ border-color: {t.text}; outline: none; }}
QPushButton:pressed {{ background: {t.highlight}; }}
QPushButton:disabled {{ color: {t.dim}; }}
QPushButton#primary {{ border-color: {t.busy}; }}
QGroupBox {{
    border: 1px solid {t.border}; border-radius: 4px; margin-top: 1.3em; padding-top: 4px;
    font-weight: bold;
}}
QGroupBox::title {{ subcontrol-origin: margin; left: 8px; padding: 0 4px; color: {t.dim}; }}
QProgressBar {{
    border: 1px solid {t.border}; border-radius: 3px; background: {t.base}; color: {t.text};
    text-align: center; min-height: 20px; font-weight: bold;
}}
QProgressBar::chunk {{ background: {t.highlight}; }}
QProgressBar[state="ok"]::chunk {{ background: {_mix(t.ok, t.base)}; }}
QProgressBar[state="busy"]::chunk {{ background: {_mix(t.busy, t.base)}; }}
QProgressBar[state="warn"]::chunk {{ background: {_mix(t.warn, t.base)}; }}
QProgressBar[state="bad"]::chunk {{ background: {_mix(t.bad, t.base)}; }}
QTableWidget, QListWidget, QScrollArea, QPlainTextEdit {{
    border: 1px solid {t.border}; background: {t.base};
}}
QHeaderView::section {{
    background: {t.panel}; color: {t.dim}; border: none; border-bottom: 1px solid {t.border};
    padding: 2px 4px;
}}
QSplitter::handle {{ background: {t.border}; }}
QStatusBar {{ border-top: 1px solid {t.border}; }}
QStatusBar QLabel {{ padding: 0 6px; }}
QToolTip {{ color: {t.text}; background: {t.panel}; border: 1px solid {t.border}; }}
"""


def _mix(colour: str, base: str, amount: float = 0.55) -> str:
    """``colour`` toned down towards ``base``, so a progress bar's text stays readable."""
    a, b = QColor(colour), QColor(base)
    r = round(a.red() * amount + b.red() * (1 - amount))
    g = round(a.green() * amount + b.green() * (1 - amount))
    bl = round(a.blue() * amount + b.blue() * (1 - amount))
    return QColor(r, g, bl).name()


def apply_theme(app: QApplication, theme: Theme) -> None:
    # Restyling every widget is slow: only when the theme changes.
    if getattr(app, _THEME_ATTR, None) == theme.name:
        return
    setattr(app, _THEME_ATTR, theme.name)
    app.setStyle("Windows" if theme.flat_controls else "Fusion")
    app.setPalette(palette(theme))
    app.setStyleSheet(style_sheet(theme))


_THEME_ATTR = "_ditherapp_theme"


def set_state(widget: QWidget, state: State | None) -> None:
    """Give ``widget`` a state for the style sheet (None clears it)."""
    value = state.value if state is not None else ""
    # Remembered on the Python side: reading an unset property back through PySide6
    # 6.12 (QObject.property returning None) under-counts None's references.
    if getattr(widget, _STATE_ATTR, "") == value:
        return
    setattr(widget, _STATE_ATTR, value)
    widget.setProperty("state", value)
    style = widget.style()
    style.unpolish(widget)
    style.polish(widget)


_STATE_ATTR = "_ditherapp_state"
