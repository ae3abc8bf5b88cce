"""push_to_hub / model card / HF-cache installer: a pushed model loads back through
create_model("hf-hub:...") offline and gives identical outputs."""
from __future__ import annotations

import json

import pytest
import torch

import harmonykit
from harmonykit.publish import generate_model_card, install_to_hf_cache, push_to_hub

EXPECTED_FILES = {"model.safetensors", "config.json", "README.md"}


def _inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 256, 256, generator=g)
    m = torch.zeros(2, 1, 256, 256)
    m[..., 60:180, 40:200] = 1
    return x, m


def test_push_local_then_cache_then_create_model(tiny, tmp_path, hf_cache_dir):
    metrics = {"protocol": "idih", "protocol_description": "iDIH evaluate_model.py", "settings": {"size": [256, 256]},
               "models": {"tiny": {"All": {"n": 6, "mse": 123.456, "fmse": 789.5, "psnr": 27.25}}}}
    out = push_to_hub(tiny, "acme/idih-tiny", local_dir=tmp_path / "push", metrics=metrics, training_data=["HCOCO"],
                      license="cc-by-nc-4.0", recipe={"lr": 1e-3, "iters": 10})
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architecture"] == "idih256" and cfg["model_args"]["ch"] == 8
    card = (out / "README.md").read_text()
    for text in ("license: cc-by-nc-4.0", "library_name: harmonykit", "`idih`", "123.46", "789.50", "HCOCO",
                 "## Limitations", "## Training recipe", '"lr": 0.001', 'create_model("hf-hub:acme/idih-tiny")'):
        assert text in card, text

    snap = install_to_hf_cache(out, "acme/idih-tiny")
    assert snap.parent.parent.parent == hf_cache_dir
    from huggingface_hub import scan_cache_dir, try_to_load_from_cache

    assert try_to_load_from_cache("acme/idih-tiny", "model.safetensors") == str(snap / "model.safetensors")
    repos = {r.repo_id: r for r in scan_cache_dir(hf_cache_dir).repos}
    assert {f.file_name for f in repos["acme/idih-tiny"].revisions.__iter__().__next__().files} == EXPECTED_FILES

    x, m = _inputs()
    with torch.no_grad():
        ref = tiny(x, m).image
        for name in ("hf-hub:acme/idih-tiny", f"hf-hub:acme/idih-tiny@{snap.name}", f"local-dir:{out}"):
            loaded = harmonykit.create_model(name)
            assert torch.equal(loaded(x, m).image, ref), name


def test_push_uploads_exactly_the_staged_files(tiny, tmp_path, monkeypatch):
    import huggingface_hub

    calls = {}

    def create_repo(self, repo_id, private=False, exist_ok=False, **kw):
        calls["create"] = (repo_id, private, exist_ok)

    def upload_folder(self, folder_path, repo_id, commit_message=None, revision=None, create_pr=False, **kw):
        from pathlib import Path

        calls["files"] = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        calls["upload"] = (repo_id, commit_message, revision, create_pr)
        return "https://huggingface.co/acme/x/commit/abc"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    url = push_to_hub(tiny, "acme/x", private=True, commit_message="first")
    assert url.endswith("/commit/abc")
    assert calls["create"] == ("acme/x", True, True) and calls["upload"][:2] == ("acme/x", "first")
    local = push_to_hub(tiny, "acme/x", local_dir=tmp_path / "same")
    assert set(calls["files"]) == EXPECTED_FILES
    for name in ("config.json", "README.md"):
        assert calls["files"][name] == (local / name).read_bytes(), name
    # safetensors writes its metadata map in no fixed order: compare the tensors
    from safetensors.torch import load, load_file

    up, loc = load(calls["files"]["model.safetensors"]), load_file(str(local / "model.safetensors"))
    assert up.keys() == loc.keys() and all(torch.equal(up[k], loc[k]) for k in up)


def test_card_defaults_and_bad_repo_id(tiny):
    card = generate_model_card(tiny)
    assert "license: other" in card and "No evaluation was recorded" in card and "idih256" in card
    with pytest.raises(ValueError, match="org/name"):
        push_to_hub(tiny, "no-slash", local_dir="/tmp/unused-hk")


def test_cache_miss_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="acme/not-there"):
        harmonykit.create_model("hf-hub:acme/not-there")
