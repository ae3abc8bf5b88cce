"""CUDA checks that need a GPU; run by ``benchmarks/gpu_check.sh`` (see docs/training.md).

Subcommands (each exits non-zero on failure, with the reason on stderr):

* ``preflight``: exit 3 with a clear message when no CUDA device is visible; else print it.
* ``kornia``: the batch augmentation on CUDA: ``harmonization_train`` (kornia crop + paired
  colour jitter) on a list of full-size CUDA images equals the same augmentation on the CPU
  with the same generator state (atol 1e-3: antialiased resize and HSV colour ops in float32
  on two devices), keeps composite == real outside the mask, and its throughput (images/s at 256²).
* ``throughput``: pure training-step throughput from ``benchmarks/bench_train.py`` children
  (synthetic batches already on the GPU): ``idih256`` images/s and ``charmnet_idih`` ms per
  iteration, for eager fp32 / bf16 + channels_last / + compile.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def preflight() -> int:
    try:
        import torch
    except ImportError as e:
        print(f"gpu_check: cannot import torch ({e})", file=sys.stderr)
        return 3
    if not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device (torch.cuda.is_available() is False; torch "
            f"{torch.__version__}, CUDA build {torch.version.cuda}). This script only runs on a machine with "
            "an NVIDIA GPU and a CUDA build of torch; nothing was run.",
            file=sys.stderr,
        )
        return 3
    p = torch.cuda.get_device_properties(0)
    print(f"gpu_check: {torch.cuda.device_count()} GPU(s); 0: {p.name}, {p.total_memory / 2**30:.0f} GiB, "
          f"capability {p.major}.{p.minor}; torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"cuDNN {torch.backends.cudnn.version()}, NCCL {'.'.join(map(str, torch.cuda.nccl.version())) if hasattr(torch.cuda, 'nccl') else '?'}")
    return 0


def kornia_check(batch: int = 64, iters: int = 20, device: str = "cuda") -> int:
    import torch

    from harmonykit.data.augment import harmonization_train

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    g = torch.Generator().manual_seed(0)
    sizes = [(480 + 32 * (i % 5), 640 - 16 * (i % 7)) for i in range(8)]
    comps = [torch.rand(3, h, w, generator=g) for h, w in sizes]
    masks = []
    for h, w in sizes:
        m = torch.zeros(1, h, w)
        m[:, h // 4 : 3 * h // 4, w // 5 : 4 * w // 5] = 1
        masks.append(m)
    reals = [torch.where(m > 0, torch.rand(c.shape, generator=g), c) for c, m in zip(comps, masks)]
    jitter = {"brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.05}
    outs = {}
    for dev in ("cpu", device):
        aug = harmonization_train(256, color_jitter=jitter, seed=7)
        b = {"composite": [c.to(dev) for c in comps], "real": [r.to(dev) for r in reals], "mask": [m.to(dev) for m in masks]}
        outs[dev] = aug(b)
    bad = []
    for k in ("composite", "real", "mask"):
        a, c = outs["cpu"][k], outs[device][k]
        if c.device.type != torch.device(device).type:
            bad.append(f"{k} is on {c.device}, expected {device}")
        d = (a - c.cpu()).abs().max().item()
        print(f"kornia on CUDA vs CPU: {k} max |diff| {d:.2e}")
        if d > 1e-3:
            bad.append(f"{k}: max |diff| {d:.3g} > 1e-3")
    o = outs[device]
    outside = ((o["composite"] - o["real"]).abs() * (o["mask"] == 0)).max().item()
    if outside > 1e-6:
        bad.append(f"composite != real outside the mask after the paired jitter ({outside:.3g})")
    # throughput on stacked full-HD-ish uint8->float batches already on the GPU
    aug = harmonization_train(256, color_jitter=jitter, seed=7)
    big = {k: [t.to(device) for t in v] * (batch // len(v)) for k, v in (("composite", comps), ("real", reals), ("mask", masks))}
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    aug(big)
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        aug(big)
    sync()
    ips = iters * batch / (time.perf_counter() - t0)
    print(f"kornia augmentation on CUDA (crop of ~{sizes[0][1]}x{sizes[0][0]} images to 256² + paired jitter): "
          f"{ips:.0f} images/s (per-sample crop loop, batch {batch})")
    if bad:
        print("kornia check FAILED:\n  " + "\n  ".join(bad), file=sys.stderr)
        return 1
    print("kornia check: OK")
    return 0


def _bench(models: str, configs: str, batch: int, iters: int, warmup: int, device: str = "cuda") -> list:
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"gpu_check_{models}_{batch}.json"
    cmd = [sys.executable, str(HERE / "bench_train.py"), "--devices", device, "--models", models, "--configs", configs,
           "--batch", str(batch), "--iters", str(iters), "--warmup", str(warmup), "--json", str(out)]
    r = subprocess.run(cmd, text=True)
    if r.returncode != 0 or not out.is_file():
        raise SystemExit(f"bench_train.py failed ({' '.join(cmd)})")
    return json.loads(out.read_text())


def throughput(idih_batch: int, charm_batch: int, iters: int, warmup: int, configs: str, device: str = "cuda") -> int:
    rows = (_bench("idih256", configs, idih_batch, iters, warmup, device)
            + _bench("charmnet_idih", configs, charm_batch, iters, warmup, device))
    print(f"\nthroughput at 256² (idih256 batch {idih_batch}; charmnet_idih {charm_batch} rendered + {charm_batch} real):")
    for r in rows:
        if "error" in r:
            print(f"  {r['model']:14} {r['config']:16} FAILED: {r['error']}")
        elif r["model"] == "idih256":
            print(f"  {r['model']:14} {r['config']:16} {r['img_per_s']:10.0f} training images/s   (target >= 10000)")
        else:
            print(f"  {r['model']:14} {r['config']:16} {1000 * r['s_per_iter']:10.1f} ms per iteration  (target < 15)")
    return 0 if all("error" not in r for r in rows) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("preflight", "kornia", "throughput"))
    ap.add_argument("--idih-batch", type=int, default=256)
    ap.add_argument("--charmnet-batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--configs", default="eager,bf16_cl,compile_bf16_cl")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                    help="cpu: a dry run of the check's logic (gpu_check.sh with GPU_CHECK_DEVICE=cpu)")
    a = ap.parse_args()
    if a.what == "preflight":
        return preflight()
    if a.device == "cuda" and preflight() != 0:
        return 3
    if a.what == "kornia":
        return kornia_check() if a.device == "cuda" else kornia_check(batch=8, iters=1, device="cpu")
    return throughput(a.idih_batch, a.charmnet_batch, a.iters, a.warmup, a.configs, device=a.device)


if __name__ == "__main__":
    sys.exit(main())
