"""The speed switches on CUDA (skipped without a GPU; benchmarks/gpu_check.py runs them on one):
fp16 with a GradScaler, bf16, channels_last and torch.compile give the fp32 path's results to
their precision, and AWP's perturbation keeps its exact size under autocast; an image store
feeds the GPU the batches memory does (the prefetch thread, pinned memory), EMA averages on the
GPU, and a run from a store with EMA trains there."""

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
    v_ref, v_amp = ref.perturbation.compute(closure), amp.perturbation.compute(closure)
    for a, b, w in zip(v_ref, v_amp, amp.perturbation.params):
        assert b.dtype == torch.float32
        assert (b.norm() / w.norm()).item() == pytest.approx(0.01, rel=1e-4)
        assert F.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.95


def test_fp16_awp_ascent_through_the_gradscaler_matches_fp32(tmp_path):
    """train_step ascends the GradScaler-scaled loss (against fp16 underflow); v is normalised
    per tensor, so the scale cancels: v has the exact size and fp32's direction."""
    ref, t = cuda_trainer(tmp_path / "r"), cuda_trainer(tmp_path / "s", precision="fp16")
    x, y = (v.cuda() for v in batch())
    closure = lambda m: F.cross_entropy(m(x), y)  # noqa: E731
    v_ref = ref.perturbation.compute(closure)
    assert t.perturbation.loss_scale == t.scaler.scale  # train_step ascends the scaled loss
    v_scaled = t.perturbation.compute(closure)
    for a, b, w in zip(v_ref, v_scaled, t.perturbation.params):
        assert (b.norm() / w.norm()).item() == pytest.approx(0.01, rel=1e-4)
        assert F.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.95


# ------------------------------------------------------------------ paths added since the last
# GPU run: image stores (the loader's prefetch thread, pinned memory, non-blocking copies),
# EMA's averaged model, a whole run from a store with EMA
DEVICE = "cuda"


@pytest.fixture(scope="module")
def digits_store(tmp_path_factory):
    import numpy as np

    from torchawp.data import import_store, load_splits

    splits = load_splits("digits", val_size=0)
    u8 = lambda t: (t.images.float() * 255).round().byte().permute(0, 2, 3, 1).numpy()  # noqa
    root = tmp_path_factory.mktemp("cuda_store")
    np.savez(root / "digits.npz", x_train=u8(splits.train), y_train=splits.train.labels.numpy(),
             x_test=u8(splits.test), y_test=splits.test.labels.numpy())
    import_store(root / "digits.npz", root / "store")
    return root / "store"


def test_a_store_feeds_the_gpu_the_batches_memory_does(digits_store):
    from torchawp.data import BatchLoader, load_splits

    train = load_splits("store", str(digits_store), val_size=100).train
    assert train.mapped

    def batches(data):
        loader = BatchLoader(data, 64, shuffle=True, augment="crop-flip",
                             generator=torch.Generator().manual_seed(3), device=torch.device(DEVICE))
        return list(loader)

    from_disk, in_memory = batches(train), batches(train.load().to(DEVICE))
    assert len(from_disk) == len(in_memory) > 1
    for (xa, ya), (xb, yb) in zip(from_disk, in_memory):
        assert xa.device.type == DEVICE and torch.equal(xa, xb) and torch.equal(ya, yb)


def test_ema_on_the_gpu_follows_its_formula():
    from torchawp.training.ema import EMA

    model = torch.nn.Linear(4, 3).to(DEVICE)
    ema = EMA(model, decay=0.5)
    w0 = model.weight.detach().clone()
    ema.update(model)  # the first update copies w
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # n = 1: tau = min(0.5, 2 / 11)
    tau = 2 / 11
    expected = tau * w0 + (1 - tau) * model.weight.detach()
    assert ema.module.weight.device.type == DEVICE
    assert torch.allclose(ema.module.weight, expected, atol=1e-6)
    assert ema.averaged.n_averaged.device.type == "cpu"  # no device sync per step


def test_a_run_from_a_store_with_ema_trains_on_the_gpu(tmp_path, digits_store):
    import torchawp
    from torchawp.io.checkpoint import read_weights

    from .helpers import tiny_config

    cfg = tiny_config(tmp_path / "run", epochs=2, ema=0.9)
    cfg.device, cfg.data.name, cfg.data.data_dir = DEVICE, "store", str(digits_store)
    cfg.data.val_size, cfg.data.augment = 100, "crop-flip"
    result = torchawp.train(cfg)
    rows = result.history
    assert len(rows) == 2 and 0 <= rows[-1]["ema_test_robust_acc"] <= 1
    for name in ("last", "best", "ema_last", "ema_best"):
        weights, meta = read_weights(result.run_dir / f"{name}.safetensors")
        assert all(torch.isfinite(w.float()).all() for w in weights.values()), name
    assert meta["data_sha256"]["data"]  # the store's fingerprint travels with the checkpoint
