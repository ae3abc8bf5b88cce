"""Weight-free classical baselines: known answers on synthetic images.

Foreground/background statistics are computed here independently (skimage's Lab, numpy), so a
wrong colour conversion, a wrong statistic or a leak into the background fails.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import harmonykit
from harmonykit.models.classical import COLOR_SPACES, from_color_space, to_color_space

from skimage import color as skimage_color  # noqa: E402  (the test extra installs scikit-image)

CLASSICAL = ["identity", "lab_transfer", "reinhard", "histogram_matching"]


def _split_image(h=48, w=64, seed=0):
    """A composite whose right half (the foreground) is the left half's colours under a
    per-channel Lab affine change, so both halves are in gamut and the transfer can undo it."""
    g = np.random.default_rng(seed)
    bg_rgb = g.uniform(0.25, 0.75, size=(h, w, 3))
    lab = skimage_color.rgb2lab(g.uniform(0.3, 0.7, size=(h, w, 3)))
    lab = lab * np.array([0.7, 0.8, 0.6]) + np.array([20.0, 12.0, -10.0])
    fg_rgb = np.clip(skimage_color.lab2rgb(lab), 0, 1)
    img = bg_rgb.copy()
    mask = np.zeros((h, w), np.float32)
    mask[:, w // 2 :] = 1
    img[:, w // 2 :] = fg_rgb[:, w // 2 :]
    comp = torch.tensor(img, dtype=torch.float32).permute(2, 0, 1)[None]
    return comp, torch.tensor(mask)[None, None]


def _lab_stats(rgb_t: torch.Tensor, sel: torch.Tensor):
    lab = skimage_color.rgb2lab(rgb_t[0].permute(1, 2, 0).double().numpy())
    v = lab[sel[0, 0].numpy() > 0.5]
    return v.mean(0), v.std(0)


def test_registered_weight_free_and_treated_as_trained():
    for name in CLASSICAL:
        assert name in harmonykit.list_models()
        model = harmonykit.create_model(name)
        assert model.weight_free and model.native_resolution and model.has_trained_weights  # factory sets False: ignored
        assert not list(model.parameters()) and not list(model.buffers())
        assert model.size_divisor == 1 and model.pretrained_cfg["min_size"] <= 8
        model.check_input_size(333, 517)  # any size


def test_kornia_lab_matches_skimage():
    g = torch.Generator().manual_seed(1)
    rgb = torch.rand(1, 3, 17, 23, generator=g, dtype=torch.float32)
    ours = to_color_space(rgb, "lab")[0].permute(1, 2, 0).double().numpy()
    ref = skimage_color.rgb2lab(rgb[0].permute(1, 2, 0).double().numpy())
    np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=0)
    back = skimage_color.lab2rgb(ref)
    np.testing.assert_allclose(from_color_space(to_color_space(rgb, "lab"), "lab")[0].permute(1, 2, 0).numpy(), back, atol=1e-4)


@pytest.mark.parametrize("space", COLOR_SPACES)
def test_color_space_round_trip(space):
    rgb = torch.rand(2, 3, 9, 11).clamp(0.02, 0.98)
    torch.testing.assert_close(from_color_space(to_color_space(rgb, space), space), rgb, atol=1e-4, rtol=0)


def test_lalphabeta_of_gray_is_achromatic():
    """Reinhard's l-alpha-beta: grey pixels have alpha ~ beta ~ 0; white has l ~ 0 (log LMS)."""
    grey = torch.linspace(0.1, 1.0, 10).view(1, 1, 1, 10).expand(1, 3, 1, 10)
    lab = to_color_space(grey, "lalphabeta")
    assert lab[:, 1:].abs().max() < 3e-3
    assert lab[0, 0, 0, -1].abs() < 3e-3
    assert (lab[0, 0, 0].diff() > 0).all()  # l grows with brightness


@pytest.mark.parametrize("strength", [1.0, 0.5, 0.25])
def test_lab_transfer_moves_mean_and_std(strength):
    comp, mask = _split_image()
    out = harmonykit.create_model("lab_transfer", strength=strength)(comp, mask).image
    mu_f, sd_f = _lab_stats(comp, mask)
    mu_b, sd_b = _lab_stats(comp, 1 - mask)
    mu_o, sd_o = _lab_stats(out, mask)
    np.testing.assert_allclose(mu_o, mu_f + strength * (mu_b - mu_f), atol=0.05)
    np.testing.assert_allclose(sd_o, sd_f + strength * (sd_b - sd_f), atol=0.05)
    assert np.abs(mu_f - mu_b).max() > 5  # the test image really needs a change


def test_lab_transfer_default_is_half_way():
    model = harmonykit.create_model("lab_transfer")
    assert model.strength == 0.5 and model.color_space == "lab"


def test_strength_zero_is_identity():
    comp, mask = _split_image()
    for name in ("lab_transfer", "reinhard", "histogram_matching"):
        out = harmonykit.create_model(name, strength=0.0)(comp, mask).image
        torch.testing.assert_close(out, comp, atol=1e-4, rtol=0)


def test_reinhard_full_transfer_in_lalphabeta():
    comp, mask = _split_image(seed=3)
    out = harmonykit.create_model("reinhard")(comp, mask).image
    x_in, x_out = to_color_space(comp, "lalphabeta"), to_color_space(out, "lalphabeta")
    fg, bg = mask[0, 0] > 0.5, mask[0, 0] < 0.5
    ref = x_in[0][:, bg]
    got = x_out[0][:, fg]
    torch.testing.assert_close(got.mean(1), ref.mean(1), atol=2e-3, rtol=0)
    torch.testing.assert_close(got.std(1, unbiased=False), ref.std(1, unbiased=False), atol=2e-3, rtol=0)


def test_histogram_matching_inverts_a_monotone_change():
    """Foreground = a monotone per-channel function of the background (same pixel count, no
    ties): matching must give back exactly the background's values."""
    g = torch.Generator().manual_seed(2)
    bg = torch.rand(3, 20, 16, generator=g)
    fg = 0.3 * bg.flip(-1) ** 2 + 0.5  # monotone in each value, other spatial order
    comp = torch.cat([bg, fg], dim=-1)[None]
    mask = torch.cat([torch.zeros(1, 20, 16), torch.ones(1, 20, 16)], dim=-1)[None]
    out = harmonykit.create_model("histogram_matching")(comp, mask).image
    torch.testing.assert_close(out[0, :, :, 16:], bg.flip(-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[..., :16], comp[..., :16], atol=0, rtol=0)


def test_histogram_matching_ties_and_order():
    """uint8-like values: equal inputs give equal outputs, order is kept, range is the background's."""
    g = torch.Generator().manual_seed(4)
    comp = torch.randint(0, 256, (1, 3, 30, 40), generator=g).float() / 255
    comp[..., 20:] = comp[..., 20:] * 0.3  # dark foreground
    mask = torch.zeros(1, 1, 30, 40)
    mask[..., 20:] = 1
    out = harmonykit.create_model("histogram_matching")(comp, mask).image
    for c in range(3):
        x, y = comp[0, c, :, 20:].flatten(), out[0, c, :, 20:].flatten()
        order = torch.argsort(x)
        xs, ys = x[order], y[order]
        assert (ys.diff() >= -1e-7).all()
        same = xs.diff() == 0
        assert (ys.diff()[same].abs() < 1e-7).all()
        bgv = comp[0, c, :, :20]
        assert ys.min() >= bgv.min() - 1e-7 and ys.max() <= bgv.max() + 1e-7
        assert abs(float(ys.mean() - bgv.mean())) < 0.02


@pytest.mark.parametrize("name", CLASSICAL)
def test_background_never_changes(name):
    comp, mask = _split_image(33, 47)
    soft = torch.nn.functional.avg_pool2d(mask, 5, 1, 2)  # soft edge
    out = harmonykit.create_model(name)(comp, soft).image
    bg = (soft == 0).expand_as(comp)
    assert torch.equal(out[bg], comp[bg])


@pytest.mark.parametrize("name", ["lab_transfer", "histogram_matching"])
def test_harmonize_keeps_background_and_changes_foreground(name):
    comp, mask = _split_image(70, 90)
    img = (comp[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    m = (mask[0, 0].numpy() * 255).astype(np.uint8)
    out = harmonykit.harmonize(img, m, name, policy="full")
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out[m == 0], img[m == 0])
    assert np.abs(out[m > 0].astype(int) - img[m > 0]).mean() > 3


@pytest.mark.parametrize("name", CLASSICAL)
def test_empty_or_full_mask_returns_composite(name):
    comp = torch.rand(1, 3, 16, 16)
    model = harmonykit.create_model(name)
    for mask in (torch.zeros(1, 1, 16, 16), torch.ones(1, 1, 16, 16)):
        torch.testing.assert_close(model(comp, mask).image, comp, atol=1e-4, rtol=0)


def test_batch_images_are_independent():
    a, ma = _split_image(seed=5)
    b, mb = _split_image(seed=6)
    for name in ("lab_transfer", "histogram_matching"):
        model = harmonykit.create_model(name)
        both = model(torch.cat([a, b]), torch.cat([ma, mb])).image
        torch.testing.assert_close(both[1:], model(b, mb).image, atol=1e-6, rtol=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"strength must be in \[0, 1\], got 1.5"):
        harmonykit.create_model("lab_transfer", strength=1.5)
    with pytest.raises(ValueError, match="unknown colour space 'hsv'"):
        harmonykit.create_model("lab_transfer", color_space="hsv")
    with pytest.raises(TypeError, match="'identity': unexpected argument"):
        harmonykit.create_model("identity", strength=0.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    comp, mask = _split_image()
    for name in ("lab_transfer", "reinhard", "histogram_matching"):
        model = harmonykit.create_model(name)
        torch.testing.assert_close(model(comp.cuda(), mask.cuda()).image.cpu(), model(comp, mask).image, atol=1e-4, rtol=0)


def test_weight_free_models_are_discoverable_from_the_registry():
    from harmonykit.models.classical import is_weight_free, list_weight_free_models

    assert set(CLASSICAL) <= set(list_weight_free_models())
    assert is_weight_free("lab_transfer") and not is_weight_free("idih256") and not is_weight_free("nope")
    assert not any(n.partition(".")[0] in CLASSICAL for n in harmonykit.list_models(pretrained=True))


@pytest.mark.parametrize("name", ["lab_transfer", "reinhard"])
def test_strip_path_equals_vectorised_path(name):
    """Large images run in strips of rows (bounded memory): same result, background exact."""
    model = harmonykit.create_model(name)
    comp, _ = _split_image(150, 90, seed=7)
    comp = torch.cat([comp, comp.flip(-1)])
    mask = torch.zeros(2, 1, 150, 90)
    mask[0, :, 20:100, 50:] = 1
    mask[1, :, 60:140, 5:40] = 0.6
    with torch.no_grad():
        whole = model(comp, mask).image
        strips = model._forward_strips(comp, mask, rows=32)
    torch.testing.assert_close(strips, whole, atol=2e-5, rtol=0)
    bg = (mask == 0).expand_as(comp)
    assert torch.equal(strips[bg], comp[bg])
