"""Where and how a run executes: device, precision, memory format, torch.distributed."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> the local CUDA device if present (the rank's under torchrun), else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps (got {name!r})")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' asked for but MPS is not available; use --device cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for but CUDA is not available; use --device cpu")
    return device


def cpu_name() -> str:
    """The processor's model name (what benchmarks and studies record beside their numbers)."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from ``/proc/stat``."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def cores_busy_elsewhere(window: float = 0.1) -> float | None:
    """How many cores other processes keep busy, measured over ``window`` seconds (Linux:
    ``/proc/stat`` less this process's own CPU time); None where unknown."""
    try:
        busy0, total0 = _cpu_ticks()
        own0, start = time.process_time(), time.monotonic()
        time.sleep(window)
        busy1, total1 = _cpu_ticks()
        own1, elapsed = time.process_time(), time.monotonic() - start
    except (OSError, ValueError, IndexError):
        return None
    cores = os.cpu_count() or 1
    busy = (busy1 - busy0) / max(total1 - total0, 1) * cores * elapsed  # core-seconds
    return max(0.0, (busy - (own1 - own0)) / elapsed)


def warn_if_cpus_are_taken(device: torch.device, threads: int | None = None) -> None:
    """One line when this CPU run and what already runs ask for more threads than there are
    cores: on 2 cores two 2-thread jobs each ran many times slower, not 2x
    (``benchmarks/concurrency.py``). Called once a run's config, resume rule and data have
    passed their checks, so that a refusal stays one line however busy the machine is."""
    if device.type != "cpu":
        return
    busy, cores = cores_busy_elsewhere(), os.cpu_count() or 1
    threads = threads or torch.get_num_threads()
    if busy is not None and busy >= 0.75 and busy + threads > cores + 0.25:
        warnings.warn(f"other processes keep {busy:.1f} of this machine's {cores} cores busy "
                      f"and this run uses {threads} thread(s): CPU jobs whose threads add up to "
                      f"more than the cores run many times slower, not just shared; run them "
                      f"one after another, or give each --threads so that they add up to at "
                      f"most {cores}", stacklevel=2)


def autocast_dtype(precision: str, device: torch.device):
    """None for fp32, else the autocast dtype (fp16 only on CUDA)."""
    if precision == "fp32":
        return None
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 needs CUDA (it uses a GradScaler); use bf16 on CPU")
    return torch.bfloat16 if precision == "bf16" else torch.float16


class AutocastModel(nn.Module):
    """Runs ``module`` under ``torch.autocast`` and returns float32 logits, so attacks, losses
    and AWP see the same interface at any precision while weights stay float32."""

    def __init__(self, module: nn.Module, device_type: str, dtype: torch.dtype):
        super().__init__()
        self.module = module
        self.device_type = device_type
        self.dtype = dtype

    def forward(self, x):
        with torch.autocast(self.device_type, dtype=self.dtype):
            out = self.module(x)
        return out.float()


def execution_nets(model: nn.Module, precision: str, channels_last: bool, compile_: bool,
                   device: torch.device, dist_env: "DistEnv") -> tuple[nn.Module, nn.Module]:
    """``(net, train_net)``: the model as every forward runs it (NHWC weights, autocast,
    ``torch.compile``), and the same wrapped in DDP for the training loss under torchrun."""
    if channels_last:  # NHWC weights make every convolution (and what follows) NHWC
        model.to(memory_format=torch.channels_last)
    net = model
    dtype = autocast_dtype(precision, device)
    if dtype is not None:
        net = AutocastModel(net, device.type, dtype)
    if compile_:
        net = torch.compile(net)
    train_net = net
    if dist_env.enabled:
        train_net = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    return net, train_net


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistEnv:
    """Join the process group that ``torchrun`` describes (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1:
        return DistEnv()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistEnv(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks in place (identity outside torch.distributed)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(generators: dict[str, torch.Generator]) -> dict:
    """All RNG states as tensors and plain data (loadable with ``weights_only=True``)."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "generators": {k: g.get_state() for k, g in generators.items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generators: dict[str, torch.Generator]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np_state[1].numpy().astype(np.uint32), *np_state[2:]))
    torch.set_rng_state(state["torch"])
    for k, g in generators.items():
        g.set_state(state["generators"][k])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def stop_on_signals(on_signal: Callable[[str], None], enabled: bool = True) -> Iterator[None]:
    """For the block, SIGINT and SIGTERM call ``on_signal(name)`` (the caller stops at a safe
    point); a second signal raises KeyboardInterrupt at once. Off outside the main thread and
    when not ``enabled`` (under DDP the ranks cannot agree on a step without a collective per
    step, so the signals keep their default action and a run resumes from its last epoch)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    seen = []

    def handler(signum, frame):
        if seen:  # the second one: no more waiting
            raise KeyboardInterrupt
        seen.append(signum)
        on_signal(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
