"""The bundled real photos: index, licences, masks, the online dataset and the eval triplets."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harmonykit.data.bundled import (
    PHOTOS_DIR,
    BundledPhotosDataset,
    load_bundled_photos,
    load_photo_index,
    random_object_mask,
    rasterize_mask,
    write_eval_triplets,
)
from harmonykit.data.io import DataError


def test_index_has_licences_and_splits():
    photos = load_photo_index()
    assert len(photos) == 7
    assert sorted(p.split for p in photos).count("train") == 5
    assert [p.name for p in photos if p.split == "eval"] == ["flower", "grace_hopper"]
    for p in photos:
        assert p.path.is_file() and p.path.parent == PHOTOS_DIR
        for key in ("licence", "source", "attribution"):
            assert getattr(p, key).strip(), f"{p.name}: empty {key}"


def test_masks_match_the_stored_size():
    for p in load_bundled_photos(max_side=None):
        with Image.open(p.path) as im:
            w, h = im.size
        assert tuple(p.image.shape) == (3, h, w), p.name
        assert tuple(p.mask.shape) == (1, h, w), p.name
        frac = float(p.mask.mean())
        assert 0.01 < frac < 0.95, f"{p.name}: mask covers {frac:.3f} of the photo"
        assert set(torch.unique(p.mask).tolist()) <= {0.0, 1.0}


def test_downscaled_masks_follow_the_image():
    full = {p.name: float(p.mask.mean()) for p in load_bundled_photos("eval", max_side=None)}
    for p in load_bundled_photos("eval", max_side=200):
        assert max(p.image.shape[1:]) == 200 and p.mask.shape[1:] == p.image.shape[1:]
        assert abs(float(p.mask.mean()) - full[p.name]) < 0.02


def test_rasterize_shapes():
    sq = rasterize_mask([{"polygon": [[10, 10], [29, 10], [29, 29], [10, 29]]}], (40, 40))
    assert sq.shape == (40, 40) and 380 <= int((sq > 0).sum()) <= 420
    el = rasterize_mask([{"ellipse": [50, 40, 20, 10]}], (100, 80), scale=0.5)
    assert abs(int((el > 0).sum()) - np.pi * 10.5 * 5.5) < 12  # PIL boxes include both ends
    assert el[20, 25] == 255 and el[0, 0] == 0


def test_random_object_mask_is_a_blob():
    g = torch.Generator().manual_seed(3)
    fracs = [float(random_object_mask((128, 96), g).mean()) for _ in range(20)]
    assert all(0.0 < f < 0.7 for f in fracs)
    assert max(fracs) - min(fracs) > 0.05  # variety


def test_bad_index_names_the_photo(tmp_path: Path):
    (tmp_path / "a.jpg").write_bytes((PHOTOS_DIR / "flower.jpg").read_bytes())
    entry = {"file": "a.jpg", "source": "s", "licence": "", "attribution": "x", "split": "train", "mask": [{"ellipse": [1, 1, 1, 1]}]}
    (tmp_path / "photos.json").write_text(json.dumps({"photos": {"pic": entry}}))
    with pytest.raises(DataError, match="pic.*licence"):
        load_photo_index(tmp_path)


def test_dataset_samples_keep_the_background_and_are_seeded():
    ds = BundledPhotosDataset(length=12, size=128, seed=5)
    kinds = set()
    for i in range(len(ds)):
        s = ds[i]
        assert s["composite"].shape == (3, 128, 128) and s["mask"].shape == (1, 128, 128)
        assert s["domain"] == "real"
        bg = s["mask"] < 0.5
        assert torch.equal(s["composite"][:, bg[0]], s["real"][:, bg[0]]), "background must be bit-exact"
        fg = ~bg[0]
        assert fg.any() and float((s["composite"][:, fg] - s["real"][:, fg]).abs().mean()) > 0.005
        assert float(s["composite"].min()) >= 0 and float(s["composite"].max()) <= 1
        kinds.add(s["name"].rsplit("-", 1)[1])
    assert kinds == {"object", "random"}
    again = BundledPhotosDataset(length=12, size=128, seed=5)[7]
    assert torch.equal(again["composite"], ds[7]["composite"])
    other = BundledPhotosDataset(length=12, size=128, seed=6)[7]
    assert not torch.equal(other["composite"], ds[7]["composite"])


def test_registered_dataset():
    from harmonykit.registry import DATASETS

    ds = DATASETS.create("bundled_photos", length=3, size=64)
    assert len(ds) == 3 and ds[0]["composite"].shape == (3, 64, 64)
    with pytest.raises(ValueError, match="object_mask_prob"):
        BundledPhotosDataset(object_mask_prob=2.0)


def test_eval_triplets_background_exact(tmp_path: Path):
    recs = write_eval_triplets(tmp_path / "ev", per_photo=3, seed=1, max_side=256, progress=False)
    assert len(recs) == 6 and {r["photo"] for r in recs} == {"flower", "grace_hopper"}
    for r in recs:
        assert r["licence"] and r["method"]
        photo = r["photo"]
        comp = np.asarray(Image.open(tmp_path / "ev" / "composite_images" / r["composite"]).convert("RGB"))
        real = np.asarray(Image.open(tmp_path / "ev" / "real_images" / f"{photo}.png").convert("RGB"))
        mask = np.asarray(Image.open(tmp_path / "ev" / "masks" / f"{photo}.png")) >= 128
        assert comp.shape == real.shape and mask.shape == comp.shape[:2]
        assert np.array_equal(comp[~mask], real[~mask]), f"{r['composite']}: background changed"
        assert np.abs(comp[mask].astype(int) - real[mask].astype(int)).mean() > 2.0
    # seeded: the same call writes the same pixels
    write_eval_triplets(tmp_path / "ev2", per_photo=3, seed=1, max_side=256, progress=False)
    for r in recs:
        a = np.asarray(Image.open(tmp_path / "ev" / "composite_images" / r["composite"]))
        b = np.asarray(Image.open(tmp_path / "ev2" / "composite_images" / r["composite"]))
        assert np.array_equal(a, b)
    # read back by the folder dataset and by evaluation
    from harmonykit.data import FolderDataset
    from harmonykit.eval import find_triplets

    ds = FolderDataset(tmp_path / "ev")
    assert len(ds) == 6 and ds[0]["real"].shape == ds[0]["composite"].shape
    assert len(find_triplets(tmp_path / "ev", split=None)) == 6
