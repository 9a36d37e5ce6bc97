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
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
