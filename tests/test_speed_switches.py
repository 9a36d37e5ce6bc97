"""Every speed switch gives the plain path's results, to its precision."""

import pytest
import torch
import torch.nn.functional as F

from torchawp.errors import ConfigError
from torchawp.training.trainer import Trainer

from .helpers import tiny_config


def trainer(tmp_path, attack=True, device="cpu", **overrides):
    overrides = {"channels_last": False, **overrides}  # the plain path unless switched
    cfg = tiny_config(tmp_path / "t", **overrides)
    cfg.device = device
    t = Trainer(cfg)
    t.method.attack.random_start = "none"
    if not attack:  # sign steps turn rounding differences into different x_adv; isolate them
        t.method.attack = lambda model, x, y, generator=None: x
    return t


def batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(64, 1, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)


def run_steps(t, n=3):
    x, y = (v.to(t.device) for v in batch())
    losses = [t.train_step(x, y, perturb=True)[0].item() / len(y) for _ in range(n)]
    return losses, {k: v.detach().clone() for k, v in t.model.state_dict().items()}


# bf16 keeps 8 mantissa bits: its gradients through this tiny BatchNorm CNN differ from fp32 by
# ~15% (measured per step); losses agree to a few percent.
@pytest.mark.parametrize("switch,tol,update_tol", [({"channels_last": True}, 1e-4, 1e-4),
                                                   ({"precision": "bf16"}, 5e-2, 0.25)])
def test_switch_matches_the_fp32_path(tmp_path, switch, tol, update_tol):
    ref_losses, _ = run_steps(trainer(tmp_path / "ref"))
    losses, _ = run_steps(trainer(tmp_path / "sw", **switch))
    assert losses == pytest.approx(ref_losses, rel=tol)  # with the attack

    start = {k: v.clone() for k, v in trainer(tmp_path / "init").model.state_dict().items()}
    _, ref = run_steps(trainer(tmp_path / "ref2", attack=False), n=1)
    _, state = run_steps(trainer(tmp_path / "sw2", attack=False, **switch), n=1)
    for k in ref:
        assert state[k].dtype == ref[k].dtype  # weights stay fp32
        if not ref[k].is_floating_point():
            assert torch.equal(state[k], ref[k])  # BatchNorm counters
    # the whole update of the weights agrees to the switch's precision
    keys = [k for k in ref if ref[k].is_floating_point() and "running" not in k]
    step_ref = torch.cat([(ref[k] - start[k]).flatten() for k in keys])
    step_sw = torch.cat([(state[k] - start[k]).flatten() for k in keys])
    assert (step_sw - step_ref).norm() <= update_tol * step_ref.norm()


def test_bf16_awp_perturbation_is_exact_in_size_and_close_in_direction(tmp_path):
    ref, amp = trainer(tmp_path / "a"), trainer(tmp_path / "b", precision="bf16")
    x, y = batch()
    closure = lambda m: F.cross_entropy(m(x), y)  # noqa: E731
    v_ref, v_amp = ref.perturbation.compute(closure), amp.perturbation.compute(closure)
    for a, b, w in zip(v_ref, v_amp, amp.perturbation.params):
        assert b.dtype == torch.float32
        assert (b.norm() / w.norm()).item() == pytest.approx(0.01, rel=1e-4)
        assert F.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.98


def test_compiled_model_trains_like_the_eager_one(tmp_path):
    pytest.importorskip("torch._inductor")
    ref_losses, ref = run_steps(trainer(tmp_path / "ref"), n=2)
    losses, state = run_steps(trainer(tmp_path / "c", compile=True), n=2)
    assert losses == pytest.approx(ref_losses, rel=1e-4)
    for k in ref:
        assert torch.allclose(state[k], ref[k], atol=1e-5, rtol=1e-4), k


def test_fp16_without_cuda_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("fp16 is valid here")
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        trainer(tmp_path, precision="fp16")
