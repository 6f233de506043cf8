"""asyncio adapters: the PHD2 client, the control socket and the service. No Qt."""
