"""Robust anomaly detection with adversarial autoencoders (Beggel, Pfeiffer & Bischl, "Robust
anomaly detection in images using adversarial autoencoders", ECML-PKDD 2019): a reproduction
beside torchawp, not part of the installed library.

An autoencoder (AE) is trained on images of the normal class that are contaminated with
anomalies, and flags a test image as anomalous when it reconstructs it badly. An adversarial
autoencoder (AAE, Makhzani et al. 2016) also enforces a prior on its latent space with a
discriminator, so that the latent density says how likely an image is. Iterative training set
refinement (ITSR) retrains after dropping the training images whose latent density is lowest,
the likely anomalies. With ``gamma > 0`` the autoencoder's steps are taken at adversarially
perturbed weights (torchawp's AWP, the reconstruction loss as the ascent loss).

Where we had to choose (the paper's exact architecture and schedule are not reproduced):
- fully connected encoder and decoder (one hidden layer of 256 units), a latent of 8
  dimensions, a standard normal prior, a discriminator with one hidden layer of 128 units;
- the anomaly score: the reconstruction error, for every detector (the AAE's latent density
  serves ITSR; as a score, added to the error's rank, it lowered the AAE's balanced accuracy
  on digits from 0.93 to 0.59 in a pilot);
- the threshold for balanced accuracy: the score of the training image at the 1 - nu quantile,
  nu = 0.1 (the share of the training set treated as suspect, never the true contamination,
  which a user does not know); AUROC needs no threshold;
- ITSR: after a third of the epochs, at each of 3 refinements (spread over the remaining
  training), drop the nu / 3 of the remaining training images with the lowest latent
  log-density.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from torch import nn

from torchawp import AWP

LATENT = 8
NU = 0.1  # the share of training images treated as suspect (threshold, ITSR budget)


class AutoEncoder(nn.Module):
    def __init__(self, dim: int, latent: int = LATENT, hidden: int = 256):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(dim, hidden), nn.ReLU(),
                                     nn.Linear(hidden, latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(),
                                     nn.Linear(hidden, dim), nn.Sigmoid())

    def forward(self, x):
        return self.decoder(self.encoder(x)).view_as(x)


@dataclass
class Setting:
    """One detector: ``adversarial`` (AAE: the latent prior enforced), ``itsr`` (training set
    refinement), ``gamma`` (AWP on the autoencoder's steps; 0: off)."""

    name: str
    adversarial: bool = False
    itsr: bool = False
    gamma: float = 0.0


SETTINGS = (Setting("ae"), Setting("aae", adversarial=True),
            Setting("aae+itsr", adversarial=True, itsr=True),
            Setting("aae+itsr+awp", adversarial=True, itsr=True, gamma=0.01))


def contaminated(x: torch.Tensor, y: torch.Tensor, normal: int, contamination: float,
                 seed: int, n_normal: Optional[int] = None):
    """A training set of the ``normal`` class's images with ``contamination`` of it (a share of
    the whole set) drawn from the other classes; returns the images and whether each is an
    anomaly (which training never sees)."""
    g = torch.Generator().manual_seed(seed)
    normals = x[y == normal]
    normals = normals[torch.randperm(len(normals), generator=g)[:n_normal]]
    others = x[y != normal]
    n_anomalies = round(contamination / (1 - contamination) * len(normals))
    anomalies = others[torch.randperm(len(others), generator=g)[:n_anomalies]]
    images = torch.cat([normals, anomalies])
    is_anomaly = torch.cat([torch.zeros(len(normals)), torch.ones(len(anomalies))]).bool()
    order = torch.randperm(len(images), generator=g)
    return images[order], is_anomaly[order]


def latent_log_density(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per row, up to the constant."""
    return -0.5 * z.pow(2).sum(1)


def refine(model: AutoEncoder, images: torch.Tensor, keep: torch.Tensor,
           share: float) -> torch.Tensor:
    """ITSR's step: of the training images still kept, drop the ``share`` whose encodings have
    the lowest latent log-density. Returns the new keep mask."""
    with torch.no_grad():
        density = latent_log_density(model.encoder(images))
    kept = keep.nonzero().flatten()
    n_drop = int(round(share * len(kept)))
    if n_drop == 0:
        return keep
    drop = kept[density[kept].argsort()[:n_drop]]
    keep = keep.clone()
    keep[drop] = False
    return keep


def train_detector(images: torch.Tensor, setting: Setting, seed: int, epochs: int = 60,
                   batch_size: int = 64, lr: float = 1e-3) -> tuple[AutoEncoder, torch.Tensor]:
    """Train one detector on ``images`` (N x C x H x W in [0, 1]); returns the model (eval
    mode) and the training images it kept (all of them without ITSR)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    dim = images[0].numel()
    model = AutoEncoder(dim)
    disc = nn.Sequential(nn.Linear(LATENT, 128), nn.ReLU(), nn.Linear(128, 1))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr)
    awp = AWP(model, gamma=setting.gamma) if setting.gamma > 0 else None
    keep = torch.ones(len(images), dtype=torch.bool)
    refinements = ({epochs // 3 + i * (epochs - epochs // 3) // 3 for i in range(3)}
                   if setting.itsr else set())
    for epoch in range(epochs):
        if epoch in refinements:
            model.eval()
            keep = refine(model, images, keep, NU / 3)
        model.train()
        data = images[keep]
        for idx in torch.randperm(len(data), generator=g).split(batch_size):
            x = data[idx]
            recon = lambda m: F.mse_loss(m(x), x)  # noqa: E731
            with awp.perturbed(recon) if awp is not None else contextlib.nullcontext():
                loss = recon(model)
                opt.zero_grad()
                loss.backward()
                opt.step()
            if setting.adversarial:  # the discriminator, then the encoder against it
                z = model.encoder(x)
                prior = torch.randn(z.shape, generator=g)
                ones, zeros = torch.ones(len(x), 1), torch.zeros(len(x), 1)
                d_loss = (F.binary_cross_entropy_with_logits(disc(prior), ones)
                          + F.binary_cross_entropy_with_logits(disc(z.detach()), zeros))
                opt_d.zero_grad()
                d_loss.backward()
                opt_d.step()
                g_loss = F.binary_cross_entropy_with_logits(disc(model.encoder(x)), ones)
                opt.zero_grad()
                g_loss.backward()
                opt.step()
    return model.eval(), keep


def scores(model: AutoEncoder, images: torch.Tensor) -> np.ndarray:
    """Anomaly scores (higher: more anomalous): the mean squared reconstruction error."""
    with torch.no_grad():
        return (model(images) - images).pow(2).flatten(1).mean(1).numpy()


def evaluate(model: AutoEncoder, train_images: torch.Tensor, test_images: torch.Tensor,
             test_anomaly: torch.Tensor) -> dict:
    """Balanced accuracy (threshold: the training scores' 1 - NU quantile) and AUROC."""
    train_scores, test_scores = scores(model, train_images), scores(model, test_images)
    threshold = np.quantile(train_scores, 1 - NU)
    truth = test_anomaly.numpy().astype(int)
    return {"balanced_accuracy": float(balanced_accuracy_score(truth, test_scores > threshold)),
            "auroc": float(roc_auc_score(truth, test_scores))}
