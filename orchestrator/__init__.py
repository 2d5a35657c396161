"""The runtime around the order state machine: storage, VTEX client, engine, daemon, CLI, sandbox."""

__version__ = "0.2.0"
