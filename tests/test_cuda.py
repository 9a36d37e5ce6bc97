"""The speed switches on CUDA (skipped without a GPU; benchmarks/gpu_check.py runs them on one):
fp16 with a GradScaler, bf16, channels_last and torch.compile give the fp32 path's results to
their precision, and AWP's perturbation keeps its exact size under autocast."""

import pytest
import torch
import torch.nn.functional as F

from .test_speed_switches import batch, run_steps, trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def cuda_trainer(tmp_path, **overrides):
    return trainer(tmp_path, device="cuda", **overrides)


# fp32 convolutions on CUDA use TF32 by default (10 mantissa bits): the plain path itself is
# only that precise, so channels_last and compile agree with it to about 1e-3.
@pytest.mark.parametrize("switch,tol", [({"channels_last": True}, 1e-2),
                                        ({"compile": True}, 1e-2),
                                        ({"precision": "bf16"}, 5e-2),
                                        ({"precision": "fp16"}, 5e-2),
                                        ({"precision": "bf16", "channels_last": True}, 5e-2)])
def test_switch_on_cuda_matches_the_fp32_path(tmp_path, switch, tol):
    ref_losses, ref = run_steps(cuda_trainer(tmp_path / "ref"))
    losses, state = run_steps(cuda_trainer(tmp_path / "sw", **switch))
    assert losses == pytest.approx(ref_losses, rel=tol)
    for k in ref:
        assert state[k].dtype == ref[k].dtype  # weights and BN buffers keep their dtype
        assert torch.isfinite(state[k].float()).all(), k


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_awp_perturbation_under_autocast_has_the_exact_size(tmp_path, precision):
    ref, amp = cuda_trainer(tmp_path / "a"), cuda_trainer(tmp_path / "b", precision=precision)
    x, y = (v.cuda() for v in batch())
    closure = lambda m: F.cross_entropy(m(x), y)  # noqa: E731
    v_ref, v_amp = ref.awp.compute(closure), amp.awp.compute(closure)
    for a, b, w in zip(v_ref, v_amp, amp.awp.params):
        assert b.dtype == torch.float32
        assert (b.norm() / w.norm()).item() == pytest.approx(0.01, rel=1e-4)
        assert F.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.95


def test_fp16_awp_ascent_through_the_gradscaler_matches_fp32(tmp_path):
    """train_step ascends the GradScaler-scaled loss (against fp16 underflow); v is normalised
    per tensor, so the scale cancels: v has the exact size and fp32's direction."""
    ref, t = cuda_trainer(tmp_path / "r"), cuda_trainer(tmp_path / "s", precision="fp16")
    x, y = (v.cuda() for v in batch())
    closure = lambda m: F.cross_entropy(m(x), y)  # noqa: E731
    v_ref = ref.awp.compute(closure)
    v_scaled = t.awp.compute(lambda m: t.scaler.scale(closure(m)))  # what train_step ascends
    for a, b, w in zip(v_ref, v_scaled, t.awp.params):
        assert (b.norm() / w.norm()).item() == pytest.approx(0.01, rel=1e-4)
        assert F.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.95
