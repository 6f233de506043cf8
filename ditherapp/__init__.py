"""ditherapp: dither controller for SharpCap and PHD2."""

__version__ = "0.1.0"
