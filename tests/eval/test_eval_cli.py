"""The eval / harmonize / push / convert commands end to end (in process, no network)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import harmonykit
from harmonykit.cli import main

TINY = ["--model-arg", "ch=8", "--model-arg", "max_channels=64", "--random-weights"]


def test_eval_cli_json_csv_and_models(real_data_dir, tmp_path, capsys):
    out_json, out_csv = tmp_path / "s.json", tmp_path / "p.csv"
    rc = main(["eval", "idih256", str(real_data_dir / "iharmony4_mini"), *TINY, "--protocol", "idih", "--no-ssim",
               "--json", str(out_json), "--csv", str(out_csv), "--model", "composite", "--subset", "HCOCO"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "protocol: idih" in text and "HCOCO" in text and "HAdobe5k" not in text.split("per-image")[0]
    s = json.loads(out_json.read_text())
    assert set(s["models"]) == {"composite", "idih256"} and s["models"]["composite"]["All"]["n"] == 4
    assert len(out_csv.read_text().strip().splitlines()) == 1 + 2 * 4


@pytest.mark.parametrize(
    "argv,message",
    [
        (["eval", "composite", "{data}", "--protocol", "psnr"], "unknown metric protocol 'psnr'"),
        (["eval", "idih_typo", "{data}"], "unknown model 'idih_typo'"),
        (["eval", "composite", "{data}/nowhere"], "dataset folder not found"),
        (["eval", "idih256", "{data}", "--checkpoint", "{data}/missing.pth"], "checkpoint file not found"),
    ],
)
def test_eval_cli_errors(real_data_dir, capsys, argv, message):
    data = str(real_data_dir / "iharmony4_mini")
    assert main([a.replace("{data}", data) for a in argv]) == 2
    assert message in capsys.readouterr().err


def test_harmonize_cli_single_pair_with_grid(real_data_dir, tmp_path):
    d = real_data_dir / "iharmony4_mini" / "HCOCO"
    comp, mask, real = d / "composite_images" / "c35030_434421_1.jpg", d / "masks" / "c35030_434421.png", d / "real_images" / "c35030.jpg"
    out = tmp_path / "o" / "h.png"
    assert main(["harmonize", "idih256", str(comp), str(mask), "-o", str(out), *TINY, "--grid", "--real", str(real)]) == 0
    src, res = Image.open(comp), Image.open(out)
    assert res.size == src.size
    m = np.asarray(Image.open(mask).convert("L")) == 0
    assert np.array_equal(np.asarray(res.convert("RGB"))[m], np.asarray(src.convert("RGB"))[m])
    grid = Image.open(out.with_name("h_grid.png"))
    assert grid.height == 256 and grid.width > 4 * 256 * src.width / src.height  # four panels


def test_harmonize_cli_folder(real_data_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    comps = sorted((real_data_dir / "composites").glob("opa_*_composite.jpg"))
    for c in comps:
        os.symlink(c, src / c.name)
        os.symlink(c.with_name(c.name.replace("_composite.jpg", "_mask.png")), src / c.name.replace("_composite.jpg", "_mask.png"))
    os.symlink(real_data_dir / "triplets", src / "triplets")
    assert main(["harmonize", "idih256", str(src), "-o", str(tmp_path / "out"), *TINY, "--policy", "resize"]) == 0
    outs = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert outs == sorted([c.name.replace("_composite.jpg", ".png") for c in comps] + ["triplets/inr_demo_2k.png"])
    assert Image.open(tmp_path / "out" / "triplets" / "inr_demo_2k.png").size == (2048, 2048)


def test_harmonize_cli_mask_mismatch(real_data_dir, tmp_path, capsys):
    c = real_data_dir / "composites" / "opa_0_composite.jpg"
    m = real_data_dir / "iharmony4_mini" / "HCOCO" / "masks" / "c35030_434421.png"
    assert main(["harmonize", "idih256", str(c), str(m), "-o", str(tmp_path / "x.png"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "mask size mismatch" in err and "c35030_434421.png" in err


def test_push_cli_local_dir_and_cache(tmp_path, hf_cache_dir):
    torch.manual_seed(0)
    net = harmonykit.create_model("idih256", ch=8, max_channels=64)
    harmonykit.save_pretrained(net, tmp_path / "ckpt")
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"protocol": "charmnet", "models": {"x": {"All": {"n": 3, "mse": 42.4}}}}))
    rc = main(["push", f"local-dir:{tmp_path / 'ckpt'}", "acme/cli-tiny", "--local-dir", str(tmp_path / "pub"),
               "--cache-dir", str(hf_cache_dir), "--metrics", str(metrics), "--license", "mit"])
    assert rc == 0
    assert "42.40" in (tmp_path / "pub" / "README.md").read_text()
    loaded = harmonykit.create_model("hf-hub:acme/cli-tiny")
    x, m = torch.rand(1, 3, 256, 256), torch.ones(1, 1, 256, 256)
    net.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x, m).image, net(x, m).image)


def test_convert_cli_official_idih_matches_fixture(parity_dir, tmp_path):
    """Official-layout tiny iDIH -> our folder -> the official eval output of the fixture."""
    from safetensors.torch import load_file

    assert main(["convert", str(parity_dir / "idih_tiny.state_dict.safetensors"), str(tmp_path / "conv")]) == 0
    net = harmonykit.create_model(f"local-dir:{tmp_path / 'conv'}")
    io = load_file(str(parity_dir / "idih_tiny.io.safetensors"))
    with torch.no_grad():
        out = net.forward_normalized(io["case0/image"], io["case0/mask"])[0] if hasattr(net, "forward_normalized") else None
    ref = io["case0/eval/images"]
    if out is None:  # pragma: no cover - the model always exposes forward_normalized today
        pytest.fail("model has no forward_normalized")
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_convert_cli_missing_file(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "none.pth"), str(tmp_path / "o")]) == 2
    assert "checkpoint file not found" in capsys.readouterr().err


def test_eval_cli_local_dir_and_checkpoint_agree(real_data_dir, tmp_path):
    """The same weights given as local-dir: and as registry name + --checkpoint give the same rows."""
    torch.manual_seed(3)
    harmonykit.save_pretrained(harmonykit.create_model("idih256", ch=8, max_channels=64), tmp_path / "w")
    data = str(real_data_dir / "iharmony4_mini")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["eval", f"local-dir:{tmp_path / 'w'}", data, "--no-ssim", "--subset", "HCOCO", "--json", str(a)]) == 0
    assert main(["eval", "idih256", data, *TINY, "--checkpoint", str(tmp_path / "w" / "model.safetensors"),
                 "--no-ssim", "--subset", "HCOCO", "--json", str(b)]) == 0
    ra = json.loads(a.read_text())["models"][f"local-dir:{tmp_path / 'w'}"]["All"]
    rb = json.loads(b.read_text())["models"]["idih256:model"]["All"]
    assert ra == rb and ra["n"] == 4
