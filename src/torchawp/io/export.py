"""A trained model out of torchawp, in the forms other tools load: a plain state dict
(``torch.save``, loadable with ``weights_only=True``) with a JSON sidecar saying what it is, and
optionally a ``torch.export`` program (``.pt2``) that needs neither torchawp nor the model's
code."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .checkpoint import atomic_write, load, resolve_checkpoint, tensor_digest
from .paths import beside
from .robustbench import export_robustbench
from ..errors import CheckpointError, ConfigError


def export(path, out, which: str = "best", program: bool = False) -> dict:
    """Write the weights of a run's ``which`` checkpoint (or of a ``.safetensors`` file) to
    ``out`` (``.pt``: a state dict) and ``out`` with suffix ``.json`` (architecture, dataset and
    input convention, threat model, epoch, SHA-256); with ``program`` also ``.pt2``
    (``torch.export``, batch size dynamic), checked to give the model's logits. Returns the
    sidecar's content with the written paths."""
    source = resolve_checkpoint(path, which)
    model = load(path, which=which)  # eval mode, checksum verified
    meta = model.checkpoint_meta
    dataset = meta.get("dataset") or {}
    attack = (meta.get("config") or {}).get("attack") or {}
    out = Path(out)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(out, lambda tmp: torch.save(state, tmp))
    card = {
        "format": "torchawp-export-1", "source": str(source), "epoch": meta.get("epoch"),
        "architecture": meta.get("model_spec"), "weights_sha256": tensor_digest(state),
        "dataset": dataset,
        "input": "float NCHW images in [0, 1]; the model normalises them with the dataset's "
                 "mean and std itself",
        "threat_model": {k: attack.get(k) for k in ("norm", "eps", "step_size")},
        "load": "torchawp.models.model_from_spec(architecture), then "
                "load_state_dict(torch.load(PATH, weights_only=True))",
        "files": {"state_dict": str(out)},
    }
    if program:
        written = _export_program(model, dataset, out.with_suffix(".pt2"))
        card["files"]["torch_export"] = str(written)
    text = json.dumps(card, indent=2)
    json_path = out.with_suffix(".json")
    atomic_write(json_path, lambda tmp: tmp.write_text(text))
    card["files"]["card"] = str(json_path)
    return card


def export_measured(path, which: str, name: str, model_dir, partial: bool = False) -> dict:
    """A run's ``which`` checkpoint in RobustBench's layout, as NAME under ``model_dir``, its
    card filled from the evaluation ``torchawp eval`` wrote beside it (``eval.json``), which
    must be of these weights (SHA-256). Returns :func:`export_robustbench`'s answer with the
    evaluation row (``row``) and the checkpoint (``source``)."""
    from ..evaluation.opened import open_run

    source = resolve_checkpoint(path, which)
    report = beside(path, name="eval.json")
    rows = json.loads(report.read_text()) if report.is_file() else []
    row = next((r for r in rows if r.get("which") == which), None)
    if row is None:
        raise ConfigError(f"{report} has no evaluation of the {which} checkpoint; run torchawp "
                          f"eval {path} --which {which} --autoattack first")
    opened = open_run(path, which, "cpu")
    if row.get("weights_sha256") != opened.sha256:
        raise ConfigError(f"{report} evaluated other weights than {source} holds now; "
                          f"evaluate again before exporting")
    extra = bool((opened.config.get("data") or {}).get("extra_data"))
    written = export_robustbench(opened.model, name, model_dir, row, len(opened.splits.test),
                                 extra, partial)
    return dict(written, row=row, source=str(source))


def _export_program(model, dataset: dict, path: Path) -> Path:
    shape = (2, dataset.get("in_channels", 3), dataset.get("image_size", 32),
             dataset.get("image_size", 32))
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
        program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    except Exception as exc:  # a model torch.export cannot trace: say so, keep the state dict
        raise CheckpointError(f"torch.export cannot export this model "
                              f"({str(exc).splitlines()[0][:160]}); the state dict and its "
                              f"card are written, export without --program") from None
    with torch.no_grad():
        check = torch.rand((5,) + shape[1:], generator=torch.Generator().manual_seed(1))
        if not torch.allclose(program.module()(check), model(check), rtol=1e-5, atol=1e-6):
            raise CheckpointError("the exported program's logits differ from the model's; "
                                  "not written")
    atomic_write(path, lambda tmp: torch.export.save(program, str(tmp)))
    return path
