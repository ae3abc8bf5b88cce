"""recipes/table2/: one recipe per Table 2 row of the paper, parameterised only by dataset roots
(``${IHARMONY4_ROOT}`` / ``${RDHARMONY_ROOT}``); each passes ``harmonykit train --dry-run``.
Also: environment-variable expansion in recipes."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import harmonykit
from harmonykit.cli import main
from harmonykit.train.recipe import RecipeError, expand_env, load_recipe

TABLE2 = sorted((Path(__file__).resolve().parents[2] / "recipes" / "table2").glob("*.yaml"))
ROWS = {2, 3, 4, 5, 6, 7, 8, 12, 13}


@pytest.fixture(autouse=True)
def _restore_global_torch_state():
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """Dummy dataset roots exported as the recipes' variables."""
    ih, rd = tmp_path / "iHarmony4", tmp_path / "RdHarmony"
    for p in (ih, rd):
        p.mkdir()
    monkeypatch.setenv("IHARMONY4_ROOT", str(ih))
    monkeypatch.setenv("RDHARMONY_ROOT", str(rd))
    return ih, rd


def test_every_reported_row_has_a_recipe():
    rows = {int(p.stem[3:5]) for p in TABLE2}
    assert rows == ROWS, sorted(rows)


def _narrow(r):
    """The generator (and image discriminator) at narrow width: keeps the dry run fast."""
    tiny = harmonykit.get_pretrained_cfg(r["model"]["name"]).tiny_args or {"ch": 8, "max_channels": 64}
    out = [a for k, v in tiny.items() for a in ("--set", f"model.{k}={list(v) if isinstance(v, tuple) else v}")]
    if r["discriminator"] is not None and "ndf" in r["discriminator"]:
        out += ["--set", "discriminator.ndf=4"]
    return out


@pytest.mark.parametrize("path", TABLE2, ids=[p.stem for p in TABLE2])
def test_table2_recipe_dry_run(path, roots, capsys):
    ih, rd = roots
    r = load_recipe(path, check_data=False)
    assert r["name"] == path.stem
    # only the roots come from outside; the base / novel split is fixed by the recipe
    assert r["data"]["real"]["root"] == str(ih) and r["data"]["val"]["root"] == str(ih)
    assert r["data"]["val"]["list_file"] == "IHD_human_test.txt"
    if not path.stem.startswith("row13"):
        assert r["data"]["real"]["list_file"] == "IHD_nonhuman_train.txt"
    else:  # the upper bound trains on every category
        assert r["data"]["real"].get("list_file") is None
    if r["data"]["rendered"] is not None and r["train"]["mode"] != "single":
        assert r["data"]["rendered"]["root"] == str(rd)
    rc = main(["train", str(path), "--dry-run", "--set", "train.batch_size=2", *_narrow(r)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "one step OK" in out and "G_total" in out


def test_env_expansion(tmp_path, monkeypatch, capsys):
    assert expand_env({"a": "${X}/b", "c": ["${Y:-d}"], "n": 3}, environ={"X": "/r"}) == {"a": "/r/b", "c": ["d"], "n": 3}
    assert expand_env("${X:-d}", environ={"X": ""}) == "d"  # empty counts as unset
    with pytest.raises(RecipeError, match="HK_NOPE"):
        expand_env({"data": {"root": "${HK_NOPE}"}})
    p = tmp_path / "r.yaml"
    p.write_text("extends: tiny\nname: r\noutput_dir: ${HK_OUT}/runs\n")
    monkeypatch.delenv("HK_OUT", raising=False)
    with pytest.raises(RecipeError) as ei:
        load_recipe(p, check_data=False)
    assert "output_dir" in str(ei.value) and "HK_OUT" in str(ei.value)
    monkeypatch.setenv("HK_OUT", str(tmp_path))
    assert load_recipe(p, check_data=False)["output_dir"] == f"{tmp_path}/runs"
    assert main(["train", str(p), "--print-recipe"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["output_dir"] == f"{tmp_path}/runs"
