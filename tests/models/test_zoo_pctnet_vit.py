"""PCT-Net ViT against the official rakutentech code (fixtures in tests/fixtures/zoo/pctnet_vit).

Cases, sizes, modes and the narrow configuration are read from the fixture files, so another
fixture set of the same format (``HARMONYKIT_ZOO_FIXTURES``) runs unchanged.
"""
from __future__ import annotations

import json
import os
import pathlib

import pytest
import torch
from safetensors.torch import load_file

import harmonykit
from harmonykit.convert import CheckpointError
from harmonykit.models.pctnet import official_pctnet_to_ours

MODEL = "pctnet_vit"
ROOT = pathlib.Path(os.environ.get("HARMONYKIT_ZOO_FIXTURES") or pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "zoo")
DIR = ROOT / MODEL
TOL = dict(atol=1e-4, rtol=1e-4)


def _config():
    path = DIR / "config.json"
    assert path.is_file(), f"missing parity fixtures: {path} (see tests/fixtures/zoo/README.md)"
    return json.loads(path.read_text())


CONFIG = _config() if (DIR / "config.json").is_file() else {"cases": []}
CASES = [(c["name"], mode) for c in CONFIG["cases"] for mode in c["modes"]]


@pytest.fixture(scope="module")
def official_weights():
    return load_file(str(DIR / "weights.safetensors"))


@pytest.fixture(scope="module")
def tensors():
    return load_file(str(DIR / "cases.safetensors"))


def _model(cfg, weights_path):
    return harmonykit.create_model(MODEL, checkpoint_path=weights_path, **cfg["model_args"])


def test_fixtures_exist():
    cfg = _config()
    assert cfg["model"] == MODEL and cfg["cases"], "fixture config lists no cases"
    assert (DIR / "weights.safetensors").is_file() and (DIR / "cases.safetensors").is_file()


def test_default_parameter_count_equals_official():
    for name, count in _config()["param_counts"].items():
        model = harmonykit.create_model(name)
        assert sum(p.numel() for p in model.parameters()) == count, name


def test_official_default_layout_loads_strictly(tmp_path):
    """A state dict with the official default model's keys and shapes (in the official order)
    loads strictly; the mapping is one-to-one onto our state dict."""
    cfg = _config()
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(shape, generator=g) if shape else torch.tensor(3) for k, shape in cfg["official_keys_default"]}
    path = tmp_path / "official.pth"
    torch.save(sd, path)
    model = harmonykit.create_model(MODEL, checkpoint_path=path)
    ours = official_pctnet_to_ours(sd)
    assert len(ours) == len(sd) == len(model.state_dict())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ours[k].to(v.dtype), atol=0, rtol=0)


def test_official_narrow_checkpoint_loads_strictly(tmp_path, official_weights):
    cfg = _config()
    order = [k for k, _ in cfg["official_keys"]]  # safetensors does not keep the order
    assert sorted(order) == sorted(official_weights), "fixture weights and official key list differ"
    official = {k: official_weights[k] for k in order}
    path = tmp_path / "narrow.pth"
    torch.save(official, path)
    model = _model(cfg, path)
    assert sum(p.numel() for p in model.parameters()) == cfg["narrow_param_count"]
    broken = dict(official)
    broken.pop(next(iter(broken)))
    torch.save(broken, path)
    with pytest.raises(CheckpointError, match="missing keys"):
        _model(cfg, path)


@pytest.mark.parametrize("case,mode", CASES)
def test_parity(case, mode, tensors, official_weights):
    cfg = _config()
    meta = next(c for c in cfg["cases"] if c["name"] == case)
    model = _model(cfg, DIR / "weights.safetensors").train(mode == "train")
    kw = {}
    if f"{case}.composite_lowres" in tensors:
        kw = dict(composite_lowres=tensors[f"{case}.composite_lowres"], mask_lowres=tensors[f"{case}.mask_lowres"])
    else:
        assert meta["official_view"], f"{case}: no low-resolution view stored and not the official one"
        assert model.lowres_size == meta["lowres_size"]
    comp, mask = tensors[f"{case}.composite"], tensors[f"{case}.mask"]
    assert list(comp.shape[-2:]) == meta["size"] and comp.shape[0] == meta["batch"]
    with torch.set_grad_enabled(mode == "train"):
        out = model(comp, mask, **kw)
    pre = f"{case}.{mode}."
    torch.testing.assert_close(out.image_normalized, tensors[pre + "images_fullres"], **TOL)
    torch.testing.assert_close(out.image, model.denormalize(tensors[pre + "images_fullres"]), **TOL)
    if pre + "params" in tensors:
        params = out.extras["transform"]
        torch.testing.assert_close(params, tensors[pre + "params"], **TOL)
        torch.testing.assert_close(model.upsample_transform(params, tuple(comp.shape[-2:])), tensors[pre + "params_fullres"], **TOL)
        torch.testing.assert_close(out.extras["image_lowres_normalized"], tensors[pre + "images"], **TOL)
        torch.testing.assert_close(out.extras["blend"], kw["mask_lowres"], atol=0, rtol=0)  # the ViT blends with the mask
    if mode == "train":
        buffers = {k[len(pre + "buffers."):]: v for k, v in tensors.items() if k.startswith(pre + "buffers.")}
        assert buffers, f"{case}: no norm buffers stored for the train-mode case"
        ours = model.state_dict()
        for k, v in official_pctnet_to_ours(buffers, variant="vit").items():
            torch.testing.assert_close(ours[k].float(), v, **TOL)


def test_lowres_view_is_the_official_one(tensors):
    """The model's own view equals the stored official cv2 view (a case with a stored view
    made at the model's own size is needed; the others are checked through test_parity)."""
    cfg = _config()
    model = harmonykit.create_model(MODEL, **cfg["model_args"])
    for meta in cfg["cases"]:
        key = f"{meta['name']}.composite_lowres"
        if key in tensors:
            model.lowres_size = meta["lowres_size"]
            c, m = model.lowres_view(tensors[f"{meta['name']}.composite"], tensors[f"{meta['name']}.mask"])
            torch.testing.assert_close(c, tensors[key], atol=0, rtol=0)
            torch.testing.assert_close(m, tensors[f"{meta['name']}.mask_lowres"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("case", [c["name"] for c in CONFIG["cases"]])
def test_background_is_the_composite(case, tensors):
    """The official ViT model composites with the full-resolution mask: where the mask is 0
    the output is the input, in the fixture and in ours."""
    cfg = _config()
    model = _model(cfg, DIR / "weights.safetensors")
    comp, mask = tensors[f"{case}.composite"], tensors[f"{case}.mask"]
    kw = {}
    if f"{case}.composite_lowres" in tensors:
        kw = dict(composite_lowres=tensors[f"{case}.composite_lowres"], mask_lowres=tensors[f"{case}.mask_lowres"])
    with torch.no_grad():
        out = model(comp, mask, **kw)
    bg = (mask == 0).expand_as(comp)
    fg = (mask == 1).expand_as(comp)
    assert bg.any() and fg.any()
    torch.testing.assert_close(out.image[bg], comp[bg], atol=1e-6, rtol=0)
    expected = tensors[f"{case}.eval.images_fullres"]
    torch.testing.assert_close(expected[bg], comp[bg], atol=1e-6, rtol=0)
    assert (expected[fg] - comp[fg]).abs().max() > 1e-2, "the fixture's transform is (close to) the identity"


# banding does not depend on the view: the cheap cases (given small views) when there are any
BAND_CASES = [c["name"] for c in CONFIG["cases"] if not c["official_view"]] or [c["name"] for c in CONFIG["cases"]]


@pytest.mark.parametrize("case", BAND_CASES)
def test_banded_fullres_equals_official(case, tensors):
    """The full-resolution branch runs in bands of rows (bounded memory at 4K): small bands
    (7 rows, a partial last band) give the official output too."""
    cfg = _config()
    model = _model(cfg, DIR / "weights.safetensors")
    comp, mask = tensors[f"{case}.composite"], tensors[f"{case}.mask"]
    model.band_pixels = 7 * comp.shape[-1]
    kw = {}
    if f"{case}.composite_lowres" in tensors:
        kw = dict(composite_lowres=tensors[f"{case}.composite_lowres"], mask_lowres=tensors[f"{case}.mask_lowres"])
    with torch.no_grad():
        out = model(comp, mask, **kw)
    torch.testing.assert_close(out.image_normalized, tensors[f"{case}.eval.images_fullres"], **TOL)
