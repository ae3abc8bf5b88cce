"""`harmonykit demo --quick` end to end, plus the demo's reporting logic."""
from __future__ import annotations

import json
import math
from pathlib import Path

from PIL import Image

from harmonykit.cli import main
from harmonykit.demo import _statistics, _verdict, _versus_composite, demo_recipe_path


def test_demo_recipes_are_found_and_resolve():
    import harmonykit.data  # noqa: F401  (registers bundled_photos)
    from harmonykit.train import load_recipe

    c = load_recipe(demo_recipe_path("demo_charmnet"))
    f = load_recipe(demo_recipe_path("demo_fusion"))
    assert c["train"]["mode"] == "charmnet" and f["train"]["mode"] == "fusion"
    assert c["model"]["ch"] == f["model"]["ch"] == 16 and c["model"]["max_channels"] == f["model"]["max_channels"] == 128
    for key in ("batch_size", "iterations", "precision"):
        assert c["train"][key] == f["train"][key]
    assert c["optim"] == f["optim"] and c["sched"] == f["sched"] and c["data"] == f["data"]
    assert c["data"]["real"]["name"] == "bundled_photos" and f["discriminator"] is None


def _records(charm_fmse, fusion_fmse):
    recs = []
    for i, (a, b) in enumerate(zip(charm_fmse, fusion_fmse)):
        for model, v in (("composite", 1000.0), ("charmnet", a), ("fusion", b)):
            recs.append({"model": model, "name": f"im{i}", "mse": v / 4, "fmse": v, "psnr": 30 - v / 100})
    return recs


def test_verdict_says_when_charmnet_loses():
    stats = _statistics(_records([500, 520, 480, 510], [400, 410, 390, 405]), seed=0)
    beat, text = _verdict(stats)
    assert beat is False and "did NOT beat" in text
    assert stats["charmnet_minus_fusion"]["fmse"]["verdict"] == "worse"
    stats = _statistics(_records([300, 520, 280, 500], [400, 410, 390, 405]), seed=0)  # mean 400 vs 401
    beat, text = _verdict(stats)
    assert beat is True and "within the noise" in text
    stats = _statistics(_records([300, 310, 280, 290], [400, 410, 390, 405]), seed=0)
    assert _verdict(stats)[0] is True and stats["charmnet_minus_fusion"]["fmse"]["verdict"] == "better"
    s = stats["per_model"]["charmnet"]["fmse"]
    assert s["ci95"][0] <= s["mean"] <= s["ci95"][1] and s["std"] > 0
    # the composite row is 1000 here: both models improve on it
    better, text = _versus_composite(stats)
    assert better == {"fusion": True, "charmnet": True} and text.startswith("both") and "outside the noise" in text
    better, text = _versus_composite(_statistics(_records([1500, 1600], [1100, 1200]), seed=0))
    assert better == {"fusion": False, "charmnet": False} and "neither" in text


def test_bad_budget_is_a_clear_error(tmp_path: Path, capsys):
    assert main(["demo", "--quick", "--iterations", "0", "--out", str(tmp_path)]) == 2
    assert "iterations=0" in capsys.readouterr().err


def test_demo_quick_end_to_end(tmp_path: Path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0  # speed: benchmarks/, not a timed test
    printed = capsys.readouterr().out
    # first, the model harmonize() uses by default on the held-back real triplets, with a paired
    # interval against the input composite and a picture
    assert "harmonize(composite, mask) with the default model" in printed and "default_model.png" in printed
    dm = json.loads((out / "results.json").read_text())["default_model"]
    from harmonykit.inference import DEFAULT_MODEL

    assert dm["model"] == DEFAULT_MODEL and dm["triplets"] == len(dm["per_image"]) > 0
    lo, hi = dm["model_minus_composite"]["ci95"]
    assert lo <= dm["model_minus_composite"]["mean"] <= hi
    assert abs(dm["model_fmse"] - dm["composite_fmse"] - dm["model_minus_composite"]["mean"]) < 1e-6
    assert Image.open(out / "default_model.png").size[1] >= 24 + 256
    for word in ("composite (input)", "fusion baseline", "CharmNet", "verdict:", "results.json", "comparison.png"):
        assert word in printed
    res = json.loads((out / "results.json").read_text())
    assert res["training"]["iterations_per_model"] == 3
    assert res["training"]["charmnet"]["iterations"] == res["training"]["fusion"]["iterations"] == 3
    assert res["training"]["batch_size_per_domain"] == 2
    assert isinstance(res["charmnet_beats_fusion_fmse"], bool) and res["verdict"]
    assert set(res["beats_input_composite_fmse"]) == {"fusion", "charmnet"} and res["versus_composite"]
    assert res["training"]["equal_budget"] is True
    assert res["training"]["reproduce_with"] == "harmonykit demo --iterations 3 --seed 0 --quick"
    assert res["eval"]["triplets"] == 4 and res["eval"]["photos"] == ["flower", "grace_hopper"]
    for model in ("composite", "fusion", "charmnet"):
        for m in ("mse", "fmse", "psnr"):
            s = res["metrics"]["per_model"][model][m]
            assert math.isfinite(s["mean"]) and s["n"] == 4 and s["ci95"][0] <= s["mean"] <= s["ci95"][1]
    comp = res["metrics"]["per_model"]["composite"]["fmse"]["mean"]
    assert comp > 100  # the eval composites are visibly off
    assert (out / "table.md").read_text().count("|") > 10
    with Image.open(out / "comparison.png") as im:
        assert im.size == (5 * 192, 24 + 4 * 192)
    assert (out / "runs" / "charmnet" / "last.pth").is_file() and (out / "runs" / "fusion" / "pretrained").is_dir()
    assert json.loads((out / "data" / "manifest.json").read_text())["rendered_composites"] == 16
    # a second run reuses the data and both finished training runs, and measures the same
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    res2 = json.loads((out / "results.json").read_text())
    assert res2["data"]["reused"] is True
    assert res2["training"]["charmnet"]["reused"] is True and res2["training"]["fusion"]["reused"] is True
    assert res2["metrics"]["per_model"] == res["metrics"]["per_model"]
    # another seed regenerates the data, so nothing trained on the old data is reused
    from harmonykit.demo import _prepare_data

    assert _prepare_data(out, 4, 4, 2, 1, False)["reused"] is False



def test_default_verdict_follows_the_interval():
    from harmonykit.demo import _default_verdict

    assert "lowered fMSE" in _default_verdict({"ci95": [-30.0, -1.0]})
    assert "WORSE" in _default_verdict({"ci95": [5.0, 900.0]})
    assert "no clear difference" in _default_verdict({"ci95": [-5.0, 9.0]})
