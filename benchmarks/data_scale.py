"""Training from millions of images on disk: a synthetic image store, measured.

Writes a store of ``--images`` random 32x32x3 uint8 images (4M: 12 GB, half this machine's
memory) through the import path, then measures, in one run:

* import: images/s and the peak private memory of the conversion;
* the loader (gather + uint8 -> float + crop-flip augmentation, batches of 512): images/s from a
  warm store (pages in the page cache) and from a cold one (the file's pages dropped with
  ``posix_fadvise(DONTNEED)``), and the in-memory path on the same first 50,000 images;
* training steps drawing from the store (small CNN, AT-AWP, batch 128; PreActResNet-18, batch
  32): peak private memory and the share of step time spent waiting for data.

Private memory is ``RssAnon`` from /proc/self/status, sampled every 20 ms: pages of a
memory-mapped file count in plain RSS while the page cache holds them, so RSS is the wrong
figure. The store is deleted at the end, whatever happens.

    python benchmarks/data_scale.py                 # 4M images, about 10 minutes on 2 cores
    python benchmarks/data_scale.py --images 20000 --json /tmp/x.json   # a quick dry run
    python benchmarks/data_scale.py --report-only   # the docs' table from the committed JSON
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from torchawp.data import BatchLoader
from torchawp.data.stats import CHUNK
from torchawp.data.store import open_store
from torchawp.data.store_import import Source, _write_split
from torchawp.runtime import cpu_name

RESULTS = Path(__file__).resolve().parent / "results" / "data_scale.json"


class AnonPeak:
    """Peak ``RssAnon`` (bytes) of this process while the block runs."""

    def __enter__(self):
        self.peak, self._stop = self.now(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def now() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
        return 0

    def _watch(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.now())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def synthetic_store(path: Path, n_train: int, n_test: int, seed: int = 0) -> dict:
    """A store of random images written by the import path (chunk by chunk, hashed)."""
    path.mkdir(parents=True)
    card = {"format": "torchawp-store", "version": 1, "source": "synthetic",
            "layout": "synthetic", "shape": [3, 32, 32], "num_classes": 10, "splits": {}}
    for split, n in (("train", n_train), ("test", n_test)):
        rng = np.random.default_rng(seed + (split == "test"))
        labels = rng.integers(0, 10, n)

        def chunks(n=n, rng=rng):
            for start in range(0, n, CHUNK):
                yield rng.integers(0, 256, (min(CHUNK, n - start), 3, 32, 32), dtype=np.uint8)

        entry = _write_split(path, path, split, Source(n, (3, 32, 32), np.dtype(np.uint8), labels,
                                                 chunks), (3, 32, 32), progress=False)
        stats = entry.pop("stats")
        if split == "train":
            card["mean"], card["std"] = stats
        card["splits"][split] = entry
    (path / "card.json").write_text(json.dumps(card))
    return card


def dm_npz(path: Path, n: int, seed: int = 2) -> None:
    """A DM-Improves-AT ``.npz`` (``image`` uint8 N x 32 x 32 x 3, ``label``), streamed into
    the zip archive chunk by chunk (never held whole)."""
    import zipfile

    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        with zf.open("image.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False,
                                                     "shape": (n, 32, 32, 3)})
            for start in range(0, n, CHUNK):
                f.write(rng.integers(0, 256, (min(CHUNK, n - start), 32, 32, 3),
                                     dtype=np.uint8).tobytes())
        with zf.open("label.npy", "w") as f:
            np.save(f, rng.integers(0, 10, n))


def import_peak(src: Path, out: Path) -> dict:
    """``torchawp data import SRC --out-dir OUT`` in its own process: seconds and peak RssAnon."""
    import subprocess

    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "torchawp.cli", "data", "import", str(src),
                             "--out-dir", str(out), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    status, peak = Path(f"/proc/{proc.pid}/status"), 0
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("RssAnon:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except OSError:
            break
        time.sleep(0.02)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.read().decode()[-2000:])
    return {"seconds": time.perf_counter() - start, "peak_rss_anon_bytes": peak}


def page_cache_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Cached:"):
            return int(line.split()[1]) * 1024
    return 0


def drop_from_page_cache(files) -> Optional[str]:
    """Evict the store's pages (nothing may map them any more): the kernel's drop_caches where
    this process may write it (root), else ``posix_fadvise(DONTNEED)`` on each file. Returns
    the method that ran, or None."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return "drop_caches"
    except OSError:
        pass
    try:
        for path in files:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        return "posix_fadvise"
    except (AttributeError, OSError):
        return None


def loader_rate(data, batches: int, batch_size: int = 512) -> float:
    """Images per second of gather + to_float + crop-flip, on the CPU."""
    loader = BatchLoader(data, batch_size, shuffle=True, augment="crop-flip",
                         generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    it = loader.batches()
    next(it)  # the thread starts, the first batch is read
    start, n = time.perf_counter(), 0
    for _, x, _ in it:
        n += len(x)
        if n >= batches * batch_size:
            break
    rate = n / (time.perf_counter() - start)
    it.close()
    return rate


def training_steps(store: Path, model: str, batch: int, steps: int, model_args: dict) -> dict:
    """AT-AWP steps drawing batches from the store: peak private memory, step time and the
    share of it spent waiting for the next batch."""
    from torchawp.config.recipes import load_recipe
    from torchawp.training.trainer import Trainer

    cfg = load_recipe("digits")
    cfg.data.name, cfg.data.data_dir, cfg.data.batch_size = "store", str(store), batch
    cfg.data.augment, cfg.data.val_size = "crop-flip", 1000
    cfg.model, cfg.model_args, cfg.method = model, model_args, "at-awp"
    cfg.attack.eps, cfg.attack.step_size = 8 / 255, 2 / 255
    cfg.progress, cfg.awp.warmup_epochs = False, 0
    cfg.out_dir = tempfile.mkdtemp(prefix="data_scale_run_")
    try:
        with AnonPeak() as mem:
            trainer = Trainer(cfg)
            it = trainer.train_loader.batches()
            waits, totals = [], []
            for i in range(steps + 1):
                t0 = time.perf_counter()
                _, x, y = next(it)
                t1 = time.perf_counter()
                trainer.train_step(x, y, perturb=True)
                t2 = time.perf_counter()
                if i:  # the first batch also starts the thread and builds the model
                    waits.append(t1 - t0)
                    totals.append(t2 - t0)
            it.close()
        return {"model": model, "batch": batch, "steps": steps,
                "step_seconds": float(np.median(totals)),
                "wait_seconds_total": sum(waits), "step_seconds_total": sum(totals),
                "wait_share": sum(waits) / sum(totals), "peak_rss_anon_bytes": mem.peak}
    finally:
        shutil.rmtree(cfg.out_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4_000_000)
    parser.add_argument("--test-images", type=int, default=10_000)
    parser.add_argument("--dir", default=None, help="where the store goes (default: beside "
                                                    "this checkout, on its disk)")
    parser.add_argument("--loader-batches", type=int, default=200)
    parser.add_argument("--npz-images", type=int, default=1_000_000,
                        help="images of the DM-format .npz imported (0: skip)")
    parser.add_argument("--steps", type=int, default=30, help="small CNN training steps")
    parser.add_argument("--prn18-steps", type=int, default=3, help="0: skip PreActResNet-18")
    parser.add_argument("--json", default=str(RESULTS))
    parser.add_argument("--report-only", action="store_true",
                        help="print the docs' table from the results JSON")
    args = parser.parse_args()
    if args.report_only:
        print(render(json.loads(Path(args.json).read_text())), end="")
        return 0
    torch.set_num_threads(2)
    root = Path(tempfile.mkdtemp(prefix="torchawp_store_", dir=args.dir or Path.cwd()))
    store = root / "store"
    out = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                       "python": platform.python_version(), "torch": torch.__version__},
           "images": args.images}
    try:
        with AnonPeak() as mem:
            start = time.perf_counter()
            synthetic_store(store, args.images, args.test_images)
            seconds = time.perf_counter() - start
        size = sum(f.stat().st_size for f in store.iterdir())
        out["import"] = {"seconds": seconds, "images_per_second": args.images / seconds,
                         "bytes_on_disk": size, "peak_rss_anon_bytes": mem.peak}
        print(f"store: {args.images:,} images, {size / 1e9:.1f} GB written in {seconds:.0f} s "
              f"({args.images / seconds:,.0f} images/s), peak private memory "
              f"{mem.peak / 2**20:.0f} MiB", flush=True)

        train = open_store(store).split("train")
        rates = {}
        rates["warm"] = loader_rate(train, args.loader_batches)
        first = train.subset(torch.arange(min(50_000, len(train))))
        rates["store_first_50k"] = loader_rate(first, args.loader_batches)
        rates["memory_first_50k"] = loader_rate(first.load(), args.loader_batches)
        out["first_images"] = len(first)
        del train, first  # unmapped: mapped pages cannot be evicted
        gc.collect()
        before = page_cache_bytes()
        method = drop_from_page_cache(sorted(store.iterdir()))
        out["cold_cache"] = {"method": method, "page_cache_before_bytes": before,
                             "page_cache_after_bytes": page_cache_bytes()}
        train = open_store(store).split("train")
        rates["cold"] = loader_rate(train, args.loader_batches) if method else None
        out["loader_images_per_second"] = rates
        print("loader (gather + float + crop-flip, batch 512), images/s: " + ", ".join(
            f"{k} {v:,.0f}" for k, v in rates.items() if v is not None), flush=True)

        if args.npz_images:  # a DM-format .npz through `torchawp data import`
            npz = root / "dm.npz"
            dm_npz(npz, args.npz_images)
            result = import_peak(npz, root / "dm_store")
            out["dm_npz_import"] = {"images": args.npz_images,
                                    "npz_bytes": npz.stat().st_size, **result}
            shutil.rmtree(root / "dm_store")
            npz.unlink()
            print(f"data import of a {args.npz_images:,}-image DM .npz: {result['seconds']:.0f} s, "
                  f"peak private memory {result['peak_rss_anon_bytes'] / 2**20:.0f} MiB",
                  flush=True)
        out["training"] = [training_steps(store, "small_cnn", 128, args.steps, {})]
        if args.prn18_steps:
            out["training"].append(
                training_steps(store, "preact_resnet18", 32, args.prn18_steps, {}))
        for r in out["training"]:
            print(f"{r['model']} AT-AWP batch {r['batch']}: {r['step_seconds']:.3f} s a step, "
                  f"waiting for data {100 * r['wait_share']:.2f}% of it, peak private memory "
                  f"{r['peak_rss_anon_bytes'] / 2**20:.0f} MiB", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)  # never leave 12 GB behind
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(render(out), end="")
    print(f"wrote {args.json}; the store was deleted")
    return 0


def render(out: dict) -> str:
    """The docs' table (docs/scale.md), from the results JSON."""
    m, imp, rates = out["machine"], out["import"], out["loader_images_per_second"]
    gib = lambda b: f"{b / 2**30:.2f} GiB"  # noqa: E731
    rows = [f"| machine | {m['cpu']}, {m['cores']} cores, torch {m['torch']} |",
            f"| store | {out['images']:,} images 32x32x3 uint8, {imp['bytes_on_disk'] / 1e9:.1f} "
            f"GB on disk |",
            f"| writing it (import path: chunks, SHA-256, mean/std) | {imp['seconds']:.0f} s, "
            f"{imp['images_per_second']:,.0f} images/s, peak private memory "
            f"{gib(imp['peak_rss_anon_bytes'])} |"]
    cold = out.get("cold_cache") or {}
    dropped = (f"{cold['method']}: page cache {cold['page_cache_before_bytes'] / 1e9:.1f} -> "
               f"{cold['page_cache_after_bytes'] / 1e9:.1f} GB" if cold.get("method") else "")
    first = out.get("first_images", min(50_000, out["images"]))  # results before it was kept
    names = {"warm": f"loader, warm store (in the page cache), random rows of all "
                     f"{out['images']:,}",
             "store_first_50k": f"loader, store, first {first:,} images",
             "memory_first_50k": f"loader, the same {first:,} in memory",
             "cold": f"loader, cold store ({dropped}), random rows"}
    for key, name in names.items():
        value = rates.get(key)
        rows.append(f"| {name} | " + (f"{value:,.0f} images/s |" if value else
                                      "not measurable here |"))
    if "dm_npz_import" in out:
        d = out["dm_npz_import"]
        rows.append(f"| torchawp data import of a {d['images']:,}-image DM-Improves-AT .npz "
                    f"({d['npz_bytes'] / 1e9:.1f} GB) | {d['seconds']:.0f} s, peak private "
                    f"memory {gib(d['peak_rss_anon_bytes'])} |")
    for r in out["training"]:
        rows.append(f"| {r['model']} AT-AWP, batch {r['batch']}, {r['steps']} steps from the "
                    f"store | {r['step_seconds']:.3f} s a step, waiting for data "
                    f"{100 * r['wait_share']:.2f}% of it, peak private memory "
                    f"{gib(r['peak_rss_anon_bytes'])} |")
    return "| what | measured |\n|---|---|\n" + "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.exit(main())
