"""Pseudo-labels for RST (Carmon et al. 2019): a standard model labels unlabelled images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..io.checkpoint import load
from ..data import load_extra, load_splits, save_extra, to_float
from ..errors import DataError
from ..perturb import model_mode
from ..runtime import resolve_device


@torch.no_grad()
def pseudo_label(model: nn.Module, images: torch.Tensor, batch_size: int = 512,
                 device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted labels and their softmax confidence for ``images`` (N, C, H, W; uint8 or
    float in [0, 1]), with the model in eval mode (its modes are restored afterwards)."""
    device = device or next(model.parameters()).device
    labels, confidence = [], []
    with model_mode(model, "eval"):
        for start in range(0, len(images), batch_size):
            x = to_float(images[start:start + batch_size]).to(device)
            probs = torch.softmax(model(x).float(), dim=1)
            conf, pred = probs.max(1)
            labels.append(pred.cpu())
            confidence.append(conf.cpu())
    return torch.cat(labels), torch.cat(confidence)


def pseudo_label_file(checkpoint: str | Path, out: str | Path, images: Optional[str] = None,
                      min_confidence: float = 0.0, device: str = "auto") -> dict:
    """Label ``images`` (an ``.npz`` with ``images``; default: the checkpoint's own dataset's
    training images that its run left out with ``data.train_subset``) and write an RST
    extra-data ``.npz``. Returns counts, and agreement with the true labels when known."""
    dev = resolve_device(device)
    model = load(checkpoint, device=dev)
    meta = model.checkpoint_meta
    info = meta.get("dataset") or {}
    true_labels = None
    if images is not None:
        spec = model.spec
        data = load_extra(images, spec["num_classes"], spec["in_channels"], spec["image_size"],
                          labels_required=False)
    else:
        d = (meta.get("config") or {}).get("data", {})
        splits = load_splits(d.get("name", "digits"), d.get("data_dir"), d.get("val_size", 0),
                             d.get("split_seed", 0), d.get("train_subset"),
                             d.get("image_size"))
        data = splits.unused
        if data is None or len(data) == 0:
            raise DataError("the checkpoint's run used every training image; pass --images "
                            "FILE.npz with the unlabelled images to label")
        true_labels = data.labels
    labels, confidence = pseudo_label(model, data.images, device=dev)
    keep = confidence >= min_confidence
    save_extra(out, data.images[keep], labels[keep])
    result = {"labelled": int(keep.sum()), "total": len(labels), "out": str(out),
              "dataset": info.get("name")}
    if true_labels is not None:
        result["agreement"] = (labels[keep] == true_labels[keep]).float().mean().item()
    return result
