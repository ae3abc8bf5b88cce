"""PCT-Net CNN and ViT against the official rakutentech code (fixtures in
tests/fixtures/zoo/pctnet_cnn and tests/fixtures/zoo/pctnet_vit).

Cases, sizes, modes and the narrow configuration are read from the fixture files, so another
fixture set of the same format (``HARMONYKIT_ZOO_FIXTURES``) runs unchanged. Every test runs for
both variants unless it names one.
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import harmonykit
from harmonykit.convert import CheckpointError
from harmonykit.models.pctnet import official_pctnet_to_ours
from zoo_fixtures import TOL, ZOO_ROOT, assert_official_layout_loads

MODELS = ("pctnet_cnn", "pctnet_vit")
ROOT = ZOO_ROOT


def _dir(model):
    return ROOT / model


def _config(model):
    path = _dir(model) / "config.json"
    assert path.is_file(), f"missing parity fixtures: {path} (see tests/fixtures/zoo/README.md)"
    return json.loads(path.read_text())


CONFIGS = {m: (_config(m) if (_dir(m) / "config.json").is_file() else {"cases": []}) for m in MODELS}
CASES = [(m, c["name"], mode) for m in MODELS for c in CONFIGS[m]["cases"] for mode in c["modes"]]
# banding does not depend on the view: the cheap cases (given small views) when there are any
BAND_CASES = [
    (m, name)
    for m in MODELS
    for name in ([c["name"] for c in CONFIGS[m]["cases"] if not c["official_view"]] or [c["name"] for c in CONFIGS[m]["cases"]])
]
_LOADED = {}


def _weights(model):
    key = (model, "weights")
    if key not in _LOADED:
        _LOADED[key] = load_file(str(_dir(model) / "weights.safetensors"))
    return _LOADED[key]


def _tensors(model):
    key = (model, "cases")
    if key not in _LOADED:
        _LOADED[key] = load_file(str(_dir(model) / "cases.safetensors"))
    return _LOADED[key]


def _model(model, cfg, weights_path):
    return harmonykit.create_model(model, checkpoint_path=weights_path, **cfg["model_args"])


def _given_view(tensors, case):
    if f"{case}.composite_lowres" in tensors:
        return dict(composite_lowres=tensors[f"{case}.composite_lowres"], mask_lowres=tensors[f"{case}.mask_lowres"])
    return {}


@pytest.mark.parametrize("model", MODELS)
def test_fixtures_exist(model):
    cfg = _config(model)
    assert cfg["model"] == model and cfg["cases"], "fixture config lists no cases"
    assert (_dir(model) / "weights.safetensors").is_file() and (_dir(model) / "cases.safetensors").is_file()


@pytest.mark.parametrize("model", MODELS)
def test_default_parameter_count_equals_official(model):
    for name, count in _config(model)["param_counts"].items():
        net = harmonykit.create_model(name)
        assert sum(p.numel() for p in net.parameters()) == count, name


@pytest.mark.parametrize("model", MODELS)
def test_official_default_layout_loads_strictly(model, tmp_path):
    """A state dict with the official default model's keys and shapes (in the official order)
    loads strictly; the mapping is one-to-one onto our state dict."""
    assert_official_layout_loads(model, _config(model)["official_keys_default"], official_pctnet_to_ours, tmp_path)


@pytest.mark.parametrize("model", MODELS)
def test_official_narrow_checkpoint_loads_strictly(model, tmp_path):
    cfg = _config(model)
    official_weights = _weights(model)
    order = [k for k, _ in cfg["official_keys"]]  # safetensors does not keep the order
    assert sorted(order) == sorted(official_weights), "fixture weights and official key list differ"
    official = {k: official_weights[k] for k in order}
    path = tmp_path / "narrow.pth"
    torch.save(official, path)
    net = _model(model, cfg, path)
    assert sum(p.numel() for p in net.parameters()) == cfg["narrow_param_count"]
    broken = dict(official)
    broken.pop(next(iter(broken)))
    torch.save(broken, path)
    with pytest.raises(CheckpointError, match="missing keys"):
        _model(model, cfg, path)


@pytest.mark.parametrize("model,case,mode", CASES)
def test_parity(model, case, mode):
    cfg = _config(model)
    tensors = _tensors(model)
    meta = next(c for c in cfg["cases"] if c["name"] == case)
    net = _model(model, cfg, _dir(model) / "weights.safetensors").train(mode == "train")
    kw = _given_view(tensors, case)
    if not kw:
        assert meta["official_view"], f"{case}: no low-resolution view stored and not the official one"
        assert net.lowres_size == meta["lowres_size"]
    comp, mask = tensors[f"{case}.composite"], tensors[f"{case}.mask"]
    assert list(comp.shape[-2:]) == meta["size"] and comp.shape[0] == meta["batch"]
    with torch.set_grad_enabled(mode == "train"):
        out = net(comp, mask, **kw)
    pre = f"{case}.{mode}."
    torch.testing.assert_close(out.image_normalized, tensors[pre + "images_fullres"], **TOL)
    torch.testing.assert_close(out.image, net.denormalize(tensors[pre + "images_fullres"]), **TOL)
    if pre + "params" in tensors:
        params = out.extras["transform"]
        torch.testing.assert_close(params, tensors[pre + "params"], **TOL)
        torch.testing.assert_close(net.upsample_transform(params, tuple(comp.shape[-2:])), tensors[pre + "params_fullres"], **TOL)
        torch.testing.assert_close(out.extras["image_lowres_normalized"], tensors[pre + "images"], **TOL)
        if model == "pctnet_cnn":
            torch.testing.assert_close(out.extras["blend"], tensors[pre + "attention"], **TOL)
        else:  # the ViT blends with the mask
            torch.testing.assert_close(out.extras["blend"], kw["mask_lowres"], atol=0, rtol=0)
    if mode == "train":
        buffers = {k[len(pre + "buffers."):]: v for k, v in tensors.items() if k.startswith(pre + "buffers.")}
        assert buffers, f"{case}: no norm buffers stored for the train-mode case"
        ours = net.state_dict()
        for k, v in official_pctnet_to_ours(buffers, variant=model.split("_")[1]).items():
            torch.testing.assert_close(ours[k].float(), v, **TOL)


@pytest.mark.parametrize("model", MODELS)
def test_lowres_view_is_the_official_one(model):
    """The model's own view equals the stored official cv2 view (a case with a stored view
    made at the model's own size is needed; the others are checked through test_parity)."""
    cfg = _config(model)
    tensors = _tensors(model)
    net = harmonykit.create_model(model, **cfg["model_args"])
    for meta in cfg["cases"]:
        key = f"{meta['name']}.composite_lowres"
        if key in tensors:
            net.lowres_size = meta["lowres_size"]
            c, m = net.lowres_view(tensors[f"{meta['name']}.composite"], tensors[f"{meta['name']}.mask"])
            torch.testing.assert_close(c, tensors[key], atol=0, rtol=0)
            torch.testing.assert_close(m, tensors[f"{meta['name']}.mask_lowres"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("model,case", BAND_CASES)
def test_banded_fullres_equals_official(model, case):
    """The full-resolution branch runs in bands of rows (bounded memory at 4K): small bands
    (7 rows, a partial last band) give the official output too."""
    cfg = _config(model)
    tensors = _tensors(model)
    net = _model(model, cfg, _dir(model) / "weights.safetensors")
    comp, mask = tensors[f"{case}.composite"], tensors[f"{case}.mask"]
    net.band_pixels = 7 * comp.shape[-1]
    with torch.no_grad():
        out = net(comp, mask, **_given_view(tensors, case))
    torch.testing.assert_close(out.image_normalized, tensors[f"{case}.eval.images_fullres"], **TOL)


@pytest.mark.parametrize("case", [c["name"] for c in CONFIGS["pctnet_vit"]["cases"]])
def test_vit_background_is_the_composite(case):
    """The official ViT model composites with the full-resolution mask: where the mask is 0
    the output is the input, in the fixture and in ours."""
    cfg = _config("pctnet_vit")
    tensors = _tensors("pctnet_vit")
    net = _model("pctnet_vit", cfg, _dir("pctnet_vit") / "weights.safetensors")
    comp, mask = tensors[f"{case}.composite"], tensors[f"{case}.mask"]
    with torch.no_grad():
        out = net(comp, mask, **_given_view(tensors, case))
    bg = (mask == 0).expand_as(comp)
    fg = (mask == 1).expand_as(comp)
    assert bg.any() and fg.any()
    torch.testing.assert_close(out.image[bg], comp[bg], atol=1e-6, rtol=0)
    expected = tensors[f"{case}.eval.images_fullres"]
    torch.testing.assert_close(expected[bg], comp[bg], atol=1e-6, rtol=0)
    assert (expected[fg] - comp[fg]).abs().max() > 1e-2, "the fixture's transform is (close to) the identity"


@pytest.mark.parametrize("src,dst", [((16, 16), (75, 50)), ((64, 64), (40, 52)), ((13, 29), (100, 31)), ((7, 5), (7, 5))])
def test_separable_bicubic_equals_torch(src, dst):
    from harmonykit.models.pctnet import bicubic_resize

    x = torch.randn(2, 5, *src, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.interpolate(x, size=dst, mode="bicubic", align_corners=False)
    torch.testing.assert_close(bicubic_resize(x, dst), expected, atol=1e-5, rtol=1e-5)


def test_official_checkpoint_fills_charmnet_real_branch():
    """An official PCT-Net CNN checkpoint loaded into charmnet_pctnet_cnn initialises the real
    branch and the shared stages: the real domain reproduces the official output (through the
    adapter the view is always the official one)."""
    cfg = _config("pctnet_cnn")
    tensors = _tensors("pctnet_cnn")
    cases = [c for c in cfg["cases"] if c["official_view"] and "eval" in c["modes"]]
    assert cases, "the fixture set has no eval case with the official view"
    meta = min(cases, key=lambda c: c["batch"] * c["size"][0] * c["size"][1])
    net = harmonykit.create_model("charmnet_pctnet_cnn", checkpoint_path=_dir("pctnet_cnn") / "weights.safetensors", **cfg["model_args"])
    name = meta["name"]
    with torch.no_grad():
        out = net(tensors[f"{name}.composite"], tensors[f"{name}.mask"], domain="real")
    torch.testing.assert_close(out.image_normalized, tensors[f"{name}.eval.images_fullres"], **TOL)
    assert out.features_in.shape == out.features_out.shape
