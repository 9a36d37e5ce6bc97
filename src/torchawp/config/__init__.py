"""Typed configuration: plain dataclasses with defaults next to their meaning.

YAML recipes (``torchawp/configs/*.yaml``, read by :mod:`torchawp.config.recipes`) fill these, the
command line overrides any field (``--awp.gamma 0.005``), and
:func:`torchawp.config.resolve.validate` checks every value once, at load, raising a
:class:`~torchawp.errors.ConfigError` that names the field and the allowed range.

Units: ``eps`` and ``step_size`` are in [0, 1] pixel space (8/255 = 0.0314 for CIFAR L-inf).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import typing
from typing import Annotated, Any, Literal, Optional

import tyro

from .ranges import bounded

# the fixed choices, typed: the command line and recipes accept these words only
Norm = Literal["linf", "l2"]
BNMode = Literal["train", "eval", "train-update"]
BNUpdates = Literal["training", "authors"]
CropPadding = Literal["zero", "reflect"]
AWPParams = Literal["weights", "weights+biases"]
Schedule = Literal["piecewise", "cosine", "constant"]
Precision = Literal["fp32", "bf16", "fp16"]
Augment = Literal["auto", "none", "crop-flip", "crop"]
AWPScale = Literal["layer", "global"]
AWPAscent = Literal["exact", "last-pgd-step"]


NORMS, BN_MODES, BN_UPDATES, CROP_PADDINGS, AWP_PARAMS, SCHEDULES, PRECISIONS, AUGMENTS = (
    typing.get_args(t) for t in (Norm, BNMode, BNUpdates, CropPadding, AWPParams, Schedule,
                                 Precision, Augment))


def shared(name: str, *former: str):
    """On the command line, ``--NAME``: the name every command gives this concept (the data
    directory, the dataset, eps, the number of images ...) rather than ``--group.field``,
    which is read as a former name with a notice. Recipes keep the nested keys."""
    return tyro.conf.arg(name=name, prefix_name=False, aliases=former)


@dataclass
class DataConfig:
    """Which data, where from, and how it is split and batched.

    Attributes:
        name: dataset: cifar10, cifar100, svhn, mnist, fashion-mnist, digits (offline), npz
            (your own .npz file, whose path is data_dir), folder (your own images in
            data_dir/train/CLASS/ and data_dir/test/CLASS/) or store (an image store made by
            torchawp data import, read from disk by memory mapping; data_dir is its folder).
        image_size: folder only: resize every image to this square size (None: keep them).
        data_dir: folder holding the dataset files (None: the dataset's default location).
        batch_size: training batch size (the global batch under DDP).
        val_size: held-out validation images taken from the training set (seeded); picks the
            best checkpoint. 0 disables selection (best = last).
        split_seed: seed of the validation split (fixed across training seeds on purpose).
        augment: auto (per dataset: crop-flip for CIFAR, none otherwise), none, crop-flip, crop.
        crop_pad: pixels of padding of the random crops, the largest shift (4, the standard for
            32x32 images; 1 suits 8x8 digits).
        crop_padding: how random crops pad the border: zero (TRADES' code) or reflect
            (Rice et al.'s AT code).
        train_subset: use only this many training images (None: all); for quick studies.
        extra_data: extra labelled images mixed into every batch, for every method (required
            by RST): an .npz (images uint8 NHWC or NCHW, labels int), an image store (a folder
            made by torchawp data import: millions of generated images, read from disk), or
            auto: label the training images that train_subset leaves out with a standard
            model trained first on the labelled ones (self-training).
        self_label_epochs: with extra_data auto: epochs of that standard model (cosine
            schedule, the run's other optimizer settings).
        extra_fraction: share of every batch drawn from extra_data (0.5 in RST, 0.7 in Wang
            et al.'s generated-data recipe); formerly unlabeled_fraction.
    """

    name: Annotated[str, shared("dataset", "--data.name")] = "cifar10"
    data_dir: Annotated[Optional[str], shared("data-dir", "--data.data-dir")] = None
    image_size: Optional[int] = bounded(None, 1, says="None or an integer >= 1")
    batch_size: int = bounded(128, 1)
    val_size: int = bounded(1000, 0, says=">= 0")
    split_seed: int = 0
    augment: Augment = "auto"
    crop_pad: int = bounded(4, 0, note="pixels")
    crop_padding: CropPadding = "zero"
    train_subset: Optional[int] = bounded(None, 1, says="None or >= 1")
    extra_data: Optional[str] = None
    self_label_epochs: int = bounded(20, 1)
    extra_fraction: float = bounded(
        0.5, 0, strict=True, high=1, high_strict=True,
        says="in (0, 1): the share of every batch drawn from data.extra_data")


@dataclass
class AttackConfig:
    """The training attack (PGD) and its threat model.

    Attributes:
        norm: threat model, linf or l2.
        eps: radius in [0,1] pixel units (8/255 L-inf, 128/255 L2 for CIFAR).
        step_size: PGD step in the same units.
        steps: PGD iterations (10 in the paper's training).
        bn_mode: BatchNorm mode while crafting: train (Rice et al., batch statistics, running
            statistics left untouched), eval, or train-update (train mode, every attack forward
            updating the running statistics, as the authors' AT loop). Unset: the method's
            own default under bn_updates (filled in at load, so config.yaml and --dry-run show
            the value that runs).
        clamp_start: clip the random start into [0, 1] (the authors' TRADES/MART code does
            not clip x + 0.001 N(0, 1) before the first step).
    """

    norm: Annotated[Norm, shared("norm", "--attack.norm")] = "linf"
    eps: Annotated[float, shared("eps", "--attack.eps")] = bounded(
        8 / 255, 0, high=1, note="pixel units; 8/255 = 0.0314")
    step_size: Annotated[float, shared("step-size", "--attack.step-size")] = bounded(
        2 / 255, 0, high=1, note="pixel units")
    steps: int = bounded(10, 0)
    bn_mode: Optional[BNMode] = None
    clamp_start: bool = True


@dataclass
class AWPConfig:
    """Adversarial weight perturbation (Wu et al. 2020): the *-awp methods' settings, and the
    size and warm-up of every other weight perturbation (see perturbation).

    Attributes:
        gamma: relative size of the weight perturbation, ||v_l|| = gamma * ||w_l|| (AWP,
            random noise; one global ball for RWP). Unset: the method's default (AT 0.01,
            TRADES/MART/RST 0.005), filled in at load.
        warmup_epochs: epochs trained without the weight perturbation first (it is on from
            epoch warmup_epochs + 1). Unset: the method's default (AT 0, TRADES/MART/RST 10).
        steps: ascent steps (1 in the paper; more steps project back onto the ball).
        scale: layer (per-tensor ball, the paper) or global (one ball over all tensors, RWP).
        params: weights (the paper: conv and linear weights) or weights+biases (every
            parameter outside normalisation layers).
        ascent: exact (the paper) or last-pgd-step (opt-in, AT: the last PGD step's gradient).
    """

    gamma: Optional[float] = bounded(None, 0)
    warmup_epochs: Optional[int] = bounded(None, 0, says=">= 0")
    steps: int = bounded(1, 1)
    scale: AWPScale = "layer"
    params: AWPParams = "weights"
    ascent: AWPAscent = "exact"


@dataclass
class PerturbationConfig:
    """Which weight perturbation trains with the method (torchawp list shows each; the
    exact semantics are in docs/faithfulness.md). Every one takes its size and warm-up from
    the awp section where it has them: gamma (AWP, RWP, random noise; the method's default),
    warmup_epochs (all).

    Attributes:
        name: awp (the paper), rwp (Yu et al. 2022), sam, asam (Foret et al. 2021, Kwon et al.
            2021), awp-practitioners (the Kaggle AWP), random-noise (AWP's size, no ascent: the
            control), none, or module.path:Class, a WeightPerturbation of your own. Unset: awp
            for an X-awp method, none otherwise.
        rho: SAM / ASAM radius. Unset: 0.05 for SAM (davda54/sam), 0.5 for ASAM (its authors'
            CIFAR example).
        rwp_steps: RWP's ascent steps (its authors' 10).
        threshold: RWP's loss stationary condition: examples whose adversarial loss is at or
            above it do not drive the ascent (its authors' 1.7).
        adv_lr: the practitioners' AWP: relative step.
        adv_eps: the practitioners' AWP: elementwise box relative to |w|.
        adv_step: the practitioners' AWP: steps.
        param_name: the practitioners' AWP: substring of the perturbed tensors' names.
    """

    name: Annotated[Optional[str], shared("perturbation")] = None
    rho: Optional[float] = bounded(None, 0, strict=True)
    rwp_steps: int = bounded(10, 1)
    threshold: float = bounded(1.7, 0, strict=True, note="the authors' 1.7")
    adv_lr: float = bounded(1.0, 0, strict=True)
    adv_eps: float = bounded(0.2, 0, strict=True)
    adv_step: int = bounded(1, 1)
    param_name: str = "weight"


@dataclass
class ConsistencyConfig:
    """Consistency regularisation (Tack et al., AAAI 2022): every batch holds two augmented
    views of its images, the method's loss is taken on both, and the Jensen-Shannon divergence
    between the two views' adversarial outputs is added. Needs an augmentation (data.augment
    crop or crop-flip); a step costs about twice as much (twice the images).

    Attributes:
        weight: the JS term's weight (the authors' lam, 1.0); 0: off.
        temperature: the softmax temperature of the JS term (the authors' T, 0.5).
    """

    weight: float = bounded(0.0, 0, note="0: off; the authors' 1.0")
    temperature: float = bounded(0.5, 0, strict=True, note="the authors' 0.5")


@dataclass
class OptimConfig:
    """SGD and its learning-rate schedule (stepped every iteration).

    Attributes:
        lr: peak learning rate.
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        nesterov: Nesterov momentum.
        schedule: piecewise (x gamma at each milestone), cosine, or constant.
        milestones: piecewise only: epochs where the LR is multiplied by lr_decay.
        lr_decay: piecewise only: the factor.
        warmup_epochs: cosine only: epochs (fractions allowed) of linear warm-up from 0 to lr
            before the cosine decay, stepped every iteration.
        label_smoothing: label smoothing of the cross-entropy terms of the training loss
            (AT, TRADES, RST, standard; 0.1 in Wang et al.'s recipe); attacks are unsmoothed.
    """

    lr: float = bounded(0.1, 0, strict=True)
    momentum: float = bounded(0.9, 0, high=1, high_strict=True)
    weight_decay: float = bounded(5e-4, 0)
    nesterov: bool = False
    schedule: Schedule = "piecewise"
    milestones: list[int] = field(default_factory=lambda: [100, 150])
    lr_decay: float = bounded(0.1, 0, strict=True, high=1)
    warmup_epochs: float = 0.0
    label_smoothing: float = bounded(0.0, 0, high=1, high_strict=True,
                                     note="0.1 in Wang et al.'s recipe")


@dataclass
class EvalConfig:
    """What is measured after every epoch (eval mode, PGD on the training threat model).

    Attributes:
        steps: PGD steps of the per-epoch robust evaluation (PGD-20).
        restarts: random restarts of that PGD.
        max_examples: evaluate at most this many val and test images per epoch (None: all).
        train_examples: training images (a fixed subset) whose robust accuracy is measured per
            epoch, at w and in eval mode, for the robust generalization gap (0: none).
        every: evaluate every this many epochs (the last epoch is always evaluated).
        curve_every: of those, measure train and test (the curves and the gap) every this many
            epochs; val, which selects the best checkpoint, at every evaluation. The best and
            the last checkpoint are always measured on train and test (the final table).
        flatness_every: every this many epochs also log the average-case flatness of the
            robust loss (Stutz et al.; xi 0.5, flatness_samples samples, on up to 500
            validation images); 0 turns the probe off.
        flatness_samples: weight-noise samples of that probe.
    """

    steps: int = bounded(20, 0)
    restarts: Annotated[int, shared("attack-restarts", "--eval.restarts")] = bounded(1, 1)
    max_examples: Annotated[Optional[int], shared("n-examples", "--eval.max-examples")] = \
        bounded(None, 1, says="None or >= 1")
    train_examples: int = bounded(1000, 0, says=">= 0")
    every: int = bounded(1, 1)
    curve_every: int = bounded(1, 1)
    flatness_every: Annotated[int, tyro.conf.arg(aliases=("--probe-flatness-every",))] = \
        bounded(0, 0)
    flatness_samples: int = bounded(3, 1, says=">= 1")


@dataclass
class TrainConfig:
    """One training run.

    The field defaults are the paper's CIFAR-10 protocol (Rice et al.: PGD-10 AT, L-inf 8/255,
    SGD 0.1 with drops at epochs 100 and 150, 200 epochs, PreActResNet-18); the offline default
    job is the shipped ``digits`` recipe (:func:`load_recipe`).

    Attributes:
        method: at, trades, mart, rst, standard, each also as X-awp (see torchawp list), or
            module.path:spec (also module.path:spec-awp), a MethodSpec of your own.
        model: model name from the registry (see torchawp list), or module.path:factory, your
            callable returning an nn.Module that takes [0, 1] images (called with model_args).
        model_args: extra keyword arguments of the model (e.g. {depth: 28, widen_factor: 10}).
        method_args: extra keyword arguments of the method's loss (a method of your own,
            module.path:spec, may take coefficients: e.g. {pairing_weight: 0.5}).
        epochs: training epochs.
        beta: TRADES / MART / RST trade-off between the clean and robust terms.
        seed: seed of initialisation, data order, augmentation and attacks.
        device: auto (cuda if present, else cpu), cpu, cuda, cuda:N.
        precision: fp32, bf16 (autocast on CPU and CUDA) or fp16 (CUDA, with a GradScaler).
        channels_last: NHWC memory format for convolutions (fast with AMP on GPUs/AMX CPUs).
        compile: torch.compile the model.
        threads: CPU threads for torch (None: torch's default).
        out_dir: run directory (None: runs/<time>_<method>_<dataset>_<model>).
        resume: continue the run in out_dir (which must hold one) from its newest checkpoint,
            as it was configured; only epochs may grow.
        progress: show a progress bar.
        skip_nonfinite: skip batches whose loss is NaN/inf instead of stopping the run (costs
            one host sync per step).
        keep_checkpoints: also keep the weights after every this many epochs (and the last) in
            epochs/epoch_NNNN.safetensors, for flatness across checkpoints (0: none).
        bn_updates: which train-mode forwards update BatchNorm running statistics: training
            (only the training loss's forwards; attacks never change the model) or authors
            (every forward of the authors' loop, in their order: AT 13 per step, TRADES 3).
        ema: decay of an exponential moving average of the weights (e.g. 0.995), updated after
            every step at w (never at w + v), BatchNorm buffers copied from the model; None:
            no average. Checkpointed as ema_best / ema_last and reported beside best / last.
    """

    method: str = "at-awp"
    model: str = "preact_resnet18"
    model_args: dict[str, Any] = field(default_factory=dict)
    method_args: dict[str, Any] = field(default_factory=dict)
    epochs: int = bounded(200, 1)
    beta: float = bounded(6.0, 0)
    seed: int = 0
    device: str = "auto"
    precision: Precision = "fp32"
    channels_last: bool = False
    compile: bool = False
    threads: Optional[int] = bounded(None, 1, says=">= 1")
    out_dir: Optional[str] = None
    resume: bool = False
    progress: bool = True
    skip_nonfinite: bool = False
    bn_updates: BNUpdates = "training"
    keep_checkpoints: int = bounded(0, 0, note="0 keeps none")
    ema: Optional[float] = bounded(
        None, 0, strict=True, high=1, high_strict=True,
        says="a decay in (0, 1), such as 0.995, or null (no weight average)")
    data: DataConfig = field(default_factory=DataConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    awp: AWPConfig = field(default_factory=AWPConfig)
    perturbation: PerturbationConfig = field(default_factory=PerturbationConfig)
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
