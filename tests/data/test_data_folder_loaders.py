"""Folder dataset, collation, check-data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harmonykit.cli import main as cli_main
from harmonykit.data import (
    DataError,
    DataFileNotFoundError,
    FolderDataset,
    ListFormatError,
    RdHarmonyDataset,
    batch_to_device,
    check_dataset,
    collate_samples,
    detect_format,
    make_composites,
)


def _folder(root: Path, dbuild, stems=("a", "b", "c"), shared=("d_1", "d_2")) -> Path:
    for sub in ("composite_images", "masks", "real_images"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(stems):
        Image.fromarray(dbuild.rand_rgb(20 + i, 24, i)).save(root / "composite_images" / f"{s}.jpg")
        Image.fromarray(dbuild.rand_rgb(20 + i, 24, 50 + i)).save(root / "real_images" / f"{s}.png")
        Image.fromarray(dbuild.rect_mask(20 + i, 24, (2, 10, 3, 12))).save(root / "masks" / f"{s}.png")
    for s in shared:  # iHarmony-like sharing: d_1, d_2 -> masks/d.png, real_images/d.webp
        Image.fromarray(dbuild.rand_rgb(16, 16, 9)).save(root / "composite_images" / f"{s}.png")
    Image.fromarray(dbuild.rand_rgb(16, 16, 10)).save(root / "real_images" / "d.webp", lossless=True)
    Image.fromarray(dbuild.rect_mask(16, 16, (0, 8, 0, 8))).save(root / "masks" / "d.png")
    return root


def test_folder_dataset(tmp_path, dbuild):
    root = _folder(tmp_path / "f", dbuild)
    ds = FolderDataset(root)
    assert [r.name for r in ds.records] == ["a", "b", "c", "d_1", "d_2"]
    assert ds.records[3].mask.name == "d.png" and ds.records[4].real.name == "d.webp"
    s = ds[1]
    assert s["composite"].shape == (3, 21, 24) and s["mask"].shape == (1, 21, 24) and s["domain"] == "real"
    want = np.asarray(Image.open(root / "real_images" / "b.png"), dtype=np.float32).transpose(2, 0, 1) / 255
    assert torch.equal(s["real"], torch.from_numpy(want))
    assert float(s["mask"].sum()) == 8 * 9


def test_folder_errors(tmp_path, dbuild):
    root = _folder(tmp_path / "f", dbuild)
    (root / "masks" / "b.png").unlink()
    with pytest.raises(DataFileNotFoundError, match=r"masks/b\.png"):
        FolderDataset(root)
    ds = FolderDataset(root, skip_bad=True)
    assert len(ds) == 4 and ds.skipped == 1
    (root / "list.txt").write_text("a.jpg\nzzz.jpg\n")
    with pytest.raises(DataFileNotFoundError, match=r"list\.txt:2: .*zzz\.jpg"):
        FolderDataset(root, list_file="list.txt")
    empty = tmp_path / "e"
    for sub in ("composite_images", "masks", "real_images"):
        (empty / sub).mkdir(parents=True)
    with pytest.raises(ListFormatError, match="composite_images"):
        FolderDataset(empty)
    with pytest.raises(DataFileNotFoundError, match="composite_images"):
        FolderDataset(tmp_path / "nothing")


def test_collate_and_device():
    a = {"composite": torch.zeros(3, 4, 5), "mask": torch.zeros(1, 4, 5), "name": "a", "style": torch.tensor(2)}
    b = {"composite": torch.ones(3, 4, 5), "mask": torch.ones(1, 4, 5), "name": "b", "style": torch.tensor(3)}
    c = {"composite": torch.ones(3, 6, 5), "mask": torch.ones(1, 6, 5), "name": "c"}
    ab = collate_samples([a, b])
    assert ab["composite"].shape == (2, 3, 4, 5) and ab["name"] == ["a", "b"] and ab["style"].tolist() == [2, 3]
    ac = collate_samples([a, c])
    assert isinstance(ac["composite"], list) and "style" not in ac
    moved = batch_to_device(ac, "cpu")
    assert moved["composite"][1].shape == (3, 6, 5) and moved["name"] == ["a", "c"]
    with pytest.raises(ValueError):
        collate_samples([])


def _seeded_loader(ds, batch_size, seed, num_workers):
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(ds, batch_size, shuffle=True, drop_last=True, num_workers=num_workers,
                                       collate_fn=collate_samples, generator=g)


def test_worker_side_crop_stacks_and_is_seeded(tmp_path, dbuild):
    from harmonykit.data import RandomResizedCropSample

    ds = FolderDataset(_folder(tmp_path / "f", dbuild), transform=RandomResizedCropSample(size=8))
    out1 = [b["composite"] for b in _seeded_loader(ds, 2, seed=3, num_workers=1)]
    out2 = [b["composite"] for b in _seeded_loader(ds, 2, seed=3, num_workers=1)]
    assert len(out1) == 2 and out1[0].shape == (2, 3, 8, 8)
    assert all(torch.equal(x, y) for x, y in zip(out1, out2))


def test_check_data_real_and_broken(tmp_path, dbuild, real_data_dir, capsys):
    root = real_data_dir / "iharmony4_mini"
    assert detect_format(root) == "iharmony4"
    rep = check_dataset(root, progress=False, coverage=False)
    assert rep.ok and {s.name: s.samples for s in rep.subsets} == {"HCOCO test": 4, "HAdobe5k test": 2}
    assert cli_main(["check-data", str(root / "HCOCO")]) == 0
    out = capsys.readouterr().out
    assert "HCOCO test" in out and "375x500" in out and "0.123" in out and "problems: none" in out

    broken = _folder(tmp_path / "f", dbuild)
    assert detect_format(broken) == "folder"
    p = broken / "composite_images" / "b.jpg"
    p.write_bytes(p.read_bytes()[:100])
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(broken / "masks" / "c.png")
    assert cli_main(["check-data", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "problems: 2" in out and "b.jpg" in out and "masks/c.png" in out and "total" in out


def test_check_data_rdharmony(tmp_path, monkeypatch):
    src = tmp_path / "r" / "s1"
    src.mkdir(parents=True)
    for k in (1, 2):
        Image.fromarray(np.full((10, 12, 3), 40 * k, np.uint8)).save(src / f"{k}.png")
    m = np.zeros((10, 12), np.uint8)
    m[:5] = 255
    Image.fromarray(m).save(src / "mask.png")
    make_composites(tmp_path / "r", tmp_path / "ds", category="SHuman", ext="png", progress=False)
    assert detect_format(tmp_path / "ds") == "rdharmony"
    rep = check_dataset(tmp_path / "ds", progress=False)
    assert rep.ok and rep.subsets[0].samples == 2 and rep.subsets[0].coverage == [0.5, 0.5]
    assert len(RdHarmonyDataset(tmp_path / "ds")) == 2
    monkeypatch.chdir(tmp_path)  # a relative root works too
    assert check_dataset("ds", progress=False, coverage=False).ok
    with pytest.raises(DataError, match="unrecognised layout"):
        detect_format(tmp_path / "r")
