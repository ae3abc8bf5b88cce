"""RdHarmony list format, the make-composites round trip (soft labels on numbers), bad input."""
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
    ListFormatError,
    RdHarmonyDataset,
    SizeMismatchError,
    make_composites,
    parse_rdharmony_name,
    scan_renders,
    soft_style_label,
)

STYLE_COLOURS = {1: (200, 30, 30), 4: (30, 200, 30), 7: (30, 30, 200)}


def _renders(root: Path, scenes=("s01", "park-7_b"), h=30, w=40, box=(6, 18, 10, 30)) -> Path:
    """Scenes rendered in 3 flat styles; the mask is a rectangle of known area."""
    for i, sc in enumerate(scenes):
        d = root / sc
        d.mkdir(parents=True)
        for k, col in STYLE_COLOURS.items():
            a = np.empty((h, w, 3), np.uint8)
            a[:] = col
            a[0, 0] = (i, k, 0)  # make renders distinct
            Image.fromarray(a).save(d / f"{k}.png")
        m = np.zeros((h, w), np.uint8)
        y0, y1, x0, x1 = box
        m[y0:y1 + i, x0:x1] = 255  # second scene: one more row
        Image.fromarray(m).save(d / "mask.png")
        (d / "notes.txt").write_text("ignored")
    return root


def test_name_rules():
    assert parse_rdharmony_name("s01-3_7.jpg") == ("s01-3", "s01")
    assert parse_rdharmony_name("park-7_b-4_1.jpg") == ("park-7_b-4", "park-7_b")
    assert parse_rdharmony_name("nodash_1.jpg") is None
    assert parse_rdharmony_name("nounderscore.jpg") is None


def test_soft_label_formula():
    y = soft_style_label(0.25, 2, 5, 10)
    assert len(y) == 10 and y[2] == 0.75 and y[5] == 0.25 and sum(y) == 1.0
    assert soft_style_label(0.4, 3, 3)[3] == 1.0


def test_make_composites_round_trip(tmp_path):
    src = _renders(tmp_path / "renders")
    out = tmp_path / "ds"
    lst = make_composites(src, out, category="SToy", ext="png", progress=False)
    assert lst == out / "SToy" / "SToy_all_labeled.txt"
    lines = lst.read_text().splitlines()
    assert len(lines) == 2 * 3 * 2  # 2 scenes x 6 ordered pairs
    ds = RdHarmonyDataset(out, list_file="SToy/SToy_all_labeled.txt")
    assert len(ds) == 12 and ds.domain == "rendered"
    areas = {"s01": (12 * 20) / (30 * 40), "park-7_b": (13 * 20) / (30 * 40)}
    seen = set()
    for i, rec in enumerate(ds.records):
        scene, rest = rec.name.rsplit("-", 1)
        b, f = (int(v) for v in rest.split("_"))
        seen.add((scene, b, f))
        s = ds[i]
        r = areas[scene]
        expect = torch.zeros(10, dtype=torch.float64)
        expect[b - 1] += 1 - r
        expect[f - 1] += r
        assert torch.allclose(s["style_soft"], expect, atol=1e-6), rec.name
        assert s["style"].dtype == torch.int64 and int(s["style"]) == b - 1
        assert abs(float(s["mask"].mean()) - r) < 1e-6
        fg = s["mask"][0] > 0.5
        cb = torch.tensor(STYLE_COLOURS[b]) / 255.0
        cf = torch.tensor(STYLE_COLOURS[f]) / 255.0
        comp = s["composite"]
        assert torch.allclose(comp[:, fg].mean(1), cf, atol=1e-6)
        assert torch.equal(comp[:, ~fg], s["real"][:, ~fg])  # background = the style-b render
        assert torch.allclose(s["real"][:, 5, 5], cb)
    assert len(seen) == 12


def test_make_composites_cli_pairs_and_jpg(tmp_path, capsys):
    src = _renders(tmp_path / "renders")
    out = tmp_path / "ds"
    rc = cli_main(["make-composites", str(src), str(out), "--pairs-per-scene", "2", "--seed", "3"])
    assert rc == 0
    assert "wrote 4 composites" in capsys.readouterr().out
    lst = out / "SRendered" / "SRendered_all_labeled.txt"
    first = lst.read_text().splitlines()
    ds = RdHarmonyDataset(out, list_file="SRendered/SRendered_all_labeled.txt")
    assert len(ds) == 4 and all(r.composite.suffix == ".jpg" for r in ds.records)
    s = ds[0]
    assert s["composite"].shape == (3, 30, 40) and abs(float(s["style_soft"].sum()) - 1) < 1e-5
    # the same seed draws the same pairs; an existing list needs --overwrite
    assert cli_main(["make-composites", str(src), str(out), "--pairs-per-scene", "2", "--seed", "3"]) == 2
    assert cli_main(["make-composites", str(src), str(out), "--pairs-per-scene", "2", "--seed", "3", "--overwrite"]) == 0
    assert lst.read_text().splitlines() == first


def test_render_layout_errors(tmp_path):
    src = _renders(tmp_path / "r")
    (src / "s01" / "mask.png").unlink()
    with pytest.raises(DataFileNotFoundError, match=r"s01/mask\.png"):
        scan_renders(src)
    src = _renders(tmp_path / "r2")
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(src / "s01" / "11.png")
    with pytest.raises(DataError, match=r"s01/11\.png.*1\.\.10"):
        scan_renders(src)
    (src / "s01" / "11.png").unlink()
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(src / "s01" / "4.png")  # wrong size
    with pytest.raises(SizeMismatchError, match=r"s01/4\.png"):
        make_composites(src, tmp_path / "o", progress=False)
    src = _renders(tmp_path / "r3", scenes=("lonely",))
    for k in (4, 7):
        (src / "lonely" / f"{k}.png").unlink()
    with pytest.raises(DataError, match="lonely.*at least two"):
        scan_renders(src)
    with pytest.raises(DataFileNotFoundError, match="nothing_here"):
        scan_renders(tmp_path / "nothing_here")


def test_empty_mask_scene_is_skipped(tmp_path):
    src = _renders(tmp_path / "r")
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(src / "s01" / "mask.png")
    lst = make_composites(src, tmp_path / "o", ext="png", progress=False)
    names = [ln.split("\t")[0] for ln in lst.read_text().splitlines()]
    assert len(names) == 6 and all("park-7_b" in n for n in names)


def _ds_with_list(tmp_path: Path, text: str) -> Path:
    src = _renders(tmp_path / "r", scenes=("s01",))
    make_composites(src, tmp_path / "ds", category="SHuman", ext="png", progress=False)
    lst = tmp_path / "ds" / "SHuman" / "SHuman_all_labeled.txt"
    lst.write_text(text)
    return tmp_path / "ds"


GOOD = "SHuman/composite_images/s01-1_4.png\t0.8_0_0_0.2_0_0_0_0_0_0\t1\n"


def test_default_list_and_bad_lines(tmp_path):
    root = _ds_with_list(tmp_path, GOOD)
    ds = RdHarmonyDataset(root)  # default list SHuman/SHuman_all_labeled.txt
    assert torch.allclose(ds[0]["style_soft"], torch.tensor([0.8, 0, 0, 0.2, 0, 0, 0, 0, 0, 0], dtype=torch.float64))
    lst = root / "SHuman" / "SHuman_all_labeled.txt"
    cases = {
        "SHuman/composite_images/s01-1_4.png\t0.8_0.2\t1\n": r"has 2 values, expected 10",
        "SHuman/composite_images/s01-1_4.png\t0.8_0_0_0.9_0_0_0_0_0_0\t1\n": r"not a distribution",
        "SHuman/composite_images/s01-1_4.png\t0.8_0_0_0.2_0_0_0_0_0_0\t11\n": r"out of range \(expected 1\.\.10\)",
        "SHuman/composite_images/s01-1_4.png\t0.8_0_0_0.2_0_0_0_0_0_0\n": r"expected 3 tab-separated fields",
        "SHuman/composite_images/s01-1_4.png\tx_0_0_0.2_0_0_0_0_0_0\t1\n": r"not 10 numbers",
    }
    for text, msg in cases.items():
        lst.write_text(GOOD + text)
        with pytest.raises(ListFormatError, match=r"SHuman_all_labeled\.txt:2: .*" + msg):
            RdHarmonyDataset(root)
    lst.write_text(GOOD + "SHuman/composite_images/s01-9_1.png\t1_0_0_0_0_0_0_0_0_0\t9\n")
    with pytest.raises(DataFileNotFoundError, match=r"SHuman_all_labeled\.txt:2: .*s01-9_1\.png"):
        RdHarmonyDataset(root)
    ds = RdHarmonyDataset(root, skip_bad=True)
    assert len(ds) == 1 and ds.skipped == 1
    lst.write_text("")
    with pytest.raises(ListFormatError, match=r"SHuman_all_labeled\.txt.*empty"):
        RdHarmonyDataset(root)


def test_missing_mask_named(tmp_path):
    root = _ds_with_list(tmp_path, GOOD)
    (root / "SHuman" / "masks" / "s01.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"SHuman_all_labeled\.txt:1: .*masks/s01\.png"):
        RdHarmonyDataset(root)
