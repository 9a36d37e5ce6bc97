"""torchawp against its peers, measured side by side in one process (ratios, not timings).

* one AT-AWP training epoch: torchawp vs the Adversarial Robustness Toolbox's
  AdversarialTrainerAWPPyTorch (proxy-model AWP), same model, data, PGD-10 attack and gamma;
* PGD: torchawp's vs torchattacks' on the same model, batch, eps, step size and steps.

Benchmark-only dependencies (not needed by torchawp):
    pip install --no-deps torchattacks adversarial-robustness-toolbox && pip install six

    python benchmarks/peers.py                       # digits, small CNN, CPU
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch
from common import paired

from torchawp.attacks import PGD
from torchawp.config.recipes import load_recipe
from torchawp.data import load_splits
from torchawp.training.trainer import Trainer


def our_epoch(args, splits) -> float:
    cfg = load_recipe("digits")
    cfg.method, cfg.progress, cfg.out_dir, cfg.device = "at-awp", False, "/dev/null/x", "cpu"
    cfg.channels_last = False  # ART runs the model in the default (NCHW) memory format
    cfg.attack.eps, cfg.attack.step_size, cfg.attack.steps = args.eps, args.eps / 4, 10
    cfg.attack.bn_mode = "eval"  # ART crafts with the model in eval mode
    cfg.awp.gamma, cfg.awp.warmup_epochs = args.gamma, 0
    trainer = Trainer(cfg, splits=splits)
    start = time.perf_counter()
    trainer.train_epoch(0)
    return time.perf_counter() - start


def art_epoch(args, splits) -> float:
    from art.attacks.evasion import ProjectedGradientDescent
    from art.defences.trainer import AdversarialTrainerAWPPyTorch
    from art.estimators.classification import PyTorchClassifier

    from torchawp.models import create_model

    info = splits.info
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1, info.image_size, info.mean, info.std,
                         batchnorm=True)
    proxy = copy.deepcopy(model)

    def classifier(m):
        opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        return PyTorchClassifier(m, loss=torch.nn.CrossEntropyLoss(), optimizer=opt,
                                 input_shape=(1, info.image_size, info.image_size),
                                 nb_classes=10, clip_values=(0.0, 1.0), device_type="cpu")

    clf, proxy_clf = classifier(model), classifier(proxy)
    attack = ProjectedGradientDescent(clf, norm=np.inf, eps=args.eps, eps_step=args.eps / 4,
                                      max_iter=10, num_random_init=1, batch_size=128,
                                      verbose=False)
    trainer = AdversarialTrainerAWPPyTorch(clf, proxy_clf, attack, mode="PGD", gamma=args.gamma,
                                           beta=6.0, warmup=0)
    x, y = splits.train.tensors()
    x_np, y_np = x.numpy().astype(np.float32), y.numpy()
    start = time.perf_counter()
    trainer.fit(x_np, y_np, batch_size=128, nb_epochs=1)
    return time.perf_counter() - start


def pgd_times(args, splits, rounds: int) -> tuple[list[float], list[float]]:
    import torchattacks

    from torchawp.models import create_model

    info = splits.info
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1, info.image_size, info.mean, info.std,
                         batchnorm=True).eval()
    x, y = splits.train.tensors(0, 512)
    ours = PGD("linf", args.eps, args.eps / 4, 10)
    theirs = torchattacks.PGD(model, eps=args.eps, alpha=args.eps / 4, steps=10,
                              random_start=True)
    a, b = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        ours(model, x, y)
        a.append(time.perf_counter() - t)
        t = time.perf_counter()
        theirs(x, y)
        b.append(time.perf_counter() - t)
    return a, b


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--eps", type=float, default=0.2)
    p.add_argument("--gamma", type=float, default=0.01)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    splits = load_splits("digits", val_size=200)
    ours, art = [], []
    for _ in range(args.rounds):  # alternate so drift hits both alike
        ours.append(our_epoch(args, splits))
        art.append(art_epoch(args, splits))
    o, a = statistics.median(ours), statistics.median(art)
    print(f"AT-AWP epoch on digits ({len(splits.train)} images, small CNN, PGD-10, gamma "
          f"{args.gamma}, CPU {torch.get_num_threads()} threads): torchawp {o:.2f} s, ART "
          f"{a:.2f} s, ART / torchawp = {paired(art, ours)}")
    po, pt = pgd_times(args, splits, 5 * args.rounds)
    print(f"PGD-10 on 512 digits: torchawp {1e3 * statistics.median(po):.0f} ms, torchattacks "
          f"{1e3 * statistics.median(pt):.0f} ms, torchattacks / torchawp = {paired(pt, po)}")


if __name__ == "__main__":
    main()
