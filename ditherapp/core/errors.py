"""Errors that say whose fault a problem is."""

from __future__ import annotations


class DitherAppError(Exception):
    """Base class of every error ditherapp raises on purpose."""


class LocalProtocolError(DitherAppError):
    """We misused a protocol (a bug or a bad call on our side)."""


class RemoteProtocolError(DitherAppError):
    """The peer sent something the protocol does not allow."""


class ConnectionLost(DitherAppError):  # noqa: N818 - reads as a fact, like aiomqtt's
    """The transport went away; anything pending has failed."""
