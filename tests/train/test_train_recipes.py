"""Recipes: every shipped file validates and runs one synthetic step; malformed ones are
rejected with the key path and the allowed values."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from harmonykit.cli import main
from harmonykit.train.recipe import RecipeError, load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))

@pytest.fixture(autouse=True)
def _restore_global_torch_state():
    """Trainers switch on deterministic algorithms and seed torch; undo that for other tests."""
    yield
    torch.use_deterministic_algorithms(False)


def test_recipes_are_shipped():
    names = {p.stem for p in RECIPES}
    for n in ["charmnet_idih", "idih_real_only", "dataset_fusion", "two_stage", "tiny", "charmnet_idih_no_er",
              "charmnet_idih_no_sa", "charmnet_idih_no_adv", "charmnet_idih_no_style"]:
        assert n in names
    assert {f"charmnet_idih_split{k}" for k in range(1, 7)} <= names


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_dry_run(path, capsys):
    """``harmonykit train RECIPE --dry-run`` for every file: batch 2 per domain and the generator
    at reduced width (ch 8, max 64) to keep CI fast; everything else as the recipe says."""
    r = load_recipe(path, check_data=False)
    assert r["name"] == path.stem
    small = ["--set", "model.ch=8", "--set", "model.max_channels=64"]
    if "ch" not in r["model"]:  # zoo models: their own narrow arguments (tiny_args)
        import harmonykit

        tiny = harmonykit.get_pretrained_cfg(r["model"]["name"]).tiny_args
        small = [a for k, v in tiny.items() for a in ("--set", f"model.{k}={list(v) if isinstance(v, tuple) else v}")]
        if r["discriminator"] is not None and "ndf" in r["discriminator"]:
            small += ["--set", "discriminator.ndf=4"]
    rc = main(["train", str(path), "--dry-run", "--set", "train.batch_size=2", *small])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "one step OK" in out and "G_total" in out


def test_official_hyperparameters():
    r = load_recipe("charmnet_idih", check_data=False)
    assert r["optim"]["opt"] == "adam" and r["optim"]["lr"] == 1e-4 and r["optim"]["betas"] == [0.9, 0.999]
    L = r["loss"]
    assert (L["recon_rendered"]["weight"], L["recon_real"]["weight"], L["adversarial"]["weight"]) == (10.0, 10.0, 1.0)
    assert (L["style_in"]["weight"], L["consistency"]["weight"], L["entropy"]["weight"], L["entropy"]["margin"]) == (1.0, 0.5, 0.5, 1.0)
    assert r["train"]["batch_size"] == 8
    no_er = load_recipe("charmnet_idih_no_er", check_data=False)
    assert no_er["loss"]["entropy"] is None and no_er["loss"]["consistency"] is not None


def test_extends_and_set_overrides(tmp_path):
    p = tmp_path / "child.yaml"
    p.write_text("extends: tiny\nname: child\noptim: {lr: 3.0e-4}\n")
    r = load_recipe(p, overrides=["optim.lr=2e-4", "data.real.root=/x", "data.real.name=folder", "train.iterations=3"], check_data=False)
    assert r["optim"]["lr"] == 2e-4  # --set wins over the file, the file over its base
    assert r["model"]["ch"] == 8  # inherited from tiny
    assert r["data"]["real"] == {"name": "folder", "root": "/x"}
    assert r["train"]["iterations"] == 3


def _err(tmp_path, text, overrides=(), check_data=False):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(RecipeError) as ei:
        load_recipe(p, overrides=overrides, check_data=check_data)
    return str(ei.value)


def test_unknown_key_names_path_and_allowed(tmp_path):
    msg = _err(tmp_path, "extends: tiny\noptim: {lrr: 1.0}\n")
    assert "bad.yaml" in msg and "optim.lrr" in msg and "allowed keys" in msg and "lr" in msg
    msg = _err(tmp_path, "extends: tiny\nfoo: 1\n")
    assert "foo: unknown key" in msg and "optim" in msg


def test_wrong_type(tmp_path):
    msg = _err(tmp_path, "extends: tiny\ntrain: {batch_size: eight}\n")
    assert "train.batch_size" in msg and "expected int" in msg and "'eight'" in msg
    msg = _err(tmp_path, "extends: tiny\n", overrides=["optim.lr=fast"])
    assert "optim.lr" in msg and "expected float" in msg
    msg = _err(tmp_path, "extends: tiny\nloss: {entropy: {margin: big}}\n")
    assert "loss.entropy.margin" in msg and "expected float" in msg


def test_bad_choice(tmp_path):
    msg = _err(tmp_path, "extends: tiny\ntrain: {precision: fp8}\n")
    assert "train.precision" in msg and "bf16" in msg and "fp16" in msg


def test_unknown_registry_name(tmp_path):
    msg = _err(tmp_path, "extends: tiny\nmodel: {name: charmnet_nope}\n")
    assert "model.name" in msg and "charmnet_idih" in msg and "allowed values" in msg
    msg = _err(tmp_path, "extends: tiny\nloss: {recon_real: {name: l3, weight: 1.0}}\n")
    assert "loss.recon_real.name" in msg and "fn_mse" in msg
    msg = _err(tmp_path, "extends: tiny\ndiscriminator: {name: patchgan}\n")
    assert "discriminator.name" in msg and "fc" in msg


def test_unknown_component_argument(tmp_path):
    msg = _err(tmp_path, "extends: tiny\nloss: {recon_real: {name: fn_mse, weight: 1.0, min_aera: 10}}\n")
    assert "loss.recon_real.min_aera" in msg and "min_area" in msg
    msg = _err(tmp_path, "extends: tiny\ndiscriminator: {name: fc, in_channels: 3}\n")
    assert "discriminator.in_channels" in msg and "set by the trainer" in msg


def test_inconsistent_components(tmp_path):
    msg = _err(tmp_path, "extends: tiny\nstyle_heads: null\n")
    assert "style_heads is null" in msg
    msg = _err(tmp_path, "extends: tiny\ntrain: {iterations: null, epochs: null}\n")
    assert "train.iterations" in msg


def test_datasets_checked_unless_dry_run(tmp_path):
    text = "extends: tiny\ndata: {kind: datasets, rendered: {name: nosuchset}, real: {name: nosuchset}}\n"
    msg = _err(tmp_path, text, check_data=True)
    assert "data.rendered.name" in msg and "unknown dataset" in msg
    p = tmp_path / "bad.yaml"
    assert load_recipe(p, check_data=False)["data"]["kind"] == "datasets"


def test_extends_errors(tmp_path):
    msg = _err(tmp_path, "extends: does_not_exist\n")
    assert "extends" in msg and "does_not_exist" in msg and "tiny" in msg
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(RecipeError, match="cycle"):
        load_recipe(tmp_path / "a.yaml")


def test_cli_reports_recipe_errors(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text("extends: tiny\noptim: {lrr: 1.0}\n")
    assert main(["train", str(p), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "optim.lrr" in err and "allowed keys" in err
    assert main(["train", "tiny", "--dry-run", "--set", "optim"]) == 2
    assert "KEY.PATH=VALUE" in capsys.readouterr().err


def test_print_recipe_is_resolved(capsys):
    assert main(["train", "tiny", "--print-recipe", "--set", "seed=5"]) == 0
    r = yaml.safe_load(capsys.readouterr().out)
    assert r["seed"] == 5 and r["optim"]["eps"] == 1e-8 and r["train"]["ema"]["enabled"] is False


def test_unknown_model_argument_fails_before_training(tmp_path, capsys):
    """Model arguments are checked when the recipe loads (against the backbone / adapter
    signature, without building): the CLI reports them and writes nothing."""
    rc = main(["train", "tiny", "--set", "model.max_chanels=64", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "max_chanels" in err and "max_channels" in err
    assert not any(tmp_path.iterdir())
