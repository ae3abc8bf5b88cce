"""DoveNet against numbers produced by its official code (tests/fixtures/zoo/dovenet/README.md).

Configurations, cases, sizes and seeds are read from ``dovenet.json``, so another fixture set of
the same format (``HARMONYKIT_ZOO_FIXTURES``) runs unchanged.
"""
from __future__ import annotations

import argparse
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import harmonykit
from harmonykit.convert import CheckpointError, detect_layout, infer_model_args
from harmonykit.losses.dovenet import DoveNetDiscriminatorLoss, DoveNetGeneratorLoss, DoveNetGradientPenalty
from harmonykit.models.dovenet import (
    DoveNetDiscriminator,
    official_discriminator_to_ours,
    official_dovenet_to_unet,
    ours_to_official_discriminator,
    unet_to_official_dovenet,
)
from zoo_fixtures import TOL, ZOO_ROOT

ROOT = ZOO_ROOT
DIR = ROOT / "dovenet"


def _load_meta():
    f = DIR / "dovenet.json"
    return json.loads(f.read_text()) if f.is_file() else None


_META = _load_meta()


def meta():
    if _META is None:
        raise FileNotFoundError(f"DoveNet parity fixtures not found: {DIR / 'dovenet.json'} (HARMONYKIT_ZOO_FIXTURES)")
    return _META


def _cases(part):
    if _META is None:
        return [pytest.param("missing", 0, id="fixtures-missing")]
    return [
        pytest.param(c["name"], i, id=f"{c['name']}-{'x'.join(map(str, k['size']))}")
        for c in _META[part]
        for i, k in enumerate(c["cases"])
    ]


def _configs(part):
    if _META is None:
        return [pytest.param("missing", id="fixtures-missing")]
    return [pytest.param(c["name"], id=c["name"]) for c in _META[part]]


def _config(part, name):
    return next(c for c in meta()[part] if c["name"] == name)


def close(actual, expected, what):
    torch.testing.assert_close(actual, expected, **TOL, msg=lambda m: f"{what}: {m}")


# --------------------------------------------------------------------------------------
# generator
# --------------------------------------------------------------------------------------
def _official_generator_sd(cfg):
    return load_file(str(DIR / cfg["weights"]))


def _generator(cfg):
    model = harmonykit.create_model("dovenet", **cfg["kwargs"])
    harmonykit.convert.load_weights(model, _official_generator_sd(cfg), strict=True)
    return model


def _gen_case(cfg, i):
    case = cfg["cases"][i]
    data = load_file(str(DIR / case["file"]))
    comp = data["composite_u8"].float() / 255
    mask = data["mask_u8"].float()
    assert comp.shape == (case["batch"], 3, *case["size"])
    return case, data, comp, mask


@pytest.mark.parametrize("name,i", _cases("generator"))
def test_generator_eval_parity(name, i):
    cfg = _config("generator", name)
    case, data, comp, mask = _gen_case(cfg, i)
    model = _generator(cfg).eval()
    with torch.no_grad():
        out = model(comp, mask)
    close(out.image_normalized, data["output_eval"], "eval output (official space)")
    close(out.image, (data["output_eval"] + 1) / 2, "eval .image on [0, 1]")
    # the official call on the official 4-channel input gives the same numbers
    with torch.no_grad():
        official = model.forward_official(torch.cat([(comp - 0.5) / 0.5, mask], 1))
    close(official, data["output_eval"], "forward_official")


@pytest.mark.parametrize("name,i", _cases("generator"))
def test_generator_train_parity_and_buffers(name, i):
    """Train mode as the official test.py runs it: batch statistics and live dropout (seeded)."""
    cfg = _config("generator", name)
    case, data, comp, mask = _gen_case(cfg, i)
    model = _generator(cfg).train()
    torch.manual_seed(case["dropout_seed"])
    with torch.no_grad():
        out = model(comp, mask)
    close(out.image_normalized, data["output_train"], "train-mode output")
    expected = {k[len("buffer."):]: v for k, v in data.items() if k.startswith("buffer.")}
    assert expected or cfg["kwargs"]["norm"] != "batch", "a batch-norm case must store its buffers"
    ours = official_dovenet_to_unet(expected, num_downs=model.num_downs, use_attention=model.use_attention)
    sd = model.state_dict()
    for k, v in ours.items():
        close(sd[k].to(v.dtype), v, f"buffer {k} after one train-mode forward")
    # a different dropout draw changes the output: the test above does check the dropout masks
    if cfg["kwargs"].get("use_dropout", True):
        torch.manual_seed(case["dropout_seed"] + 1)
        model.load_state_dict(_generator(cfg).state_dict())
        with torch.no_grad():
            other = model(comp, mask).image_normalized
        assert (other - data["output_train"]).abs().max() > 1e-3


def test_default_parameter_counts_equal_official():
    counts = meta()["param_counts"]["generator"]
    assert set(counts) == {"batch", "instance"}
    with torch.device("meta"):  # shapes only: no 54M-parameter allocation and init
        for norm, n in counts.items():
            model = harmonykit.create_model("dovenet", norm=norm)
            assert sum(p.numel() for p in model.parameters()) == n, norm
        assert sum(p.numel() for p in harmonykit.create_model("dovenet").parameters()) == counts["batch"]


@pytest.mark.parametrize("name", _configs("generator"))
def test_official_key_layout_round_trip(name):
    cfg = _config("generator", name)
    sd = _official_generator_sd(cfg)
    assert list(cfg["key_order"]) and set(sd) == set(cfg["key_order"])
    ordered = {k: sd[k] for k in cfg["key_order"]}
    assert detect_layout(ordered) == "official_dovenet"
    ours = official_dovenet_to_unet(ordered)
    model = harmonykit.create_model("dovenet", **cfg["kwargs"])
    assert set(ours) == set(model.state_dict())
    back = unet_to_official_dovenet(ours)
    assert list(back) == list(cfg["key_order"])


@pytest.mark.parametrize("name", _configs("generator"))
def test_official_checkpoint_loads_through_create_model_and_convert(name, tmp_path):
    cfg = _config("generator", name)
    sd = _official_generator_sd(cfg)
    ordered = {k: sd[k] for k in cfg["key_order"]}
    ckpt = tmp_path / "latest_net_G.pth"
    torch.save(ordered, ckpt)
    model = harmonykit.create_model("dovenet", checkpoint_path=str(ckpt), **cfg["kwargs"])
    ref = official_dovenet_to_unet(ordered)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref[k]), k
    # the CLI converter infers the architecture and its arguments from the official file
    arch, args = infer_model_args(ordered)
    assert arch == "dovenet" and args["ngf"] == cfg["kwargs"]["ngf"] and args["norm"] == cfg["kwargs"]["norm"]
    from harmonykit.cli import convert as convert_cli

    out_dir = tmp_path / "converted"
    ns = argparse.Namespace(
        checkpoint=str(ckpt), output=str(out_dir), arch=None, model_arg=[], domain=None, license=None, origin_url=None
    )
    assert convert_cli.run(ns) == 0
    again = harmonykit.create_model(f"local-dir:{out_dir}")
    for k, v in again.state_dict().items():
        assert torch.equal(v, ref[k]), k
    # strict: a missing key is refused with its name
    broken = dict(ordered)
    dropped = cfg["key_order"][3]
    broken.pop(dropped)
    torch.save(broken, ckpt)
    with pytest.raises(CheckpointError, match="missing"):
        harmonykit.create_model("dovenet", checkpoint_path=str(ckpt), **cfg["kwargs"])


@pytest.mark.parametrize("name,i", _cases("generator"))
def test_charmnet_dovenet_branch_equals_official(name, i):
    """The stage protocol runs the same computation: the official checkpoint loaded into the
    real branch of charmnet_dovenet (and into the shared variant) reproduces the official output."""
    cfg = _config("generator", name)
    case, data, comp, mask = _gen_case(cfg, i)
    sd = _official_generator_sd(cfg)
    for arch in ("charmnet_dovenet", "charmnet_dovenet_shared"):
        model = harmonykit.create_model(arch, **cfg["kwargs"])
        harmonykit.convert.load_weights(model, sd, strict=True, domain="real")
        with torch.no_grad():
            out = model.eval()(comp, mask, domain="real")
        close(out.image_normalized, data["output_eval"], f"{arch} real branch")
        assert out.features_in.shape == out.features_out.shape


@pytest.mark.parametrize("k", range(1, 8))
def test_split_depths_give_matching_features(k):
    model = harmonykit.create_model("charmnet_dovenet", ngf=2, split_depth=k).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 256, 256), torch.ones(1, 1, 256, 256), domain="rendered")
    assert out.features_in.shape == out.features_out.shape == (1, model.feature_channels, 256 >> k, 256 >> k)


def test_size_rule_names_valid_sizes():
    model = harmonykit.create_model("dovenet", ngf=2)
    with pytest.raises(ValueError, match="multiples of 256 and at least 256"):
        model(torch.rand(1, 3, 384, 256), torch.ones(1, 1, 384, 256))


# --------------------------------------------------------------------------------------
# discriminators and losses
# --------------------------------------------------------------------------------------
def _disc(cfg):
    d = DoveNetDiscriminator(**cfg["kwargs"])
    d.load_official_state_dict(load_file(str(DIR / cfg["weights"])))
    return d


def _disc_case(cfg, i):
    case = cfg["cases"][i]
    data = load_file(str(DIR / case["file"]))
    inp = load_file(str(DIR / case["inputs"]))
    fake = inp["fake_u8"].float() / 127.5 - 1
    real = inp["real_u8"].float() / 255 * 2 - 1
    mask = inp["mask_u8"].float()
    return case, data, fake, real, mask


@pytest.mark.parametrize("name,i", _cases("discriminator"))
def test_discriminator_eval_parity(name, i):
    cfg = _config("discriminator", name)
    case, data, fake, real, mask = _disc_case(cfg, i)
    d = _disc(cfg).eval()
    with torch.no_grad():
        s = d(fake, mask)
    close(s.global_score, data["eval.global"], "global score")
    close(s.verification_score, data["eval.verification"], "verification score")
    # the registered single discriminators compute the same scores
    g = harmonykit.DISCRIMINATORS.create("dovenet_global", **cfg["kwargs"])
    g.load_state_dict(d.global_d.state_dict())
    v = harmonykit.DISCRIMINATORS.create("dovenet_verification", **cfg["kwargs"])
    v.load_state_dict(d.verification_d.state_dict())
    with torch.no_grad():
        close(g.eval()(fake), data["eval.global"], "dovenet_global")
        close(v.eval()(fake, mask), data["eval.verification"], "dovenet_verification")


@pytest.mark.parametrize("name,i", _cases("discriminator"))
def test_training_objective_matches_official(name, i):
    """The official call sequence of one DoveNet step (backward_D then backward_G, without the
    optimizer updates): scores, every loss term, the gradient penalty (official alpha draw),
    discriminator gradients, the generator-side input gradient and the buffers afterwards."""
    cfg = _config("discriminator", name)
    case, data, fake, real, mask = _disc_case(cfg, i)
    d = _disc(cfg).train()
    d_loss = harmonykit.LOSSES.create("dovenet_d")
    g_loss = harmonykit.LOSSES.create("dovenet_g")
    gp_fn = harmonykit.LOSSES.create("dovenet_gp")
    loss = lambda k: data[f"loss.{k}"]  # noqa: E731

    s_fake = d(fake, mask)
    s_real = d(real, mask)
    close(s_fake.global_score, data["train.global_fake"], "train global(fake)")
    close(s_fake.verification_score, data["train.verification_fake"], "train verification(fake)")
    close(s_real.global_score, data["train.global_real"], "train global(real)")
    close(s_real.verification_score, data["train.verification_real"], "train verification(real)")
    torch.manual_seed(case["gp_seed"])
    alpha = torch.rand(fake.shape[0], 1)
    close(alpha, data["gp_alpha"], "gradient-penalty alpha")
    torch.manual_seed(case["gp_seed"])
    gp = gp_fn(d, real, fake, mask)  # draws alpha as the official code
    parts = d_loss.parts(s_fake, s_real, gp)
    for ours, off in [("global_fake", "D_global_fake"), ("verification_fake", "D_local_fake"), ("global_real", "D_global_real"),
                      ("verification_real", "D_local_real"), ("gp", "D_gp"), ("total", "D_total")]:
        close(parts[ours], loss(off), f"discriminator loss {ours}")
    d.zero_grad()
    parts["total"].backward()
    grads = official_discriminator_to_ours({k[len("grad_D."):]: v for k, v in data.items() if k.startswith("grad_D.")})
    named = dict(d.named_parameters())
    assert set(grads) == set(named)
    for k, v in grads.items():
        close(named[k].grad, v, f"d(L_D)/d({k})")

    fake_g = fake.clone().requires_grad_(True)
    s = d(fake_g, mask)
    close(s.global_score, data["train.global_fake_g"], "generator-step global(fake)")
    gp_parts = g_loss.parts(s)
    close(gp_parts["global"], loss("G_global"), "G_global")
    close(gp_parts["verification"], loss("G_local"), "G_local")
    close(gp_parts["total"], loss("G_GAN"), "G_GAN")
    (gin,) = torch.autograd.grad(gp_parts["total"], fake_g)
    close(F.avg_pool2d(gin, 16) * 256, data["grad_G.fake_sumpool16"], "d(L_G)/d(fake), 16x16 sums")
    with torch.no_grad():
        d(real, mask)
    buffers = official_discriminator_to_ours({k[len("buffer."):]: v for k, v in data.items() if k.startswith("buffer.")})
    sd = d.state_dict()
    assert buffers
    for k, v in buffers.items():
        close(sd[k].to(v.dtype), v, f"buffer {k} after the step's five discriminator calls")

    # the official GANLoss variants on the same scores
    for mode in ("vanilla", "lsgan"):
        dl = DoveNetDiscriminatorLoss(gan_mode=mode).parts(s_fake, s_real)
        close(dl["fake"], loss(f"{mode}.D_fake"), f"{mode} D fake")
        close(dl["real"], loss(f"{mode}.D_real"), f"{mode} D real")
        close(DoveNetGeneratorLoss(gan_mode=mode)(s), loss(f"{mode}.G"), f"{mode} G")


def test_discriminator_parameter_counts_equal_official():
    counts = meta()["param_counts"]["discriminator"]
    assert set(counts) == {"batch", "instance"}
    with torch.device("meta"):
        for norm, n in counts.items():
            d = harmonykit.DISCRIMINATORS.create("dovenet", ndf=64, norm=norm)
            assert sum(p.numel() for p in d.parameters()) == n, norm


@pytest.mark.parametrize("name", _configs("discriminator"))
def test_discriminator_official_layout_round_trip(name):
    cfg = _config("discriminator", name)
    sd = load_file(str(DIR / cfg["weights"]))
    assert set(sd) == set(cfg["key_order"])
    ordered = {k: sd[k] for k in cfg["key_order"]}
    ours = official_discriminator_to_ours(ordered)
    d = DoveNetDiscriminator(**cfg["kwargs"])
    assert set(ours) == set(d.state_dict())
    assert set(ours_to_official_discriminator(ours)) == set(cfg["key_order"])
    with pytest.raises(CheckpointError, match="unexpected key"):
        official_discriminator_to_ours({"D.conv9.weight": torch.zeros(1)})


def test_gradient_penalty_kinds_and_zero_weight():
    d = DoveNetDiscriminator(ndf=2).train()
    x, y, m = torch.rand(1, 3, 256, 256) * 2 - 1, torch.rand(1, 3, 256, 256) * 2 - 1, torch.ones(1, 1, 256, 256)
    m[..., :128, :] = 0
    assert DoveNetGradientPenalty(lambda_gp=0)(d, x, y, m) == 0
    for kind in ("real", "fake"):  # "mixed" is compared with the official numbers above
        assert torch.isfinite(DoveNetGradientPenalty(kind=kind)(d, x, y, m))
    with pytest.raises(ValueError, match="gan_mode must be one of"):
        DoveNetDiscriminatorLoss(gan_mode="hinge2")


# --------------------------------------------------------------------------------------
# one official training step (DoveNetModel.optimize_parameters), replayed with harmonykit parts
# --------------------------------------------------------------------------------------
def _steps():
    if _META is None:
        return [pytest.param(0, id="fixtures-missing")]
    return [
        pytest.param(i, id=f"{s['generator_kwargs']['norm']}-{'x'.join(map(str, s['size']))}")
        for i, s in enumerate(_META.get("train_step", []))
    ]


def test_train_step_fixtures_exist():
    assert meta().get("train_step"), "dovenet.json has no train_step entry"


@pytest.mark.parametrize("i", _steps())
def test_one_training_step_matches_official(i):
    """Generator forward (train mode, seeded dropout), discriminator update (hinge terms + gradient
    penalty, Adam), generator update (adversarial + 100 x L1, Adam): every official loss and
    every updated parameter and buffer of both networks."""
    step = meta()["train_step"][i]
    opt = step["options"]
    data = load_file(str(DIR / step["file"]))
    sub = lambda p: {k[len(p):]: v for k, v in data.items() if k.startswith(p)}  # noqa: E731
    comp, mask = data["composite_u8"].float() / 255, data["mask_u8"].float()
    real = (data["real_u8"].float() / 255 - 0.5) / 0.5
    G = harmonykit.create_model("dovenet", **step["generator_kwargs"])
    harmonykit.convert.load_weights(G, sub("G0."), strict=True)
    D = harmonykit.DISCRIMINATORS.create("dovenet", **step["discriminator_kwargs"])
    D.load_official_state_dict(sub("D0."))
    G.train(), D.train()
    opt_g = torch.optim.Adam(G.parameters(), lr=opt["lr"] * opt["g_lr_ratio"], betas=(opt["beta1"], 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=opt["lr"] * opt["d_lr_ratio"], betas=(opt["beta1"], 0.999))
    d_loss = harmonykit.LOSSES.create("dovenet_d", gan_mode=opt["gan_mode"], gp_weight=opt["gp_ratio"])
    g_loss = harmonykit.LOSSES.create("dovenet_g", gan_mode=opt["gan_mode"], lambda_a=opt["lambda_a"], lambda_v=opt["lambda_v"])
    gp_fn = harmonykit.LOSSES.create("dovenet_gp")
    l1 = harmonykit.LOSSES.create("l1")

    torch.manual_seed(step["step_seed"])
    fake = G(comp, mask).image_normalized
    close(F.avg_pool2d(fake.detach(), 16) * 256, data["output_sumpool16"], "generator output (16x16 sums)")
    # discriminator step
    opt_d.zero_grad()
    parts = d_loss.parts(D(fake.detach(), mask), D(real, mask), gp_fn(D, real, fake, mask))
    parts["total"].backward()
    grads_d = {n: p.grad.detach().clone() for n, p in D.named_parameters()}
    opt_d.step()
    # generator step (D frozen; the official code also scores the real image here)
    for p in D.parameters():
        p.requires_grad_(False)
    opt_g.zero_grad()
    g_parts = g_loss.parts(D(fake, mask))
    with torch.no_grad():
        D(real, mask)
    rec = l1(fake, real) * opt["lambda_L1"]
    (g_parts["total"] + rec).backward()
    grads_g = {n: p.grad.detach().clone() for n, p in G.named_parameters()}
    opt_g.step()

    ours = {"D_real": parts["real"], "D_fake": parts["fake"], "D_gp": parts["gp"], "D_global": parts["global"],
            "D_local": parts["verification"], "G_global": g_parts["global"], "G_local": g_parts["verification"],
            "G_GAN": g_parts["total"], "G_L1": rec}
    for k, v in ours.items():
        close(v.detach(), data[f"loss.{k}"], f"loss_{k}")
    # Adam's first step moves every element by lr * g / (|g| + 1e-8), i.e. about +-lr: the updated
    # weights compare the sign of every gradient element. Where the true gradient is zero (a conv
    # bias followed by InstanceNorm) or at float-noise level, that sign is rounding noise in either
    # code. So: every value must agree within tolerance, except values whose gradient here is at
    # noise level (|g| <= 1e-5 x the network's largest gradient), which must have moved by at
    # most lr in both codes; such exceptions must stay rare.
    lr = opt["lr"]
    g0, g1 = official_dovenet_to_unet(sub("G0.")), official_dovenet_to_unet(sub("G1."))
    d0, d1 = official_discriminator_to_ours(sub("D0.")), official_discriminator_to_ours(sub("D1."))
    n_off = n_all = 0
    for who, net, grads, before, after in (("generator", G, grads_g, g0, g1), ("discriminator", D, grads_d, d0, d1)):
        gmax = max(g.abs().max() for g in grads.values())
        for k, v in net.state_dict().items():
            v, ref = v.to(after[k].dtype), after[k]
            off = ~torch.isclose(v, ref, **TOL)
            n_off, n_all = n_off + int(off.sum()), n_all + v.numel()
            if not off.any():
                continue
            noise = grads[k].abs() <= 1e-5 * gmax if k in grads else torch.zeros_like(off)
            assert (off <= noise).all(), close(v, ref, f"{who} {k} after the step (gradient above noise level)")
            assert (v - before[k])[off].abs().le(lr * 1.001).all() and (ref - before[k])[off].abs().le(lr * 1.001).all(), k
    print(f"train step: {n_off} of {n_all} values differ, all at noise-level gradients")
    assert n_off < 0.002 * n_all, f"{n_off} of {n_all} values differ (noise-level gradients)"
