"""The settings file: an unreadable one (empty, garbage, binary, bad UTF-8) is reported
as a bad value is, kept beside the new one as NAME.bad-TIME, and never overwritten."""

from __future__ import annotations

import threading

import pytest

from ditherapp.core.settings import DitherSettings
from ditherapp.ui.settings_store import SettingsStore

UNREADABLE = {
    "empty": (b"", "it is empty"),
    "blank": (b"\n\n  \n", "it is empty"),
    "garbage": (b"ditherevery is twenty\nplease\n", "line 1 is neither a [section]"),
    "binary": (bytes(range(256)) * 8, "it holds binary data"),
    "zeros": (b"\0" * 4096, "it holds binary data"),  # a power loss mid-write
    "bad-utf8": (b"[settings]\nprimarycamera=ASI\xe9\xff\n", "it is not UTF-8 text"),
    "torn-section": (b"[settings\nditherevery=5\n", "line 1 is neither a [section]"),
}


@pytest.mark.parametrize("content", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_an_unreadable_file_is_reported_and_kept_beside_the_new_one(tmp_path, content):
    data, why = content
    path = tmp_path / "ditherapp.ini"
    path.write_bytes(data)
    store = SettingsStore(path)
    settings, problems = store.load()
    assert settings == DitherSettings()
    assert len(problems) == 1
    assert why in problems[0]
    assert "using the defaults" in problems[0]
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("ditherapp.ini.bad-")]
    assert len(kept) == 1
    assert kept[0].read_bytes() == data, "the bad file is kept as it was"
    assert kept[0].name in problems[0]

    store.save_changes(settings.with_value("ditherevery", 7))  # the next change
    assert kept[0].read_bytes() == data, "and not overwritten"
    again, problems = SettingsStore(path).load()
    assert again.ditherevery == 7
    assert problems == []


def test_a_second_bad_file_does_not_replace_the_first_kept_one(tmp_path):
    path = tmp_path / "s.ini"
    for data in (b"", b"\0\0"):
        path.write_bytes(data)
        SettingsStore(path).load()
    kept = sorted(p.read_bytes() for p in tmp_path.iterdir() if ".bad-" in p.name)
    assert kept == [b"", b"\0\0"]


def test_a_good_file_with_the_window_state_is_readable(tmp_path):
    from PySide6.QtCore import QByteArray

    path = tmp_path / "s.ini"
    store = SettingsStore(path)
    store.save(DitherSettings(primarycamera="Caméra 1"))
    store.save_bytes("geometry", QByteArray(bytes(range(256))))
    store.save_text("theme", "red")
    settings, problems = SettingsStore(path).load()
    assert (settings.primarycamera, problems) == ("Caméra 1", [])
    assert not [p for p in tmp_path.iterdir() if ".bad-" in p.name]


def test_saves_from_a_worker_thread_and_the_window_do_not_trample_each_other(tmp_path):
    path = tmp_path / "s.ini"
    store = SettingsStore(path)
    store.load()

    def runtime_saves() -> None:
        for n in range(1, 201):
            store.save_changes(DitherSettings(ditherevery=n))

    worker = threading.Thread(target=runtime_saves)
    worker.start()
    for n in range(200):
        store.save_text("theme", f"theme {n}")
    worker.join()
    settings, problems = SettingsStore(path).load()
    assert (settings.ditherevery, problems) == (200, [])
    assert SettingsStore(path).load_text("theme") == "theme 199"
