"""Canvass benchmarks: run them with bench/run (see bench/main.py)."""
