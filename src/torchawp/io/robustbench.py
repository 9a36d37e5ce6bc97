"""RobustBench both ways: its zoo checkpoints into torchawp's evaluation, flatness and landscapes,
and torchawp's models out in its checkpoint layout with its ``model_info`` card.

Nothing is downloaded. A zoo entry is read from ``MODEL_DIR/<dataset>/<threat>/<name>.pt``
(RobustBench's own layout; a bare state dict or ``{"state_dict": ...}``, ``module.`` / ``model.``
prefixes stripped as RobustBench's loader does), with ``weights_only=True``, into torchawp's own
WideResNet with RobustBench's parameter names mapped: :data:`ZOO` lists the entries built on
RobustBench's plain ``WideResNet`` class (no input normalisation), the AWP paper's
``Wu2020Adversarial`` (TRADES-AWP, WRN-34-10) and ``Wu2020Adversarial_extra`` (RST-AWP,
WRN-28-10) among them. Other entries go through the ``robustbench`` package where it imports.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..attacks import Threat
from .checkpoint import atomic_write, load_state_dict_into, safe_torch_load
from ..errors import CheckpointError, ConfigError
from ..models import create_model

# (dataset, threat model) -> entry -> (depth, widen_factor) of RobustBench's WideResNet class
# (robustbench 1.1.1, model_zoo/cifar10.py: entries whose model is WideResNet(depth, widen_factor
# [, sub_block1=True]); sub_block1 holds tensors its forward never uses: they are dropped)
_LINF = {
    "Wu2020Adversarial": (34, 10), "Wu2020Adversarial_extra": (28, 10),
    "Carmon2019Unlabeled": (28, 10), "Sehwag2020Hydra": (28, 10), "Wang2020Improving": (28, 10),
    "Zhang2019Theoretically": (34, 10), "Huang2020Self": (34, 10), "Zhang2019You": (34, 10),
    "Zhang2020Attacks": (34, 10), "Sitawarin2020Improving": (34, 10),
    "Cui2020Learnable_34_20": (34, 20), "Cui2020Learnable_34_10": (34, 10),
    "Zhang2020Geometry": (28, 10), "Sridhar2021Robust": (28, 10),
    "Sridhar2021Robust_34_15": (34, 15), "Standard": (28, 10),
    "Addepalli2022Efficient_WRN_34_10": (34, 10), "Chen2024Data_WRN_34_10": (34, 10),
    "Chen2024Data_WRN_34_20": (34, 20),
}
ZOO = {("cifar10", "Linf"): _LINF,
       ("cifar10", "L2"): {"Standard": (28, 10), "Wu2020Adversarial": (34, 10)}}
# RobustBench's threat-model folders -> torchawp's norm and the leaderboard's eps
THREATS = {"Linf": ("linf", 8 / 255), "L2": ("l2", 0.5)}
# what the AWP paper reports for its entries (clean / AutoAttack, %), named in reports
REPORTED = {("cifar10", "Linf", "Wu2020Adversarial"): (85.36, 56.17),
            ("cifar10", "Linf", "Wu2020Adversarial_extra"): (88.25, 60.04)}
CARD_FIELDS = ("link", "name", "authors", "additional_data", "number_forward_passes", "dataset",
               "venue", "architecture", "eps", "clean_acc", "reported", "autoattack_acc",
               "footnote")


def checkpoint_path(name: str, dataset: str = "cifar10", threat_model: str = "Linf",
                    model_dir: str | Path = "models") -> Path:
    """``MODEL_DIR/<dataset>/<threat>/<name>.pt``, RobustBench's layout."""
    return Path(model_dir) / dataset / threat_model / f"{name}.pt"


def _check_threat(threat_model: str) -> None:
    if threat_model not in THREATS:
        raise ConfigError(f"--threat-model must be one of {', '.join(THREATS)} (got "
                          f"{threat_model!r})")


def _unknown(name: str, dataset: str, threat_model: str) -> ConfigError:
    known = sorted(ZOO.get((dataset, threat_model), {}))
    hint = difflib.get_close_matches(name, known, n=3)
    return ConfigError(
        f"RobustBench entry {name!r} ({dataset}, {threat_model}) is not one torchawp maps onto "
        f"its own architectures" + (f"; did you mean {', '.join(hint)}?" if hint else "")
        + " (torchawp list shows them); any other entry loads through the robustbench package "
          "where it imports: pip install 'torchawp[robustbench]'")


def strip_prefixes(state: dict) -> dict:
    """A RobustBench checkpoint's tensors: ``state_dict`` unwrapped, ``module.``/``model.``
    prefixes removed."""
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError("a RobustBench checkpoint is a state dict or {'state_dict': ...}")
    out = {}
    for key, value in state.items():
        while key.startswith(("module.", "model.")):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def wrn_from_robustbench(state: dict) -> dict:
    """RobustBench ``WideResNet`` names -> torchawp's (``block1.layer.0.convShortcut`` ->
    ``block1.0.shortcut``, the last ``bn1`` -> ``bn``); ``sub_block1`` is dropped."""
    out = {}
    for key, value in state.items():
        if key.startswith("sub_block1."):
            continue
        key = re.sub(r"^(block\d)\.layer\.", r"\1.", key).replace(".convShortcut.", ".shortcut.")
        out[re.sub(r"^bn1\.", "bn.", key)] = value
    return out


def wrn_to_robustbench(state: dict) -> dict:
    """The inverse of :func:`wrn_from_robustbench` (for torchawp's ``net`` tensors)."""
    out = {}
    for key, value in state.items():
        key = re.sub(r"^(block\d)\.", r"\1.layer.", key).replace(".shortcut.", ".convShortcut.")
        out[re.sub(r"^bn\.", "bn1.", key)] = value
    return out


def prn18_to_robustbench(state: dict) -> dict:
    """torchawp's PreActResNet-18 -> RobustBench's ``PreActResNet(PreActBlockV2, [2, 2, 2, 2],
    bn_before_fc=True)`` (the shortcut conv sits in a Sequential there)."""
    return {key.replace(".shortcut.weight", ".shortcut.0.weight"): value
            for key, value in state.items()}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    return h.hexdigest()


def load_robustbench(name: str, dataset: str = "cifar10", threat_model: str = "Linf",
                     model_dir: str | Path = "models") -> tuple[nn.Module, Threat]:
    """A zoo entry from its local checkpoint, in eval mode, with the entry's threat model (PGD
    step eps / 4). ``model.checkpoint_meta`` names the entry and the file's SHA-256."""
    _check_threat(threat_model)
    path = checkpoint_path(name, dataset, threat_model, model_dir)
    entry = ZOO.get((dataset, threat_model), {}).get(name)
    if entry is None and not _robustbench_importable():
        raise _unknown(name, dataset, threat_model)
    if not path.is_file():
        raise CheckpointError(f"RobustBench entry {name}: no checkpoint at {path}; torchawp never "
                              f"downloads: put the file there (MODEL_DIR/{dataset}/"
                              f"{threat_model}/{name}.pt) or point --model-dir at its folder")
    if entry is None:  # any other entry, through RobustBench's own loader (file present)
        from robustbench.utils import load_model  # optional extra

        model = load_model(name, str(model_dir), dataset, threat_model)
    else:
        depth, width = entry
        model = create_model("wide_resnet", 10, 3, 32, depth=depth, widen_factor=width)
        state = strip_prefixes(safe_torch_load(path, path, "RobustBench checkpoint",
                                               "save the model's state_dict with torch.save"))
        load_state_dict_into(model.net, wrn_from_robustbench(state), str(path))
    norm, eps = THREATS[threat_model]
    model.checkpoint_meta = {"sha256": file_sha256(path), "robustbench": {
        "name": name, "dataset": dataset, "threat_model": threat_model,
        "reported": REPORTED.get((dataset, threat_model, name))}}
    return model.eval(), Threat(norm, eps, eps / 4)


def _robustbench_importable() -> bool:
    try:
        import robustbench.utils  # noqa: F401  (optional; needs a working torchvision)
    except Exception:  # ImportError, or torchvision's operator error on CPU-only torch
        return False
    return True


def eps_text(norm: str, eps: float) -> str:
    """``8/255`` for L-inf radii on the 1/255 grid (as RobustBench writes them), else ``0.5``."""
    if norm == "linf" and abs(eps * 255 - round(eps * 255)) < 1e-6:
        return f"{round(eps * 255)}/255"
    return f"{eps:g}"


ARCHITECTURES = {  # torchawp's registry names that map onto a RobustBench class -> that class
    "wide_resnet": "WideResNet", "wrn34_10": "WideResNet", "wrn28_10": "WideResNet",
    "preact_resnet18": "PreActResNet",
}


def robustbench_state(model: nn.Module) -> tuple[dict, str]:
    """torchawp model -> (RobustBench state dict, architecture text). Refuses, in one line, an
    architecture RobustBench has no class for. Input normalisation other than the identity is
    kept as ``normalize.mean`` / ``normalize.std`` in front of the network's tensors."""
    spec = getattr(model, "spec", {}) or {}
    name, kwargs = spec.get("name"), spec.get("kwargs", {})
    if name not in ARCHITECTURES or kwargs.get("activation", "relu") != "relu" or \
            spec.get("in_channels") != 3 or (name == "preact_resnet18" and
                                             kwargs.get("width", 64) != 64):
        raise ConfigError(f"RobustBench has no class for torchawp's {name} {kwargs or ''}; "
                          f"--robustbench exports wrn34_10, wrn28_10, wide_resnet (ReLU) and "
                          f"preact_resnet18 on 3-channel images")
    net = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    if name == "preact_resnet18":
        state, text = prn18_to_robustbench(net), "PreActResNet-18"
    else:
        depth = kwargs.get("depth", 34 if name != "wrn28_10" else 28)
        width = kwargs.get("widen_factor", 10)
        state, text = wrn_to_robustbench(net), f"WideResNet-{depth}-{width}"
    mean, std = model.normalize.mean.flatten(), model.normalize.std.flatten()
    if not (torch.all(mean == 0) and torch.all(std == 1)):
        state = {"normalize.mean": mean.clone(), "normalize.std": std.clone(), **state}
    return state, text


def robustbench_card(name: str, architecture: str, dataset: str, norm: str, eps: float,
                     result: dict, test_size: int, extra_data: bool,
                     partial: bool = False) -> dict:
    """The ``model_info`` card from an evaluation result (``eval.json``'s row). Refuses to write
    ``autoattack_acc`` unless AutoAttack ran on the whole test set, or ``partial`` says so in
    the footnote."""
    n = result["n"]
    accuracy = result.get("accuracy", {})
    if "autoattack" not in accuracy:
        raise ConfigError("the card's autoattack_acc needs an AutoAttack evaluation: run "
                          "torchawp eval RUN --autoattack first")
    if n < test_size and not partial:
        raise ConfigError(f"AutoAttack ran on {n} of the {test_size} test images; RobustBench "
                          f"cards report the full test set: evaluate all of them, or pass "
                          f"--partial to say so in the card's footnote")
    footnote = (f"Evaluated on the first {n} of {test_size} test images." if n < test_size
                else None)
    return {"link": "", "name": "", "authors": "", "additional_data": bool(extra_data),
            "number_forward_passes": 1, "dataset": dataset, "venue": "",
            "architecture": architecture, "eps": eps_text(norm, eps),
            "clean_acc": f"{100 * accuracy['clean']:.2f}", "reported": "",
            "autoattack_acc": f"{100 * accuracy['autoattack']:.2f}", "footnote": footnote}


def threat_folder(norm: str) -> str:
    return {"linf": "Linf", "l2": "L2"}[norm]


def export_robustbench(model: nn.Module, name: str, model_dir: str | Path, result: dict,
                       test_size: int, extra_data: bool, partial: bool = False,
                       dataset: Optional[str] = None) -> dict:
    """Write ``MODEL_DIR/<dataset>/<threat>/NAME.pt`` and
    ``MODEL_DIR/model_info/<dataset>/<threat>/NAME.json``; returns the card and the paths."""
    state, architecture = robustbench_state(model)
    tm = result["threat_model"]
    dataset = dataset or result["dataset"]
    card = robustbench_card(name, architecture, dataset, tm["norm"], tm["eps"], result,
                            test_size, extra_data, partial)
    folder = threat_folder(tm["norm"])
    weights = checkpoint_path(name, dataset, folder, model_dir)
    info = Path(model_dir) / "model_info" / dataset / folder / f"{name}.json"
    weights.parent.mkdir(parents=True, exist_ok=True)
    info.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(weights, lambda tmp: torch.save(state, tmp))
    text = json.dumps(card, indent=2) + "\n"
    atomic_write(info, lambda tmp: tmp.write_text(text))
    return {"card": card, "weights": str(weights), "model_info": str(info)}
