import os
import subprocess
import sys
from pathlib import Path

import torch

from torchawp.training.trainer import Trainer

from .ddp_common import STEPS, ddp_config, global_batch

ROOT = Path(__file__).resolve().parents[1]


def test_ddp_ranks_agree_and_match_one_process_on_the_global_batch(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # every rank applied the same v

    single = Trainer(ddp_config(tmp_path / "single"))
    init = {k: v.clone() for k, v in single.model.state_dict().items()}
    single.method.attack.random_start = "none"
    x, y = global_batch()
    for _ in range(STEPS):
        single.train_step(x, y, perturb=True)
    # The two-rank update equals the one-process update up to float noise (PGD's sign() turns
    # reduction-order differences into ~1% of the update); ranks that did not average their
    # gradients would be 25-70% off.
    for k, v in single.model.state_dict().items():
        update = (v - init[k]).norm()
        assert update > 0, k  # training moved every tensor
        assert (v - rank0[k]).norm() < 0.05 * update, k

    # the sharded 1-epoch fit ran, and only rank 0 wrote the run directory
    assert (tmp_path / "fit_ok").exists()
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"last.safetensors", "metrics.jsonl", "config.yaml"} <= files
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]
