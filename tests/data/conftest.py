"""Builders for small synthetic datasets written with PIL into tmp_path."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np
import pytest
from PIL import Image


def rand_rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def rect_mask(h: int, w: int, box: Tuple[int, int, int, int]) -> np.ndarray:
    """uint8 0/255 mask with foreground rows y0:y1, cols x0:x1."""
    m = np.zeros((h, w), np.uint8)
    y0, y1, x0, x1 = box
    m[y0:y1, x0:x1] = 255
    return m


def write_ih4_subset(root: Path, subset: str, triplets: Sequence[str], split: str = "test",
                     size: Tuple[int, int] = (48, 40), ext: str = ".png") -> Dict[str, Path]:
    """An iHarmony4-layout subset; ``triplets`` are composite stems ``<realid>_<maskid>_<k>``."""
    d = root / subset
    for sub in ("composite_images", "masks", "real_images"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    h, w = size
    paths = {}
    for i, stem in enumerate(triplets):
        real_id, mask_id, _ = stem.rsplit("_", 2)
        Image.fromarray(rand_rgb(h, w, 100 + i)).save(d / "composite_images" / f"{stem}{ext}")
        rp = d / "real_images" / f"{real_id}{ext}"
        if not rp.exists():
            Image.fromarray(rand_rgb(h, w, 1000 + i)).save(rp)
        mp = d / "masks" / f"{real_id}_{mask_id}.png"
        if not mp.exists():
            Image.fromarray(rect_mask(h, w, (5, 20, 4, 30))).save(mp)
        paths[stem] = d / "composite_images" / f"{stem}{ext}"
    (d / f"{subset}_{split}.txt").write_text("\n".join(f"{s}{ext}" for s in triplets) + "\n")
    return paths


@pytest.fixture
def ih4_root(tmp_path: Path) -> Path:
    """Two subsets: HCOCO (plain names) and Hday2night (real ids with dashes)."""
    root = tmp_path / "ih4"
    write_ih4_subset(root, "HCOCO", ["c1_11_1", "c1_11_2", "c2_21_1"], "train")
    write_ih4_subset(root, "HCOCO", ["c3_31_1"], "test")
    write_ih4_subset(root, "Hday2night", ["d21901-20130410-181833_1_9", "d21901-20130410-181833_2_3"], "train")
    return root


@pytest.fixture
def dbuild():
    """The builder functions of this conftest (tests use them through this fixture)."""
    import types

    return types.SimpleNamespace(rand_rgb=rand_rgb, rect_mask=rect_mask, write_ih4_subset=write_ih4_subset)
