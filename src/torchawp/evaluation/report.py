"""Reports of the checkpoint suite: the terminal table, ``eval.json`` and ``eval.md``."""

from __future__ import annotations

from typing import Collection, Sequence

from ..io.report import report
from .checks import EXPLANATIONS


def format_table(results: Sequence[dict]) -> str:
    """Terminal table: one row per checkpoint, one column per attack, worst case, gap."""
    names = list(results[0]["accuracy"])
    cols = names + ["robust", "gap"]
    labels = [f"{r['which']} (epoch {r['epoch']})" if r.get("epoch") is not None else r["which"]
              for r in results]
    width = max(16, max(map(len, labels)) + 2)
    lines = [f"{'checkpoint':<{width}}" + "".join(f"{c:>11}" for c in cols)]
    for label, r in zip(labels, results):
        values = [r["accuracy"][n] for n in names] + [r["robust_acc"], r.get("gap")]
        lines.append(f"{label:<{width}}" + "".join(
            f"{'-' if v is None else f'{100 * v:.2f}':>11}" for v in values))
    return "\n".join(lines)


def summary(source, results: Sequence[dict], attacks: Sequence[str],
            copied: Collection[str] = ()) -> str:
    """What ``torchawp eval`` prints: the setting, the table, and for each row measured (not
    one of ``copied``, rows that hold the same weights as another) the cascade, the backdoor
    and the sanity checks."""
    first = results[0]
    tm = first["threat_model"]
    lines = [f"{source}: {first['dataset']} test set, {first['n']} images, {tm['norm']} eps "
             f"{tm['eps']:.4g}" + ("" if any(a.startswith("autoattack") for a in attacks) else
                                   "; AutoAttack not run (add --autoattack)"),
             format_table(results)]
    measured = [r for r in results if r["which"] not in copied]
    lines += [f"{r['which']}: {cascade_line(r)}" for r in measured if r["cascade"]]
    for r in measured:
        if "backdoor" in r:
            b = r["backdoor"]
            lines.append(f"{r['which']}: trigger {b['trigger']} -> class {b['target']}: "
                         f"success {100 * b['success_rate']:.2f}% of the {b['n_non_target']} "
                         f"test images of other classes")
    lines += [f"  [{c['status']:>7}] {r['which']} {c['name']}: {c['detail']}"
              for r in measured for c in r["checks"]]
    return "\n".join(lines)


def cascade_line(r: dict) -> str:
    """What the cascade did: which attacks ran on how many images and broke how many."""
    steps = ", ".join(f"{c['attack']} on {c['attacked']} broke {c['broken']} "
                      f"({c['seconds']:.1f} s)" for c in r["cascade"])
    return (f"robust = worst case over {', '.join(r['attacks'])}; cascade on the images still "
            f"robust: {steps} (--per-attack: each attack's own accuracy)")


def write_report(results: Sequence[dict], out_dir) -> tuple:
    """``eval.json`` (every number, settings, seeds, versions) and ``eval.md`` in ``out_dir``
    (:func:`torchawp.io.report.report`)."""
    with report(out_dir, "evaluation directory") as written:
        return (written.json("eval.json", list(results)),
                written.text("eval.md", render_markdown(results)))


def render_markdown(results: Sequence[dict]) -> str:
    """``eval.md``: the table, the cascades, backdoors and sanity checks, the versions."""
    tm = results[0]["threat_model"]
    md = [f"# Robustness evaluation: {results[0]['dataset']}", "",
          f"Test set, {results[0]['n']} images; {tm['norm']} eps {tm['eps']:.4g}, PGD step "
          f"{tm['step_size']:.4g}, {tm['restarts']} restart(s), seed {tm['seed']}. Accuracy in %; "
          "*robust* is the per-example worst case over every attack; *gap* is train PGD-20 "
          f"accuracy (first {results[0].get('n_train', results[0]['n'])} training images) minus "
          "test PGD-20 accuracy (both at w, eval mode).", ""]
    names = list(results[0]["accuracy"])
    md.append("| checkpoint | " + " | ".join(names) + " | robust | gap |")
    md.append("|---" * (len(names) + 3) + "|")
    for r in results:
        gap = f"{100 * r['gap']:.2f}" if r.get("gap") is not None else "-"
        epoch = f" (epoch {r['epoch']})" if r.get("epoch") is not None else ""
        md.append(f"| {r['which']}{epoch} | "
                  + " | ".join(f"{100 * r['accuracy'][n]:.2f}" for n in names)
                  + f" | {100 * r['robust_acc']:.2f} | {gap} |")
    for r in results:
        if r.get("cascade"):
            md += ["", f"{r['which']}: {cascade_line(r)}."]
    for r in results:
        if "backdoor" in r:
            b = r["backdoor"]
            md += ["", f"Backdoor trigger {b['trigger']} -> class {b['target']} ({r['which']}): "
                       f"success {100 * b['success_rate']:.2f}% of the {b['n_non_target']} test "
                       f"images whose class is not {b['target']}."]
    for r in results:
        if r["checks"]:
            md += ["", f"## Sanity checks ({r['which']})", "",
                   "| check | status | detail | what a warning means |", "|---|---|---|---|"]
            md += [f"| {c['name']} | {c['status']} | {c['detail']} | "
                   f"{EXPLANATIONS.get(c['name'], '')} |" for c in r["checks"]]
    md += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in results[0]["versions"].items())]
    return "\n".join(md) + "\n"
