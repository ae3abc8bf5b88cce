"""evaluate(): subsets, groups, buckets, several models, flip, CSV/JSON, both dataset layouts."""
from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest

from harmonykit.eval import COMPOSITE, FG_BUCKETS, evaluate, fg_bucket, find_triplets, get_protocol


@pytest.fixture(scope="module")
def mini(real_data_dir):
    return real_data_dir / "iharmony4_mini"


def test_find_triplets_iharmony4_naming(mini):
    trips = find_triplets(mini)
    assert {t.subset for t in trips} == {"HCOCO", "HAdobe5k"}
    for t in trips:
        stem = t.composite.stem
        assert t.mask.stem == "_".join(stem.split("_")[:2])  # <realid>_<maskid>
        assert t.real.stem == stem.split("_")[0]  # <realid>
    listed = sum(len((mini / s / f"{s}_test.txt").read_text().split()) for s in ("HCOCO", "HAdobe5k"))
    assert len(trips) == listed


def test_composite_baseline_table(mini):
    res = evaluate(COMPOSITE, mini, protocol="idih", ssim=False)
    per = res.table[COMPOSITE]
    trips = find_triplets(mini)
    assert per["All"]["n"] == len(trips) == len(res.records)
    assert per["HCOCO"]["n"] + per["HAdobe5k"]["n"] == per["All"]["n"]
    # "All" is the image-weighted mean (not the mean of subset means)
    w = (per["HCOCO"]["mse"] * per["HCOCO"]["n"] + per["HAdobe5k"]["mse"] * per["HAdobe5k"]["n"]) / per["All"]["n"]
    assert math.isclose(per["All"]["mse"], w, rel_tol=1e-12)
    assert math.isclose(per["All"]["mse"], float(np.mean([r["mse"] for r in res.records])), rel_tol=1e-12)
    # bucket rows partition the images by foreground ratio
    buckets = [b for b, _, _ in FG_BUCKETS if b in per]
    assert sum(per[b]["n"] for b in buckets) == per["All"]["n"]
    for r in res.records:
        assert r["bucket"] == fg_bucket(r["fg_ratio"])
    assert "protocol: idih" in res.format_table()


def test_fg_bucket_edges():
    assert fg_bucket(0.0) == "fg 0-5%" and fg_bucket(0.0499) == "fg 0-5%"
    assert fg_bucket(0.05) == "fg 5-15%" and fg_bucket(0.15) == "fg 15-100%" and fg_bucket(1.0) == "fg 15-100%"


def test_models_compared_flip_groups_and_outputs(mini, tiny, tmp_path):
    names = sorted(p.name for p in (mini / "HCOCO" / "composite_images").iterdir())
    (tmp_path / "base.txt").write_text("\n".join(names[:3]) + "\n")
    (tmp_path / "novel.txt").write_text(names[3] + "\n")
    groups = {"base": tmp_path / "base.txt", "novel": tmp_path / "novel.txt"}
    res = evaluate({COMPOSITE: COMPOSITE, "tiny": tiny}, mini, protocol="charmnet", groups=groups, ssim=False)
    assert set(res.table) == {COMPOSITE, "tiny"}
    for m in res.table.values():
        assert m["base"]["n"] == 3 and m["novel"]["n"] == 1
    assert res.table["tiny"]["All"]["mse"] != res.table[COMPOSITE]["All"]["mse"]
    flipped = evaluate({"tiny": tiny}, mini, protocol="charmnet", flip=True, ssim=False)
    assert flipped.table["tiny"]["All"]["mse"] != res.table["tiny"]["All"]["mse"]
    csv_path, json_path = res.to_csv(tmp_path / "per_image.csv"), res.to_json(tmp_path / "summary.json")
    rows = list(csv.DictReader(open(csv_path)))
    assert len(rows) == 2 * res.table["tiny"]["All"]["n"]
    assert {"model", "subset", "name", "bucket", "mse", "fmse", "psnr", "fpsnr"} <= set(rows[0])
    summary = json.loads(json_path.read_text())
    assert summary["protocol"] == "charmnet" and summary["models"]["tiny"]["All"]["n"] == 6
    assert summary["protocol_description"] == get_protocol("charmnet").description
    tiny_rows = [r for r in rows if r["model"] == "tiny"]
    assert math.isclose(np.mean([float(r["mse"]) for r in tiny_rows]), summary["models"]["tiny"]["All"]["mse"], rel_tol=1e-9)


def test_folder_dataset_gives_the_same_numbers(mini, tmp_path):
    """The same HCOCO images as a folder dataset (matching stems, symlinked): same metrics."""
    root = tmp_path / "folder"
    for d in ("composite_images", "masks", "real_images"):
        (root / d).mkdir(parents=True)
    src = mini / "HCOCO"
    for c in sorted((src / "composite_images").iterdir()):
        stem = c.stem
        os.symlink(c, root / "composite_images" / c.name)
        os.symlink(src / "masks" / "c35030_434421.png", root / "masks" / f"{stem}.png")
        os.symlink(src / "real_images" / "c35030.jpg", root / "real_images" / f"{stem}.jpg")
    a = evaluate(COMPOSITE, root, protocol="harmonykit", ssim=False)
    b = evaluate(COMPOSITE, mini, protocol="harmonykit", ssim=False, split="test")
    assert a.table[COMPOSITE]["All"]["n"] == b.table[COMPOSITE]["HCOCO"]["n"] == 4
    for k in ("mse", "fmse", "psnr", "fpsnr"):
        assert math.isclose(a.table[COMPOSITE]["All"][k], b.table[COMPOSITE]["HCOCO"][k], rel_tol=1e-12)


def test_original_resolution_full_policy(mini, tiny):
    trips = [t for t in find_triplets(mini) if t.subset == "HCOCO"][:2]
    res = evaluate({COMPOSITE: COMPOSITE, "tiny": tiny}, trips, protocol="harmonykit", size=None, policy="full", ssim=False)
    assert res.settings["size"] == "original" and res.table["tiny"]["All"]["n"] == 2
    assert all(math.isfinite(r["mse"]) and math.isfinite(r["fmse"]) for r in res.records)
    # under the full policy the background is the composite's: the models differ only inside the mask
    comp_recs = {r["name"]: r for r in res.records if r["model"] == COMPOSITE}
    for r in res.records:
        if r["model"] == "tiny":
            c = comp_recs[r["name"]]
            assert math.isclose(r["mse"] - c["mse"], r["fg_ratio"] * (r["fmse"] - c["fmse"]), rel_tol=1e-3, abs_tol=1e-3)


def test_clear_errors(mini, tmp_path):
    with pytest.raises(ValueError, match="unknown metric protocol 'foo'"):
        evaluate(COMPOSITE, mini, protocol="foo")
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        evaluate(COMPOSITE, tmp_path / "missing")
    root = tmp_path / "broken"
    for d in ("composite_images", "masks", "real_images"):
        (root / d).mkdir(parents=True)
    comp = next((mini / "HCOCO" / "composite_images").iterdir())
    os.symlink(comp, root / "composite_images" / "x_1_2.jpg")
    os.symlink(mini / "HCOCO" / "masks" / "c35030_434421.png", root / "masks" / "other.png")
    with pytest.raises(FileNotFoundError, match="no mask for composite .*x_1_2.jpg"):
        evaluate(COMPOSITE, root)
