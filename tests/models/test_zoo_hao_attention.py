"""hao_attention equals the official Dominoer/bmvc2020_image_harmonization network (fixtures
made by the official code; narrow widths through a width-only patch, see the README).

Configurations, cases, sizes and parameter counts are discovered from
``<HARMONYKIT_ZOO_FIXTURES>/hao_attention/manifest.json`` and the ``<config>.json`` /
``<config>.safetensors`` pairs it lists.
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import harmonykit
from harmonykit.cli import main
from harmonykit.models.hao_attention import official_hao_to_ours, ours_to_official_hao
from zoo_fixtures import TOL, ManifestFixtures

FIX = ManifestFixtures("hao_attention")
MANIFEST, CONFIGS = FIX.manifest, FIX.configs
_load, _official_sd, _inputs = FIX.load, FIX.official_sd, FIX.inputs


def _fresh(meta, tensors, tmp_path, suffix=".pth"):
    """create_model from a file holding the official keys (loaded strictly)."""
    path = tmp_path / f"official{suffix}"
    sd = _official_sd(meta, tensors)
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save({"epoch": 1, "state_dict": sd}, path)  # the official utils.save_checkpoint layout
    return harmonykit.create_model("hao_attention", checkpoint_path=str(path), **meta["model_args"])


@pytest.fixture(scope="module", params=CONFIGS)
def fixture_set(request):
    return _load(request.param)


@pytest.mark.parametrize("entry", MANIFEST["param_counts"], ids=lambda e: json.dumps(e["model_args"], sort_keys=True))
def test_parameter_count_equals_official(entry):
    model = harmonykit.create_model("hao_attention", **entry["model_args"])
    assert sum(p.numel() for p in model.parameters()) == entry["params"]


def test_default_parameter_count_is_the_papers():
    default = [e for e in MANIFEST["param_counts"] if e["model_args"] == {}]
    assert default, "the manifest must give the default configuration's official count"
    assert sum(p.numel() for p in harmonykit.create_model("hao_attention").parameters()) == default[0]["params"]


def test_official_keys_map_both_ways_in_official_order(fixture_set, tmp_path):
    meta, tensors = fixture_set
    model = _fresh(meta, tensors, tmp_path, ".safetensors")
    official = ours_to_official_hao(model.state_dict())
    assert list(official) == meta["official_keys"]
    back = official_hao_to_ours(_official_sd(meta, tensors))
    assert set(back) == set(model.state_dict())
    for k, v in back.items():
        torch.testing.assert_close(model.state_dict()[k], v, atol=0, rtol=0)


def test_official_checkpoint_is_loaded_strictly(fixture_set, tmp_path):
    meta, tensors = fixture_set
    sd = _official_sd(meta, tensors)
    extra = dict(sd, **{"FB_FMM.extra": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(Exception, match="FB_FMM.extra"):
        harmonykit.create_model("hao_attention", checkpoint_path=str(tmp_path / "extra.pth"), **meta["model_args"])
    missing = dict(sd)
    missing.pop("output.bias")
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(Exception, match="missing"):
        harmonykit.create_model("hao_attention", checkpoint_path=str(tmp_path / "missing.pth"), **meta["model_args"])


def _run(model, tensors, case, mode):
    comp, mask = _inputs(tensors, case)
    model.train(mode == "train")
    with torch.no_grad():
        return model(comp, mask)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_forward_equals_official(fixture_set, mode, tmp_path):
    meta, tensors = fixture_set
    for case in meta["cases"]:
        model = _fresh(meta, tensors, tmp_path)  # fresh BN buffers for every case
        out = _run(model, tensors, case, mode)
        name = case["name"]
        torch.testing.assert_close(out.image, tensors[f"{name}.{mode}.output"], **TOL)
        torch.testing.assert_close(out.image_normalized, tensors[f"{name}.{mode}.output"], **TOL)
        torch.testing.assert_close(out.extras["residual"], torch.tanh(tensors[f"{name}.{mode}.output_conv"]), **TOL)


def test_buffers_after_train_forward_equal_official(fixture_set, tmp_path):
    meta, tensors = fixture_set
    for case in meta["cases"]:
        model = _fresh(meta, tensors, tmp_path)
        before = {k: v.clone() for k, v in model.named_buffers()}
        _run(model, tensors, case, "train")
        ours = ours_to_official_hao(dict(model.named_buffers()))
        assert sorted(ours) == sorted(case["buffers"])
        changed = 0
        for k in case["buffers"]:
            ref = tensors[f"{case['name']}.train.buffers.{k}"]
            torch.testing.assert_close(ours[k], ref, **TOL)
            changed += int(not torch.equal(before[official_hao_to_ours({k: ref}).popitem()[0]], ref))
        assert changed == len(case["buffers"]), "every BN buffer moves in a train-mode forward"


def test_width_divisor_must_divide_16():
    with pytest.raises(ValueError, match="width_divisor must divide 16"):
        harmonykit.create_model("hao_attention", width_divisor=3)


def test_input_size_rule():
    model = harmonykit.create_model("hao_attention", width_divisor=16)
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.rand(1, 3, 64, 60), torch.ones(1, 1, 64, 60))


def test_harmonykit_convert_of_an_official_file_round_trips(fixture_set, tmp_path):
    """`harmonykit convert network.pth OUT` infers width_divisor from the official shapes;
    `local-dir:OUT` then gives the official output."""
    meta, tensors = fixture_set
    torch.save({"epoch": 3, "state_dict": _official_sd(meta, tensors)}, tmp_path / "network.pth")
    assert main(["convert", str(tmp_path / "network.pth"), str(tmp_path / "out")]) == 0
    model = harmonykit.create_model(f"local-dir:{tmp_path / 'out'}")
    assert model.architecture == "hao_attention" and model.model_args == meta["model_args"]
    case = meta["cases"][0]
    out = _run(model, tensors, case, "eval")
    torch.testing.assert_close(out.image, tensors[f"{case['name']}.eval.output"], **TOL)
