"""RainNet equals the official junleen/RainNet generator (fixtures made by the official code).

Configurations, cases, sizes and parameter counts are discovered from
``<HARMONYKIT_ZOO_FIXTURES>/rainnet/manifest.json`` and the ``<config>.json`` /
``<config>.safetensors`` pairs it lists (see the README there).
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import harmonykit
from harmonykit.cli import main
from harmonykit.convert import load_checkpoint
from harmonykit.models.rainnet import official_rainnet_to_ours, ours_to_official_rainnet
from zoo_fixtures import TOL, ManifestFixtures

FIX = ManifestFixtures("rainnet")
MANIFEST, CONFIGS = FIX.manifest, FIX.configs
_load, _official_sd, _inputs = FIX.load, FIX.official_sd, FIX.inputs


@pytest.fixture(scope="module", params=CONFIGS)
def loaded(request, tmp_path_factory):
    """(meta, tensors, model built by create_model from an official-key checkpoint file)."""
    meta, tensors = _load(request.param)
    path = tmp_path_factory.mktemp("rainnet") / f"{request.param}_official.pth"
    torch.save(_official_sd(meta, tensors), path)
    model = harmonykit.create_model("rainnet", checkpoint_path=str(path), **meta["model_args"])
    return meta, tensors, model


@pytest.mark.parametrize("entry", MANIFEST["param_counts"], ids=lambda e: json.dumps(e["model_args"], sort_keys=True))
def test_parameter_count_equals_official(entry):
    model = harmonykit.create_model("rainnet", **entry["model_args"])
    assert sum(p.numel() for p in model.parameters()) == entry["params"]


def test_default_parameter_count_is_the_papers():
    default = [e for e in MANIFEST["param_counts"] if e["model_args"] == {}]
    assert default, "the manifest must give the default configuration's official count"
    assert sum(p.numel() for p in harmonykit.create_model("rainnet").parameters()) == default[0]["params"]


def test_official_keys_map_both_ways_in_official_order(loaded):
    meta, tensors, model = loaded
    ours = model.state_dict()
    official = ours_to_official_rainnet(ours)
    assert list(official) == meta["official_keys"]
    assert list(official_rainnet_to_ours(official)) == list(official_rainnet_to_ours(_official_sd(meta, tensors)))
    back = official_rainnet_to_ours(_official_sd(meta, tensors))
    assert set(back) == set(ours)
    for k, v in back.items():
        torch.testing.assert_close(ours[k], v, atol=0, rtol=0)


def test_official_checkpoint_is_loaded_strictly(loaded, tmp_path):
    meta, tensors, _ = loaded
    sd = _official_sd(meta, tensors)
    bad = dict(sd)
    bad["model_layer0.extra"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(Exception, match="model_layer0.extra"):
        harmonykit.create_model("rainnet", checkpoint_path=str(path), **meta["model_args"])
    missing = dict(sd)
    missing.pop(meta["official_keys"][-1])
    save_file({k: v.contiguous() for k, v in missing.items()}, str(tmp_path / "missing.safetensors"))
    with pytest.raises(Exception, match="missing"):
        harmonykit.create_model("rainnet", checkpoint_path=str(tmp_path / "missing.safetensors"), **meta["model_args"])


def _check_case(model, meta, tensors, case, mode):
    comp, mask = _inputs(tensors, case)
    ref = tensors[f"{case['name']}.{mode}.output"]
    model.train(mode == "train")
    if mode == "train":
        torch.manual_seed(case["train_seed"])  # dropout masks: same generator state as the official run
    with torch.no_grad():
        out = model(comp, mask)
    torch.testing.assert_close(out.image_normalized, ref, **TOL)
    torch.testing.assert_close(out.image, (ref + 1) / 2, **TOL)
    return out


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_forward_equals_official(loaded, mode):
    meta, tensors, model = loaded
    assert len({tuple(c["size"]) for c in meta["cases"]}) >= 1
    for case in meta["cases"]:
        _check_case(model, meta, tensors, case, mode)


def test_buffers_after_train_forward_equal_official(loaded):
    meta, tensors, model = loaded
    for case in meta["cases"]:
        _check_case(model, meta, tensors, case, "train")
        ours = ours_to_official_rainnet(dict(model.named_buffers()))
        assert sorted(ours) == sorted(case["buffers"])
        for k in case["buffers"]:
            torch.testing.assert_close(ours[k], tensors[f"{case['name']}.train.buffers.{k}"], **TOL)


def test_train_mode_dropout_is_live(loaded):
    """The official configuration keeps dropout (no_dropout=False): train != eval output."""
    meta, tensors, model = loaded
    if not meta["model_args"].get("use_dropout", True):
        pytest.skip("configuration without dropout")
    case = meta["cases"][0]
    a = _check_case(model, meta, tensors, case, "eval").image
    b = _check_case(model, meta, tensors, case, "train").image
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("adapter", ["charmnet_rainnet_shared", "charmnet_rainnet"])
def test_official_weights_through_the_domain_adapters(loaded, adapter, tmp_path):
    """The stage protocol runs the same computation: an official checkpoint loaded into the
    shared adapter, or into the real branch of the split one, gives the official output."""
    meta, tensors, _ = loaded
    path = tmp_path / "official.pth"
    torch.save(_official_sd(meta, tensors), path)
    model = harmonykit.create_model(adapter, **meta["model_args"])
    load_checkpoint(model, path, strict=True, domain="real")
    case = meta["cases"][0]
    comp, mask = _inputs(tensors, case)
    model.eval()
    with torch.no_grad():
        out = model(comp, mask, domain="real")
    torch.testing.assert_close(out.image_normalized, tensors[f"{case['name']}.eval.output"], **TOL)
    assert out.features_in.shape == out.features_out.shape


def test_input_size_rule():
    model = harmonykit.create_model("rainnet", ngf=2)
    with pytest.raises(ValueError, match="multiples of 256"):
        model(torch.rand(1, 3, 256, 320), torch.ones(1, 1, 256, 320))


def test_harmonykit_convert_of_an_official_file_round_trips(loaded, tmp_path):
    """`harmonykit convert official.pth OUT` infers the architecture and its arguments from the
    official shapes; `local-dir:OUT` then gives the official output."""
    meta, tensors, _ = loaded
    torch.save(_official_sd(meta, tensors), tmp_path / "net_G_last.pth")
    assert main(["convert", str(tmp_path / "net_G_last.pth"), str(tmp_path / "out")]) == 0
    model = harmonykit.create_model(f"local-dir:{tmp_path / 'out'}")
    assert model.architecture == "rainnet"
    assert {k: model.model_args[k] for k in meta["model_args"]} == meta["model_args"]
    _check_case(model, meta, tensors, meta["cases"][0], "eval")
