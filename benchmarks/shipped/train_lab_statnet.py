"""Train the shipped ``lab_statnet`` weights (CPU, minutes) from ``prepare_data.py``'s output.

Recipe (seeded, deterministic on one thread): ``create_model("lab_statnet")`` (hidden 64,
depth 2; the untrained network is the half-way Lab transfer), AdamW (lr 2e-3, weight decay
1e-4, cosine decay to 0), batch 64 synthetic composites (96 x 96) drawn with a seeded
generator, loss = mean over images of the foreground MSE in RGB [0, 1] (the fMSE the metrics
report, area-normalised per image). The network only reads region statistics, which do not
depend on its weights, so they are computed once per sample (``model.region_stats``, the same
code as the forward), and the loss is estimated on ``--pixels`` foreground pixels per sample
drawn once with a seeded generator (``model.apply_transform``, the same code as the forward). Every ``--eval-every`` steps the validation fMSE (held-out
photos) is measured; the weights with the best validation fMSE are kept (the untrained,
half-way network included: training can only be kept when it helps on held-out photos).

Output: ``OUT/lab_statnet.safetensors`` (fp16) and ``OUT/train_log.json``. Usage::

    PYTHONPATH=. python benchmarks/shipped/train_lab_statnet.py --data /tmp/hk_shipped --out /tmp/hk_run
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
from kornia.color import rgb_to_lab

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from harmonykit.factory import create_model  # noqa: E402


def unit(t: torch.Tensor) -> torch.Tensor:
    return t.float() / 255.0


def fmse(pred: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image foreground MSE (B,), [0, 1] scale, mask-weighted."""
    d = ((pred - real) ** 2 * mask).sum(dim=(1, 2, 3))
    return d / (3 * mask.sum(dim=(1, 2, 3))).clamp_min(1.0)


@torch.no_grad()
def evaluate(model, data, bs: int = 200) -> float:
    model.eval()
    tot, n = 0.0, 0
    for s in range(0, data["real"].shape[0], bs):
        c, r, m = (unit(data[k][s:s + bs]) for k in ("composite", "real", "mask"))
        tot += float(fmse(model(c, m).image, r, m).sum())
        n += c.shape[0]
    model.train()
    return tot / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--wd", type=float, default=1e-4)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pixels", type=int, default=512)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    data = Path(a.data)
    train, val = torch.load(data / "train.pt"), torch.load(data / "val.pt")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    model = create_model("lab_statnet")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.wd)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, a.steps) / a.steps)))
    g = torch.Generator().manual_seed(a.seed)
    n = train["real"].shape[0]
    # fixed per-sample inputs: region statistics and sampled foreground pixels
    stats, lab_pix, real_pix = [], [], []
    with torch.no_grad():
        for s in range(0, n, 256):
            c, r, m = (unit(train[k][s:s + 256]) for k in ("composite", "real", "mask"))
            lab = rgb_to_lab(c) / model.lab_scale
            stats.append(model.region_stats(c, m, lab))
            idx = torch.multinomial(m.flatten(1) + 1e-8, a.pixels, replacement=True, generator=g)  # B, P
            take = lambda x: torch.gather(x.flatten(2), 2, idx[:, None].expand(-1, 3, -1))  # noqa: E731
            lab_pix.append(take(lab)), real_pix.append(take(r))
    stats = {k: torch.cat([d[k] for d in stats]) for k in stats[0]}
    lab_pix, real_pix = torch.cat(lab_pix), torch.cat(real_pix)
    v0 = evaluate(model, val)
    vc = float(fmse(unit(val["composite"]), unit(val["real"]), unit(val["mask"])).mean())
    best = (v0, 0, {k: v.clone() for k, v in model.state_dict().items()})
    log = dict(history=[])
    print(f"val fMSE x255^2: composite {vc * 65025:.1f}  half-way (init) {v0 * 65025:.1f}", flush=True)
    t0 = time.time()
    run = 0.0
    for step in range(1, a.steps + 1):
        idx = torch.randint(n, (a.batch,), generator=g)
        T = model.transform_from_stats({k: v[idx] for k, v in stats.items()})["transform"]
        loss = ((model.apply_transform(T, lab_pix[idx]) - real_pix[idx]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        run = 0.98 * run + 0.02 * loss.item() if step > 1 else loss.item()
        if step % a.eval_every == 0 or step == a.steps:
            v = evaluate(model, val)
            log["history"].append(dict(step=step, train_fmse=run * 65025, val_fmse=v * 65025, seconds=time.time() - t0))
            print(f"step {step}  train {run * 65025:.1f}  val {v * 65025:.1f}  {time.time() - t0:.0f}s", flush=True)
            if v < best[0]:
                best = (v, step, {k: t.clone() for k, t in model.state_dict().items()})
    from safetensors.torch import save_file

    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, str(out / "last.safetensors"))
    sd = {k: v.half().contiguous() for k, v in best[2].items()}
    save_file(sd, str(out / "lab_statnet.safetensors"), metadata={"arch": "lab_statnet", "step": str(best[1])})
    # the fp16 weights, as shipped, on the validation set
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    log.update(
        best_step=best[1], val_fmse_best=best[0] * 65025, val_fmse_shipped_fp16=evaluate(model, val) * 65025,
        val_fmse_composite=vc * 65025, val_fmse_halfway_init=v0 * 65025, wall_seconds=time.time() - t0,
        args=vars(a), torch=torch.__version__, machine=platform.processor() or platform.machine(),
        n_train=n, n_val=int(val["real"].shape[0]), train_photos=train.get("photos"), val_photos=val.get("photos"),
    )
    (out / "train_log.json").write_text(json.dumps(log, indent=1))
    print(json.dumps({k: v for k, v in log.items() if k != "history"}, indent=1))


if __name__ == "__main__":
    main()
