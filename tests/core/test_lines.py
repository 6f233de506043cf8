"""LineBuffer: what a peer sends comes out as the same lines however TCP splits it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ditherapp.core.lines import LineBuffer


def _result(buf: LineBuffer, lines: list[bytes]) -> tuple[list[bytes], int, bytes | None]:
    # While the rest of an overlong line is dropped, the partial bytes mean nothing.
    return lines, buf.overlong, None if buf.discarding else buf.pending


def whole(data: bytes, max_line: int = 1 << 20) -> tuple[list[bytes], int, bytes | None]:
    buf = LineBuffer(max_line=max_line)
    return _result(buf, buf.feed(data))


def byte_by_byte(data: bytes, max_line: int = 1 << 20) -> tuple[list[bytes], int, bytes | None]:
    buf = LineBuffer(max_line=max_line)
    lines: list[bytes] = []
    for i in range(len(data)):
        lines += buf.feed(data[i : i + 1])
    return _result(buf, lines)


def in_chunks(data: bytes, cuts: list[int], max_line: int) -> tuple[list[bytes], int, bytes | None]:
    buf = LineBuffer(max_line=max_line)
    lines: list[bytes] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        lines += buf.feed(data[start:cut])
        start = max(start, cut)
    return _result(buf, lines)


@pytest.mark.parametrize(
    ("data", "lines", "pending"),
    [
        (b"one\ntwo\n", [b"one", b"two"], b""),
        (b"one\r\ntwo\r\n", [b"one", b"two"], b""),
        (b"one\r\ntwo\nthree\r\n", [b"one", b"two", b"three"], b""),
        (b"one\ntw", [b"one"], b"tw"),
        (b"no newline yet", [], b"no newline yet"),
        (b"\n\r\n", [b"", b""], b""),
        (b"cr\rinside\n", [b"cr\rinside"], b""),
        (b"two crs\r\r\n", [b"two crs\r"], b""),
    ],
    ids=["lf", "crlf", "mixed", "partial", "none", "blank", "inner-cr", "double-cr"],
)
def test_lines_are_the_same_fed_whole_or_byte_by_byte(data, lines, pending):
    assert whole(data) == (lines, 0, pending)
    assert byte_by_byte(data) == (lines, 0, pending)


def test_a_partial_line_is_completed_by_the_next_feed():
    buf = LineBuffer()
    assert buf.feed(b'{"Event":"Sett') == []
    assert buf.pending == b'{"Event":"Sett'
    assert buf.feed(b'leDone"}\r\n{"Ev') == [b'{"Event":"SettleDone"}']
    assert buf.pending == b'{"Ev'


def test_a_crlf_split_between_feeds_ends_the_line_once():
    buf = LineBuffer()
    assert buf.feed(b"abc\r") == []
    assert buf.feed(b"\ndef\n") == [b"abc", b"def"]


@pytest.mark.parametrize("feed", [whole, byte_by_byte], ids=["whole", "byte-by-byte"])
def test_an_overlong_line_is_dropped_counted_and_the_next_line_recovers(feed):
    data = b"ok\n" + b"x" * 20 + b"\nafter\n"
    assert feed(data, 8) == ([b"ok", b"after"], 1, b"")


@pytest.mark.parametrize("feed", [whole, byte_by_byte], ids=["whole", "byte-by-byte"])
def test_a_line_of_exactly_the_limit_is_kept_with_crlf_or_lf(feed):
    assert feed(b"12345678\r\n1234567\n", 8) == ([b"12345678", b"1234567"], 0, b"")
    assert feed(b"123456789\r\nok\n", 8) == ([b"ok"], 1, b"")


def test_a_peer_that_never_sends_a_newline_cannot_grow_the_buffer():
    buf = LineBuffer(max_line=16)
    for _ in range(1000):
        buf.feed(b"y" * 7)
        assert len(buf.pending) <= 17
    assert buf.discarding
    assert buf.overlong == 1, "one overlong line, counted once however long it gets"
    assert buf.feed(b"tail\nnext\n") == [b"next"]
    assert not buf.discarding


def test_each_overlong_line_is_counted():
    data = (b"z" * 30 + b"\n") * 3 + b"fine\n"
    assert whole(data, 10) == ([b"fine"], 3, b"")
    assert byte_by_byte(data, 10) == ([b"fine"], 3, b"")


@given(
    data=st.lists(
        st.sampled_from([b"a", b"bb", b"\r", b"\n", b"\r\n", b"0123456789", b"\xff"]),
        max_size=60,
    ).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=12),
    max_line=st.integers(min_value=1, max_value=12),
)
def test_any_split_gives_the_same_lines_and_counts(data, cuts, max_line):
    assert in_chunks(data, cuts, max_line) == whole(data, max_line)
    assert byte_by_byte(data, max_line) == whole(data, max_line)
