"""Harmonizer (ZHKKKe/Harmonizer, ECCV 2022): parity with the official code, official-layout
conversion, the official API (predict_arguments / restore_image) and the forward contract.

Fixtures: ``$HARMONYKIT_ZOO_FIXTURES/harmonizer`` (default ``tests/fixtures/zoo/harmonizer``),
made by the official code (see the README there). Sizes and cases are discovered from the
files; a missing folder fails.
"""
from __future__ import annotations

import functools
import json
import re
from typing import Any, Dict, List, Tuple

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import harmonykit
from harmonykit.convert import load_checkpoint, load_weights
from harmonykit.models.harmonizer import FilterHarmonizer, checkpoint_filter_fn
from zoo_fixtures import ZOO_ROOT

ROOT = ZOO_ROOT
DIR = ROOT / "harmonizer"
ATOL = RTOL = 1e-4
FILES = ("meta.json", "weights.safetensors", "cases.safetensors")


def _case_keys() -> List[str]:
    path = DIR / "cases.safetensors"
    if not path.is_file():
        return []
    with safe_open(str(path), "pt") as f:
        return list(f.keys())


def _sizes(mode: str) -> List[str]:
    found = sorted({m.group(1) for k in _case_keys() for m in [re.match(rf"{mode}\.(\d+x\d+)\.", k)] if m})
    return found or ["<no fixtures>"]  # a missing fixture set fails in _fixtures()


@functools.lru_cache(maxsize=1)
def _fixtures() -> Tuple[Dict[str, Any], Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    missing = [name for name in FILES if not (DIR / name).is_file()]
    assert not missing, f"Harmonizer fixtures missing in {DIR}: {missing} (set HARMONYKIT_ZOO_FIXTURES or regenerate)"
    meta = json.loads((DIR / "meta.json").read_text())
    return meta, load_file(str(DIR / "weights.safetensors")), load_file(str(DIR / "cases.safetensors"))


def _close(ours: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    assert tuple(ours.shape) == tuple(ref.shape), f"{what}: shape {tuple(ours.shape)} vs {tuple(ref.shape)}"
    diff = (ours.double() - ref.double()).abs()
    worst = (diff - (ATOL + RTOL * ref.double().abs())).max().item()
    assert worst <= 0, f"{what}: max |diff| {diff.max().item():.3g} exceeds atol {ATOL} + rtol {RTOL}"


def _model(**overrides: Any) -> FilterHarmonizer:
    meta, weights, _ = _fixtures()
    model = harmonykit.create_model("harmonizer", **dict(meta["model_args"], **overrides))
    load_weights(model, weights, source="fixture weights.safetensors")
    return model


def test_fixture_folder_exists():
    _fixtures()
    assert _sizes("eval")[0] != "<no fixtures>", f"no eval.<H>x<W>.* cases in {DIR / 'cases.safetensors'}"


# -- parameters and checkpoints ----------------------------------------------------------------
def test_default_parameter_count_equals_official():
    meta, _, _ = _fixtures()
    model = harmonykit.create_model("harmonizer")
    assert sum(p.numel() for p in model.parameters()) == meta["default_param_count"]


def test_narrow_parameter_count_equals_official():
    meta, _, _ = _fixtures()
    model = harmonykit.create_model("harmonizer", **meta["model_args"])
    assert sum(p.numel() for p in model.parameters()) == meta["param_count"]


def test_default_official_layout_converts_strictly():
    """A state dict with the official full model's keys and shapes loads strictly; each
    tensor arrives where the conversion sends it."""
    meta, _, _ = _fixtures()
    gen = torch.Generator().manual_seed(0)
    official = {
        k: torch.randn(shape, generator=gen) if shape else torch.tensor(3) for k, shape in meta["default_official_keys"]
    }
    model = harmonykit.create_model("harmonizer")
    converted = checkpoint_filter_fn(official)
    assert len(converted) == len(official) == len(model.state_dict())
    result = model.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    load_weights(model, official)  # the same through harmonykit.convert (layout dispatch)
    own = model.state_dict()
    for k, v in converted.items():
        assert torch.equal(own[k], v.to(own[k].dtype)), k


def test_fixture_weights_are_official_key_order_and_load_from_file():
    meta, weights, _ = _fixtures()
    assert sorted(weights) == sorted(k for k, _ in meta["official_keys"])
    model = harmonykit.create_model("harmonizer", **meta["model_args"])
    load_checkpoint(model, DIR / "weights.safetensors")
    own = model.state_dict()
    for k, v in checkpoint_filter_fn(weights).items():
        assert torch.equal(own[k], v), k


def test_unknown_official_key_is_named():
    meta, weights, _ = _fixtures()
    bad = dict(weights, **{"backbone._blocks.0._mystery.weight": torch.zeros(1)})
    with pytest.raises(KeyError, match="backbone._blocks.0._mystery.weight"):
        checkpoint_filter_fn(bad)
    missing = {k: v for k, v in weights.items() if not k.startswith("regressor.headers.5.")}
    with pytest.raises(harmonykit.convert.CheckpointError, match="missing keys"):
        load_weights(harmonykit.create_model("harmonizer", **meta["model_args"]), missing)


def test_our_layout_passes_through_the_filter():
    model = harmonykit.create_model("harmonizer", width_coefficient=0.25, base_channels=32)
    sd = model.state_dict()
    assert checkpoint_filter_fn(sd).keys() == sd.keys()


# -- forward parity ------------------------------------------------------------------------------
@pytest.mark.parametrize("size", _sizes("eval"))
def test_eval_matches_official(size):
    """End to end (.image, arguments) and each filter stage, the stages both from our own
    arguments and from the official ones (the filters alone)."""
    _, _, cases = _fixtures()
    comp, mask = cases[f"eval.{size}.composite"], cases[f"eval.{size}.mask"]
    ref_args, ref = cases[f"eval.{size}.arguments"], cases[f"eval.{size}.filters"]
    model = _model().eval()
    with torch.no_grad():
        out = model(comp, mask)
        ours = model.restore_image(comp, mask, out.extras["arguments"])
        from_official = model.restore_image(comp, mask, ref_args)
    _close(out.extras["arguments"], ref_args, f"eval {size} arguments")
    assert len(ours) == len(from_official) == ref.shape[0] == len(model.filter_names)
    for i, name in enumerate(model.filter_names):
        _close(from_official[i], ref[i], f"eval {size} filter {i} ({name}) on the official arguments")
        _close(ours[i], ref[i], f"eval {size} output after filter {i} ({name})")
    _close(out.image, ref[-1], f"eval {size} image")
    torch.testing.assert_close(out.image_normalized, out.image)


@pytest.mark.parametrize("size", _sizes("train"))
def test_train_mode_matches_official_and_updates_buffers(size):
    """Train mode (BN batch statistics), drop path off as in the fixture."""
    meta, _, cases = _fixtures()
    model = _model(drop_path_rate=meta["train_mode_drop_connect_rate"]).train()
    with torch.no_grad():
        out = model(cases[f"train.{size}.composite"], cases[f"train.{size}.mask"])
    _close(out.extras["arguments"], cases[f"train.{size}.arguments"], f"train {size} arguments")
    _close(out.image, cases[f"train.{size}.image"], f"train {size} image")
    prefix = f"train.{size}.buffers."
    buffers = checkpoint_filter_fn({k[len(prefix):]: v for k, v in cases.items() if k.startswith(prefix)})
    assert buffers, f"no {prefix}* tensors"
    own = model.state_dict()
    for k, ref in buffers.items():
        if k.endswith("num_batches_tracked"):
            assert int(own[k]) == int(ref), k
        else:
            _close(own[k], ref, f"train {size} buffer {k}")


def test_filters_driven_by_hand_match_official():
    _, _, cases = _fixtures()
    model = _model().eval()
    comp, mask, args = cases["manual.composite"], cases["manual.mask"], cases["manual.arguments"]
    ref = cases["manual.filters"]
    as_tensor = model.restore_image(comp, mask, args)
    as_list = model.restore_image(comp, mask, [args[:, i : i + 1] for i in range(args.shape[1])])
    for i in range(ref.shape[0]):
        _close(as_tensor[i], ref[i], f"manual filter {i} ({model.filter_names[i]})")
        torch.testing.assert_close(as_list[i], as_tensor[i])


def test_given_lowres_view_matches_official():
    _, _, cases = _fixtures()
    model = _model().eval()
    with torch.no_grad():
        out = model(
            cases["lowres.composite"],
            cases["lowres.mask"],
            composite_lowres=cases["lowres.composite_lowres"],
            mask_lowres=cases["lowres.mask_lowres"],
        )
    _close(out.extras["arguments"], cases["lowres.arguments"], "lowres arguments")
    _close(out.image, cases["lowres.image"], "lowres image")


# -- configuration facts ------------------------------------------------------------------------
def test_default_config_equals_official():
    meta, _, _ = _fixtures()
    model = harmonykit.create_model("harmonizer")
    assert list(model.input_size) == meta["default_input_size"]
    assert list(model.filter_names) == meta["filter_types"]
    rate, blocks = meta["default_drop_connect_rate"], [b for stage in model.encoder.blocks for b in stage]
    for i, block in enumerate(blocks):
        if block.has_skip:  # the official drop connect: rate * i / number of blocks
            assert block.drop_path.drop_prob == pytest.approx(rate * i / len(blocks)), i


def test_encoder_blocks_are_timm_tf_efficientnet_b0():
    import timm

    ref = timm.create_model("tf_efficientnet_b0", pretrained=False, num_classes=0)
    ours = harmonykit.create_model("harmonizer").encoder
    want = {k: tuple(v.shape) for k, v in ref.state_dict().items() if k.startswith(("blocks.", "conv_head.", "bn2."))}
    got = {k: tuple(v.shape) for k, v in ours.state_dict().items() if k.startswith(("blocks.", "conv_head.", "bn2."))}
    assert got == want


# -- contract ------------------------------------------------------------------------------------
def test_forward_makes_the_lowres_view_like_predict_arguments():
    model = harmonykit.create_model("harmonizer", width_coefficient=0.25, base_channels=32, input_size=(64, 48)).eval()
    comp, mask = torch.rand(2, 3, 37, 51), (torch.rand(2, 1, 37, 51) > 0.5).float()
    with torch.no_grad():
        out = model(comp, mask)
        lr = model.make_lowres(comp, mask)
        given = model(comp, mask, composite_lowres=lr[0], mask_lowres=lr[1])
    assert lr[0].shape[-2:] == tuple(model.input_size)
    torch.testing.assert_close(out.image, given.image)
    torch.testing.assert_close(out.extras["arguments"], model.predict_arguments(comp, mask))


def test_lowres_arguments_are_checked():
    model = harmonykit.create_model("harmonizer", width_coefficient=0.25, base_channels=32).eval()
    comp, mask = torch.rand(2, 3, 40, 40), torch.ones(2, 1, 40, 40)
    with pytest.raises(ValueError, match="both composite_lowres and mask_lowres"):
        model(comp, mask, composite_lowres=torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match="batch"):
        model(comp, mask, composite_lowres=torch.rand(1, 3, 64, 64), mask_lowres=torch.ones(1, 1, 64, 64))
    with pytest.raises(ValueError, match="expected 6 arguments"):
        model.restore_image(comp, mask, [torch.zeros(2, 1)] * 5)


def test_background_is_kept_and_outputs_in_range():
    model = harmonykit.create_model("harmonizer", width_coefficient=0.25, base_channels=32).eval()
    comp = torch.rand(2, 3, 33, 45)
    mask = torch.zeros(2, 1, 33, 45)
    mask[..., 5:20, 10:30] = 1
    outs = model.restore_image(comp, mask, torch.tensor([[0.5, -0.5, 0.3, 0.8, -0.2, 0.4]] * 2))
    for out in outs:
        torch.testing.assert_close(out * (1 - mask), comp * (1 - mask))
        assert 0 <= out.min() and out.max() <= 1
    assert not torch.allclose(outs[-1] * mask, comp * mask)
