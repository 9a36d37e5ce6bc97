"""RST (Carmon et al., NeurIPS 2019, arXiv 1905.13736): robust self-training, the TRADES loss
on batches that mix labelled and pseudo-labelled extra data."""

from .base import MethodSpec, register_method
from .trades import trades_loss

RST = register_method(MethodSpec(
    name="rst", loss=trades_loss, attack_loss="kl", random_start="normal", bn_mode="eval",
    awp_gamma=0.005, awp_warmup=10, needs_extra_data=True,
    paper="Carmon et al. 2019 (arXiv 1905.13736)",
    authors_forwards=("x_adv", "x"),  # semisup-adv's trades_loss: x', then one x forward
))
