"""Domains come from the recipe and the model (no built-in names), datasets are checked against
the recipe key they are loaded under, recipes check model arguments without building the model,
``extends:`` drops a replaced component's arguments, and a style head that cannot read the split
features is refused before the first step."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harmonykit.train.recipe import RecipeError, load_recipe
from harmonykit.train.trainer import TrainData, Trainer

TINY = ["train.batch_size=2", "data.synthetic.length=4", "data.synthetic.val_length=2"]


@pytest.fixture(autouse=True)
def _restore_global_torch_state():
    yield
    torch.use_deterministic_algorithms(False)


def _err(tmp_path, text, overrides=()):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(RecipeError) as ei:
        load_recipe(p, overrides=overrides, check_data=False)
    return str(ei.value)


def _folder(root: Path, n: int = 2, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    for sub in ("composite_images", "masks", "real_images"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        for sub in ("composite_images", "real_images"):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / sub / f"s{i}.png")
        m = np.zeros((size, size), np.uint8)
        m[4:20, 6:24] = 255
        Image.fromarray(m).save(root / "masks" / f"s{i}.png")
    return root


# --- domains -----------------------------------------------------------------------------------
def test_custom_domain_names_train_end_to_end():
    """Any two names work when the model and the recipe agree: the loss slots, data keys,
    synthetic sets and the model branches all follow train.domains."""
    r = load_recipe("tiny", overrides=TINY + [
        "model.domains=[render, photo]", "train.domains=[render, photo]",
        "loss.recon_render.weight=2.0"])
    assert "recon_render" in r["loss"] and "recon_rendered" not in r["loss"] and "render" in r["data"]
    assert r["loss"]["recon_photo"]["name"] == "fn_mse" and r["loss"]["recon_render"]["weight"] == 2.0
    tr = Trainer(r, device="cpu")
    assert tr.model.domains == ("render", "photo")
    assert tr.domain_plan.source == "render" and tr.domain_plan.target == "photo"
    data = TrainData.from_recipe(r)
    assert set(data.datasets) == {"render", "photo"} and "style" in data.datasets["render"][0]
    logs = tr.train_step({d: next(data.batches(d, 0, 0)) for d in tr._step_domains(0)})
    assert {"recon_render", "recon_photo", "adversarial", "style_in", "entropy", "D_loss", "G_total"} <= set(logs)
    assert all(torch.isfinite(v) for v in logs.values())


def test_recipe_domains_must_match_the_model():
    r = load_recipe("tiny", overrides=TINY + ["model.domains=[render, photo]"])  # train.domains: the defaults
    with pytest.raises(ValueError, match=r"train\.domains: .*'rendered', 'real'.*not all domains of model 'charmnet_idih'.*'render', 'photo'"):
        Trainer(r, device="cpu")


def test_domain_names_are_validated(tmp_path):
    msg = _err(tmp_path, "extends: tiny\ntrain: {domains: [a, a]}\n")
    assert "train.domains" in msg and "distinct" in msg
    msg = _err(tmp_path, "extends: tiny\ntrain: {domains: [a, b, c]}\n")
    assert "train.domains" in msg and "two domains" in msg
    msg = _err(tmp_path, "extends: tiny\ntrain: {domains: [val, real]}\n")
    assert "'val' is reserved" in msg
    msg = _err(tmp_path, "extends: tiny\nloss: {recon_photo: {name: fn_mse}}\n")
    assert "loss.recon_photo: unknown key" in msg and "recon_real" in msg


def test_dataset_domain_tag_must_match_its_recipe_key(tmp_path):
    root = _folder(tmp_path / "photos")
    base = ["model.name=idih256", "train.mode=single", "data.kind=datasets", "data.num_workers=0", "train.batch_size=1"]
    r = load_recipe("tiny", overrides=base + ["train.domain=rendered", f"data.rendered={{name: folder, root: {root}}}"])
    with pytest.raises(ValueError) as ei:
        TrainData.from_recipe(r)
    msg = str(ei.value)
    assert "data.rendered" in msg and "'folder'" in msg and "domain 'real'" in msg
    # the same folder tagged as rendered, or loaded under data.real, is accepted
    ok = load_recipe("tiny", overrides=base + ["train.domain=rendered",
                                               f"data.rendered={{name: folder, root: {root}, domain: rendered}}"])
    assert len(TrainData.from_recipe(ok).datasets["rendered"]) == 2
    ok = load_recipe("tiny", overrides=base + [f"data.real={{name: folder, root: {root}}}"])
    assert TrainData.from_recipe(ok).datasets["real"].domain == "real"


# --- recipes: model kwargs, extends ----------------------------------------------------------------
def test_model_kwargs_checked_at_load_time_with_file_and_key(tmp_path):
    msg = _err(tmp_path, "extends: tiny\nmodel: {max_chanels: 64}\n")
    assert "bad.yaml" in msg and "model.max_chanels" in msg and "unknown argument of model 'charmnet_idih'" in msg
    assert "max_channels" in msg and "split_depth" in msg  # the backbone's and the adapter's arguments
    msg = _err(tmp_path, "extends: tiny\nmodel: {ch: eight}\n")
    assert "bad.yaml" in msg and "model.ch" in msg and "expected int" in msg
    msg = _err(tmp_path, "extends: tiny\nmodel: {name: idih256, split_depth: 3}\n")
    assert "model.split_depth" in msg and "idih256" in msg  # single network: no adapter argument
    # create_model's own options stay allowed
    assert load_recipe("tiny", overrides=["model.strict=false"])["model"]["strict"] is False


def test_extends_with_a_new_name_drops_the_parents_kwargs(tmp_path):
    p = tmp_path / "child.yaml"
    p.write_text("extends: tiny\nname: child\nmodel: {name: charmnet_idih_shared}\n"
                 "loss: {entropy: {name: soft_ce}}\n")
    r = load_recipe(p, check_data=False)
    assert r["model"] == {"name": "charmnet_idih_shared", "checkpoint_path": None}  # tiny's ch / max_channels dropped
    assert r["loss"]["entropy"] == {"name": "soft_ce", "weight": 1.0}  # no margin, the default weight
    same = tmp_path / "same.yaml"
    same.write_text("extends: tiny\nmodel: {name: charmnet_idih, ch: 16}\n")
    assert load_recipe(same, check_data=False)["model"]["max_channels"] == 64  # same name: merged


# --- split depth vs the official style head --------------------------------------------------------
def test_official_style_head_that_does_not_fit_is_refused_before_training():
    over = ["model.name=charmnet_idih_split3", "style_heads.pool=official", "train.batch_size=2", "data.synthetic.length=4"]
    r = load_recipe("tiny", overrides=over)
    with pytest.raises(ValueError) as ei:
        Trainer(r, device="cpu")
    msg = str(ei.value)
    assert "style_heads" in msg and "pool=official" in msg and "32x32" in msg and "split_depth 3" in msg
    assert "style_heads.pool: global" in msg
    # the global-pool head fits any size
    Trainer(load_recipe("tiny", overrides=over[:1] + ["style_heads.pool=global"] + over[2:]), device="cpu")


def test_style_head_checked_on_the_first_batch_when_the_size_is_not_in_the_recipe():
    """data.kind=datasets without a crop size: the first batch decides, before any update."""
    r = load_recipe("tiny", overrides=["model.name=charmnet_idih_split3", "style_heads.pool=official",
                                       "data.kind=datasets", "train.batch_size=2", "data.synthetic.length=4"], check_data=False)
    tr = Trainer(r, device="cpu")
    data = TrainData.from_recipe(r, synthetic=True)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    with pytest.raises(ValueError, match="style_heads.pool: global"):
        tr.train_step({d: next(data.batches(d, 0, 0)) for d in tr._step_domains(0)})
    assert all(torch.equal(before[k], v) for k, v in tr.model.state_dict().items())


# --- validation through eval.metrics ----------------------------------------------------------------
def test_validation_uses_the_metric_protocol():
    from harmonykit.eval.metrics import get_protocol

    r = load_recipe("tiny", overrides=TINY + ["val.protocol=harmonykit"])
    tr = Trainer(r, device="cpu")
    data = TrainData.from_recipe(r)
    got = tr.validate(data)
    batch = next(iter(data.val_loader()))
    tr.model.eval()
    with torch.no_grad():
        out = tr.model(batch["composite"], batch["mask"])
    want = get_protocol("harmonykit").mean(get_protocol("harmonykit")(out.image, batch["real"], batch["mask"], ssim=False))
    assert set(got) == {"mse", "fmse", "psnr", "fpsnr"}
    for k in got:
        assert got[k] == pytest.approx(want[k], rel=1e-6)


def test_single_domain_model_serves_every_data_domain():
    """fusion with idih256 (one branch, "real"): both data domains run that branch."""
    r = load_recipe("dataset_fusion", overrides=TINY + ["model.name=idih256", "model.ch=8", "model.max_channels=64"],
                    check_data=False)
    tr = Trainer(r, device="cpu")
    assert tr.domain_plan.branches == {"rendered": None, "real": "real"}  # None: the model's one branch
    data = TrainData.from_recipe(r, synthetic=True)
    logs = tr.train_step({d: next(data.batches(d, 0, 0)) for d in tr._step_domains(0)})
    assert set(logs) == {"recon_rendered", "recon_real", "G_total"}


def test_loss_table_feeds_the_schema():
    from harmonykit.models.base import CHARMNET_DOMAINS
    from harmonykit.train.loss_terms import LOSS_TERMS, expand_slots
    from harmonykit.train.recipe import SCHEMA, build_schema

    assert list(SCHEMA["loss"]) == [s for s, _, _ in expand_slots(CHARMNET_DOMAINS)]
    for slot, term, _ in expand_slots(CHARMNET_DOMAINS):
        want = {"name": term.loss, "weight": term.weight, **dict(term.kwargs)} if term.default_on else None
        assert SCHEMA["loss"][slot].default == want  # model-specific terms (default_on=False) start null
    assert [s for s in build_schema(("a",))["loss"] if s.startswith("recon_")] == ["recon_a"]
    assert len({t.slot for t in LOSS_TERMS}) == len(LOSS_TERMS)
