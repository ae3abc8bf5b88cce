"""Procedural renderer: determinism, the 10 styles, masks, shadows and style-swap inharmony."""
from __future__ import annotations

import pytest
import torch

from harmonykit.data.render import (
    NUM_STYLES,
    STYLE_NAMES,
    blackbody_rgb,
    cast_shadows,
    render_scene,
    sample_scene,
    sample_style_params,
    style_name,
    style_table,
)
from harmonykit.data.render.writer import torch_threads

SIZE = 96
SEEDS = (11, 12, 13, 14, 15, 16)
_LUMA = torch.tensor([0.2126, 0.7152, 0.0722]).view(1, 3, 1, 1)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The renderer's tensors are small: one torch thread is fastest (and robust on busy CPUs)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def renders():
    return [render_scene(seed=s, size=SIZE) for s in SEEDS]


# -- styles and colours --------------------------------------------------------------------------
def test_style_order_is_the_documented_one():
    assert NUM_STYLES == 10
    assert STYLE_NAMES == (
        "Night",
        "Sunrise&Sunset Clear",
        "Sunrise&Sunset Partly Cloudy",
        "Sunrise&Sunset Cloudy",
        "Noon Clear",
        "Noon Partly Cloudy",
        "Noon Cloudy",
        "Other times Clear",
        "Other times Partly Cloudy",
        "Other times Cloudy",
    )
    assert style_table()["1"] == "Night" and style_table()["10"] == "Other times Cloudy"
    assert style_name(5) == "Noon Clear"
    with pytest.raises(ValueError, match="11"):
        style_name(11)


def test_blackbody_colour_ordering():
    rgb = blackbody_rgb(torch.tensor([2000.0, 3000.0, 4500.0, 6500.0, 10000.0, 20000.0]))
    assert rgb.shape == (6, 3)
    assert torch.allclose(rgb[3], torch.ones(3), atol=1e-4)  # white-balanced at 6500 K
    ratio = rgb[:, 0] / rgb[:, 2].clamp_min(1e-6)
    assert bool((ratio[1:] < ratio[:-1]).all()), ratio  # red/blue falls as temperature rises
    lum = rgb @ torch.tensor([0.2126, 0.7152, 0.0722])
    assert torch.allclose(lum, torch.ones(6), atol=1e-4)
    with pytest.raises(ValueError, match="100"):
        blackbody_rgb(100.0)


def test_style_parameters_follow_their_ranges():
    gen = torch.Generator().manual_seed(0)
    p = sample_style_params(None, gen)
    assert p.style.tolist() == list(range(10))
    elev = p.sun_elevation
    assert bool((elev[1:4] < 15).all()) and bool((elev[4:7] > 55).all())  # low sun at dawn, high at noon
    assert bool((p.sun_temperature[1:4] < 3000).all()) and bool((p.sun_temperature[4:7] > 5500).all())
    assert bool((p.cloud_cover[[1, 4, 7]] < 0.15).all()) and bool((p.cloud_cover[[3, 6, 9]] > 0.85).all())
    assert float(p.sun_rgb[0].sum()) < 0.2 * float(p.sun_rgb[4].sum())  # the moon is dim
    assert torch.allclose(p.sun_dir.norm(dim=1), torch.ones(10), atol=1e-5)
    with pytest.raises(ValueError, match="10"):
        sample_style_params([10], gen)


# -- determinism ---------------------------------------------------------------------------------
def test_same_seed_same_tensors_different_seed_different():
    a = render_scene(seed=3, size=80)
    b = render_scene(seed=3, size=80)
    c = render_scene(seed=4, size=80)
    assert torch.equal(a.images, b.images) and torch.equal(a.mask, b.mask)
    assert not torch.equal(a.images, c.images)
    assert (a.images - c.images).abs().mean() > 0.02


def test_generator_drives_the_scene():
    g1 = torch.Generator().manual_seed(42)
    g2 = torch.Generator().manual_seed(42)
    s1, s2 = sample_scene(g1, 64, 80), sample_scene(g2, 64, 80)
    assert torch.equal(s1.gbuf, s2.gbuf) and s1.category == s2.category
    assert s1.gbuf.shape == (14, 64, 80)


def test_scene_layout_does_not_depend_on_resolution():
    small, large = render_scene(seed=7, size=64), render_scene(seed=7, size=128)
    assert small.scene.info == large.scene.info
    down = torch.nn.functional.interpolate(large.images, size=(64, 64), mode="area")
    assert (down - small.images).abs().mean() < 0.05


def test_any_size_and_bad_sizes():
    r = render_scene(seed=1, size=(64, 150))
    assert r.images.shape == (10, 3, 64, 150) and r.mask.shape == (1, 64, 150)
    assert r.images.dtype == torch.float32
    for bad in (63, (64, 10), 0):
        with pytest.raises(ValueError, match="64"):
            render_scene(seed=1, size=bad)


# -- images -------------------------------------------------------------------------------------
def test_all_ten_styles_present_and_different(renders):
    for r in renders:
        assert r.images.shape == (10, 3, SIZE, SIZE)
        assert float(r.images.min()) >= 0.0 and float(r.images.max()) <= 1.0
        assert r.styles.tolist() == list(range(10))
        flat = r.images.reshape(10, -1)
        diff = (flat[:, None] - flat[None]).abs().mean(-1)
        off_diag = diff[~torch.eye(10, dtype=torch.bool)]
        assert float(off_diag.min()) > 0.005, diff


def test_night_is_darker_than_noon(renders):
    for r in renders:
        lum = (r.images * _LUMA).sum(1).mean((1, 2))
        assert float(lum[0]) < 0.75 * float(lum[4]), lum  # Night vs Noon Clear
        assert float(lum[0]) < float(lum[4:7].min())


def test_sunrise_is_warmer_than_noon(renders):
    warm = []
    for r in renders:
        rb = r.images[:, 0].mean((1, 2)) / r.images[:, 2].mean((1, 2))
        warm.append(float(rb[1:4].mean() - rb[4:7].mean()))
        assert float(rb[1]) > float(rb[4]), rb  # Sunrise&Sunset Clear vs Noon Clear, every scene
    assert sum(warm) / len(warm) > 0.1, warm


def test_clear_noon_has_more_contrast_than_cloudy_noon(renders):
    std = [float(r.images[4].std()) - float(r.images[6].std()) for r in renders]
    assert sum(std) / len(std) > 0.0, std


def test_masks_non_empty_and_binary(renders):
    cats = set()
    for r in renders:
        m = r.mask
        assert m.shape == (1, SIZE, SIZE)
        assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
        frac = float(m.mean())
        assert 0.005 < frac < 0.6, frac
        assert float(r.coverage.min()) >= 0 and float(r.coverage.max()) <= 1
        assert torch.equal(m, (r.coverage >= 0.5).float())
        cats.add(r.category)
    assert len(cats) >= 2, cats


def test_style_swap_composite_is_inharmonious(renders):
    """fg of style a over bg of style b: exact background, clearly wrong foreground."""
    per_scene = []
    off_diag = ~torch.eye(10, dtype=torch.bool)
    for r in renders:
        im, m = r.images, r.mask
        fg = (m >= 0.5)[None, None]  # (1, 1, 1, H, W)
        comp = torch.where(fg, im[:, None], im[None, :])  # comp[a, b]: fg of a over bg of b
        gt = im[None, :].expand_as(comp)
        assert torch.equal(comp.masked_select(~fg), gt.masked_select(~fg))  # background is exact
        sq = ((comp - gt) * 255.0) ** 2
        fmse = sq.sum(dim=(2, 3, 4)) / (float(m.sum()) * 3)  # (10, 10)
        assert float(fmse.diagonal().abs().max()) == 0.0
        vals = fmse[off_diag]
        assert float(vals.min()) > 1.0  # no two styles give the same foreground
        per_scene.append(float(vals.mean()))
    assert sum(per_scene) / len(per_scene) > 100.0, per_scene


def test_cast_shadow_follows_the_sun():
    r = render_scene(seed=3, size=128)
    sc = r.scene
    fg = int(sc.casters.shape[0]) - 1  # the foreground is drawn (and recorded) last
    sc.casters, sc.caster_base = sc.casters[fg:], sc.caster_base[fg:]
    base_row = float(sc.caster_base[0]) * 128
    L = torch.tensor([[0.3, 0.5, -0.8], [0.3, 0.5, 0.8]])
    L = L / L.norm(dim=1, keepdim=True)
    sh = cast_shadows(sc, L, torch.zeros(2))[:, 0]
    back, front = sh[0] > 0.3, sh[1] > 0.3
    assert int(back.sum()) > 20 and int(front.sum()) > 5
    rows_back = torch.nonzero(back)[:, 0].float()
    rows_front = torch.nonzero(front)[:, 0].float()
    assert float(rows_back.mean()) > base_row  # back-lit: the shadow falls towards the camera
    assert float(rows_front.mean()) < base_row  # front-lit: behind the object
    cols_back = torch.nonzero(back)[:, 1].float().mean()
    xs = torch.nonzero(sc.casters[0] > 0.5)[:, 1].float().mean()
    assert float(cols_back) < float(xs)  # sun from the right (+x): shadow to the left


def test_large_images_are_shaded_in_chunks_with_the_same_result(monkeypatch):
    import harmonykit.data.render.renderer as renderer

    whole = render_scene(seed=8, size=(72, 96))
    monkeypatch.setattr(renderer, "_MAX_CHUNK_VALUES", 3 * 72 * 96 * 3)  # 3 styles per pass
    chunked = render_scene(seed=8, size=(72, 96))
    assert chunked.images.shape == (10, 3, 72, 96)
    assert torch.allclose(whole.images, chunked.images, atol=1e-5)
