"""The dither ledger survives a line torn by a power loss: the next record starts on a
line of its own, and readers skip and count what is not a record."""

from __future__ import annotations

import json

from ditherapp.net.ledger import JsonlLedger, read_ledger


def test_a_record_after_a_torn_last_line_starts_a_line_of_its_own(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(b'{"cycle":1,"outcome":"settled"}\n{"cycle":2,"outc')  # power cut
    ledger = JsonlLedger(path)
    ledger.write({"cycle": 3, "outcome": "settled"})
    ledger.write({"cycle": 4, "outcome": "timed_out"})
    contents = ledger.contents()
    assert [r["cycle"] for r in contents.records] == [1, 3, 4]
    assert contents.bad_lines == 1
    assert path.read_bytes().endswith(b'{"cycle":4,"outcome":"timed_out"}\n')


def test_a_whole_file_gets_no_blank_lines(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger = JsonlLedger(path)
    for cycle in range(3):
        ledger.write({"cycle": cycle})
    JsonlLedger(path).write({"cycle": 3})  # the next start
    lines = path.read_text().splitlines()
    assert [json.loads(x)["cycle"] for x in lines] == [0, 1, 2, 3]


def test_readers_skip_and_count_every_kind_of_bad_line(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(
        b'{"cycle":1}\n'
        b"not json\n"
        b"[1,2]\n"
        b"\xff\xfe\n"
        b"\n"
        b'{"cycle":2}\n' + b"[" * 100_000 + b"\n"
        b'{"cycle":3}'  # a last line without its end is still a whole record
    )
    contents = read_ledger(path)
    assert [r["cycle"] for r in contents.records] == [1, 2, 3]
    assert contents.bad_lines == 4
    assert JsonlLedger(path).read() == contents.records


def test_a_missing_ledger_is_empty(tmp_path):
    contents = read_ledger(tmp_path / "none.jsonl")
    assert (contents.records, contents.bad_lines) == ([], 0)
