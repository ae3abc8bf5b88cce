"""One official CharmNet iteration (``charmnet_step.*`` fixtures) through Trainer.train_step.

Starts from the ``init`` weights and the stored batch, runs the trainer's real step function
and compares every loss (losses.json), **every parameter's gradient right before its optimiser
step** (``charmnet_step.trace.safetensors``: ``grad/<net>/<official name>``; D's before the D
step, G / SC1 / SC2's before the G step) at rtol 1e-4, and all weights after the D step and
after the G step with the README's tolerances. After one Adam step the weights show little
more than gradient signs, so the gradients are the sharp part. Zero-true-gradient biases
(listed in losses.json: rounding noise in front of a train-mode BatchNorm) are compared with the
README's loose tolerance.

``HARMONYKIT_TEST_DEVICE=cuda`` runs the step on the GPU (``benchmarks/gpu_check.sh``) with
TF32 switched off (``torch.backends.cuda.matmul.allow_tf32 = False``,
``torch.backends.cudnn.allow_tf32 = False``): TF32 rounds conv / matmul inputs to a 10-bit
mantissa (~5e-4 relative), far outside these tolerances; in full fp32 cuDNN differs from the
CPU only by summation order, and the same tolerances apply.
"""
from __future__ import annotations

import json
import math
import os

import pytest
import torch

from harmonykit.train.recipe import load_recipe
from harmonykit.train.trainer import Trainer

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

# README "Suggested tolerances for a float32 CPU re-implementation"
LOSS_RTOL = 1e-5
PARAM_ATOL = 2e-6
ZERO_GRAD_PARAM_ATOL = 2.1e-4
BUFFER_ATOL = 1e-5
# gradients: |ours - official| <= GRAD_RTOL * (|official| + max|official of that tensor|), i.e.
# rtol 1e-4 elementwise, with the tensor's scale as the floor for elements near zero
GRAD_RTOL = 1e-4
ZERO_GRAD_ATOL = 1e-4  # README: compare the grads of those biases with atol ~1e-4 (both are noise)

@pytest.fixture(autouse=True)
def _restore_global_torch_state():
    """Trainers switch on deterministic algorithms and seed torch; undo that for other tests."""
    yield
    torch.use_deterministic_algorithms(False)


def _load(parity_dir, stage, net):
    from safetensors.torch import load_file

    return load_file(str(parity_dir / f"charmnet_step.{stage}.{net}.safetensors"))


def _trainer(parity_dir):
    from harmonykit.convert import load_weights

    ref = json.loads((parity_dir / "charmnet_step.losses.json").read_text())
    prov = json.loads((parity_dir / "charmnet_step.provenance.json").read_text())
    od, og = prov["optimizer_D"], prov["optimizers_G"]["lr_betas_eps_wd_per_group"]
    assert od["class"] == prov["optimizers_G"]["class"] == "torch.optim.Adam"
    assert len({json.dumps(g) for g in og}) == 1, "per-group hyper-parameters differ"
    g_lr, g_betas, g_eps, g_wd = og[0]
    w = ref["weights"]
    init_d = _load(parity_dir, "init", "netD")
    width = init_d["net.0.weight"].shape[0]
    sc_width = _load(parity_dir, "init", "netSC1")["net.0.weight"].shape[0]
    sd_g = _load(parity_dir, "init", "netG")
    ch = sd_g["real_enc.block0.block.0.weight"].shape[0]
    max_ch = sd_g["encoder_blocks.block6.block.0.weight"].shape[0]
    recipe = load_recipe(
        "tiny",
        overrides=[
            f"model.ch={ch}",
            f"model.max_channels={max_ch}",
            f"discriminator.width={width}",
            f"style_heads.width={sc_width}",
            "optim.opt=adam",
            f"optim.lr={g_lr!r}",
            f"optim.d_lr={od['lr']!r}",
            f"optim.head_lr={g_lr!r}",
            f"optim.betas=[{g_betas[0]!r}, {g_betas[1]!r}]",
            f"optim.eps={g_eps!r}",
            f"optim.weight_decay={g_wd!r}",
            "optim.clip_grad=null",
            "train.precision=fp32",
            "train.channels_last=false",  # the official code runs NCHW
            "train.ema.enabled=false",
            f"loss.recon_rendered.weight={w['lambda_src_L1']}",
            f"loss.recon_real.weight={w['lambda_tgt_L1']}",
            f"loss.adversarial.weight={w['lambda_adv']}",
            f"loss.style_in.weight={w['lambda_src_ce']}",
            f"loss.style_out.weight={w['lambda_src_ce']}",
            f"loss.consistency.weight={w['lambda_tgt_ce']}",
            f"loss.entropy.weight={w['lambda_tgt_le']}",
            f"loss.entropy.margin={w['lambda_m']}",
            "loss.recon_rendered.min_area=100",
            "loss.recon_real.min_area=100",
        ],
    )
    device = os.environ.get("HARMONYKIT_TEST_DEVICE", "cpu")
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    tr = Trainer(recipe, run_dir=None, device=device)
    assert list(tr.opt_d.param_groups[0]["betas"]) == list(od["betas"]) and tr.opt_d.defaults["eps"] == od["eps"]
    load_weights(tr.model, sd_g)
    tr.discriminator.load_state_dict(init_d)
    tr.style_in.load_state_dict(_load(parity_dir, "init", "netSC1"))
    tr.style_out.load_state_dict(_load(parity_dir, "init", "netSC2"))
    return tr, ref


def _batches(parity_dir):
    from safetensors.torch import load_file

    raw = load_file(str(parity_dir / "charmnet_step.batch.safetensors"))
    out = {}
    for dom in ("rendered", "real"):
        out[dom] = {
            "composite": raw[f"{dom}/comp"] * STD + MEAN,
            "real": raw[f"{dom}/real"] * STD + MEAN,
            "mask": raw[f"{dom}/mask"],
        }
    out["rendered"]["style_soft"] = raw["rendered/unharm_GT_label"]
    out["rendered"]["style"] = raw["rendered/harmed_GT_label"]
    return out


def _cpu(sd):
    return {k: v.detach().cpu().clone() for k, v in sd.items()}


def _snapshot(tr):
    from harmonykit.convert import convert_state_dict

    g = convert_state_dict(_cpu(tr.model.state_dict()), src="split", dst="official_charmnet", split_depth=tr.model.split_depth)
    return {
        "netG": {k: v.clone() for k, v in g.items()},
        "netD": _cpu(tr.discriminator.state_dict()),
        "netSC1": _cpu(tr.style_in.state_dict()),
        "netSC2": _cpu(tr.style_out.state_dict()),
    }


def _compare(parity_dir, stage, snap, zero_grad):
    bad = []
    for net in ("netG", "netD", "netSC1", "netSC2"):
        ref = _load(parity_dir, stage, net)
        got = snap[net]
        assert set(ref) == set(got), f"{stage}/{net}: key sets differ"
        zg = set(zero_grad[net[3:] if net != "netG" else "G"])
        for k, r in ref.items():
            g = got[k]
            if r.dtype == torch.int64:
                if not torch.equal(g, r):
                    bad.append(f"{stage}/{net}/{k}: {g.tolist()} != {r.tolist()}")
                continue
            buffer = k.endswith(("running_mean", "running_var"))
            atol = BUFFER_ATOL if buffer else (ZERO_GRAD_PARAM_ATOL if k in zg else PARAM_ATOL)
            diff = (g - r).abs().max().item()
            if diff > atol:
                bad.append(f"{stage}/{net}/{k}: max|diff|={diff:.3g} > {atol:g}")
    assert not bad, "\n".join(bad[:20]) + (f"\n... {len(bad) - 20} more" if len(bad) > 20 else "")


def _grads_official_names(tr, grads_d):
    """Every parameter's .grad under the official names: {"G": ..., "D": ..., "SC1": ..., "SC2": ...}."""
    from harmonykit.convert import convert_state_dict

    pg = {n: (None if p.grad is None else p.grad.detach().cpu()) for n, p in tr.model.named_parameters()}
    missing = [n for n, g in pg.items() if g is None]
    assert not missing, f"no gradient for {missing[:5]}"
    sd = {k: (pg[k] if k in pg else torch.zeros_like(v)) for k, v in _cpu(tr.model.state_dict()).items()}
    g = convert_state_dict(sd, src="split", dst="official_charmnet", split_depth=tr.model.split_depth)
    return {
        "G": g,
        "D": grads_d,
        "SC1": {n: p.grad.detach().cpu().clone() for n, p in tr.style_in.named_parameters()},
        "SC2": {n: p.grad.detach().cpu().clone() for n, p in tr.style_out.named_parameters()},
    }


def _compare_grads(parity_dir, grads, zero_grad):
    from safetensors.torch import load_file

    trace = load_file(str(parity_dir / "charmnet_step.trace.safetensors"))
    ref = {k: v for k, v in trace.items() if k.startswith("grad/")}
    assert ref, "charmnet_step.trace.safetensors has no grad/* entries"
    n_params = sum(1 for net in grads.values() for k in net if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert len(ref) == n_params, f"trace has {len(ref)} gradients, the networks {n_params} parameters"
    bad = []
    for key, r in ref.items():
        _, net, name = key.split("/", 2)
        g = grads[net][name]
        assert g.shape == r.shape, f"{key}: shape {tuple(g.shape)} vs {tuple(r.shape)}"
        if name in zero_grad[net]:
            d = (g - r).abs().max().item()
            if d > ZERO_GRAD_ATOL:
                bad.append(f"{key}: max|diff| {d:.3g} > {ZERO_GRAD_ATOL} (true gradient 0)")
            continue
        tol = GRAD_RTOL * (r.abs() + r.abs().max())
        excess = ((g - r).abs() - tol).max().item()
        if excess > 0:
            worst = ((g - r).abs() / r.abs().max()).max().item()
            bad.append(f"{key}: max|diff| / max|official| = {worst:.3g} (> rtol {GRAD_RTOL:g})")
    assert not bad, "\n".join(bad[:20]) + (f"\n... {len(bad) - 20} more" if len(bad) > 20 else "")


def test_step_parity(parity_dir):
    torch.set_num_threads(2)
    tr, ref = _trainer(parity_dir)
    zero_grad = {"G": ref["zero_true_gradient_params"]["G"], "D": ref["zero_true_gradient_params"]["D"],
                 "SC1": ref["zero_true_gradient_params"]["SC1"], "SC2": ref["zero_true_gradient_params"]["SC2"]}
    snaps, grads_d = {}, {}

    def after_d(t):
        snaps["after_D"] = _snapshot(t)
        grads_d.update({n: p.grad.detach().cpu().clone() for n, p in t.discriminator.named_parameters()})

    logs = tr.train_step(_batches(parity_dir), after_d_step=after_d)
    snaps["after_G"] = _snapshot(tr)
    _compare_grads(parity_dir, _grads_official_names(tr, grads_d), zero_grad)

    L = ref["losses"]
    w = ref["weights"]
    expect = {
        "D_loss": L["D_loss"],
        "D_rendered": L["D_loss_rendered_hinge"],
        "D_real": L["D_loss_real_hinge"],
        "adversarial": L["G_adv"],
        "recon_rendered": L["recon_rd_unweighted"],
        "recon_real": L["recon_rl_unweighted"],
        "style_in": L["style_rd_Pin_softCE"],
        "style_out": L["style_rd_Pout_CE"],
        "consistency": L["style_rl_consistency_CE"],
        "entropy": L["style_rl_ER"],
        "entropy_in": L["style_rl_entropy_Pin"],
        "entropy_out": L["style_rl_entropy_Pout"],
        "G_total": L["G_total"],
    }
    errs = [f"{k}: {float(logs[k])!r} vs official {v!r}" for k, v in expect.items() if not math.isclose(float(logs[k]), v, rel_tol=LOSS_RTOL)]
    assert not errs, "\n".join(errs)
    # weighted terms as the official code reports them
    assert math.isclose(w["lambda_src_L1"] * float(logs["recon_rendered"]), L["recon_rd_weighted"], rel_tol=LOSS_RTOL)
    assert math.isclose(w["lambda_tgt_L1"] * float(logs["recon_real"]), L["recon_rl_weighted"], rel_tol=LOSS_RTOL)
    _compare(parity_dir, "after_D", snaps["after_D"], zero_grad)
    _compare(parity_dir, "after_G", snaps["after_G"], zero_grad)
