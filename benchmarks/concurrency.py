"""Several CPU jobs at once: how much slower is each training step when two torchawp processes
share the machine, by thread setting?

Each job runs PGD-10 AT steps (small CNN with BatchNorm on digits, batch 128, the default
job's step) in its own process; the jobs of a setting start together and each reports its
median step time after a warm-up. Printed: every setting's step time and its slowdown against
one job alone with every core.

    python benchmarks/concurrency.py            # about 3 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def worker(threads: int, steps: int) -> None:
    import torch
    import torch.nn.functional as F

    from torchawp.attacks import PGD
    from torchawp.data import BatchLoader, load_splits
    from torchawp.models import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    splits = load_splits("digits", val_size=200)
    info = splits.info
    model = create_model("small_cnn", 10, 1, 8, info.mean, info.std, batchnorm=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pgd = PGD("linf", 0.2, 0.05, steps=10, bn_mode="train")
    loader = BatchLoader(splits.train, 128, shuffle=True, drop_last=True,
                         generator=torch.Generator().manual_seed(0))
    times = []
    while len(times) < steps:
        for x, y in loader:
            start = time.perf_counter()
            x_adv = pgd(model, x, y)
            model.train()
            loss = F.cross_entropy(model(x_adv), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - start)
            if len(times) >= steps:
                break
    print(json.dumps({"median_s": statistics.median(times[3:])}))


def run(jobs: int, threads: int, steps: int, env_extra: dict) -> list[float]:
    env = dict(os.environ, **env_extra)
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(threads), str(steps)],
                              stdout=subprocess.PIPE, text=True, env=env) for _ in range(jobs)]
    return [json.loads(p.communicate()[0].strip().splitlines()[-1])["median_s"] for p in procs]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", nargs=2, type=int, metavar=("THREADS", "STEPS"))
    p.add_argument("--steps", type=int, default=40)
    args = p.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    cores = os.cpu_count() or 1
    settings = [("1 job, all cores", 1, cores, {}),
                ("1 job, all cores, OMP_WAIT_POLICY=PASSIVE", 1, cores,
                 {"OMP_WAIT_POLICY": "PASSIVE"}),
                (f"2 jobs, {cores} threads each", 2, cores, {}),
                (f"2 jobs, {cores} threads each, OMP_WAIT_POLICY=PASSIVE", 2, cores,
                 {"OMP_WAIT_POLICY": "PASSIVE"}),
                (f"2 jobs, {max(1, cores // 2)} thread(s) each", 2, max(1, cores // 2), {}),
                (f"1 job, {max(1, cores // 2)} thread(s)", 1, max(1, cores // 2), {})]
    print(f"{cores} cores; PGD-10 AT step, small CNN + BN, digits, batch 128; median step time "
          f"of each job")
    solo = None
    for label, jobs, threads, env in settings:
        times = run(jobs, threads, args.steps, env)
        solo = solo or times[0]
        print(f"{label:<52} " + ", ".join(f"{1000 * t:6.1f} ms" for t in times)
              + f"   ({max(times) / solo:.1f}x one job alone)", flush=True)


if __name__ == "__main__":
    main()
