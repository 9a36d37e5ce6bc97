"""Figures (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path


def plot_curves(history: list[dict], path: Path) -> None:
    """Train / val / test robust (solid) and clean (dashed) accuracy per epoch, the shape of
    robust overfitting: test robust accuracy peaking while train robust accuracy keeps rising."""
    import matplotlib  # matplotlib loads in about a second: on use, at the end of a run

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for split, color in (("train", "tab:blue"), ("val", "tab:green"), ("test", "tab:red")):
        for kind, style in (("robust", "-"), ("clean", "--")):
            rows = [r for r in history if f"{split}_{kind}_acc" in r]
            if rows:
                ax.plot([r["epoch"] for r in rows],
                        [100 * r[f"{split}_{kind}_acc"] for r in rows], style, color=color,
                        label=f"{split} {kind}", linewidth=1.5 if kind == "robust" else 1.0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=3)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    """Write the figure through a temporary file (never half-written) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def plot_transfer(rows: list[dict], path: Path, title: str = "") -> None:
    """Transfer rate against the area a region covers, one line per region family (``rows``:
    ``{"kind", "area", "transfer_rate"}``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.8), dpi=120)
    for kind, marker in (("centre", "o"), ("frame", "s"), ("random", "^"), ("full", "*")):
        pts = sorted((r["area"], 100 * r["transfer_rate"]) for r in rows
                     if r["kind"] == kind and r["transfer_rate"] is not None)
        if pts:
            ax.plot(*zip(*pts), marker=marker, label=kind, markersize=9 if kind == "full" else 5)
    ax.set_xlabel("share of the image perturbed")
    ax.set_ylabel("transfer rate (%)")
    ax.set_xlim(0, 1.05)
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    _save(fig, path)
