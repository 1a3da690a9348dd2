"""Benchmarks `make bench` runs (`python -m bench`); each module also runs on its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def results_dir() -> Path:
    """Where benchmarks write their figures (git-ignored)."""
    return Path(__file__).resolve().parent / "results"


def write_results(name: str, figures: Any) -> Path:
    """Write a benchmark's figures as bench/results/NAME.json and say where."""
    out = results_dir() / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"figures written to {out}")
    return out
