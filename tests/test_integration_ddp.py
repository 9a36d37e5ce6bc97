"""The integrations under DDP (2 CPU processes, gloo): every rank adds the same v (the ascent
gradient averaged over the ranks) and the two ranks on halves of each batch end where one
process on the whole batches ends."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .integration_ddp_worker import single_process

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("which,package", [("hf", "transformers"),
                                           ("lightning", "lightning")])
def test_two_ranks_take_one_process_steps(tmp_path, which, package):
    pytest.importorskip(package, reason=f"the {which} extra is not installed")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tests" / "integration_ddp_worker.py"), which, str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"{which}_rank{r}.pt", weights_only=True)
                    for r in (0, 1))
    single = single_process()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # the same v on every rank
    for k in single:
        assert (rank0[k] - single[k]).abs().max() < 1e-12, k
