"""A training method of your own: PGD-AT with adversarial logit pairing (Kannan, Kurakin &
Goodfellow, 2018, arXiv 1803.06373), its weight ramped up over the first epochs.

    torchawp train --method logit_pairing:ALP-awp --method-args "{pairing_weight: 0.5}"

(with this folder on PYTHONPATH). AWP ascends the same loss.
"""

import torch.nn.functional as F

from torchawp.methods import LossOutput, MethodSpec


def alp_loss(model, x, x_adv, y, beta, epoch, pairing_weight=0.5, ramp_epochs=5):
    """``CE(f(x'), y) + w * mean ||f(x) - f(x')||^2``, ``w`` growing linearly to
    ``pairing_weight`` over ``ramp_epochs`` epochs (``beta`` is unused)."""
    logits_adv, logits = model(x_adv), model(x)
    weight = pairing_weight * min(1.0, (epoch + 1) / ramp_epochs)
    pairing = (logits - logits_adv).pow(2).sum(1).mean()
    return LossOutput(F.cross_entropy(logits_adv, y) + weight * pairing, logits_adv)


ALP = MethodSpec(
    name="alp", loss=alp_loss, attack_loss="ce", random_start="uniform", bn_mode="train",
    awp_gamma=0.01, awp_warmup=0, label_smoothing=False, takes_epoch=True,
    paper="Kannan et al. 2018 (arXiv 1803.06373)",
)
