"""Loss terms against hand formulas and against the official step's numbers (fixture files)."""
from __future__ import annotations

import json
import math

import pytest
import torch

import harmonykit.losses  # noqa: F401  (registers)
from harmonykit.registry import LOSSES


def test_losses_registered():
    for name in ["fn_mse", "l1", "mse", "hinge_d", "hinge_g", "soft_ce", "hard_ce", "style_consistency", "entropy_reduction"]:
        assert name in LOSSES


def test_fn_mse_min_area_and_channels():
    pred = torch.zeros(2, 3, 20, 20)
    target = torch.ones(2, 3, 20, 20)
    mask = torch.zeros(2, 1, 20, 20)
    mask[0, :, :5, :5] = 1  # area 25 < 100 -> clamped to 100
    mask[1, :, :15, :15] = 1  # area 225
    loss = LOSSES.create("fn_mse", min_area=100)
    per = loss.per_sample(pred, target, mask)
    assert torch.allclose(per, torch.tensor([1200 / 300.0, 1200 / 675.0]))
    assert torch.isclose(loss(pred, target, mask), per.mean())
    with pytest.raises(ValueError, match="min_area"):
        LOSSES.create("fn_mse", min_area=0)


def test_entropy_reduction_hinge_on_batch_means():
    logits_in = torch.tensor([[0.0, 0.0], [5.0, -5.0]])
    logits_out = torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    er = LOSSES.create("entropy_reduction", margin=0.1)
    p = er.parts(logits_in, logits_out)
    ent = lambda lg: -(lg.softmax(1) * lg.log_softmax(1)).sum(1)  # noqa: E731
    assert torch.isclose(p["entropy_in"], ent(logits_in).mean())
    expected = max(0.0, 0.1 - ent(logits_in).mean().item() + ent(logits_out).mean().item())
    assert math.isclose(p["total"].item(), expected, rel_tol=1e-6)
    # a large margin is active, zero margin with a much more concentrated output is not
    assert LOSSES.create("entropy_reduction", margin=0.0)(logits_out, logits_in).item() == 0.0


def test_style_consistency_gradients_flow_to_both():
    a = torch.randn(3, 10, requires_grad=True)
    b = torch.randn(3, 10, requires_grad=True)
    LOSSES.create("style_consistency")(a, b).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def _load(parity_dir):
    from safetensors.torch import load_file

    trace = load_file(str(parity_dir / "charmnet_step.trace.safetensors"))
    batch = load_file(str(parity_dir / "charmnet_step.batch.safetensors"))
    ref = json.loads((parity_dir / "charmnet_step.losses.json").read_text())
    return trace, batch, ref


def test_losses_match_official_step_values(parity_dir):
    """Each term on the official intermediate tensors (trace) equals the official value."""
    trace, batch, ref = _load(parity_dir)
    L = ref["losses"]
    fn = LOSSES.create("fn_mse", min_area=100)
    for dom, key in [("rendered", "recon_rd"), ("real", "recon_rl")]:
        per = fn.per_sample(trace[f"{dom}/harmonized"], batch[f"{dom}/real"], batch[f"{dom}/mask"])
        torch.testing.assert_close(per, torch.tensor(L[f"{key}_per_sample_unweighted"]), rtol=1e-5, atol=0)
    d = LOSSES.create("hinge_d").parts(trace["D_step/D_f_rendered"], trace["D_step/D_f_real"])
    assert math.isclose(d["rendered"].item(), L["D_loss_rendered_hinge"], rel_tol=1e-5)
    assert math.isclose(d["real"].item(), L["D_loss_real_hinge"], rel_tol=1e-5)
    assert math.isclose(d["total"].item(), L["D_loss"], rel_tol=1e-5)
    assert math.isclose(LOSSES.create("hinge_g")(trace["G_step/D_f_rendered"]).item(), L["G_adv"], rel_tol=1e-5)
    # the style heads' probabilities are stored; log-probabilities are valid logits
    lg = {k: trace[f"G_step/{k}"].log() for k in ["SC1_f_rendered", "SC2_g_rendered", "SC1_f_real", "SC2_g_real"]}
    soft = LOSSES.create("soft_ce")(lg["SC1_f_rendered"], batch["rendered/unharm_GT_label"])
    assert soft.dtype == torch.float64  # follows the float64 label like the official loader
    assert math.isclose(soft.item(), L["style_rd_Pin_softCE"], rel_tol=1e-5)
    hard = LOSSES.create("hard_ce")(lg["SC2_g_rendered"], batch["rendered/harmed_GT_label"])
    assert math.isclose(hard.item(), L["style_rd_Pout_CE"], rel_tol=1e-5)
    cons = LOSSES.create("style_consistency")(lg["SC1_f_real"], lg["SC2_g_real"])
    assert math.isclose(cons.item(), L["style_rl_consistency_CE"], rel_tol=1e-5)
    er = LOSSES.create("entropy_reduction", margin=ref["weights"]["lambda_m"]).parts(lg["SC1_f_real"], lg["SC2_g_real"])
    assert math.isclose(er["entropy_in"].item(), L["style_rl_entropy_Pin"], rel_tol=1e-5)
    assert math.isclose(er["entropy_out"].item(), L["style_rl_entropy_Pout"], rel_tol=1e-5)
    assert math.isclose(er["total"].item(), L["style_rl_ER"], rel_tol=1e-5)
