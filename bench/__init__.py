"""The gateway's performance benchmark: `.venv/bin/python -m bench.run` (see bench/README.md)."""
