"""Line framing shared by every line-based protocol in ditherapp.

Feed bytes as they arrive; take complete lines out. CRLF and LF both end a line.
A line longer than ``max_line`` is not kept: its bytes are dropped up to the next
newline and it is counted in ``overlong``, so a peer that never sends a newline
cannot make us buffer without bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class LineBuffer:
    max_line: int = 1 << 20
    overlong: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    _discarding: bool = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return every line it completed, without the terminator."""
        self._buf += data
        lines: list[bytes] = []
        start = 0
        while True:
            end = self._buf.find(b"\n", start)
            if end < 0:
                break
            line = bytes(self._buf[start:end])
            start = end + 1
            if self._discarding:
                self._discarding = False
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.max_line:
                self.overlong += 1
                continue
            lines.append(line)
        del self._buf[:start]
        # One byte over is allowed: it may be the CR of a CRLF whose LF is still in flight.
        if len(self._buf) > self.max_line + 1:
            if not self._discarding:
                self.overlong += 1
            self._discarding = True
            self._buf.clear()
        return lines

    @property
    def pending(self) -> bytes:
        """Bytes received after the last newline (a partial line)."""
        return bytes(self._buf)

    @property
    def discarding(self) -> bool:
        """True while dropping the rest of an overlong line."""
        return self._discarding
