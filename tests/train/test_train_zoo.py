"""Every zoo recipe (each model's official objective) and every CharmNet-on-<backbone> variant
trains 5 iterations at narrow width on synthetic pairs: losses finite, the training checkpoint
written and reloadable with ``create_model(checkpoint_path=...)``.

Widths come from each model's ``get_pretrained_cfg(name).tiny_args``; images are 64x64, except
where a network needs more (:data:`SIZES`: the DoveNet image discriminator and the official style
heads of ``charmnet_dovenet`` need 256 px; RainNet's UNet has a fixed depth of 8 levels). Image
discriminators run at ``ndf=4``. Also: one iteration of ``recipes/dovenet.yaml`` equals the
official DoveNet training step.
"""
from __future__ import annotations

import math

import pytest
import torch

import harmonykit
from harmonykit.train.recipe import load_recipe
from harmonykit.train.trainer import TrainData, Trainer

ZOO_RECIPES = ["dovenet", "rainnet", "hao_attention", "intrinsic_harmony", "issam", "pctnet_cnn", "pctnet_vit", "harmonizer"]
CHARMNET_BACKBONES = ["charmnet_dovenet", "charmnet_rainnet", "charmnet_issam", "charmnet_pctnet_cnn"]
SIZE = 64
ITERS = 5
# (image size, extra overrides) where the defaults above do not fit the network
SIZES = {
    "dovenet": (256, ["train.batch_size=1"]),  # the image discriminator needs H, W >= 255
    "charmnet_dovenet": (256, []),  # the recipe's official style heads need 16-31 px split features
    "rainnet": (256, ["train.batch_size=1"]),
    "charmnet_rainnet": (256, []),
}


@pytest.fixture(autouse=True)
def _restore_global_torch_state():
    yield
    torch.use_deterministic_algorithms(False)


def _tiny(name: str):
    args = harmonykit.get_pretrained_cfg(name).tiny_args
    assert args, f"{name}: no tiny_args"
    return [f"model.{k}={list(v) if isinstance(v, tuple) else v}" for k, v in args.items()]


def _synthetic(tmp_path, name):
    size, extra = SIZES.get(name, (SIZE, []))
    return _data(tmp_path, size) + extra + ["discriminator.ndf=4"] * name.startswith(("dovenet", "rainnet"))


def _data(tmp_path, SIZE):
    return [
        "data.kind=synthetic", "data.rendered=null", "data.real=null", "data.val=null", "data.augmentation=null",
        "data.num_workers=0", f"data.synthetic.image_size={SIZE}", "data.synthetic.length=4", "data.synthetic.val_length=2",
        "train.batch_size=2", f"train.iterations={ITERS}", "train.epochs=null", "train.device=cpu",
        "val.interval=0", "val.max_batches=1", f"val.image_size={SIZE}", "log.tensorboard=false", "checkpoint.interval=0",
        f"output_dir={tmp_path}",
    ]


def _train(recipe: str, overrides, tmp_path):
    r = load_recipe(recipe, overrides=overrides, check_data=False)
    run = tmp_path / "run"
    tr = Trainer(r, run_dir=run, device="cpu")
    seen = []
    orig = tr.train_step

    def step(batches, *a, **k):
        logs = orig(batches, *a, **k)
        seen.append({k2: float(v) for k2, v in logs.items()})
        return logs

    tr.train_step = step
    status = tr.fit(TrainData.from_recipe(r, synthetic=True), progress=False)
    assert status == "done" and tr.iteration == ITERS and len(seen) == ITERS
    for logs in seen:
        assert logs and all(math.isfinite(v) for v in logs.values()), logs
    ckpt = run / "last.pth"
    assert ckpt.is_file()
    name = r["model"]["name"]
    kwargs = {k: v for k, v in r["model"].items() if k not in ("name", "checkpoint_path")}
    again = harmonykit.create_model(name, checkpoint_path=str(ckpt), **kwargs)
    sd, ref = again.state_dict(), tr.model.state_dict()
    assert sd.keys() == ref.keys()
    for k in ref:
        assert torch.equal(sd[k].cpu(), ref[k].cpu()), k
    return tr, seen


@pytest.mark.parametrize("recipe", ZOO_RECIPES)
def test_zoo_recipe_trains(recipe, tmp_path):
    name = load_recipe(recipe, check_data=False)["model"]["name"]
    tr, seen = _train(recipe, _tiny(name) + _synthetic(tmp_path, name), tmp_path)
    r = tr.recipe
    # the recipe's own objective ran: every active term is logged under its log name
    from harmonykit.train.loss_terms import term_of

    for slot in tr.losses:
        term, _ = term_of(slot, tr.domain_plan.domains)
        assert (term.log_name or slot) in seen[0], (slot, sorted(seen[0]))
    assert set(tr.losses) == {k for k, v in r["loss"].items() if v is not None and not k.endswith("_rendered")}
    if r["loss"].get("image_discriminator") is not None:  # DoveNet / RainNet: an image GAN
        assert tr.discriminator is not None and "D_loss" in seen[0] and "D_gp" in seen[0]
        assert seen[0]["D_gp"] > 0


@pytest.mark.parametrize("model_name", CHARMNET_BACKBONES)
def test_charmnet_recipe_on_backbone(model_name, tmp_path):
    """``recipes/charmnet_<backbone>.yaml`` is the CharmNet recipe with only ``model.name``
    changed (plus the global-pool style heads where the trainer's check says the official
    MaxPool(4) head does not fit the split features), and it trains."""
    paper = load_recipe("charmnet_idih", check_data=False)
    r = load_recipe(model_name, check_data=False)
    diff = {k for k in paper if paper[k] != r[k]}
    assert diff <= {"name", "description", "model", "style_heads", "official"}, diff
    assert r["model"] == {**paper["model"], "name": model_name}
    if r["style_heads"] != paper["style_heads"]:
        assert r["style_heads"] == {**paper["style_heads"], "pool": "global"}
        # the official head really does not fit this backbone's split features
        with pytest.raises(ValueError, match="style_heads.pool: global"):
            Trainer(load_recipe("charmnet_idih", overrides=[f"model.name={model_name}", *_tiny(model_name),
                                                             "discriminator.width=8", "style_heads.width=8"], check_data=False), device="cpu")
    size, extra = SIZES.get(model_name, (SIZE, []))
    over = _tiny(model_name) + _data(tmp_path, size) + extra + ["discriminator.width=8", "style_heads.width=8"]
    tr, seen = _train(model_name, over, tmp_path)
    assert tr.discriminator is not None and tr.style_in is not None
    for key in ("D_loss", "adversarial", "style_in", "style_out", "consistency", "entropy", "recon_rendered", "recon_real"):
        assert key in seen[0], (key, sorted(seen[0]))


# --- one DoveNet iteration of the recipe against the official training step -------------------
import json  # noqa: E402

from zoo_fixtures import ZOO_ROOT  # noqa: E402

ZOO = ZOO_ROOT
DOVENET = ZOO / "dovenet"


def _dovenet_steps():
    f = DOVENET / "dovenet.json"
    steps = json.loads(f.read_text()).get("train_step", []) if f.is_file() else []
    return [pytest.param(i, id=f"{s['generator_kwargs']['norm']}-{'x'.join(map(str, s['size']))}") for i, s in enumerate(steps)] or [
        pytest.param(-1, id="fixtures-missing")]


@pytest.mark.parametrize("i", _dovenet_steps())
def test_dovenet_recipe_step_matches_official(i):
    """``recipes/dovenet.yaml`` through ``Trainer.train_step`` (image-GAN step: D update with the
    hinge terms + gradient penalty, then the G update with adversarial + 100 x L1, both Adam with
    the recipe's lr / betas) against one official ``DoveNetModel.optimize_parameters()``
    (fixtures of tests/fixtures/zoo/dovenet, README "One official training step"): every official
    loss, and the updated weights of both networks (differences allowed only where the gradient
    is at rounding-noise level, as in tests/models/test_zoo_dovenet.py)."""
    from safetensors.torch import load_file

    from harmonykit.models.dovenet import official_discriminator_to_ours, official_dovenet_to_unet

    assert i >= 0, f"DoveNet train-step fixtures not found under {DOVENET} (HARMONYKIT_ZOO_FIXTURES)"
    step = json.loads((DOVENET / "dovenet.json").read_text())["train_step"][i]
    opt, gk, dk = step["options"], step["generator_kwargs"], step["discriminator_kwargs"]
    data = load_file(str(DOVENET / step["file"]))
    sub = lambda p: {k[len(p):]: v for k, v in data.items() if k.startswith(p)}  # noqa: E731
    over = [f"model.{k}={v}" for k, v in gk.items()] + [f"discriminator.{k}={v}" for k, v in dk.items()] + [
        "data.kind=synthetic", "data.rendered=null", "data.real=null", "data.val=null", "data.augmentation=null",
        f"train.batch_size={step['batch']}", "train.iterations=1", "train.channels_last=false", "train.device=cpu",
    ]
    r = load_recipe("dovenet", overrides=over, check_data=False)
    # the recipe's official values are the ones the fixture's official run used
    assert r["optim"]["lr"] == opt["lr"] * opt["g_lr_ratio"] and r["optim"]["betas"][0] == opt["beta1"]
    assert r["loss"]["recon_real"]["weight"] == opt["lambda_L1"] and r["loss"]["gradient_penalty"]["weight"] == opt["gp_ratio"]
    tr = Trainer(r, device="cpu")
    harmonykit.convert.load_weights(tr.model, sub("G0."), strict=True)
    tr.discriminator.load_official_state_dict(sub("D0."))
    batch = {"composite": data["composite_u8"].float() / 255, "real": data["real_u8"].float() / 255, "mask": data["mask_u8"].float()}
    torch.manual_seed(step["step_seed"])
    logs = tr.train_step({"real": batch})
    ours = {"D_real": logs["D_real"], "D_fake": logs["D_fake"], "D_gp": logs["D_gp"], "D_global": logs["D_global"],
            "D_local": logs["D_verification"], "G_global": logs["G_global"], "G_local": logs["G_verification"],
            "G_GAN": logs["image_adversarial"], "G_L1": logs["recon_real"] * r["loss"]["recon_real"]["weight"]}
    for k, v in ours.items():
        torch.testing.assert_close(v, data[f"loss.{k}"].to(v.dtype), atol=1e-4, rtol=1e-4, msg=lambda m, k=k: f"loss_{k}: {m}")
    lr = opt["lr"]
    n_off = n_all = 0
    for net, before, after in ((tr.model, official_dovenet_to_unet(sub("G0.")), official_dovenet_to_unet(sub("G1."))),
                               (tr.discriminator, official_discriminator_to_ours(sub("D0.")), official_discriminator_to_ours(sub("D1.")))):
        for k, v in net.state_dict().items():
            v, ref = v.to(after[k].dtype), after[k]
            off = ~torch.isclose(v, ref, atol=1e-4, rtol=1e-4)
            n_off, n_all = n_off + int(off.sum()), n_all + v.numel()
            # an Adam first step moves a weight by ~lr * sign(grad): values may differ only where
            # both moves are within lr (a rounding-noise gradient sign)
            assert (v - before[k])[off].abs().le(lr * 1.001).all() and (ref - before[k])[off].abs().le(lr * 1.001).all(), k
    assert n_off < 0.002 * n_all, f"{n_off} of {n_all} updated values differ from the official step"


# --- the zoo losses and the pix2pix schedule on their own ---------------------------------------
def test_harmonizer_pixel_loss_formula():
    """Official HarmonizerLoss of one image: masked Charbonnier L1 (channels summed, mask counted
    once per pixel) + 10 x masked MSE, per sample, then the batch mean."""
    fn = harmonykit.LOSSES.create("harmonizer_pixel")
    target = torch.rand(2, 3, 8, 8)
    mask = torch.zeros(2, 1, 8, 8)
    mask[0, :, :4, :4] = 1  # area 16
    mask[1, :, :2, :] = 1  # area 16
    d = torch.tensor([0.1, 0.3]).view(2, 1, 1, 1)
    pred = target + d * mask + 0.7 * (1 - mask)  # the background error is masked out
    per = [3 * 16 * (math.sqrt(v**2 + 1e-6) + 10 * v**2) / (16 + 1e-6) for v in (0.1, 0.3)]
    assert fn(pred, target, mask).item() == pytest.approx(sum(per) / 2, rel=1e-5)


def test_pctnet_smoothness():
    from harmonykit.models.outputs import HarmonizationOutput

    fn = harmonykit.LOSSES.create("pctnet_smoothness")
    flat = torch.full((1, 12, 8, 8), 0.3)
    out = lambda p: HarmonizationOutput(image=torch.zeros(1, 3, 8, 8), image_normalized=torch.zeros(1, 3, 8, 8), extras={"transform": p})  # noqa: E731
    assert fn(out(flat)).item() == pytest.approx(1e-3, abs=1e-6)  # kornia: sqrt(gx^2 + gy^2 + 1e-6)
    ramp = torch.linspace(0, 1, 8).view(1, 1, 1, 8).expand(1, 12, 8, 8)
    assert fn(out(ramp)).item() > 0.01
    with pytest.raises(ValueError, match="transform"):
        fn(HarmonizationOutput(image=torch.zeros(1, 3, 8, 8), image_normalized=torch.zeros(1, 3, 8, 8)))


def test_linear_decay_is_pix2pix_linear_policy():
    """lr(e) = base * (1 - max(0, e + 1 - niter) / (niter_decay + 1)), stepped per epoch."""
    from harmonykit.train.schedulers import create_scheduler

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=2e-4)
    s = create_scheduler(opt, {"name": "linear_decay", "step_on_epochs": True, "decay_epochs": 2}, 10, 5)
    lrs = []
    for e in range(5):
        s.step(e)
        lrs.append(opt.param_groups[0]["lr"])
    want = [2e-4 * (1 - max(0, e + 1 - 2) / (3 + 1)) for e in range(5)]
    assert lrs == pytest.approx(want) and lrs[1] == 2e-4 and lrs[-1] < lrs[-2] < lrs[1]
