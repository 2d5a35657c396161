"""The one exception for "understood, but not done" (exit 3), kept free of heavy imports so that
every command can name it without loading the store."""


class OperationError(Exception):
    """The operation cannot be done; the message says why and what to do instead."""
