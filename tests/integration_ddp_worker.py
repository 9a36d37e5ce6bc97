"""One rank of a 2-process run (``torchrun --nproc_per_node=2``) of the integrations with AWP:
``hf`` (the Hugging Face Trainer) or ``lightning``; each rank saves its final weights. A small
MLP without BatchNorm in float64, so that two ranks on halves of a batch equal one process on
the whole batch up to the order of the reductions."""

import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import torchawp

STEPS, GLOBAL_BATCH, LR = 3, 16, 0.1
GAMMA = float(os.environ.get("GAMMA", 0.01))


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.Tanh(),
                               torch.nn.Linear(32, 10)).double()


def data():
    g = torch.Generator().manual_seed(1)
    return (torch.rand(STEPS * GLOBAL_BATCH, 1, 8, 8, generator=g, dtype=torch.float64),
            torch.randint(0, 10, (STEPS * GLOBAL_BATCH,), generator=g))


def single_process() -> dict:
    """The same steps in one process on the global batches (ranks take rows r, r+2, ...); run
    outside the process group (the test's own process)."""
    net, (x, y) = mlp(), data()
    awp, opt = torchawp.AWP(net, gamma=GAMMA), torch.optim.SGD(net.parameters(), lr=LR)
    for step in range(STEPS):
        xb, yb = (t[step * GLOBAL_BATCH:(step + 1) * GLOBAL_BATCH] for t in (x, y))
        with awp.perturbed(lambda m: F.cross_entropy(m(xb), yb)):
            opt.zero_grad()
            F.cross_entropy(net(xb), yb).backward()
            opt.step()
    return net.state_dict()


def run_lightning(out: Path) -> dict:
    import lightning.pytorch as L

    from torchawp.integrations.lightning import WeightPerturbationCallback

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=LR)

    module, dataset = Module(), torch.utils.data.TensorDataset(*data())
    loader = torch.utils.data.DataLoader(  # rank r: rows r, r + 2, ... in order
        dataset, batch_size=GLOBAL_BATCH // 2, sampler=torch.utils.data.DistributedSampler(
            dataset, num_replicas=2, rank=int(os.environ["RANK"]), shuffle=False))
    L.Trainer(max_steps=STEPS, accelerator="cpu", devices=2, strategy="ddp", logger=False,
              enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, use_distributed_sampler=False,
              callbacks=[WeightPerturbationCallback(lambda m: torchawp.AWP(m, gamma=GAMMA))]
              ).fit(module, loader)
    return module.net.state_dict()


def run_hf(out: Path) -> dict:
    import transformers

    from torchawp.integrations.hf import PerturbedTrainer

    class Net(torch.nn.Module):  # the Trainer's interface: a dict in, the loss out
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def forward(self, x, labels):
            return {"loss": F.cross_entropy(self.net(x), labels)}

    x, y = data()
    rows = [{"x": x[i], "labels": y[i]} for i in range(len(y))]

    class InOrder(PerturbedTrainer):  # accelerate deals the batches out in turn: rank r has
        def _get_train_sampler(self, *args, **kwargs):  # rows 16 s + 8 r ... of step s
            return torch.utils.data.SequentialSampler(self.train_dataset)

    model = Net()
    args = transformers.TrainingArguments(
        output_dir=str(out / "hf"), per_device_train_batch_size=GLOBAL_BATCH // 2,
        max_steps=STEPS, learning_rate=LR, optim="sgd", lr_scheduler_type="constant",
        weight_decay=0.0, max_grad_norm=0.0, report_to=[], save_strategy="no",
        logging_strategy="no", use_cpu=True, disable_tqdm=True, ddp_backend="gloo")
    InOrder(model=model, args=args, train_dataset=rows,
            perturbation=lambda m: torchawp.AWP(m, gamma=GAMMA)).train()
    return model.net.state_dict()


if __name__ == "__main__":
    which, out = sys.argv[1], Path(sys.argv[2])
    state = {"hf": run_hf, "lightning": run_lightning}[which](out)
    torch.save(state, out / f"{which}_rank{os.environ.get('RANK', 0)}.pt")
    if torch.distributed.is_initialized():  # the trainers leave their process group open: a
        torch.distributed.barrier()  # rank that exits while the other still talks to it
        torch.distributed.destroy_process_group()  # aborts under load (gloo's threads)
