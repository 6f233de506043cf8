"""Run the hook under the oldest real Pythons on this machine (2.7, 3.6), when there are any.

IronPython is not available off Windows; CPython 2.7 is the nearest real interpreter for
SharpCap 3.x/4.0, and 3.6 the nearest to IronPython 3.4 that we can get. A small driver,
written in the same syntax subset as the hook, plays SharpCap in that interpreter; the
test plays the app. Skipped where no such interpreter is installed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ditherapp.hook_script import hook_script_path

OLD_VERSIONS = ("2.7", "3.6")

DRIVER = r"""# -*- coding: utf-8 -*-
from __future__ import print_function
import json, sys, threading, time

hook_path, port = sys.argv[1], int(sys.argv[2])


class Event(object):
    def __init__(self):
        self.handlers = []

    def __iadd__(self, handler):
        self.handlers.append(handler)
        return self

    def __isub__(self, handler):
        if handler in self.handlers:
            self.handlers.remove(handler)
        return self

    def fire(self, sender, args):
        for handler in list(self.handlers):
            handler(sender, args)


class Control(object):
    Value = 2.5


class Controls(object):
    Exposure = Control()


class Camera(object):
    def __init__(self):
        self.DeviceName = u"Old Cam\u00e9ra"
        self.FrameCaptured = Event()
        self.Paused = False
        self.Capturing = True
        self.Controls = Controls()


class Buttons(list):
    def Find(self, predicate):
        for button in self:
            if predicate(button):
                return button
        return None


class Button(object):
    def __init__(self, name, callback):
        self.Name = name
        self.callback = callback


class SharpCap(object):
    def __init__(self, camera):
        self.SelectedCamera = camera
        self.CustomButtons = Buttons()
        self.notes = []

    def AddCustomButton(self, name, image, tooltip, callback):
        button = Button(name, callback)
        self.CustomButtons.append(button)
        return button

    def ShowNotification(self, text, status=None):
        self.notes.append(text)


def wait(what, condition):
    deadline = time.time() + 20
    while not condition():
        if time.time() > deadline:
            raise SystemExit("timed out waiting for " + what)
        time.sleep(0.01)


camera = Camera()
sharpcap = SharpCap(camera)
scope = {"SharpCap": sharpcap, "__name__": "__main__",
         "DITHERAPP_SETTINGS": {"APP_PORT": port, "TICK_S": 0.05, "RECONNECT_MIN_S": 0.05}}
source = open(hook_path).read()
exec(compile(source, hook_path, "exec"), scope)
hook = scope["DITHERAPP_HOOK"]
wait("the connection", lambda: "connected as" in hook.status())
for _ in range(3):
    camera.FrameCaptured.fire(camera, None)
wait("the pause", lambda: camera.Paused)
camera.FrameCaptured.fire(camera, None)
wait("the resume", lambda: not camera.Paused)
camera.FrameCaptured.fire(camera, None)
hook.shutdown()
threads = [t.name for t in threading.enumerate() if t.name.startswith("ditherapp-")]
print("RESULT " + json.dumps({"threads": threads, "handlers": len(camera.FrameCaptured.handlers),
                              "buttons": len(sharpcap.CustomButtons)}))
"""


def old_pythons() -> list[Path]:
    found = []
    for version in OLD_VERSIONS:
        found += sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python"))
    return found


@pytest.mark.parametrize(
    "python",
    old_pythons() or [pytest.param(None, marks=pytest.mark.skip("no Python 2.7/3.6 here"))],
)
def test_the_hook_runs_on_an_old_python(world, tmp_path, python):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    process = subprocess.Popen(
        [str(python), str(driver), str(hook_script_path()), str(world.app.port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    try:
        connection = world.app.connection(timeout=20)
        hello = connection.wait_type("hello", timeout=20)
        assert hello["name"] == "Old Caméra"
        version = "2.7" if "2.7" in str(python) else "3.6"
        assert hello["runtime"].startswith(f"CPython {version}.")
        connection.wait_for(lambda m: m["type"] == "frame" and m["seq"] == 3)
        connection.send({"type": "pause", "id": 1, "max_s": 30.0})
        connection.wait_type("ack", id=1)
        frame = connection.wait_for(lambda m: m["type"] == "frame" and m["seq"] == 4)
        assert frame["saved"] is False
        assert frame["exposure_s"] == 2.5
        connection.send({"type": "resume", "id": 2})
        connection.wait_type("ack", id=2)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    assert process.returncode == 0, err
    [result] = [line[len("RESULT ") :] for line in out.splitlines() if line.startswith("RESULT ")]
    assert json.loads(result) == {"threads": [], "handlers": 0, "buttons": 1}
    assert connection.eof.wait(5)
