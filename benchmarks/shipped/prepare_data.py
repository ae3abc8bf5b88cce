"""Training data of the shipped LabStatNet: synthetic composites from redistributable photos.

Sources (every photo, its licence and sha256 are in ``sources.json`` beside this file; the
script refuses a file whose hash differs):

* the ``train`` photos bundled in ``harmonykit/assets/photos`` (public domain / CC0 / CC BY 2.0,
  with their hand-drawn object masks; see that folder's README);
* the CC0 / CC BY 4.0 photographs of the Debian package ``lomiri-wallpapers-16.04``
  (bookworm, 20.04.0-2; the CC BY-SA ones are left out), fetched with ``apt-get download``.

Validation: the ``eval`` bundled photos (flower, grace_hopper) and the photos named by
``--val-photos`` (default: three of the Debian photos), never used for training.
``../shared/data`` (the test set) is never read.

Each sample: a random crop (25-100 % of the photo's area, aspect 3:4..4:3) resized to
``size x size``; a foreground mask that is the photo's drawn object mask (when the crop holds
enough of it), a random object-like blob, or a union of SLIC superpixels grown from a seed
segment; and a foreground colour edit by :class:`harmonykit.data.synthetic.SyntheticComposite`
(Lab / histogram transfer from another sample's foreground, exposure, gamma, white balance,
Planckian illuminant, hue / saturation), in batches of 16, background bit-exact.

Output: ``OUT/{train,val}.pt`` with uint8 tensors ``real``, ``composite`` (N, 3, S, S), ``mask``
(N, 1, S, S) and the list ``methods``. Usage::

    PYTHONPATH=. python benchmarks/shipped/prepare_data.py --out /tmp/hk_shipped --deb-dir /tmp/hk_deb
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from harmonykit.data.bundled import load_bundled_photos, random_object_mask  # noqa: E402
from harmonykit.data.synthetic import SyntheticComposite  # noqa: E402

MAX_SIDE = 512


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_debian(deb_dir: Path, package: str) -> Path:
    """``apt-get download`` + ``dpkg-deb -x`` of ``package`` into ``deb_dir`` (once)."""
    root = deb_dir / package
    if not root.exists():
        deb_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", package], cwd=deb_dir, check=True)
        debs = sorted(deb_dir.glob(f"{package}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(root)], check=True)
    return root


def load_rgb(path: Path) -> torch.Tensor:
    """(3, H, W) float in [0, 1], longer side <= MAX_SIDE."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        if max(w, h) > MAX_SIDE:
            s = MAX_SIDE / max(w, h)
            im = im.resize((round(w * s), round(h * s)), Image.BILINEAR)
        return torch.from_numpy(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()).float() / 255.0


VAL_PHOTOS = ("sunset_by_Aitzol_Berasategi", "umang_by_Abhishek_Mudgal", "Wine_by_Jakkub_Mede")


def load_sources(deb_dir: Path, val_photos=VAL_PHOTOS) -> Dict[str, List[Tuple[str, torch.Tensor, torch.Tensor]]]:
    """{"train": [(name, image, drawn mask or None)], "val": [...]}; hashes checked."""
    spec = json.loads((HERE / "sources.json").read_text())
    out: Dict[str, list] = {"train": [], "val": []}
    for split, bsplit in (("train", "train"), ("val", "eval")):
        for p in load_bundled_photos(bsplit, max_side=MAX_SIDE):
            out[split].append((p.name, p.image, p.mask))
    for pkg in spec["debian"]:
        root = fetch_debian(deb_dir, pkg["package"])
        for f in pkg["files"]:
            path = root / f["path"]
            if sha256(path) != f["sha256"]:
                raise SystemExit(f"{path}: sha256 differs from sources.json ({f['sha256']})")
            out["val" if path.stem in val_photos else "train"].append((path.stem, load_rgb(path), None))
    return out


def slic_mask(img: torch.Tensor, g: torch.Generator, area: Tuple[float, float] = (0.06, 0.4)) -> torch.Tensor:
    """A union of SLIC superpixels grown from a random seed segment (adjacent segments added
    until the area reaches a random target). (1, S, S) float in {0, 1}."""
    from skimage.segmentation import slic

    arr = img.permute(1, 2, 0).numpy()
    n_seg = int(torch.randint(15, 60, (), generator=g))
    seg = slic(arr, n_segments=n_seg, compactness=10.0, start_label=0)
    h, w = seg.shape
    target = area[0] + (area[1] - area[0]) * float(torch.rand((), generator=g))
    labels = np.unique(seg)
    cur = {int(labels[int(torch.randint(len(labels), (), generator=g))])}
    sel = np.isin(seg, list(cur))
    while sel.mean() < target:
        ring = np.zeros_like(sel)
        ring[1:] |= sel[:-1]
        ring[:-1] |= sel[1:]
        ring[:, 1:] |= sel[:, :-1]
        ring[:, :-1] |= sel[:, 1:]
        nb = np.unique(seg[ring & ~sel])
        if nb.size == 0:
            break
        cur.add(int(nb[int(torch.randint(nb.size, (), generator=g))]))
        sel = np.isin(seg, list(cur))
    return torch.from_numpy(sel.astype(np.float32))[None]


def sample(photos, i: int, seed: int, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """One (real (3, S, S), mask (1, S, S)) pair; depends only on (seed, i)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + i)
    name, img, drawn = photos[int(torch.randint(len(photos), (), generator=g))]
    _, H, W = img.shape
    for _ in range(10):
        frac = 0.25 + 0.75 * float(torch.rand((), generator=g))
        ar = math.exp((float(torch.rand((), generator=g)) * 2 - 1) * math.log(4 / 3))
        ch, cw = min(H, round(math.sqrt(frac * H * W / ar))), min(W, round(math.sqrt(frac * H * W * ar)))
        y0 = int(torch.randint(H - ch + 1, (), generator=g))
        x0 = int(torch.randint(W - cw + 1, (), generator=g))
        crop = img[:, y0:y0 + ch, x0:x0 + cw]
        real = F.interpolate(crop[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0].clamp(0, 1)
        real = (real * 255).round() / 255
        kind = float(torch.rand((), generator=g))
        mask = None
        if drawn is not None and kind < 0.4:
            m = F.interpolate(drawn[None, :, y0:y0 + ch, x0:x0 + cw], size=(size, size), mode="nearest")[0]
            if 0.05 <= float(m.mean()) <= 0.7:
                mask = m
        if mask is None and kind < 0.7:
            mask = slic_mask(real, g)
        if mask is None:
            mask = random_object_mask((size, size), g)
        if 0.03 <= float(mask.mean()) <= 0.75:
            break
    if torch.rand((), generator=g) < 0.5:
        real, mask = real.flip(-1), mask.flip(-1)
    return real, mask


def build(photos, n: int, seed: int, size: int, methods=None) -> Dict[str, object]:
    synth = SyntheticComposite(seed=seed) if not methods else SyntheticComposite(methods=tuple(methods), seed=seed)
    reals, masks, comps, methods = [], [], [], []
    for s in range(0, n, 16):
        pairs = [sample(photos, i, seed, size) for i in range(s, min(n, s + 16))]
        r = torch.stack([p[0] for p in pairs])
        m = torch.stack([p[1] for p in pairs])
        c = synth(r, m)
        reals.append(r), masks.append(m), comps.append(c)
        methods += list(synth.last_methods)
        if s % 320 == 0:
            print(f"  {s}/{n}", flush=True)
    u8 = lambda t: (torch.cat(t) * 255).round().clamp(0, 255).to(torch.uint8)  # noqa: E731
    return dict(real=u8(reals), composite=u8(comps), mask=u8(masks), methods=methods)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--deb-dir", required=True, help="where the Debian packages are downloaded and unpacked")
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-val", type=int, default=600)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="*", default=None,
                    help="SyntheticComposite edits to draw from (default: all of harmonykit.data.synthetic.METHODS)")
    ap.add_argument("--val-photos", nargs="*", default=list(VAL_PHOTOS), help="Debian photos held out for validation")
    a = ap.parse_args()
    torch.set_num_threads(1)
    src = load_sources(Path(a.deb_dir), tuple(a.val_photos))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    print("train photos:", [s[0] for s in src["train"]], "val photos:", [s[0] for s in src["val"]])
    for split, n, seed in (("train", a.n_train, a.seed), ("val", a.n_val, a.seed + 1)):
        d = build(src[split], n, seed, a.size, a.methods)
        d["photos"] = [s[0] for s in src[split]]
        torch.save(d, out / f"{split}.pt")
        print(split, tuple(d["real"].shape))


if __name__ == "__main__":
    main()
