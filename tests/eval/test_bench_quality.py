"""benchmarks/bench_quality.py on a small synthetic iHarmony4-layout root: paired differences,
intervals and the tables it writes."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_quality.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_quality", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write_root(root: Path, n: int = 5) -> None:
    """HCOCO-style triplets: the composite's foreground is the real image darkened and tinted."""
    g = np.random.default_rng(0)
    sub = root / "HCOCO"
    for d in ("composite_images", "masks", "real_images"):
        (sub / d).mkdir(parents=True)
    names = []
    for i in range(n):
        real = g.integers(60, 200, size=(40, 48, 3)).astype(np.uint8)
        mask = np.zeros((40, 48), np.uint8)
        mask[8:30, 10 + i : 36] = 255
        comp = real.astype(np.float32)
        comp[mask > 0] = comp[mask > 0] * np.array([0.6, 0.7, 0.9]) + 10
        Image.fromarray(real).save(sub / "real_images" / f"c{i}.png")
        Image.fromarray(mask).save(sub / "masks" / f"c{i}_1.png")
        Image.fromarray(comp.clip(0, 255).astype(np.uint8)).save(sub / "composite_images" / f"c{i}_1_1.png")
        names.append(f"c{i}_1_1.png")
    (sub / "HCOCO_test.txt").write_text("\n".join(names) + "\n")


def test_paired_bootstrap_brackets_the_mean(bench):
    rng = np.random.default_rng(0)
    d = np.array([-3.0, -1.0, -2.0, -4.0, -2.5])
    lo, hi = bench.paired_bootstrap(d, rng, 2000)
    assert lo <= d.mean() <= hi and hi < 0 and lo >= d.min()


def test_bench_quality_end_to_end(bench, tmp_path):
    _write_root(tmp_path / "data")
    js, md = tmp_path / "q.json", tmp_path / "q.md"
    argv = ["--data", str(tmp_path / "data"), "--models", "lab_transfer", "identity", "--protocols", "idih", "charmnet",
            "--size", "32", "--bootstrap", "500", "--repeats", "1", "--threads", "1", "--json", str(js), "--markdown", str(md)]
    assert bench.main(argv) == 0
    res = json.loads(js.read_text())
    assert res["settings"]["n_images"] == 5 and set(res["protocols"]) == {"idih", "charmnet"}
    for proto, table in res["protocols"].items():
        ident, lab, comp = table["identity"], table["lab_transfer"], table["composite"]
        assert abs(ident["fmse"]["diff_to_composite"]) < 1e-3  # the do-nothing model is the composite
        # the per-image records give the same paired mean difference
        recs = [r for r in res["per_image"][proto]]
        by = {(r["model"], r["name"]): r["fmse"] for r in recs}
        d = np.mean([by[("lab_transfer", n)] - by[("composite", n)] for (_, n) in by if _ == "composite"])
        assert lab["fmse"]["diff_to_composite"] == pytest.approx(d, rel=1e-9)
        lo, hi = lab["fmse"]["ci95"]
        assert lo <= lab["fmse"]["diff_to_composite"] <= hi
        assert lab["fmse"]["mean"] < comp["fmse"]["mean"]  # a global tint is what the transfer undoes
    full = res["full_resolution"]
    assert full["lab_transfer"]["mode"] == "forward at full resolution" and full["lab_transfer"]["s_per_image"] > 0
    text = md.read_text()
    assert "| `lab_transfer` |" in text and "**idih protocol**" in text and "**charmnet protocol**" in text
