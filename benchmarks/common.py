"""What the benchmark scripts share."""

from __future__ import annotations

import statistics


def paired(numerators: list[float], denominators: list[float], digits: int = 2) -> str:
    """Median of the per-round ratios (each from adjacent runs, so drift in machine speed
    cancels) with their range."""
    r = sorted(n / d for n, d in zip(numerators, denominators))
    return (f"{statistics.median(r):.{digits}f} (median of {len(r)} paired rounds, "
            f"{r[0]:.{digits}f} to {r[-1]:.{digits}f})")
