"""When Qt's platform plugin cannot load, ditherapp says in one line which libraries are
missing and how to install them, and suggests --headless, instead of Qt's abort with a
message naming the wrong library. It never refuses a window that could open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ditherapp.ui import platform_check
from ditherapp.ui.platform_check import missing_libraries, platform_problem

# ldd on PySide6 6.11's libqxcb.so on a Debian 12 desktop that had libxcb-cursor0 but
# not libxcb-icccm4 or libxcb-keysyms1 (Qt itself said "xcb-cursor0 is needed").
XCB_LDD = """\
\tlinux-vdso.so.1 (0x00007f9851d90000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x1)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f9851bd8000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007f9851bd0000)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-randr.so.0 => /lib/x86_64-linux-gnu/libxcb-randr.so.0 (0x00007f9851bb7000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\t/lib64/ld-linux-x86-64.so.2 (0x00007f9851d92000)
"""
HEALTHY_LDD = "\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x1)\n"
WAYLAND_LDD = "\tlibwayland-cursor.so.0 => not found\n\tlibwayland-client.so.0 => /lib/x (0x1)\n"


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    for name in ("xcb", "wayland", "offscreen"):
        (tmp_path / f"libq{name}.so").write_bytes(b"\x7fELF")
    return tmp_path


def fake_ldd(outputs: dict[str, str | None]) -> Any:
    def ldd(library: Path) -> str | None:
        return outputs[library.name]

    return ldd


def check(plugins: Path, env: dict[str, str], outputs: dict[str, str | None], **kw: Any) -> Any:
    return platform_problem(env=env, plugins=plugins, ldd=fake_ldd(outputs), platform="linux", **kw)


def test_ldd_output_gives_each_missing_library_once() -> None:
    assert missing_libraries(XCB_LDD) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert missing_libraries(HEALTHY_LDD) == []


def test_the_missing_libraries_are_named_with_their_packages(plugins: Path) -> None:
    line = check(plugins, {"DISPLAY": ":0"}, {"libqxcb.so": XCB_LDD}, has_apt=True)
    assert line is not None
    assert "\n" not in line
    assert "libxcb-icccm.so.4 and libxcb-keysyms.so.1" in line
    assert "`sudo apt install libxcb-icccm4 libxcb-keysyms1`" in line
    assert "xcb-cursor" not in line, "what is installed is not blamed"
    assert "--headless" in line


def test_without_apt_no_package_names_are_invented(plugins: Path) -> None:
    line = check(plugins, {"DISPLAY": ":0"}, {"libqxcb.so": XCB_LDD}, has_apt=False)
    assert line is not None
    assert "apt" not in line
    assert "libxcb-keysyms.so.1" in line
    assert "--headless" in line


def test_a_library_of_unknown_package_is_named_without_a_guess(plugins: Path) -> None:
    ldd = "\tlibfancy-gpu.so.3 => not found\n"
    line = check(plugins, {"DISPLAY": ":0"}, {"libqxcb.so": ldd}, has_apt=True)
    assert line is not None
    assert "libfancy-gpu.so.3" in line
    assert "sudo apt install" not in line


def test_a_healthy_plugin_starts_the_window(plugins: Path) -> None:
    assert check(plugins, {"DISPLAY": ":0"}, {"libqxcb.so": HEALTHY_LDD}) is None


def test_no_display_is_said_as_such(plugins: Path) -> None:
    line = check(plugins, {}, {"libqxcb.so": HEALTHY_LDD})
    assert line is not None
    assert "no display" in line
    assert "DISPLAY is not set" in line
    assert "--headless" in line


def test_a_wayland_session_is_not_refused_for_xcb_alone(plugins: Path) -> None:
    env = {"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}
    outputs = {"libqwayland.so": HEALTHY_LDD, "libqxcb.so": XCB_LDD}
    assert check(plugins, env, outputs) is None


def test_when_every_plugin_qt_may_try_fails_all_are_told(plugins: Path) -> None:
    env = {"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}
    outputs = {"libqwayland.so": WAYLAND_LDD, "libqxcb.so": XCB_LDD}
    line = check(plugins, env, outputs, has_apt=True)
    assert line is not None
    assert "sudo apt install libwayland-cursor0 libxcb-icccm4 libxcb-keysyms1" in line


def test_the_plugin_the_user_chose_is_the_one_checked(plugins: Path) -> None:
    outputs = {"libqoffscreen.so": HEALTHY_LDD, "libqxcb.so": XCB_LDD}
    assert check(plugins, {"QT_QPA_PLATFORM": "offscreen"}, outputs) is None
    line = check(plugins, {"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"}, outputs)
    assert line is not None


@pytest.mark.parametrize("case", ["no ldd", "unknown plugin", "windows", "own plugin path"])
def test_what_cannot_be_judged_is_left_to_qt(plugins: Path, case: str) -> None:
    env = {"DISPLAY": ":0"}
    outputs: dict[str, str | None] = {"libqxcb.so": XCB_LDD}
    platform = "linux"
    if case == "no ldd":
        outputs = {"libqxcb.so": None}
    elif case == "unknown plugin":
        env["QT_QPA_PLATFORM"] = "eglfs"
    elif case == "windows":
        platform = "win32"
    else:
        env["QT_QPA_PLATFORM_PLUGIN_PATH"] = "/opt/qt/plugins"
    line = platform_problem(env=env, plugins=plugins, ldd=fake_ldd(outputs), platform=platform)
    assert line is None


def test_the_real_ldd_is_read_as_this_machine_has_it() -> None:
    """ldd on the real plugin: whatever it finds missing is what the line names."""
    plugins = platform_check._qt_platform_plugins()
    if plugins is None or not (plugins / "libqxcb.so").is_file():
        pytest.skip("this Qt has no xcb plugin")
    output = platform_check.run_ldd(plugins / "libqxcb.so")
    if output is None:
        pytest.skip("no ldd here")
    missing = missing_libraries(output)
    line = platform_problem(env={"DISPLAY": ":0"}, plugins=plugins, has_apt=True)
    if missing:
        assert line is not None
        for library in missing:
            assert library in line
    else:
        assert line is None


def test_the_window_refuses_in_one_line_instead_of_aborting(tmp_path: Path) -> None:
    """``ditherapp`` on that Debian desktop: one line and exit 2, not Qt's abort."""
    import os
    import subprocess
    import sys

    if not sys.platform.startswith("linux") or platform_check._qt_platform_plugins() is None:
        pytest.skip("Qt's platform plugins are checked on Linux")
    script = (
        "import sys\n"
        "from ditherapp.ui import platform_check\n"
        f"platform_check.run_ldd = lambda library: {XCB_LDD!r}\n"
        "from ditherapp.app import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QT_", "WAYLAND"))}
    env["DISPLAY"] = ":0"
    done = subprocess.run(
        [sys.executable, "-c", script, "--simulate", "--settings", str(tmp_path / "s.ini"),
         "--ledger", str(tmp_path / "l.jsonl")],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("ditherapp: the window cannot open: Qt's xcb platform plugin needs ")
    assert "libxcb-icccm.so.4 and libxcb-keysyms.so.1" in line
    assert "--headless" in line
