"""Our checkpoint format, Hub loading from an offline cache, official layouts, safe loading."""
from __future__ import annotations

import json
import os

import pytest
import torch

import harmonykit
from harmonykit.convert import CheckpointError, load_checkpoint
from harmonykit.models.charmnet import split_to_official_charmnet
from harmonykit.models.idih import unet_to_official_idih
from harmonykit.publish import install_to_hf_cache

TINY = dict(ch=8, max_channels=16)


def _same_outputs(a, b, domain=None):
    a.eval(), b.eval()
    x, m = torch.rand(2, 3, 256, 256), (torch.rand(2, 1, 256, 256) > 0.5).float()
    kw = {"domain": domain} if domain else {}
    with torch.no_grad():
        return torch.equal(a(x, m, **kw).image, b(x, m, **kw).image)


def test_save_and_load_local_dir(tmp_path):
    model = harmonykit.create_model("charmnet_idih", **TINY)
    out = harmonykit.save_pretrained(model, tmp_path / "ckpt")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architecture"] == "charmnet_idih" and cfg["model_args"]["ch"] == 8
    pc = cfg["pretrained_cfg"]
    for key in ("input_size", "value_range", "mean", "std", "mask_convention", "license", "metric_protocol"):
        assert key in pc
    loaded = harmonykit.create_model(f"local-dir:{out}")
    assert _same_outputs(model, loaded, "rendered") and _same_outputs(model, loaded, "real")
    assert not any(n.startswith("net.") for n in loaded.state_dict())  # no D / style heads inside
    assert _same_outputs(model, harmonykit.from_pretrained(out), "real")


def test_hub_load_from_offline_cache_with_revision(tmp_path, hf_cache_dir):
    a = harmonykit.create_model("idih256", **TINY)
    b = harmonykit.create_model("idih256", **TINY)
    harmonykit.save_pretrained(a, tmp_path / "a")
    harmonykit.save_pretrained(b, tmp_path / "b")
    install_to_hf_cache(tmp_path / "a", "acme/idih-test", cache_dir=hf_cache_dir, commit_hash="a" * 40)
    install_to_hf_cache(tmp_path / "b", "acme/idih-test", cache_dir=hf_cache_dir, revision="v2", commit_hash="b" * 40)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert _same_outputs(a, harmonykit.create_model("hf-hub:acme/idih-test"))
    assert _same_outputs(b, harmonykit.create_model("hf-hub:acme/idih-test@v2"))
    assert _same_outputs(b, harmonykit.create_model("hf-hub:acme/idih-test@" + "b" * 40))


def test_hub_missing_repo_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="hf-hub:acme/absent.*config.json.*local Hugging Face cache"):
        harmonykit.create_model("hf-hub:acme/absent")


def test_local_dir_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        harmonykit.create_model(f"local-dir:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        harmonykit.create_model(f"local-dir:{tmp_path / 'empty'}")
    bad = tmp_path / "bad"
    bad.mkdir()
    harmonykit.save_pretrained(harmonykit.create_model("idih256", **TINY), bad)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        harmonykit.create_model(f"local-dir:{bad}")


def test_official_idih_checkpoint_loads_directly(tmp_path):
    src = harmonykit.create_model("idih256", **TINY)
    torch.save(unet_to_official_idih(src.state_dict()), tmp_path / "idih256.pth")
    m = harmonykit.create_model("idih256", checkpoint_path=tmp_path / "idih256.pth", **TINY)
    assert _same_outputs(src, m)


def test_official_charmnet_checkpoint_loads_directly(tmp_path):
    src = harmonykit.create_model("charmnet_idih", **TINY)
    torch.save(split_to_official_charmnet(src.state_dict()), tmp_path / "latest_net_G.pth")
    m = harmonykit.create_model("charmnet_idih", checkpoint_path=str(tmp_path / "latest_net_G.pth"), **TINY)
    assert _same_outputs(src, m, "rendered") and _same_outputs(src, m, "real")


def test_idih_checkpoint_initialises_charmnet_real_branch(tmp_path):
    idih = harmonykit.create_model("idih256", **TINY)
    torch.save(unet_to_official_idih(idih.state_dict()), tmp_path / "idih256.pth")
    charm = harmonykit.create_model("charmnet_idih", **TINY)
    before = {k: v.clone() for k, v in charm.state_dict().items() if ".rendered." in k}
    load_checkpoint(charm, tmp_path / "idih256.pth")  # fills real branch + shared stages
    idih.eval(), charm.eval()
    x, m = torch.rand(1, 3, 256, 256), torch.ones(1, 1, 256, 256)
    with torch.no_grad():
        assert torch.equal(idih(x, m).image, charm(x, m, domain="real").image)
    for k, v in before.items():  # the rendered branch is untouched
        assert torch.equal(charm.state_dict()[k], v)


def test_wrong_architecture_lists_missing_and_unexpected(tmp_path):
    harmonykit.save_pretrained(harmonykit.create_model("idih256", **TINY), tmp_path)
    with pytest.raises(CheckpointError, match=r"does not fit model 'dih256'(.|\n)*missing keys(.|\n)*unexpected keys"):
        harmonykit.create_model("dih256", checkpoint_path=tmp_path / "model.safetensors", **TINY)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        harmonykit.create_model("idih256", checkpoint_path=tmp_path / "model.safetensors", ch=16, max_channels=16)


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Payload()}, path)
    with pytest.raises(CheckpointError, match="refusing to load.*could run code"):
        harmonykit.create_model("idih256", checkpoint_path=path, **TINY)


def test_garbage_and_missing_files(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        harmonykit.create_model("idih256", checkpoint_path=tmp_path / "junk.pth", **TINY)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        harmonykit.create_model("idih256", checkpoint_path=tmp_path / "absent.pth", **TINY)


def test_ddp_and_compile_prefixes_are_stripped(tmp_path):
    src = harmonykit.create_model("idih256", **TINY)
    torch.save({"state_dict": {"module._orig_mod." + k: v for k, v in src.state_dict().items()}}, tmp_path / "w.pth")
    assert _same_outputs(src, harmonykit.create_model("idih256", checkpoint_path=tmp_path / "w.pth", **TINY))
