"""PHD2's legacy socket server (port 4300 + instance - 1): one command byte in, one byte out.

``SETLOCKPOSITION`` (15) is followed by two little-endian uint16 (x, y). Unknown commands
reply 1. Each client's commands are answered in order, as PHD2 answers them on its GUI
thread.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from ditherapp.sim.phd2_model import legacy_name
from ditherapp.sim.phd2_server import SimHost

log = logging.getLogger(__name__)

SETLOCKPOSITION: Final = 15


class LegacyServer:
    """The legacy server's clients; commands run one at a time per client."""

    def __init__(self, host: SimHost) -> None:
        self._host = host
        self._writers: set[asyncio.StreamWriter] = set()
        self._next_label = 1

    def abort_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()

    def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        label = f"legacy-{self._next_label}"
        self._next_label += 1
        self._writers.add(writer)
        log.info("legacy client %s connected from %s", label, writer.get_extra_info("peername"))
        self._host.spawn(self._serve(label, reader, writer), f"phd2-sim-{label}")

    async def _serve(
        self, label: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                command = await reader.read(1)
                if not command:
                    return
                payload = b""
                if command[0] == SETLOCKPOSITION:
                    payload = await reader.readexactly(4)
                await self._host.wait_unstalled()
                self._host.record_request(legacy_name(command[0]))
                reply = self._host.model.legacy_command(command[0], payload)
                if self._host.write_delay_s > 0:
                    await asyncio.sleep(self._host.write_delay_s)
                writer.write(bytes([reply]))
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError) as exc:
            log.info("legacy client %s lost: %s", label, exc)
        finally:
            self._writers.discard(writer)
            writer.transport.abort()
            log.info("legacy client %s disconnected", label)
