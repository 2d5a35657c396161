"""What operators use and see: actions on single orders (reconciling an open intent first), the
status report and stuck orders, terminal renderings, `check`, metrics and the health probes."""
