"""Benchmarks `make bench` runs (`python -m bench`); each module also runs on its own."""

from __future__ import annotations

from pathlib import Path


def results_dir() -> Path:
    """Where benchmarks write their figures (git-ignored)."""
    return Path(__file__).resolve().parent / "results"
