"""Before the window: can Qt's platform plugin load at all?

On Linux a missing system library makes Qt abort the process while it creates the
application, after a message that names the wrong library ("xcb-cursor0 is needed"
when libxcb-icccm4 and libxcb-keysyms1 were missing). This asks ``ldd`` which libraries
each plugin Qt may pick cannot find, and says so in one line, with the Debian/Ubuntu
packages to install and ``--headless`` as the way to run without a window. It never
refuses to start on a guess: only when every plugin Qt could use is sure to fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# The Debian/Ubuntu package of each library Qt's xcb and wayland plugins link against
# (from ``dpkg -S`` on Debian 12 for the plugins PySide6 ships, and ``apt-cache show``
# for the two a fresh desktop lacked). A library not named here is reported by its file
# name only.
APT_PACKAGES: Mapping[str, str] = {
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libwayland-cursor.so.0": "libwayland-cursor0",
    "libwayland-client.so.0": "libwayland-client0",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
}

DISPLAY_VARIABLE = {"xcb": "DISPLAY", "wayland": "WAYLAND_DISPLAY"}
"""A plugin that talks to a display server fails at once when its address is unset."""

Ldd = Callable[[Path], str | None]
"""ldd's output for a library, or None when ldd could not tell."""


def run_ldd(library: Path) -> str | None:
    ldd = shutil.which("ldd")
    if ldd is None:
        return None
    try:
        done = subprocess.run(  # noqa: S603 - a fixed program on a path Qt gave us
            [ldd, str(library)], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def missing_libraries(ldd_output: str) -> list[str]:
    """The libraries ldd reports as ``not found``, each once, in its order."""
    missing: list[str] = []
    for line in ldd_output.splitlines():
        name, arrow, where = line.strip().partition("=>")
        if arrow and where.strip() == "not found" and name.strip() not in missing:
            missing.append(name.strip())
    return missing


def candidate_plugins(env: Mapping[str, str]) -> list[str]:
    """The platform plugins Qt may try here, in order."""
    chosen = env.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        return [part.split(":", 1)[0].strip() for part in chosen.split(";") if part.strip()]
    # Qt picks wayland in a Wayland session and xcb otherwise; either may end up used.
    return ["wayland", "xcb"] if env.get("WAYLAND_DISPLAY") else ["xcb"]


def plugin_problem(
    name: str, plugins: Path, env: Mapping[str, str], ldd: Ldd
) -> tuple[str, list[str]] | None:
    """(what is wrong, the missing libraries) for one plugin, or None when it may work
    (including every case this cannot judge)."""
    library = plugins / f"libq{name}.so"
    if not library.is_file():
        return None  # another build of Qt: let Qt judge
    output = ldd(library)
    missing = missing_libraries(output) if output is not None else []
    if missing:
        return f"Qt's {name} platform plugin needs {_listed(missing)}, not installed", missing
    variable = DISPLAY_VARIABLE.get(name)
    if variable is not None and not env.get(variable):
        return f"there is no display to open it on ({variable} is not set)", []
    return None


def platform_problem(
    *,
    env: Mapping[str, str] | None = None,
    plugins: Path | None = None,
    ldd: Ldd | None = None,
    platform: str = sys.platform,
    has_apt: bool | None = None,
) -> str | None:
    """One line saying why the window cannot open and what to do, or None when it may."""
    env = os.environ if env is None else env
    if not platform.startswith("linux") or env.get("QT_QPA_PLATFORM_PLUGIN_PATH"):
        return None
    plugins = plugins if plugins is not None else _qt_platform_plugins()
    if plugins is None:
        return None
    problems = []
    for name in candidate_plugins(env):
        problem = plugin_problem(name, plugins, env, ldd or run_ldd)
        if problem is None:
            return None
        problems.append(problem)
    if not problems:
        return None
    reasons = "; ".join(reason for reason, _ in problems)
    missing = [lib for _, libs in problems for lib in libs]
    return f"ditherapp: the window cannot open: {reasons}. {_remedy(missing, has_apt)}"


def _remedy(missing: Sequence[str], has_apt: bool | None) -> str:
    headless = "or run `ditherapp --headless` (no window; ditherctl shows the state)"
    if not missing:
        return f"Start it from a desktop session, {headless}."
    if has_apt is None:
        has_apt = shutil.which("apt-get") is not None
    packages = [APT_PACKAGES[lib] for lib in missing if lib in APT_PACKAGES]
    if has_apt and len(packages) == len(missing):
        return f"Install them with `sudo apt install {' '.join(packages)}`, {headless}."
    return f"Install the packages that provide them, {headless}."


def _listed(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _qt_platform_plugins() -> Path | None:
    from PySide6.QtCore import QLibraryInfo  # noqa: PLC0415 - only on Linux, only here

    folder = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms"
    return folder if folder.is_dir() else None
