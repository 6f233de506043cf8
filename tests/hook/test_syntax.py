"""The hook must parse and run on IronPython 2.7 and 3.4: syntax gates on the real file."""

from __future__ import annotations

import ast
import io
import shutil
import subprocess
import sys
import threading
import tokenize
from pathlib import Path

import pytest

from ditherapp.hook_script import hook_script_path
from ditherapp.sim.fake_sharpcap import run_hook_script

SCRIPT = hook_script_path()


def vermin(path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("vermin", path=str(Path(sys.executable).parent))
    assert exe is not None, "vermin is not installed in this environment"
    # "-t=2.7-" means "2.7 or older suffices"; a bare "-t=2.7" demands exactly 2.7.
    return subprocess.run(
        [exe, "-q", "-t=2.7-", "-t=3.4-", "--no-tips", "--violations", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_vermin_finds_nothing_newer_than_python_2_7_and_3_4():
    result = vermin(SCRIPT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_vermin_gate_catches_newer_syntax(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('x = 1\nprint(f"{x}")\n\ndef f(*, key):\n    return key\n')
    result = vermin(bad)
    assert result.returncode != 0
    assert "f-strings" in result.stdout


def test_parses_with_python_3_4_grammar():
    ast.parse(SCRIPT.read_text(encoding="utf-8"), filename=str(SCRIPT), feature_version=(3, 4))


def test_python_3_4_grammar_gate_catches_newer_syntax():
    with pytest.raises(SyntaxError):
        ast.parse('x = f"{1}"\n', feature_version=(3, 4))


def test_uses_no_bytes_literals_and_no_ditherapp_imports():
    source = SCRIPT.read_text(encoding="utf-8")
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    bytes_literals = [
        tok.string
        for tok in tokens
        if tok.type == tokenize.STRING and tok.string.lstrip("rR")[:1] in {"b", "B"}
    ]
    assert bytes_literals == []
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom)
    }
    allowed = {
        "__future__",
        "collections",
        "json",
        "os",  # the newest file in SharpCap's capture folder (IronPython has os)
        "platform",
        "socket",
        "sys",
        "threading",
        "time",
    }
    assert imported <= allowed


def test_outside_sharpcap_the_script_only_defines_things():
    before = set(threading.enumerate())
    scope = run_hook_script(None, scope={"__name__": "__main__"})
    assert "DITHERAPP_HOOK" not in scope
    assert callable(scope["install"])
    assert set(threading.enumerate()) == before
