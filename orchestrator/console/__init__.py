"""The web console: server-rendered pages over the same functions as the CLI and the API."""
