"""The rough edges a new user hit (issue: one forward contract ...), each pinned by a test
that failed before the fix."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import harmonykit
from harmonykit.cli import main
from harmonykit.inference import MIN_SIDE, RandomWeightsWarning, harmonize

TINY = dict(ch=8, max_channels=16)
REPO = Path(__file__).resolve().parents[1]


def _tiny_net():
    torch.manual_seed(0)
    net = harmonykit.create_model("idih256", **TINY)
    net.has_trained_weights = True  # stands for a loaded checkpoint in these I/O tests
    return net


def _pair(h, w, seed=0):
    rng = np.random.default_rng(seed)
    comp = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
    return comp, mask


# 1 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["numpy", "pil", "tensor"])
def test_resize_policy_on_an_image_of_exactly_the_model_size(kind):
    """Was: RuntimeError 'Inplace update to inference tensor outside InferenceMode' at 256x256."""
    comp, mask = _pair(256, 256)
    if kind == "pil":
        comp, mask = Image.fromarray(comp), Image.fromarray(mask)
    elif kind == "tensor":
        comp, mask = torch.from_numpy(comp).permute(2, 0, 1).float() / 255, torch.from_numpy(mask)[None].float() / 255
    out = harmonize(comp, mask, _tiny_net(), "resize")
    assert np.asarray(out).shape[-2:] in ((256, 3), (256, 256))


# 2 -------------------------------------------------------------------------------------------
def test_cli_refuses_random_weights_unless_asked(tmp_path, capsys):
    comp, mask = _pair(64, 80)
    Image.fromarray(comp).save(tmp_path / "c.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    args = ["harmonize", "idih256", str(tmp_path / "c.png"), str(tmp_path / "m.png"), "-o", str(tmp_path / "o.png"),
            "--model-arg", "ch=8", "--model-arg", "max_channels=16"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "random weights" in err and "--random-weights" in err and "idih256.samsung_ihd4" in err
    assert not (tmp_path / "o.png").exists()
    assert main(args + ["--random-weights"]) == 0 and (tmp_path / "o.png").is_file()


def test_cli_tag_name_loads_its_weights_or_says_why_in_one_line(tmp_path, capsys, monkeypatch):
    """Was: `harmonize idih256.samsung_ihd4` ran random weights; offline --pretrained printed a
    urllib traceback. Now the tag loads its weights; offline that fails in one line naming the
    URL and the local-file alternative."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    comp, mask = _pair(64, 80)
    Image.fromarray(comp).save(tmp_path / "c.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    rc = main(["harmonize", "idih256.samsung_ihd4", str(tmp_path / "c.png"), str(tmp_path / "m.png"), "-o", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "https://github.com/SamsungLabs/image_harmonization/releases/download/v1.0/idih256.pth" in err
    assert "checkpoint_path=" in err and "--checkpoint" in err


def test_eval_cli_refuses_random_weights(real_data_dir, capsys):
    rc = main(["eval", "idih256", str(real_data_dir / "iharmony4_mini"), "--model-arg", "ch=8", "--no-ssim"])
    assert rc == 2 and "random weights" in capsys.readouterr().err


def test_python_harmonize_warns_on_random_weights():
    comp, mask = _pair(64, 64)
    with pytest.warns(RandomWeightsWarning, match="random weights"):
        harmonize(comp, mask, harmonykit.create_model("idih256", **TINY), "resize")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomWeightsWarning)
        harmonize(comp, mask, _tiny_net(), "resize")  # loaded weights: silent


# 4 -------------------------------------------------------------------------------------------
def test_harmonize_refuses_0_255_floats():
    comp, mask = _pair(64, 64)
    with pytest.raises(ValueError, match=r"expected \[0, 1\]"):
        harmonize(comp.astype(np.float32), mask, _tiny_net(), "resize")


# 5 -------------------------------------------------------------------------------------------
def test_tiny_input_names_the_minimum():
    with pytest.raises(ValueError, match=f"at least {MIN_SIDE} px"):
        harmonize(np.zeros((1, 1, 3), np.uint8), np.ones((1, 1), np.uint8), _tiny_net(), "resize")


def test_rgba_input_keeps_its_alpha(tmp_path):
    comp, mask = _pair(48, 64)
    alpha = np.random.default_rng(1).integers(0, 256, (48, 64), dtype=np.uint8)
    rgba = Image.fromarray(np.concatenate([comp, alpha[..., None]], axis=2), mode="RGBA")
    out = harmonize(rgba, Image.fromarray(mask), _tiny_net(), "full")
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], alpha)
    arr = harmonize(np.asarray(rgba), mask, _tiny_net(), "full")
    assert arr.shape == (48, 64, 4) and np.array_equal(arr[..., 3], alpha)
    # command line: RGBA PNG in -> RGBA PNG out
    rgba.save(tmp_path / "c.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    harmonykit.save_pretrained(_tiny_net(), tmp_path / "w")
    assert main(["harmonize", f"local-dir:{tmp_path / 'w'}", str(tmp_path / "c.png"), str(tmp_path / "m.png"), "-o", str(tmp_path / "o.png")]) == 0
    o = Image.open(tmp_path / "o.png")
    assert o.mode == "RGBA" and np.array_equal(np.asarray(o)[..., 3], alpha)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_input_gives_16bit_output(tmp_path, suffix):
    import cv2

    rng = np.random.default_rng(2)
    comp16 = rng.integers(0, 65536, (48, 64, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / f"c{suffix}"), comp16[..., ::-1])
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 10:40] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    harmonykit.save_pretrained(_tiny_net(), tmp_path / "w")
    out = tmp_path / f"o{suffix}"
    assert main(["harmonize", f"local-dir:{tmp_path / 'w'}", str(tmp_path / f"c{suffix}"), str(tmp_path / "m.png"), "-o", str(out)]) == 0
    res = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert res.dtype == np.uint16 and res.shape == (48, 64, 3)
    # the background is returned bit for bit, at 16 bits
    bg = mask == 0
    assert np.array_equal(res[..., ::-1][bg], comp16[bg])


# 7 -------------------------------------------------------------------------------------------
def test_list_takes_a_pattern_in_the_kind_position(capsys):
    assert main(["list", "charmnet*"]) == 0
    names = capsys.readouterr().out.split()
    assert "charmnet_idih" in names and "idih256" not in names


def test_package_metadata_has_license_and_urls():
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
        import tomli as tomllib
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert meta["license"] == {"text": "Apache-2.0"}  # written as `License:` (what pip show prints)
    assert {"Homepage", "Source", "Issues"} <= set(meta["urls"])


# 8 -------------------------------------------------------------------------------------------
def test_ci_true_fails_instead_of_skipping_when_fixtures_are_missing(tmp_path):
    env = dict(os.environ, CI="true", HARMONYKIT_PARITY_DIR=str(tmp_path / "absent"), PYTHONPATH=str(REPO))
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "tests/models/test_models_parity.py"),
         "-k", "idih_tiny", "-x"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode != 0 and "CI=true and parity fixtures not found" in r.stdout, r.stdout[-2000:]
    r = subprocess.run(["bash", str(REPO / ".ci/run")], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "required test data folder missing" in r.stderr


def test_native_policy_for_full_resolution_models_keeps_the_background():
    """Full-resolution models run on the whole image by default; the background is bit-exact and
    the foreground is the model's own full-resolution output."""
    torch.manual_seed(0)
    net = harmonykit.create_model("harmonizer", **harmonykit.get_pretrained_cfg("harmonizer").tiny_args)
    net.has_trained_weights = True
    comp, mask = _pair(70, 53)
    out = harmonize(comp, mask, net)  # policy None -> native
    assert out.shape == comp.shape and out.dtype == np.uint8
    bg = mask == 0
    assert np.array_equal(out[bg], comp[bg])
    with torch.no_grad():
        direct = net(torch.from_numpy(comp).permute(2, 0, 1)[None].float() / 255, torch.from_numpy(mask)[None, None].float() / 255).image
    ref = np.rint(direct[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert np.abs(out[~bg].astype(int) - ref[~bg].astype(int)).max() <= 1


@pytest.mark.parametrize("name,kwargs", [("issam", {"ch": 8}), ("idih256", {"ch": 8, "max_channels": 64})])
def test_default_policy_never_changes_the_background(name, kwargs):
    """harmonize() without a policy: a fixed-size network (256 x 256) on a larger photo gets the
    "full" policy, as the CLI: every pixel where the mask is 0 comes back bit for bit (the
    official "resize" protocol, which up-samples the whole prediction, only when asked)."""
    torch.manual_seed(0)
    net = harmonykit.create_model(name, **kwargs)
    img = np.random.default_rng(0).integers(0, 256, (333, 517, 3), dtype=np.uint8)
    mask = np.zeros((333, 517), np.uint8)
    mask[100:180, 200:330] = 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        out = harmonize(img, mask, net)
        empty = harmonize(img, np.zeros_like(mask), net)
        resized = harmonize(img, mask, net, "resize")
    bg = mask == 0
    assert (out[bg] == img[bg]).all() and (out[~bg] != img[~bg]).any()
    assert (empty == img).all()
    assert (resized[bg] != img[bg]).any()  # the explicit official protocol does replace it
