"""Help > SharpCap hook: where the hook script is, its path on the clipboard, and a copy
of it in a folder the user picks (the file SharpCap's startup script then loads).

After ``pip install`` the script sits deep inside site-packages; this dialog (and
``ditherapp --hook-path``) is how a user finds it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QStandardPaths, Qt
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ditherapp.hook_script import HOOK_FILE, copy_target, differs_from_hook, save_hook_copy
from ditherapp.hook_script import hook_script_path as installed_hook_path
from ditherapp.ui.theme import State, apply_theme, set_state, theme_named

STEPS = (
    "SharpCap (Pro) runs this script to tell ditherapp about every frame and to pause "
    "saving while PHD2 dithers and settles. To load it every time SharpCap starts: "
    "<b>File &gt; SharpCap Settings</b> (F10), tab <b>Scripting</b> (older versions: "
    "<b>Startup Scripts</b>), set the startup script to this file, and restart SharpCap. "
    "A <b>ditherapp</b> button appears on SharpCap's toolbar."
)

FolderChooser = Callable[[QWidget, str], str]
"""(parent, starting folder) -> the folder picked, or "" when the user cancelled."""
ReplaceQuestion = Callable[[QWidget, Path], bool]
"""(parent, the file that would be replaced) -> whether to replace it."""


def _pick_folder(parent: QWidget, start: str) -> str:
    return QFileDialog.getExistingDirectory(parent, "Save a copy of the hook in", start)


def _may_replace(parent: QWidget, target: Path) -> bool:
    answer = QMessageBox.question(
        parent,
        "Replace the hook?",
        f"{target} is already there and is not this version of the hook (it may hold "
        "your own settings at its top). Replace it?",
    )
    return answer == QMessageBox.StandardButton.Yes


def _start_folder() -> str:
    documents = Path(
        QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    )
    sharpcap = documents / "SharpCap"
    return str(sharpcap if sharpcap.is_dir() else documents)


class HookDialog(QDialog):
    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        hook_path: Callable[[], Path] = installed_hook_path,
        choose_folder: FolderChooser = _pick_folder,
        may_replace: ReplaceQuestion = _may_replace,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("ditherapp: SharpCap hook")
        self._choose_folder = choose_folder
        self._may_replace = may_replace
        self.caption = QLabel("The hook script installed with ditherapp:")
        self.path = QLineEdit()
        self.path.setObjectName("hookPath")
        self.path.setReadOnly(True)
        steps = QLabel(STEPS)
        steps.setWordWrap(True)
        steps.setTextFormat(Qt.TextFormat.RichText)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.copy_button = QPushButton("&Copy path")
        self.copy_button.clicked.connect(self.copy_path)
        self.save_button = QPushButton("&Save a copy to a folder...")
        self.save_button.setToolTip(
            f"Copy {HOOK_FILE} somewhere permanent (Documents\\SharpCap, say): a copy "
            "outside the Python installation stays when ditherapp is reinstalled"
        )
        self.save_button.clicked.connect(self.save_copy)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)

        buttons = QHBoxLayout()
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.save_button)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.caption)
        layout.addWidget(self.path)
        layout.addWidget(steps)
        layout.addWidget(self.message)
        layout.addStretch(1)
        layout.addLayout(buttons)

        try:
            self.installed: Path | None = hook_path()
        except FileNotFoundError as exc:
            self.installed = None
            self._tell(str(exc), State.BAD)
            self.copy_button.setEnabled(False)
            self.save_button.setEnabled(False)
        else:
            self.path.setText(str(self.installed))
        self.resize(640, self.sizeHint().height())

    def copy_path(self) -> None:
        QApplication.clipboard().setText(self.path.text())
        self._tell(f"Copied {self.path.text()}", State.OK)

    def save_copy(self) -> None:
        folder = self._choose_folder(self, _start_folder())
        if not folder:
            return
        target = copy_target(Path(folder))
        if differs_from_hook(target) and not self._may_replace(self, target):
            self._tell(f"{target} was left as it was.", None)
            return
        try:
            saved = save_hook_copy(Path(folder))
        except OSError as exc:
            self._tell(f"Could not save a copy in {folder}: {exc.strerror or exc}", State.BAD)
            return
        self.caption.setText("Your copy (set this one as SharpCap's startup script):")
        self.path.setText(str(saved))
        self._tell(f"Saved {saved}", State.OK)

    def _tell(self, text: str, state: State | None) -> None:
        self.message.setText(text)
        set_state(self.message, state)


def show_alone() -> int:
    """The dialog without the main window: ``ditherapp --hook-path`` started by the
    Windows launcher, which has no console to print the path to."""
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication(sys.argv[:1])
    apply_theme(app, theme_named(None))
    HookDialog().exec()
    return 0
