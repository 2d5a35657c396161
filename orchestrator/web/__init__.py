"""`orchestrator serve`: one ASGI application for the HTTP API and the web console."""
