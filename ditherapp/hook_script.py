"""Where the SharpCap hook script is, and a copy of it where the user wants one.

``pip install`` puts the script inside the package (``ditherapp/_sharpcap_hook``), a
folder nobody looks in; ``ditherapp --hook-path`` and the window's *Help > SharpCap
hook* tell where it is, and save a copy beside the user's other SharpCap scripts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

HOOK_FILE = "ditherapp_hook.py"


def hook_script_path() -> Path:
    """The hook script: in the source tree (a checkout or an editable install), or
    where the wheel puts it. FileNotFoundError when neither holds it (a broken install)."""
    package = Path(__file__).resolve().parent
    for candidate in (
        package.parent / "sharpcap_hook" / HOOK_FILE,
        package / "_sharpcap_hook" / HOOK_FILE,
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{HOOK_FILE} is neither in the source tree nor in the installed package "
        f"({package}); reinstall ditherapp"
    )


def copy_target(folder: Path) -> Path:
    """Where ``save_hook_copy`` writes in ``folder``."""
    return folder / HOOK_FILE


def differs_from_hook(target: Path) -> bool:
    """``target`` exists and is not this version's hook (perhaps with the user's own
    settings at its top): replacing it would lose something."""
    if not target.exists():
        return False
    try:
        return target.read_bytes() != hook_script_path().read_bytes()
    except OSError:
        return True


def save_hook_copy(folder: Path) -> Path:
    """Copy the hook script into ``folder`` (replacing a copy already there) and return
    the copy's path. OSError, with the reason, when the folder cannot take it."""
    source = hook_script_path()
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder")
    target = copy_target(folder)
    if target.resolve() == source:
        return target
    partial = target.with_name(target.name + ".part")
    try:
        shutil.copyfile(source, partial)
        partial.replace(target)  # never half a script where SharpCap loads it
    finally:
        partial.unlink(missing_ok=True)
    return target
