"""Recipes that claim an official configuration (``official:`` in the recipe) build a trainer
whose losses, optimisers, schedule, batch composition and crop are the official ones.

The expected values are transcribed here from ``../shared/reference/official-implementations.md``
(read from the official sources), section by section, as the independent source:

* §1.7 Official iDIH training recipe (SamsungLabs ``models/fixed256/improved_dih.py``)
* §2.4 CharmNet weights and hyper-parameters, §2.5 optimisation and schedule, §2.6 data pipeline
  (bcmi CharmNet ``dastyle`` model, README command)
* Adam ``eps``: not set by either code, so torch's default 1e-8 (the parity fixtures'
  ``charmnet_step`` README: "Both optimizers are Adam with lr 1e-4, betas (0.9, 0.999), eps 1e-8").

Networks are built at reduced width (nothing pinned here depends on it) to keep the test fast.
"""
from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch

from harmonykit.train.data import worker_augmentation
from harmonykit.train.recipe import load_recipe
from harmonykit.train.trainer import Trainer

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))

# --- transcribed from official-implementations.md ------------------------------------------
OFFICIAL = {
    "charmnet": {
        # §2.4: lambda_src_L1 = lambda_tgt_L1 = 10 (MaskWeightedMSE(min_area=100)), lambda_adv = 1,
        # lambda_src_ce = 1 (P_in soft CE + P_out CE), lambda_tgt_ce = 0.5, lambda_tgt_le = 0.5, m = 1
        "losses": {
            "recon_rendered": ("fn_mse", 10.0, {"min_area": 100.0}),
            "recon_real": ("fn_mse", 10.0, {"min_area": 100.0}),
            "adversarial": ("hinge_g", 1.0, {}),
            "style_in": ("soft_ce", 1.0, {}),
            "style_out": ("hard_ce", 1.0, {}),
            "consistency": ("style_consistency", 0.5, {}),
            "entropy": ("entropy_reduction", 0.5, {"margin": 1.0}),
        },
        # §2.5: optimizer_D Adam(lr 1e-4, betas (0.9, 0.999)); one Adam over [G, SC2, SC1], lr 1e-4 each
        "opt_g": {"cls": torch.optim.Adam, "lrs": [1e-4, 1e-4, 1e-4], "betas": (0.9, 0.999), "eps": 1e-8},
        "opt_d": {"cls": torch.optim.Adam, "lrs": [1e-4], "betas": (0.9, 0.999), "eps": 1e-8},
        # §2.5: niter 100 + niter_decay 100 = 200 epochs; StepLR(4,702,400 epochs) never fires: constant
        "epochs": 200,
        "lr_at": lambda base, epoch: base,
        # §2.5: 8 rendered + 8 real per iteration, two separate forwards (mode charmnet)
        "batch": {"mode": "charmnet", "batch_size": 8, "domains": ("real", "rendered")},
        # §2.6: RandomResizedCrop(256, 256, scale (0.5, 1.0)) (albumentations default ratio 3/4..4/3),
        # HorizontalFlip (p 0.5), keep_background_prob 0.05, cv2 INTER_LINEAR; mask truncated, {0, 1}
        "crop": {"size": (256, 256), "scale": (0.5, 1.0), "ratio": (0.75, 4 / 3), "flip_p": 0.5,
                 "keep_background_prob": 0.05, "backend": "cv2", "mask_dtype": "uint8"},
        "mask_rule": "truncate",
    },
    "idih": {
        # §1.7: MaskWeightedMSE(min_area=100), weight 1.0
        "losses": {"recon_real": ("fn_mse", 1.0, {"min_area": 100.0})},
        # §1.7: Adam, lr 1e-3, betas (0.9, 0.999), eps 1e-8
        "opt_g": {"cls": torch.optim.Adam, "lrs": [1e-3], "betas": (0.9, 0.999), "eps": 1e-8},
        "opt_d": None,
        # §1.7: 120 epochs, MultiStepLR(milestones [105, 115], gamma 0.1) stepped per epoch
        "epochs": 120,
        "lr_at": lambda base, epoch: base * 0.1 ** sum(epoch >= m for m in (105, 115)),
        # §1.7: batch 16 (real pairs only: no rendered domain, no discriminator, no style heads)
        "batch": {"mode": "single", "batch_size": 16, "domains": ("real",)},
        # §1.7: RandomResizedCrop(256, 256, scale (0.5, 1.0)), default ratio, bilinear; HorizontalFlip
        # p 0.5; the mask goes through the image path (soft); keep_background_prob 0.05
        "crop": {"size": (256, 256), "scale": (0.5, 1.0), "ratio": (0.75, 4 / 3), "flip_p": 0.5,
                 "keep_background_prob": 0.05, "backend": "cv2", "mask_dtype": "float32"},
        "mask_rule": "soft",
    },
}


def _official_recipes():
    out = []
    for p in RECIPES:
        r = load_recipe(p, check_data=False)
        if r["official"] is not None:
            out.append((p, r))
    return out


def test_official_recipes_exist():
    claims = {r["official"] for _, r in _official_recipes()}
    assert claims == set(OFFICIAL), f"recipes claiming an official configuration: {claims}"


@pytest.fixture(autouse=True)
def _restore_global_torch_state():
    yield
    torch.use_deterministic_algorithms(False)


def _small_trainer(path):
    over = ["model.ch=8", "model.max_channels=64"]
    r = load_recipe(path, check_data=False)
    if r["discriminator"] is not None:
        over.append("discriminator.width=8")
    if r["style_heads"] is not None:
        over.append("style_heads.width=8")
    return Trainer(load_recipe(path, overrides=over, check_data=False), run_dir=None, device="cpu"), r


def _lr_by_epoch(tr, ipe, epochs):
    """The generator lr during each epoch, stepping the schedulers exactly as ``fit`` does."""
    tr.build_schedulers(ipe, epochs)
    fake = types.SimpleNamespace(sched_g=tr.sched_g, sched_d=tr.sched_d, recipe=tr.recipe, iteration=0)
    lrs = []
    for it in range(ipe * epochs):
        if it % ipe == 0:
            lrs.append([g["lr"] for g in tr.opt_g.param_groups])
        inside = [g["lr"] for g in tr.opt_g.param_groups]
        assert inside == lrs[-1], f"lr changed inside epoch {it // ipe} (iteration {it})"
        fake.iteration = it + 1
        Trainer._sched_step(fake, ipe)
    return lrs


@pytest.mark.parametrize("path,recipe", _official_recipes(), ids=lambda x: getattr(x, "stem", ""))
def test_recipe_is_official(path, recipe):
    want = OFFICIAL[recipe["official"]]
    tr, r = _small_trainer(path)
    # losses: every active term, its weight and its arguments; nothing else
    got = {slot: (mod, w) for slot, (mod, w) in tr.losses.items() if slot != "discriminator"}
    assert set(got) == set(want["losses"]), f"{path.name}: loss terms {sorted(got)}"
    for slot, (name, weight, args) in want["losses"].items():
        mod, w = got[slot]
        assert r["loss"][slot]["name"] == name, f"{path.name}: loss.{slot} is {r['loss'][slot]['name']}"
        assert w == weight, f"{path.name}: loss.{slot} weight {w} != {weight}"
        for k, v in args.items():
            assert getattr(mod, k) == v, f"{path.name}: loss.{slot}.{k} = {getattr(mod, k)} != {v}"
    # optimisers
    for attr in ("opt_g", "opt_d"):
        o, spec = getattr(tr, attr), want[attr]
        if spec is None:
            assert o is None, f"{path.name}: unexpected {attr}"
            continue
        assert type(o) is spec["cls"], f"{path.name}: {attr} is {type(o).__name__}"
        assert [g["lr"] for g in o.param_groups] == spec["lrs"]
        for g in o.param_groups:
            assert tuple(g["betas"]) == spec["betas"] and g["eps"] == spec["eps"] and g["weight_decay"] == 0.0
    # schedule: the lr of every epoch, hence at each boundary
    assert r["train"]["epochs"] == want["epochs"]
    ipe = 3
    lrs = _lr_by_epoch(tr, ipe, want["epochs"])
    for e, per_group in enumerate(lrs):
        for base, lr in zip(want["opt_g"]["lrs"], per_group):
            assert lr == pytest.approx(want["lr_at"](base, e), rel=1e-12), f"{path.name}: lr at epoch {e} = {lr}"
    # batch composition
    b = want["batch"]
    assert r["train"]["mode"] == b["mode"] and r["train"]["batch_size"] == b["batch_size"]
    doms = tuple(d for d in ("real", "rendered") if r["data"][d] is not None)
    assert doms == b["domains"], f"{path.name}: domains {doms}"
    # crop
    # crop: in the DataLoader workers (data.crop_in_workers, the default) or on the batch
    crop = worker_augmentation(r)[0] if r["data"]["crop_in_workers"] else tr.augment.steps[0]
    c = want["crop"]
    assert crop.size == c["size"] and crop.scale == c["scale"] and crop.flip_p == c["flip_p"]
    assert crop.ratio == pytest.approx(c["ratio"], rel=1e-12)
    assert crop.keep_background_prob == c["keep_background_prob"]
    assert crop.backend == c["backend"] and crop.mask_dtype == c["mask_dtype"]
    for d in b["domains"] + ("val",):
        assert r["data"][d]["mask_rule"] == want["mask_rule"], f"{path.name}: data.{d}.mask_rule"


# --- the scheduler itself ------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")
@pytest.mark.parametrize("step_on_epochs", [True, False])
def test_multistep_changes_lr_at_the_milestone_epochs(step_on_epochs):
    """MultiStepLR([105, 115], 0.1) semantics: epochs 0..104 at the base lr, 105..114 x0.1,
    115.. x0.01 (timm's multistep alone decays one epoch early), stepping per epoch or per
    iteration; read at each boundary and compared with torch's MultiStepLR."""
    from harmonykit.train.schedulers import create_scheduler

    ipe, epochs = 4, 120
    sched = {"name": "multistep", "decay_milestones": [105, 115], "decay_rate": 0.1, "warmup_epochs": 0,
             "warmup_lr": 0.0, "step_on_epochs": step_on_epochs, "decay_epochs": 100.0, "min_lr": 0.0}
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1e-3)
    s = create_scheduler(opt, sched, ipe, epochs)
    ref_opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    ref = torch.optim.lr_scheduler.MultiStepLR(ref_opt, milestones=[105, 115], gamma=0.1)
    fake = types.SimpleNamespace(sched_g=s, sched_d=None, recipe={"sched": sched}, iteration=0)
    seen = {}
    for it in range(ipe * epochs):
        e = it // ipe
        assert opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-12), f"epoch {e} it {it}"
        seen[e] = opt.param_groups[0]["lr"]
        fake.iteration = it + 1
        Trainer._sched_step(fake, ipe)
        if (it + 1) % ipe == 0:
            ref.step()
    assert seen[104] == pytest.approx(1e-3) and seen[105] == pytest.approx(1e-4)
    assert seen[114] == pytest.approx(1e-4) and seen[115] == pytest.approx(1e-5)
