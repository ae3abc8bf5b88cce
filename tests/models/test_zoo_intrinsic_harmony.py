"""intrinsic_harmony (Guo et al., CVPR 2021) against numbers from the official v1.0 code.

Configurations, cases and sizes are read from the fixture folder (see its README), so another
fixture set of the same format can be substituted with HARMONYKIT_ZOO_FIXTURES.
"""
from __future__ import annotations

import argparse
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import harmonykit
from harmonykit.convert import CheckpointError, detect_layout, infer_model_args
from harmonykit.models.intrinsic_harmony import intrinsic_harmony_to_official, official_key_map, official_to_intrinsic_harmony
from zoo_fixtures import TOL, ZOO_ROOT

ROOT = ZOO_ROOT
DIR = ROOT / "intrinsic_harmony"
COMPONENTS = ("harmonized", "reflectance", "illumination", "ifm_mean")


@pytest.fixture(scope="module")
def meta():
    path = DIR / "meta.json"
    assert path.is_file(), f"intrinsic_harmony parity fixtures missing: {path} (set HARMONYKIT_ZOO_FIXTURES)"
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def official_sd():
    path = DIR / "weights.safetensors"
    assert path.is_file(), f"intrinsic_harmony fixture weights missing: {path}"
    return load_file(str(path))


def _cases(meta):
    assert meta["cases"], "the fixture lists no cases"
    for case in meta["cases"]:
        yield case, load_file(str(DIR / case["file"]))


def _model(meta, official_sd):
    model = harmonykit.create_model("intrinsic_harmony", **meta["model_args"])
    model.load_state_dict(official_to_intrinsic_harmony(official_sd, model), strict=True)
    return model


def _components(out):
    return {"harmonized": out.image, **out.extras}


def _assert_outputs(model, tensors, mode, what):
    with torch.no_grad():
        got = _components(model(tensors["composite"], tensors["mask"]))
    for key in COMPONENTS:
        torch.testing.assert_close(got[key], tensors[f"{mode}.{key}"], **TOL, msg=lambda m: f"{what} {mode} {key}: {m}")


def test_default_parameter_count_and_keys_equal_official(meta):
    model = harmonykit.create_model("intrinsic_harmony")
    assert sum(p.numel() for p in model.parameters()) == meta["default_param_count"]
    assert list(official_key_map(model)) == meta["default_official_keys"]


def test_official_key_order_and_shapes(meta, official_sd):
    model = harmonykit.create_model("intrinsic_harmony", **meta["model_args"])
    assert sorted(official_sd) == sorted(meta["official_keys"])  # safetensors stores keys sorted
    mapped = intrinsic_harmony_to_official(model.state_dict(), model)
    assert list(mapped) == meta["official_keys"]
    assert {k: tuple(v.shape) for k, v in mapped.items()} == {k: tuple(v.shape) for k, v in official_sd.items()}


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_forward_parity_every_component(meta, official_sd, mode):
    model = _model(meta, official_sd).train(mode == "train")
    for case, tensors in _cases(meta):
        assert tuple(tensors["composite"].shape[-2:]) == (case["height"], case["width"])
        _assert_outputs(model, tensors, mode, case["name"])


def test_output_contract(meta, official_sd):
    model = _model(meta, official_sd).eval()
    case, tensors = next(_cases(meta))
    with torch.no_grad():
        out = model(tensors["composite"], tensors["mask"])
    assert torch.equal(out.image, out.image_normalized)
    torch.testing.assert_close(out.image, out.extras["reflectance"] * out.extras["illumination"])
    b, _, h, w = tensors["composite"].shape
    assert out.extras["ifm_mean"].shape == (b, 1, h // model.size_divisor, w // model.size_divisor)


def test_buffers_after_one_train_forward(meta, official_sd):
    model = _model(meta, official_sd).train()
    for case, tensors in _cases(meta):
        with torch.no_grad():
            model(tensors["composite"], tensors["mask"])
        expected = {k[len("buffers."):]: v for k, v in tensors.items() if k.startswith("buffers.")}
        ours = {k: v for k, v in model.named_buffers()}
        assert sorted(expected) == sorted(meta["buffers"]) and len(ours) == len(expected)
        # buffers are named in our layout; compare through the key map when there are any
        mapping = official_key_map(model)
        for off, v in expected.items():
            torch.testing.assert_close(ours[mapping[off]], v, **TOL)


def test_official_checkpoint_loads_strictly_through_create_model(meta, official_sd, tmp_path):
    # the fixture file itself (official keys, safetensors) and a DDP-saved .pth (``module.`` prefix)
    pth = tmp_path / "net_G.pth"
    torch.save({f"module.{k}": v for k, v in official_sd.items()}, pth)
    assert detect_layout(official_sd) == "official_intrinsic_harmony"
    for path in (DIR / "weights.safetensors", pth):
        model = harmonykit.create_model("intrinsic_harmony", checkpoint_path=str(path), **meta["model_args"]).eval()
        for case, tensors in _cases(meta):
            _assert_outputs(model, tensors, "eval", f"{path.name} {case['name']}")


def test_official_checkpoint_that_does_not_fit_is_refused(meta, official_sd, tmp_path):
    extra = dict(official_sd)
    extra["ifm.model.99.conv.weight"] = torch.zeros(1)
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(CheckpointError, match=r"ifm\.model\.99\.conv\.weight"):
        harmonykit.create_model("intrinsic_harmony", checkpoint_path=str(tmp_path / "extra.safetensors"), **meta["model_args"])
    wider = dict(meta["model_args"], ngf=2 * meta["model_args"]["ngf"])
    with pytest.raises(CheckpointError, match="shape"):
        harmonykit.create_model("intrinsic_harmony", checkpoint_path=str(DIR / "weights.safetensors"), **wider)
    fewer = dict(meta["model_args"], illumination_n_res=meta["model_args"]["illumination_n_res"] + 1)
    with pytest.raises(CheckpointError, match="missing keys"):
        harmonykit.create_model("intrinsic_harmony", checkpoint_path=str(DIR / "weights.safetensors"), **fewer)


def test_convert_cli_infers_the_architecture(meta, official_sd, tmp_path):
    arch, args = infer_model_args(official_sd)
    assert arch == "intrinsic_harmony" and args == meta["model_args"]
    from harmonykit.cli import convert

    ns = argparse.Namespace(checkpoint=str(DIR / "weights.safetensors"), output=str(tmp_path / "out"), arch=None,
                            model_arg=[], domain=None, license=None, origin_url=None)
    assert convert.run(ns) == 0
    model = harmonykit.create_model(f"local-dir:{tmp_path / 'out'}").eval()
    case, tensors = next(_cases(meta))
    _assert_outputs(model, tensors, "eval", "converted")


def test_illumination_branch_sends_no_gradient_into_the_matcher(meta, official_sd):
    model = _model(meta, official_sd).train()
    case, tensors = next(_cases(meta))
    out = model(tensors["composite"], tensors["mask"])
    out.extras["illumination"].square().mean().backward()
    assert all(p.grad is None or not p.grad.any() for p in model.ifm.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.lighting_blocks.parameters())


def test_sizes_must_be_multiples_of_the_divisor(meta):
    model = harmonykit.create_model("intrinsic_harmony", **meta["model_args"])
    d = model.size_divisor
    with pytest.raises(ValueError, match=rf"multiples of {d}"):
        model(torch.rand(1, 3, 4 * d + 4, 4 * d), torch.ones(1, 1, 4 * d + 4, 4 * d))


@pytest.mark.parametrize("policy", ["resize", "full"])
def test_harmonize_any_size(meta, official_sd, policy):
    model = _model(meta, official_sd).eval()
    comp = torch.rand(1, 3, 37, 50)
    mask = torch.zeros(1, 1, 37, 50)
    mask[..., 10:25, 12:30] = 1
    out = harmonykit.harmonize(comp, mask, model, policy=policy, size=(64, 64))
    assert out.shape == comp.shape and torch.isfinite(out).all()
    if policy == "full":  # background untouched
        torch.testing.assert_close(out * (1 - mask), comp * (1 - mask), atol=1e-5, rtol=0)


def test_other_n_downsample_builds_and_runs():
    """n_downsample is an official option; the content width follows it (ngf * 2**n_downsample)."""
    model = harmonykit.create_model("intrinsic_harmony", ngf=4, n_downsample=3, r_enc_n_res=1, illumination_n_res=1,
                                    ifm_n_res=1, inharmonyfree_embed_layers=1).eval()
    assert model.size_divisor == 16 and model.content_channels == 32
    s = model.min_size
    with torch.no_grad():
        out = model(torch.rand(2, 3, s, s + 16), (torch.rand(2, 1, s, s + 16) > 0.5).float())
    assert out.image.shape == (2, 3, s, s + 16) and out.extras["ifm_mean"].shape == (2, 1, s // 16, (s + 16) // 16)
    assert torch.isfinite(out.image).all()
