"""Benchmarks: figures printed for people, never timed assertions. Run `python -m bench --help`."""
