"""Help > SharpCap hook script: the user finds the hook, copies its path, and saves a copy
where SharpCap's startup script can load it; nothing they have is lost on the way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QApplication

from ditherapp.hook_script import hook_script_path
from ditherapp.ui.hook_dialog import HookDialog
from ditherapp.ui.main_window import MainWindow


def _dialog(qtbot: Any, **kwargs: Any) -> HookDialog:
    dialog = HookDialog(**kwargs)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def test_the_help_menu_shows_where_the_hook_is(window: MainWindow) -> None:
    (help_menu,) = [a.menu() for a in window.menuBar().actions() if a.text() == "&Help"]
    (item,) = [a for a in help_menu.actions() if "SharpCap hook" in a.text()]
    item.trigger()
    dialogs = window.findChildren(HookDialog)
    assert len(dialogs) == 1
    dialog = dialogs[0]
    assert dialog.isVisible()
    assert Path(dialog.path.text()) == hook_script_path()
    assert "Startup Script" in " ".join(
        label.text() for label in dialog.findChildren(type(dialog.message))
    )
    dialog.close()


def test_copy_puts_the_path_on_the_clipboard(qtbot: Any, qapp: QApplication) -> None:
    dialog = _dialog(qtbot)
    QApplication.clipboard().setText("something else")
    dialog.copy_button.click()
    assert QApplication.clipboard().text() == str(hook_script_path())
    assert dialog.message.text().startswith("Copied ")


def test_a_copy_is_saved_in_the_folder_the_user_picks(qtbot: Any, tmp_path: Path) -> None:
    asked: list[str] = []

    def pick(_parent: Any, start: str) -> str:
        asked.append(start)
        return str(tmp_path)

    dialog = _dialog(qtbot, choose_folder=pick)
    dialog.save_button.click()
    copy = tmp_path / "ditherapp_hook.py"
    assert asked, "the user was asked for a folder"
    assert copy.read_bytes() == hook_script_path().read_bytes()
    assert dialog.path.text() == str(copy), "the path shown is now the one SharpCap loads"
    assert "startup script" in dialog.caption.text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ditherapp_hook.py"]
    dialog.copy_button.click()
    assert QApplication.clipboard().text() == str(copy)


def test_cancelling_the_folder_choice_changes_nothing(qtbot: Any, tmp_path: Path) -> None:
    dialog = _dialog(qtbot, choose_folder=lambda *_: "")
    dialog.save_button.click()
    assert list(tmp_path.iterdir()) == []
    assert Path(dialog.path.text()) == hook_script_path()
    assert dialog.message.text() == ""


@pytest.mark.parametrize("replace", [False, True])
def test_a_users_own_copy_is_replaced_only_when_they_say_so(
    qtbot: Any, tmp_path: Path, replace: bool
) -> None:
    mine = tmp_path / "ditherapp_hook.py"
    mine.write_text("APP_PORT = 5400  # my own setting\n", encoding="utf-8")
    questions: list[Path] = []

    def may_replace(_parent: Any, target: Path) -> bool:
        questions.append(target)
        return replace

    dialog = _dialog(qtbot, choose_folder=lambda *_: str(tmp_path), may_replace=may_replace)
    dialog.save_button.click()
    assert questions == [mine]
    if replace:
        assert mine.read_bytes() == hook_script_path().read_bytes()
    else:
        assert mine.read_text(encoding="utf-8") == "APP_PORT = 5400  # my own setting\n"
        assert "left as it was" in dialog.message.text()


def test_the_same_version_is_replaced_without_asking(qtbot: Any, tmp_path: Path) -> None:
    (tmp_path / "ditherapp_hook.py").write_bytes(hook_script_path().read_bytes())

    def never(*_: Any) -> bool:
        raise AssertionError("asked about a file that is already this hook")

    dialog = _dialog(qtbot, choose_folder=lambda *_: str(tmp_path), may_replace=never)
    dialog.save_button.click()
    assert dialog.message.text().startswith("Saved ")


def test_a_folder_that_cannot_take_it_is_a_clear_error(qtbot: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "ditherapp_hook.py"
    blocker.mkdir()  # a folder where the file would go: no system lets that be replaced
    (blocker / "keep.txt").write_text("mine", encoding="utf-8")
    dialog = _dialog(qtbot, choose_folder=lambda *_: str(tmp_path), may_replace=lambda *_: True)
    dialog.save_button.click()
    assert dialog.message.text().startswith(f"Could not save a copy in {tmp_path}")
    assert (blocker / "keep.txt").read_text(encoding="utf-8") == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ditherapp_hook.py"]
    assert Path(dialog.path.text()) == hook_script_path()


def test_a_missing_hook_is_said_and_nothing_can_be_pressed(qtbot: Any) -> None:
    def missing() -> Path:
        raise FileNotFoundError("ditherapp_hook.py is neither here nor there; reinstall")

    dialog = _dialog(qtbot, hook_path=missing)
    assert "reinstall" in dialog.message.text()
    assert not dialog.copy_button.isEnabled()
    assert not dialog.save_button.isEnabled()


def test_the_command_line_prints_the_path(capsys: Any) -> None:
    from ditherapp.app import main

    assert main(["--hook-path"]) == 0
    out = capsys.readouterr().out
    assert out == f"{hook_script_path()}\n"
    assert Path(out.strip()).is_file()


def test_without_a_console_the_command_line_shows_the_dialog(
    qapp: QApplication, monkeypatch: Any
) -> None:
    """On Windows ``ditherapp`` is a GUI program: a print would go nowhere."""
    from ditherapp.app import main

    shown: list[str] = []

    def exec_(dialog: HookDialog) -> int:
        shown.append(dialog.path.text())
        return 0

    monkeypatch.setattr(HookDialog, "exec", exec_)
    monkeypatch.setattr("sys.stdout", None)
    assert main(["--hook-path"]) == 0
    assert shown == [str(hook_script_path())]
