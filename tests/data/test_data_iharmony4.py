"""iHarmony4 reader: real mini set, name mapping, list formats, restriction, bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harmonykit.data import (
    CorruptFileError,
    DataFileNotFoundError,
    IHarmony4Dataset,
    ListFormatError,
    SizeMismatchError,
    parse_iharmony4_name,
)
from harmonykit.registry import DATASETS


def _pil(p: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0)


def test_name_pattern():
    assert parse_iharmony4_name("c100300_1602094_1.jpg") == ("c100300", "c100300_1602094")
    assert parse_iharmony4_name("a0001_1_4.jpg") == ("a0001", "a0001_1")
    assert parse_iharmony4_name("d21901-20130410-181833_1_9.jpg") == ("d21901-20130410-181833", "d21901-20130410-181833_1")
    assert parse_iharmony4_name("c100300.jpg") is None
    assert parse_iharmony4_name("c1__2.jpg") is None


def test_real_mini_set_exact(real_data_dir):
    root = real_data_dir / "iharmony4_mini"
    ds = DATASETS.create("iharmony4", root=root, split="test")
    assert len(ds) == 6
    assert ds.subset_counts() == {"HCOCO": 4, "HAdobe5k": 2}
    by_name = {r.name: r for r in ds.records}
    assert set(by_name) == {f"c35030_434421_{k}" for k in range(1, 5)} | {"a0002_1_4", "a0002_1_5"}
    r = by_name["a0002_1_5"]
    assert r.mask == root / "HAdobe5k" / "masks" / "a0002_1.png"
    assert r.real == root / "HAdobe5k" / "real_images" / "a0002.jpg"
    assert by_name["c35030_434421_3"].mask == root / "HCOCO" / "masks" / "c35030_434421.png"
    assert by_name["c35030_434421_3"].real == root / "HCOCO" / "real_images" / "c35030.jpg"
    for i, rec in enumerate(ds.records):
        if rec.subset != "HCOCO" and i != len(ds) - 1:
            continue  # decode one 4k triplet only, to keep the test fast
        s = ds[i]
        assert s["domain"] == "real" and s["name"] == rec.name
        assert torch.equal(s["composite"], _pil(rec.composite))
        assert torch.equal(s["real"], _pil(rec.real))
        m = np.asarray(Image.open(rec.mask).convert("L"))
        assert torch.equal(s["mask"][0], torch.from_numpy((m >= 128).astype(np.float32)))
    # the four HCOCO composites differ from the real image inside the mask only (mostly)
    s = ds[0]
    fg = s["mask"][0] > 0.5
    diff = (s["composite"] - s["real"]).abs().mean(0)
    assert diff[fg].mean() > 3 * diff[~fg].mean()


def test_real_hadobe_reduced_decode(real_data_dir):
    ds = IHarmony4Dataset(real_data_dir / "iharmony4_mini", subsets="HAdobe5k", split="test", max_size=1024)
    s = ds[0]
    assert s["composite"].shape == (3, 1024, 681)  # 4256x2832 portrait -> longer side 1024
    assert s["real"].shape == (3, 1024, 681) and s["mask"].shape == (1, 1024, 681)
    full = Image.open(ds.records[0].real).convert("RGB").resize((681, 1024), Image.BILINEAR)
    ref = torch.from_numpy(np.asarray(full, dtype=np.float32).transpose(2, 0, 1) / 255.0)
    assert (s["real"] - ref).abs().mean() < 0.02
    assert 0.6 < float(s["mask"].mean()) < 0.73  # the full-size mask covers 0.667


def test_synthetic_layout_train_test_and_dashes(ih4_root):
    tr = IHarmony4Dataset(ih4_root, split="train")
    assert tr.subset_counts() == {"HCOCO": 3, "Hday2night": 2}
    rec = {r.name: r for r in tr.records}["d21901-20130410-181833_2_3"]
    assert rec.mask.name == "d21901-20130410-181833_2.png"
    assert rec.real.name == "d21901-20130410-181833.png"
    te = IHarmony4Dataset(ih4_root, split="test")
    assert [r.name for r in te.records] == ["c3_31_1"]
    s = tr[0]
    assert s["composite"].shape == (3, 48, 40) and s["mask"].shape == (1, 48, 40)
    assert torch.equal(s["composite"], _pil(tr.records[0].composite))
    # a subset folder on its own, and any folder name in the layout
    one = IHarmony4Dataset(ih4_root / "Hday2night", split="train")
    assert len(one) == 2


def test_any_folder_in_layout(tmp_path, dbuild):
    dbuild.write_ih4_subset(tmp_path, "HMine", ["x9_1_1", "x9_2_1"], "train", ext=".jpg")
    ds = IHarmony4Dataset(tmp_path, split="train")
    assert ds.subset_counts() == {"HMine": 2}


def test_combined_root_list_and_restriction(ih4_root):
    (ih4_root / "IHD_train.txt").write_text(
        "HCOCO/composite_images/c1_11_2.png\nHday2night/composite_images/d21901-20130410-181833_1_9.png\n"
    )
    ds = IHarmony4Dataset(ih4_root, list_file="IHD_train.txt")
    assert [(r.subset, r.name) for r in ds.records] == [("HCOCO", "c1_11_2"), ("Hday2night", "d21901-20130410-181833_1_9")]
    (ih4_root / "IHD_nonhuman_train.txt").write_text("HCOCO/composite_images/c2_21_1.png\nHCOCO/composite_images/c1_11_1.png\n")
    base = IHarmony4Dataset(ih4_root, split="train", restrict_to="IHD_nonhuman_train.txt")
    assert sorted(r.name for r in base.records) == ["c1_11_1", "c2_21_1"]
    # a restriction list that names nothing read is an error naming it
    (ih4_root / "IHD_human_test.txt").write_text("HCOCO/composite_images/zzz_1_1.png\n")
    with pytest.raises(ListFormatError, match="IHD_human_test.txt"):
        IHarmony4Dataset(ih4_root, split="train", restrict_to="IHD_human_test.txt")


def test_missing_composite_names_list_and_line(ih4_root):
    lst = ih4_root / "HCOCO" / "HCOCO_train.txt"
    lst.write_text("c1_11_1.png\nc1_11_2.png\nc7_77_1.png\n")
    with pytest.raises(DataFileNotFoundError, match=r"HCOCO_train\.txt:3: .*c7_77_1\.png"):
        IHarmony4Dataset(ih4_root, subsets=["HCOCO"], split="train")
    ds = IHarmony4Dataset(ih4_root, subsets=["HCOCO"], split="train", skip_bad=True)
    assert len(ds) == 2 and ds.skipped == 1


def test_missing_mask_and_real(ih4_root):
    (ih4_root / "HCOCO" / "masks" / "c2_21.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"HCOCO_train\.txt:3: .*masks/c2_21\.png") as ei:
        IHarmony4Dataset(ih4_root, subsets="HCOCO", split="train")
    assert "mask" in str(ei.value)
    (ih4_root / "Hday2night" / "real_images" / "d21901-20130410-181833.png").unlink()
    with pytest.raises(DataFileNotFoundError, match=r"real_images/d21901-20130410-181833\.jpg"):
        IHarmony4Dataset(ih4_root, subsets="Hday2night", split="train")


def test_truncated_composite(ih4_root):
    p = ih4_root / "HCOCO" / "composite_images" / "c1_11_2.png"
    p.write_bytes(p.read_bytes()[:-30])
    with pytest.raises(CorruptFileError, match=r"HCOCO_train\.txt:2: .*c1_11_2\.png.*truncated"):
        IHarmony4Dataset(ih4_root, subsets="HCOCO", split="train")
    # skip_bad drops it and counts it
    ds = IHarmony4Dataset(ih4_root, subsets="HCOCO", split="train", skip_bad=True)
    assert [r.name for r in ds.records] == ["c1_11_1", "c2_21_1"] and ds.skipped == 1


def test_size_mismatch(ih4_root):
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(ih4_root / "HCOCO" / "masks" / "c2_21.png")
    with pytest.raises(SizeMismatchError, match=r"c2_21\.png.*30x30.*40x48"):
        IHarmony4Dataset(ih4_root, subsets="HCOCO", split="train")


def test_empty_list_bad_line_and_missing_list(ih4_root):
    lst = ih4_root / "HCOCO" / "HCOCO_train.txt"
    lst.write_text("\n\n")
    with pytest.raises(ListFormatError, match=r"HCOCO_train\.txt.*empty"):
        IHarmony4Dataset(ih4_root, subsets="HCOCO", split="train")
    lst.write_text("c1_11_1.png\nbadname.png\n")
    (ih4_root / "HCOCO" / "composite_images" / "badname.png").write_bytes(b"")
    with pytest.raises(ListFormatError, match=r"HCOCO_train\.txt:2: .*<realid>_<maskid>_<k>"):
        IHarmony4Dataset(ih4_root, subsets="HCOCO", split="train")
    lst.unlink()
    with pytest.raises(DataFileNotFoundError, match=r"HCOCO_train\.txt"):
        IHarmony4Dataset(ih4_root, subsets="HCOCO", split="train")
    with pytest.raises(DataFileNotFoundError, match="HNope"):
        IHarmony4Dataset(ih4_root, subsets="HNope")


def test_corrupt_file_at_load_time_is_named_or_skipped(ih4_root):
    ds = IHarmony4Dataset(ih4_root, subsets="HCOCO", split="train", validate="exists")
    p = ds.records[1].real
    p.write_bytes(b"garbage")
    with pytest.raises(CorruptFileError, match=r"HCOCO_train\.txt:2: .*c1\.png"):
        ds[1]
    ds.skip_bad = True
    # c1_11_2 uses the broken real image; the loader moves on to the next sample, c2_21_1
    assert ds[1]["name"] == "c2_21_1" and ds.skipped == 1
