"""Run under torchrun (2 CPU processes, gloo): AT-AWP steps on one global batch, each rank
taking its half, then a 1-epoch fit. Each rank saves its parameters to OUT/rank<r>.pt."""

import sys
from pathlib import Path

import torch

from tests.ddp_common import STEPS, ddp_config, global_batch
from torchawp.training.trainer import Trainer


def main(out: Path):
    trainer = Trainer(ddp_config(out / "unused"))
    rank, world = trainer.dist.rank, trainer.dist.world_size
    trainer.method.attack.random_start = "none"  # the same attack on any split of the batch
    x, y = global_batch()
    for _ in range(STEPS):
        trainer.train_step(x[rank::world], y[rank::world], perturb=True)
    torch.save({k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
               out / f"rank{rank}.pt")
    fit = Trainer(ddp_config(out / "run", epochs=1))
    result = fit.fit()
    if rank == 0:
        (out / "fit_ok").write_text(str(result.last["test_robust_acc"]))
    torch.distributed.barrier()  # no rank leaves while another still talks to it
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
