"""Sans-IO core: protocols, settings and the dither machine. No I/O, no clock, no Qt."""
