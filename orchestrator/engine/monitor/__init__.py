"""The daemon's own monitoring: Prometheus metrics, the health probes and their bounded server,
heartbeats and 429 notices, systemd's notify protocol."""
