"""Data pipeline throughput: decode + aligned random-resized-crop to 256 on iHarmony4-sized JPEGs.

Reads the HAdobe5k triplets (4256x2832 JPEG composite and real, PNG mask) of
``$HARMONYKIT_REAL_DATA/iharmony4_mini`` and reports samples/s for:

* decode at full size or reduced (``max_size=1024``, JPEG DCT scaling + resize);
* the crop done per sample in DataLoader workers (CPU, ``RandomResizedCropSample``, float out;
  or ``WorkerCropDataset``, ``data.crop_in_workers``: uint8 crops out, kornia or the official
  cv2 arithmetic), or on the collated batch with kornia on ``--device`` (``AlignedRandomResizedCrop``);
* optionally (``--synthetic``) the online synthetic-composite augmentation on the cropped batch;
* ``--prepared``: the raw root against its ``harmonykit prepare`` copy (``max_size=1024``, written
  to a temporary folder, or ``--prepared-root``): samples/s per worker (decode + crop to 256 in the
  worker, full-size raw decode as training on the raw root does) and their ratio.

Usage::

    HARMONYKIT_REAL_DATA=../shared/data python benchmarks/bench_data.py --samples 48 --workers 0 2
    HARMONYKIT_REAL_DATA=../shared/data python benchmarks/bench_data.py --prepared --only-prepared \
        --raw-samples 8 --samples 64 --workers 0 2
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import torch
from torch.utils.data import DataLoader, Dataset

from harmonykit.data import (
    AlignedRandomResizedCrop,
    IHarmony4Dataset,
    RandomResizedCropSample,
    SyntheticComposite,
    WorkerCropDataset,
    batch_to_device,
    collate_samples,
    images_to_float,
)


class _Repeat(Dataset):
    def __init__(self, ds: Dataset, n: int) -> None:
        self.ds, self.n = ds, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.ds[i % len(self.ds)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(root: Path, max_size, crop_on: str, workers: int, samples: int, batch: int,
             device: torch.device, synthetic: bool, subset: str = "HAdobe5k") -> float:
    transform = RandomResizedCropSample(size=256) if crop_on == "worker" else None
    base = IHarmony4Dataset(root, subsets=subset, split="test", max_size=max_size, transform=transform)
    ds = _Repeat(base, samples)
    if crop_on in ("worker_u8", "worker_u8_cv2"):  # data.crop_in_workers: uint8 crops cross the boundary
        backend = "cv2" if crop_on == "worker_u8_cv2" else "kornia"
        ds = WorkerCropDataset(ds, AlignedRandomResizedCrop(256, backend=backend, mask_dtype="uint8" if backend == "cv2" else "float32",
                                                            mask_threshold=None), seed=0)
    loader = DataLoader(ds, batch, shuffle=False, num_workers=workers, drop_last=False,
                        pin_memory=device.type == "cuda", collate_fn=collate_samples)
    crop = AlignedRandomResizedCrop(256, seed=0)
    synth = SyntheticComposite(seed=0).to(device) if synthetic else None
    n = 0
    t0 = time.perf_counter()
    for b in loader:
        b = images_to_float(batch_to_device(b, device))
        if crop_on == "kornia":
            b = crop(b)
        if synth is not None:
            b = synth(b)
        n += b["composite"].shape[0]
    _sync(device)
    return n / (time.perf_counter() - t0)


def stage_times(root: Path, subset: str, repeats: int = 3) -> None:
    """Median seconds per stage for one triplet: decode (full / max 1024) and the crop."""
    from harmonykit.data import fit_size, load_image, load_mask
    from harmonykit.data.augment import resized_crop, sample_crop

    ds = IHarmony4Dataset(root, subsets=subset, split="test")
    rec = ds.records[0]
    small = fit_size(rec.size, 1024)
    img = load_image(rec.real)

    def med(fn) -> float:
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return sorted(ts)[len(ts) // 2]

    g = torch.Generator().manual_seed(0)
    rows = [
        ("decode JPEG, full", lambda: load_image(rec.real)),
        ("decode JPEG, max 1024", lambda: load_image(rec.real, small)),
        ("decode PNG mask, full", lambda: load_mask(rec.mask)),
        ("decode PNG mask, max 1024", lambda: load_mask(rec.mask, small)),
        ("crop+resize 256, full-size input", lambda: resized_crop(img, sample_crop(*img.shape[-2:], generator=g), (256, 256))),
    ]
    print(f"stages ({subset} {rec.size[0]}x{rec.size[1]}, median of {repeats}):")
    for name, fn in rows:
        print(f"  {name:<36} {1000 * med(fn):8.1f} ms", flush=True)


def _shard_rate(prepared: Path, workers: int, samples: int, batch: int, device: torch.device) -> float:
    from harmonykit.data import ShardDataset

    ds = _Repeat(ShardDataset(prepared, view=f"{prepared.name}_test",
                              transform=RandomResizedCropSample(size=256)), samples)
    loader = DataLoader(ds, batch, shuffle=False, num_workers=workers, drop_last=False,
                        pin_memory=device.type == "cuda", collate_fn=collate_samples)
    n = 0
    t0 = time.perf_counter()
    for b in loader:
        n += batch_to_device(b, device)["composite"].shape[0]
    _sync(device)
    return n / (time.perf_counter() - t0)


def prepared_vs_raw(root: Path, subset: str, workers: List[int], samples: int, raw_samples: int, batch: int,
                    device: torch.device, prepared_root: Optional[Path] = None, max_size: int = 1024) -> None:
    """samples/s per worker on the raw subset and on its prepared copy (decode + crop in workers)."""
    from harmonykit.data.prepare import prepare_dataset

    tmp = None
    if prepared_root is None:
        tmp = tempfile.TemporaryDirectory(prefix="hk_prepared_")
        prepared_root = Path(tmp.name)
    try:
        t0 = time.perf_counter()
        res = prepare_dataset(root / subset, prepared_root / subset, max_size=max_size, progress=False,
                              format="shards")
        print(f"prepare {root / subset} -> {prepared_root / subset} (max_size={max_size}): "
              f"{len(res.done)} written, {len(res.skipped)} up to date in {time.perf_counter() - t0:.1f} s")
        head = (f"{'workers':>7} {'raw samples/s/worker':>21} {'prepared samples/s/worker':>26} {'ratio':>7}"
                f" {'shards samples/s/worker':>24}")
        print(head, flush=True)
        print("-" * len(head))
        for w in workers:
            raw = run_case(root, None, "worker", w, raw_samples, batch, device, False, subset)
            ready = run_case(prepared_root, None, "worker", w, samples, batch, device, False, subset)
            shards = _shard_rate(prepared_root / subset, w, samples, batch, device)
            per = max(w, 1)
            print(f"{w:>7} {raw / per:>21.2f} {ready / per:>26.2f} {ready / raw:>6.1f}x {shards / per:>24.2f}",
                  flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = str(Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--data", default=os.environ.get("HARMONYKIT_REAL_DATA", default_data))
    ap.add_argument("--samples", type=int, default=32, help="samples per case")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--synthetic", action="store_true", help="also time the online synthetic composites")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--subset", default="HAdobe5k", help="iharmony4_mini subset to read (default HAdobe5k)")
    ap.add_argument("--stages", action="store_true", help="also print per-stage times")
    ap.add_argument("--prepared", action="store_true",
                    help="also compare the raw subset with its harmonykit prepare copy (max_size=1024)")
    ap.add_argument("--only-prepared", action="store_true", help="run only the raw-vs-prepared comparison")
    ap.add_argument("--prepared-root", default=None,
                    help="folder for the prepared copy (default: a temporary folder, removed after)")
    ap.add_argument("--raw-samples", type=int, default=8,
                    help="samples per raw case in the raw-vs-prepared comparison (raw 4k decode is slow)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.data) / "iharmony4_mini"
    if not (root / args.subset).is_dir():
        print(f"no HAdobe5k data under {root}; set HARMONYKIT_REAL_DATA")
        return 2
    device = torch.device(args.device)
    print(f"device={device}  torch threads={torch.get_num_threads()}  cpus={os.cpu_count()}  "
          f"samples={args.samples}  batch={args.batch_size}  subset={args.subset}")
    if args.stages:
        stage_times(root, args.subset)
    if args.prepared or args.only_prepared:
        prepared_vs_raw(root, args.subset, args.workers, args.samples, args.raw_samples, args.batch_size, device,
                        Path(args.prepared_root) if args.prepared_root else None)
        if args.only_prepared:
            return 0
    head = f"{'decode':<14} {'crop':<16} {'workers':>7} {'samples/s':>10}"
    print(head, flush=True)
    print("-" * len(head))
    cases = [(None, "worker"), (1024, "worker"), (None, "kornia"), (1024, "kornia"), (1024, "worker_u8"),
             (1024, "worker_u8_cv2")]
    for max_size, crop_on in cases:
        for w in args.workers:
            sps = run_case(root, max_size, crop_on, w, args.samples, args.batch_size, device, False, args.subset)
            dec = "full" if max_size is None else f"max {max_size}"
            where = {"worker": "worker (cpu)", "worker_u8": "worker, uint8", "worker_u8_cv2": "worker, u8, cv2"}.get(
                crop_on, f"kornia ({device.type})")
            print(f"{dec:<14} {where:<16} {w:>7} {sps:>10.2f}", flush=True)
    if args.synthetic:
        for w in args.workers:
            sps = run_case(root, 1024, "kornia", w, args.samples, args.batch_size, device, True, args.subset)
            print(f"{'max 1024':<14} {'kornia+synth':<16} {w:>7} {sps:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
