"""Shipped weights: every packaged tag loads offline, has its model card, and the default path
(``harmonize(composite, mask)``, ``harmonykit harmonize COMPOSITE MASK``) uses trained weights
and keeps the background bit-exact."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import harmonykit
from harmonykit.inference import DEFAULT_MODEL, RandomWeightsWarning, default_model, harmonize
from harmonykit.models._pretrained import get_pretrained_cfg, pretrained_tags

PKG = Path(harmonykit.__file__).resolve().parent
REPO = PKG.parent
SHIPPED = [n for n in pretrained_tags() if get_pretrained_cfg(n).package_file]
MAX_TOTAL_BYTES = 25 * 1024 * 1024


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _scene(h=70, w=90, seed=0):
    """A composite with a strongly off-colour foreground and its mask (uint8)."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    bg = np.stack([80 + 60 * xx / w, 120 + 40 * yy / h, 90 + 0 * xx], -1) + g.normal(0, 6, (h, w, 3))
    mask = (((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2 <= 1)
    fg = np.stack([230 + 0 * xx, 60 + 20 * yy / h, 200 + 0 * xx], -1) + g.normal(0, 6, (h, w, 3))
    comp = np.where(mask[..., None], fg, bg).clip(0, 255).astype(np.uint8)
    return comp, (mask * 255).astype(np.uint8)


def test_something_is_shipped_and_small():
    assert SHIPPED, "no registered tag has a package_file"
    total = sum((PKG / get_pretrained_cfg(n).package_file).stat().st_size for n in SHIPPED)
    assert 0 < total <= MAX_TOTAL_BYTES
    text = (REPO / "pyproject.toml").read_text()
    assert '"weights/*.safetensors"' in text and '"weights/*.md"' in text


@pytest.mark.parametrize("name", SHIPPED)
def test_tag_loads_offline(name):
    from safetensors.torch import load_file

    cfg = get_pretrained_cfg(name)
    model = harmonykit.create_model(name, pretrained=True)
    assert model.has_trained_weights
    stored = load_file(str(PKG / cfg.package_file))
    sd = model.state_dict()
    assert set(stored) == set(sd), "the file's keys are not the model's"
    for k, v in stored.items():
        torch.testing.assert_close(sd[k], v.to(sd[k].dtype), rtol=0, atol=0)
    fresh = harmonykit.create_model(name.partition(".")[0], **model.model_args).state_dict()
    assert any(not torch.equal(fresh[k], sd[k]) for k in sd if sd[k].is_floating_point()), "weights equal an untrained init"


@pytest.mark.parametrize("name", SHIPPED)
def test_card(name):
    cfg = get_pretrained_cfg(name)
    for field in ("license", "train_datasets", "metrics", "notes", "card"):
        assert getattr(cfg, field), f"{name}: pretrained cfg field {field!r} is empty"
    extra = cfg.extra
    for key in ("recipe", "iterations", "hardware", "train_wall_seconds"):
        assert key in extra, f"{name}: card field {key!r} missing"
    assert (REPO / extra["recipe"]).is_file()
    card = (PKG / cfg.card).read_text()
    for word in ("Data", "Recipe", "Iterations", "Hardware", "wall", "95%", "half-way", "fMSE", "licen"):
        assert word.lower() in card.lower(), f"{name}: the model card does not mention {word!r}"
    m = cfg.metrics
    for key in ("iharmony4_mini_fmse", "iharmony4_mini_fmse_composite", "iharmony4_mini_fmse_halfway_lab", "vs_halfway_ci95"):
        assert key in m, f"{name}: metrics lack {key!r}"
    lo, hi = m["vs_halfway_ci95"]
    assert lo <= hi


def test_default_model_is_shipped_and_trained():
    """The default is a packaged tag (loaded offline) or a weight-free model, never random weights."""
    net = default_model()
    assert DEFAULT_MODEL in SHIPPED or not any(True for _ in net.parameters())
    assert net.has_trained_weights and not getattr(net, "random_weights_ok", False)
    assert default_model() is net  # built once


@pytest.mark.parametrize("kind", ["numpy_u8", "numpy_float", "pil", "tensor"])
def test_harmonize_without_model_keeps_background(kind):
    comp, mask = _scene()
    bg = mask == 0
    x = {"numpy_u8": comp, "numpy_float": comp.astype(np.float32) / 255, "pil": Image.fromarray(comp),
         "tensor": torch.from_numpy(comp).permute(2, 0, 1).float() / 255}[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomWeightsWarning)
        out = harmonize(x, mask)
    if kind == "pil":
        out = np.asarray(out)
    elif kind == "tensor":
        out = out.permute(1, 2, 0).numpy()
    a, b = np.asarray(out), np.asarray(x if kind != "pil" else comp)
    if kind == "tensor":
        b = x.permute(1, 2, 0).numpy()
    assert a.shape == b.shape and a.dtype == b.dtype
    assert np.array_equal(a[bg], b[bg]), "a background pixel changed"
    assert np.abs(a[~bg].astype(np.float64) - b[~bg]).mean() > (2 if a.dtype == np.uint8 else 2 / 255), "foreground unchanged"


@pytest.mark.parametrize("policy", [None, "native"])
def test_native_resolution_model_runs_full_size(policy):
    """A native-resolution model (the shipped LabStatNet) runs on the full-size image by default
    (policy None -> "native"): harmonize() equals its forward, no resize."""
    comp, mask = _scene(h=301, w=203, seed=1)
    net = harmonykit.create_model("lab_statnet.hk_synth", pretrained=True).eval()
    assert net.native_resolution
    out = harmonize(comp.astype(np.float32) / 255, mask.astype(np.float32) / 255, net, policy)
    with torch.no_grad():
        ref = net(torch.from_numpy(comp).permute(2, 0, 1)[None].float() / 255, torch.from_numpy(mask)[None, None].float() / 255).image
    np.testing.assert_allclose(out, ref[0].permute(1, 2, 0).clamp(0, 1).numpy(), atol=1e-6)


def test_cli_default_and_positional_forms(tmp_path):
    from harmonykit.cli import main

    comp, mask = _scene()
    Image.fromarray(comp).save(tmp_path / "c.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    assert main(["harmonize", str(tmp_path / "c.png"), str(tmp_path / "m.png"), "-o", str(tmp_path / "o.png")]) == 0
    out = np.asarray(Image.open(tmp_path / "o.png"))
    assert np.array_equal(out[mask == 0], comp[mask == 0])
    ref = np.asarray(harmonize(comp, mask))
    assert np.array_equal(out, ref)
    # --model, and the older MODEL COMPOSITE MASK form give the same image
    assert main(["harmonize", str(tmp_path / "c.png"), str(tmp_path / "m.png"), "-o", str(tmp_path / "o2.png"), "--model", DEFAULT_MODEL]) == 0
    assert main(["harmonize", DEFAULT_MODEL, str(tmp_path / "c.png"), str(tmp_path / "m.png"), "-o", str(tmp_path / "o3.png")]) == 0
    for f in ("o2.png", "o3.png"):
        assert np.array_equal(np.asarray(Image.open(tmp_path / f)), out)
    # the model given twice is refused (exit code 2, one clear line)
    assert main(["harmonize", DEFAULT_MODEL, str(tmp_path / "c.png"), str(tmp_path / "m.png"), "-o", str(tmp_path / "o4.png"), "--model", DEFAULT_MODEL]) == 2
    # a folder, with the default model and with the older MODEL FOLDER form
    (tmp_path / "in").mkdir()
    Image.fromarray(comp).save(tmp_path / "in" / "a_composite.png")
    Image.fromarray(mask).save(tmp_path / "in" / "a_mask.png")
    assert main(["harmonize", str(tmp_path / "in"), "-o", str(tmp_path / "out1")]) == 0
    assert main(["harmonize", DEFAULT_MODEL, str(tmp_path / "in"), "-o", str(tmp_path / "out2")]) == 0
    a = np.asarray(Image.open(next((tmp_path / "out1").iterdir())))
    b = np.asarray(Image.open(next((tmp_path / "out2").iterdir())))
    assert np.array_equal(a, out) and np.array_equal(b, out)
