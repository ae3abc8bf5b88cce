"""iSSAM / SSAM against the official SamsungLabs code (fixtures in tests/fixtures/zoo/issam).

Configurations (architecture + narrow arguments), cases, sizes and modes are read from the
fixture files, so another fixture set of the same format (``HARMONYKIT_ZOO_FIXTURES``) runs
unchanged.
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import harmonykit
from harmonykit.convert import CheckpointError
from harmonykit.models.ssam import official_ssam_to_ours
from zoo_fixtures import TOL, ZOO_ROOT, assert_official_layout_loads

MODEL = "issam"
ROOT = ZOO_ROOT
DIR = ROOT / MODEL


def _config():
    path = DIR / "config.json"
    assert path.is_file(), f"missing parity fixtures: {path} (see tests/fixtures/zoo/README.md)"
    return json.loads(path.read_text())


CONFIG = _config() if (DIR / "config.json").is_file() else {"configs": [], "param_counts": {}}
CASES = [(c["architecture"], case["name"], mode) for c in CONFIG["configs"] for case in c["cases"] for mode in case["modes"]]


@pytest.fixture(scope="module")
def weights():
    return load_file(str(DIR / "weights.safetensors"))


@pytest.fixture(scope="module")
def tensors():
    return load_file(str(DIR / "cases.safetensors"))


def _arch_cfg(arch):
    return next(c for c in _config()["configs"] if c["architecture"] == arch)


def _official(weights, arch):
    """The official state dict of ``arch`` in the official key order."""
    order = [k for k, _ in _arch_cfg(arch)["official_keys"]]
    pre = arch + "."
    assert sorted(order) == sorted(k[len(pre):] for k in weights if k.startswith(pre)), f"{arch}: weights and key list differ"
    return {k: weights[pre + k] for k in order}


def _model(arch, path, name=None):
    return harmonykit.create_model(name or arch, checkpoint_path=path, **_arch_cfg(arch)["model_args"])


def test_fixtures_exist():
    cfg = _config()
    assert cfg["model"] == MODEL and cfg["configs"], "fixture config lists no configurations"
    assert (DIR / "weights.safetensors").is_file() and (DIR / "cases.safetensors").is_file()


@pytest.mark.parametrize("arch", sorted(CONFIG["param_counts"]))
def test_default_parameter_count_equals_official(arch):
    model = harmonykit.create_model(arch)
    assert sum(p.numel() for p in model.parameters()) == _config()["param_counts"][arch]


@pytest.mark.parametrize("arch", sorted(CONFIG.get("official_keys_default", {})))
def test_official_default_layout_loads_strictly(arch, tmp_path):
    """The default official model's keys and shapes (official order) load strictly, one-to-one."""
    assert_official_layout_loads(arch, _config()["official_keys_default"][arch], official_ssam_to_ours, tmp_path)


@pytest.mark.parametrize("arch", [c["architecture"] for c in CONFIG["configs"]])
def test_official_narrow_checkpoint_loads_strictly(arch, tmp_path, weights):
    official = _official(weights, arch)
    path = tmp_path / "narrow.pth"
    torch.save(official, path)
    model = _model(arch, path)
    assert sum(p.numel() for p in model.parameters()) == _arch_cfg(arch)["narrow_param_count"]
    broken = dict(official)
    broken.pop(next(iter(broken)))
    torch.save(broken, path)
    with pytest.raises(CheckpointError, match="missing keys"):
        _model(arch, path)


@pytest.mark.parametrize("arch,case,mode", CASES)
def test_parity(arch, case, mode, tmp_path, weights, tensors):
    path = tmp_path / "w.pth"
    torch.save(_official(weights, arch), path)
    model = _model(arch, path).train(mode == "train")
    key = f"{arch}.{case}"
    meta = next(c for c in _arch_cfg(arch)["cases"] if c["name"] == case)
    comp, mask = tensors[f"{key}.composite"], tensors[f"{key}.mask"]
    assert list(comp.shape[-2:]) == meta["size"] and comp.shape[0] == meta["batch"]
    with torch.set_grad_enabled(mode == "train"):
        out = model(comp, mask)
    expected = tensors[f"{key}.{mode}.images"]
    torch.testing.assert_close(out.image_normalized, expected, **TOL)
    torch.testing.assert_close(out.image, harmonykit.normalization.denormalize(expected), **TOL)
    if mode == "train":
        pre = f"{key}.train.buffers."
        buffers = {k[len(pre):]: v for k, v in tensors.items() if k.startswith(pre)}
        assert buffers, f"{key}: no norm buffers stored for the train-mode case"
        ours = model.state_dict()
        for k, v in official_ssam_to_ours(buffers).items():
            torch.testing.assert_close(ours[k].float(), v, **TOL)


def test_official_issam_checkpoint_fills_charmnet_real_branch(tmp_path, weights, tensors):
    """An official iSSAM checkpoint loaded into charmnet_issam initialises the real branch and
    the shared stages: the real domain then reproduces the official output."""
    arch = "issam"
    if not any(c["architecture"] == arch for c in _config()["configs"]):
        pytest.fail("the fixture set has no 'issam' configuration")
    path = tmp_path / "w.pth"
    torch.save(_official(weights, arch), path)
    model = _model(arch, path, name="charmnet_issam")
    case = _arch_cfg(arch)["cases"][0]["name"]
    with torch.no_grad():
        out = model(tensors[f"{arch}.{case}.composite"], tensors[f"{arch}.{case}.mask"], domain="real")
    torch.testing.assert_close(out.image_normalized, tensors[f"{arch}.{case}.eval.images"], **TOL)
    assert out.features_in.shape == out.features_out.shape
