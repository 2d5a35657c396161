"""`orchestrator serve`: the HTTP API over the same library functions the CLI uses."""
