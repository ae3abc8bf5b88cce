"""``harmonize(..., policy="native")`` through ``model.fullres_plan`` (PCT-Net, Harmonizer):
the banded full-resolution renderers equal the models' own forward (and the autograd / official
filter chain), the background is returned bit for bit, and ``precision="bf16"`` stays close to
float32. Sizes are not multiples of 8; no timing is asserted (benchmarks/bench_inference.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import harmonykit
from harmonykit.cli import main
from harmonykit.inference import PRECISIONS, harmonize
from harmonykit.models.harmonizer import FilterPlan, bilinear_view, channel_histograms, channel_means, full_image_stats
from harmonykit.models.pctnet import PCTPlan, official_lowres_view, pct_fullres

NATIVE = ["pctnet_cnn", "pctnet_vit", "harmonizer"]
SIZE = (301, 459)  # (H, W): larger than the models' low-resolution views, not multiples of 8


def _net(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    net = harmonykit.create_model(name, **harmonykit.get_pretrained_cfg(name).tiny_args).eval()
    net.random_weights_ok = True
    return net


def _pair(h: int, w: int, seed: int = 0):
    """uint8 composite with smooth colour + noise, and a mask with a hard box, a soft ramp and
    a lone foreground pixel far from the box (a large bounding box with background inside)."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w, yy / h, 0.5 + 0.3 * np.sin(xx / 17.0)], -1)
    comp = np.clip(base * 200 + g.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 5: 3 * h // 5, w // 4: 2 * w // 3] = 255
    ramp = np.clip((xx - w // 4) * 255.0 / 40.0, 0, 255).astype(np.uint8)  # soft left edge
    band = slice(h // 5, 3 * h // 5), slice(w // 4, w // 4 + 40)
    mask[band] = ramp[band]
    mask[h - 7, w - 11] = 255
    return comp, mask


def _reference(net, comp_u8: np.ndarray, mask_u8: np.ndarray) -> torch.Tensor:
    """The model's own forward on the float image, clamped and pasted as harmonize documents:
    ``(H, W, 3)`` float in [0, 1]."""
    c = torch.from_numpy(comp_u8).permute(2, 0, 1)[None].float() / 255.0
    m = torch.from_numpy(mask_u8)[None, None].float() / 255.0
    with torch.no_grad():
        pred = net(c, m).image.clamp(0, 1)
    if not getattr(net, "composites_with_mask", False):
        pred = c * (1 - m) + pred * m
    return pred[0].permute(1, 2, 0)


@pytest.mark.parametrize("name", NATIVE)
def test_native_harmonize_equals_the_models_forward_and_keeps_the_background(name):
    net = _net(name)
    comp, mask = _pair(*SIZE)
    out = harmonize(comp, mask, net)
    assert out.shape == comp.shape and out.dtype == np.uint8
    bg = mask == 0
    assert np.array_equal(out[bg], comp[bg]), "background pixels changed"
    ref = (_reference(net, comp, mask) * 255).round().to(torch.uint8).numpy()
    diff = np.abs(out.astype(int) - ref.astype(int))
    assert diff.max() <= 1, f"{name}: harmonize differs from the forward by {diff.max()} levels"
    assert (diff > 0).mean() < 1e-3, f"{name}: {(diff > 0).mean():.2%} of the values differ by one level"
    assert not np.array_equal(out[~bg], comp[~bg]), "the foreground was not changed"
    # float input: the same up to float rounding, background exact
    outf = harmonize(comp.astype(np.float32) / 255.0, mask.astype(np.float32) / 255.0, net)
    assert outf.dtype == np.float32
    assert np.array_equal(outf[bg], comp[bg].astype(np.float32) / 255.0)
    np.testing.assert_allclose(outf, _reference(net, comp, mask).numpy(), atol=2e-5, rtol=0)


@pytest.mark.parametrize("name", NATIVE)
def test_bf16_is_close_to_fp32_and_keeps_the_background(name):
    """bf16 runs only the low-resolution network in bfloat16. Observed (foreground, levels of
    255, random weights, 301x459): pctnet_cnn tiny mean 1.38 / max 13 (full width: 0.53 / 8);
    pctnet_vit and harmonizer mean <= 0.06 / max 1. Bounds here: mean < 2, max <= 24."""
    net = _net(name)
    comp, mask = _pair(*SIZE, seed=1)
    out32 = harmonize(comp, mask, net, precision="fp32")
    out16 = harmonize(comp, mask, net, precision="bf16")
    bg = mask == 0
    assert np.array_equal(out16[bg], comp[bg])
    d = np.abs(out16.astype(int) - out32.astype(int))[~bg]
    assert d.mean() < 2.0 and d.max() <= 24, f"{name}: bf16 vs fp32 mean {d.mean():.3f} max {d.max()}"
    with pytest.raises(ValueError, match="precision"):
        harmonize(comp, mask, net, precision="fp16")
    assert PRECISIONS == ("fp32", "bf16")


def test_empty_mask_returns_the_input_and_flip_still_works():
    net = _net("harmonizer")
    comp, mask = _pair(64, 90)
    assert np.array_equal(harmonize(comp, np.zeros_like(mask), net), comp)
    out = harmonize(comp, mask, net, flip=True)  # the generic native path
    assert np.array_equal(out[mask == 0], comp[mask == 0])


def test_uint8_round_trip_is_exact():
    """The background argument of the banded paste: ``x * 1 + y * 0 == x`` and
    ``round(255 * (v / 255)) == v`` for every uint8 ``v``."""
    v = torch.arange(256, dtype=torch.uint8)
    x = v.float().div_(255.0)
    assert torch.equal(x.mul(255.0).round_().to(torch.uint8), v)
    zero = torch.zeros(256)
    assert torch.equal(x.mul(torch.rsub(zero, 1.0)).add_(torch.rand(256).mul_(zero)), x)


# -- the renderers against the reference computations -------------------------------------------
def _filter_cases():
    base = [0.3, -0.2, 0.4, 0.5, 0.2, -0.3]
    yield torch.tensor([base])
    yield torch.tensor([[-0.4, 0.6, -0.5, -0.7, -0.3, 0.8]])  # negative saturation, brighter
    yield torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    yield torch.tensor([[1.5, -1.5, 1.2, 0.99, -2.0, 3.0]])  # clamped to [-1, 1]
    yield torch.tensor([base, [-0.4, 0.6, -0.5, -0.7, -0.3, 0.8]])  # batch with mixed signs
    # brightness clamped to 1: gain 1e6, where kornia's HSV eps shows (the exact HSV route)
    yield torch.tensor([[3.6, 1.06, -0.1, 0.97, 0.53, -1.6]])
    yield torch.tensor([base, [0.2, 0.995, 0.3, -0.3, 0.1, 0.1]])  # gain 200 in one image of a batch


@pytest.mark.parametrize("args", list(_filter_cases()), ids=lambda a: f"b{a.shape[0]}_{float(a[0, 3]):+.1f}")
def test_filter_plan_equals_the_filter_chain(args):
    """FilterPlan (fused, banded) vs FilterHarmonizer.restore_image (the official chain, whose
    parity with the official code the zoo fixtures test), with soft masks, in bands."""
    net = harmonykit.create_model("harmonizer", width_coefficient=0.25, base_channels=32).eval()
    b = args.shape[0]
    g = torch.Generator().manual_seed(3)
    comp = torch.rand(b, 3, 83, 141, generator=g) * torch.rand(b, 3, 1, 1, generator=g)
    comp[:, :, :5] = 1.0  # saturated rows
    comp[:, :, 5:9] = 0.0
    mask = torch.rand(b, 1, 83, 141, generator=g).mul_(1.6).sub_(0.3).clamp_(0, 1)
    with torch.no_grad():
        ref = net.restore_image(comp, mask, args)[-1]
        plan = net.plan_from_arguments(args, comp)
        ours = torch.cat([plan.render(comp[:, :, r:r + 20], mask[:, :, r:r + 20]) for r in range(0, 83, 20)], dim=2)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_filter_stats_from_uint8_equal_the_float_ones():
    g = torch.Generator().manual_seed(4)
    u8 = torch.randint(0, 256, (2, 3, 57, 91), generator=g, dtype=torch.uint8)
    f = u8.float() / 255.0
    hist = channel_histograms(u8)
    assert int(hist.sum()) == u8.numel()
    torch.testing.assert_close(channel_means(u8, hist).float(), channel_means(f), atol=1e-6, rtol=0)
    plan = FilterPlan(torch.tensor([[0.3, -0.2, 0.4, 0.5, 0.2, -0.3], [-0.5, 0.4, 0.1, -0.2, 0.3, 0.3]]), channel_means(f))
    torch.testing.assert_close(full_image_stats(plan, u8, hist=hist), full_image_stats(plan, f, band_pixels=500), atol=1e-6, rtol=0)
    exact = FilterPlan(torch.tensor([[0.3, 1.2, 0.4, 0.5, 0.2, -0.3]]), channel_means(f[:1]))
    assert exact.exact_brightness  # the HSV route mixes channels: no per-channel table, bands instead
    torch.testing.assert_close(full_image_stats(exact, u8[:1]), full_image_stats(exact, f[:1], band_pixels=500), atol=1e-6, rtol=0)
    torch.testing.assert_close(bilinear_view(u8, (24, 40)), F.interpolate(f, (24, 40), mode="bilinear", align_corners=False), atol=1e-6, rtol=0)


@pytest.mark.parametrize("attention", [True, False])
def test_pct_plan_windows_equal_the_autograd_branch(attention):
    """PCTPlan (inference, any window) vs pct_fullres with autograd on (out-of-place bands)."""
    g = torch.Generator().manual_seed(5)
    H, W = 203, 317
    config = {"mean": (0.485, 0.456, 0.406) if attention else (0.0, 0.0, 0.0), "std": (0.229, 0.224, 0.225) if attention else (1.0, 1.0, 1.0),
              "blend_with_attention": attention, "band_pixels": 5000, "lowres_size": 32}
    params = torch.randn(2, 12, 32, 32, generator=g) * 0.5
    blend = torch.rand(2, 1, 32, 32, generator=g)
    comp, mask = torch.rand(2, 3, H, W, generator=g), torch.rand(2, 1, H, W, generator=g)
    with torch.enable_grad():
        ref = pct_fullres(config, comp, mask, params.requires_grad_(), blend).detach()
    params = params.detach()
    with torch.no_grad():
        full = pct_fullres(config, comp, mask, params, blend)
        plan = PCTPlan(config, params, blend, H, W)
        r0, r1, c0, c1 = 37, 151, 61, 250
        win = plan.render(comp[:, :, r0:r1, c0:c1], mask[:, :, r0:r1, c0:c1], rows=(r0, r1), cols=(c0, c1))
    torch.testing.assert_close(full, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(win, ref[:, :, r0:r1, c0:c1], atol=1e-5, rtol=0)


def test_official_view_of_uint8_equals_the_float_one():
    g = torch.Generator().manual_seed(6)
    u8 = torch.randint(0, 256, (1, 3, 77, 130), generator=g, dtype=torch.uint8)
    m8 = torch.randint(0, 256, (1, 1, 77, 130), generator=g, dtype=torch.uint8)
    a, am = official_lowres_view(u8, m8, 32)
    b, bm = official_lowres_view(u8.float() / 255.0, m8.float() / 255.0, 32)
    assert torch.equal(a, b) and torch.equal(am, bm) and a.dtype == am.dtype == torch.float32


def test_cli_precision_option(tmp_path):
    from PIL import Image

    comp, mask = _pair(60, 90)
    Image.fromarray(comp).save(tmp_path / "c.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    base = ["harmonize", str(tmp_path / "c.png"), str(tmp_path / "m.png"), "--model", "harmonizer", "--random-weights",
            "--model-arg", "width_coefficient=0.25", "--model-arg", "base_channels=32", "--model-arg", "input_size=[64,64]"]
    assert main(base + ["-o", str(tmp_path / "o16.png"), "--precision", "bf16"]) == 0
    out = np.asarray(Image.open(tmp_path / "o16.png").convert("RGB"))
    assert out.shape == comp.shape and np.array_equal(out[mask == 0], comp[mask == 0])
    with pytest.raises(SystemExit):
        main(base + ["-o", str(tmp_path / "x.png"), "--precision", "int8"])
