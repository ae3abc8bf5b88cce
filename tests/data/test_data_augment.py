"""kornia augmentation: composite, real and mask stay aligned; re-draws; determinism; colour."""
from __future__ import annotations

import pytest
import torch

from harmonykit.data import (
    AlignedRandomResizedCrop,
    RandomResizedCropSample,
    collate_samples,
    sample_crop,
)
from harmonykit.registry import AUGMENTATIONS


def _ramps(h: int, w: int) -> torch.Tensor:
    """(3, h, w): R = x / (w - 1), G = y / (h - 1), B = a checkerboard."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return torch.stack([xs / (w - 1), ys / (h - 1), ((xs // 8 + ys // 8) % 2)])


def test_crop_params_are_valid_and_seeded():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(200):
        p = sample_crop(300, 500, generator=g1)
        assert p == sample_crop(300, 500, generator=g2)
        top, left, h, w, flip = p
        assert 0 <= top and top + h <= 300 and 0 <= left and left + w <= 500
        assert 0.5 * 300 * 500 * 0.97 <= h * w <= 300 * 500
        assert 3 / 4 - 0.02 <= w / h <= 4 / 3 + 0.02


@pytest.mark.parametrize("antialias", [True, False])
def test_warped_pattern_is_aligned(antialias):
    H, W = 300, 420
    pat = _ramps(H, W)
    batch = {
        "composite": pat[None].clone(),
        "real": pat[None].clone(),
        "mask": pat[None, :1].clone(),  # the x ramp as a soft mask
        "name": ["p"],
    }
    aug = AlignedRandomResizedCrop(256, keep_background_prob=-1, antialias=antialias, seed=0)
    flips = set()
    for _ in range(8):
        out = aug(batch)
        c, r, m = out["composite"][0], out["real"][0], out["mask"][0]
        assert c.shape == (3, 256, 256) and m.shape == (1, 256, 256) and out["name"] == ["p"]
        assert torch.equal(c, r)
        # the mask took the image path (same box, same kernel); a 1-channel and a 3-channel
        # interpolate may vectorise differently with one thread: float rounding only
        torch.testing.assert_close(m[0], c[0], rtol=0, atol=1e-6)
        top, left, h, w, flip = aug.last_params[0]
        flips.add(flip)
        j = torch.arange(256, dtype=torch.float32)
        x_src = left + (j + 0.5) * w / 256 - 0.5
        y_src = top + (j + 0.5) * h / 256 - 0.5
        exp_r = x_src / (W - 1)
        if flip:
            exp_r = exp_r.flip(0)
        exp_g = y_src / (H - 1)
        inner = slice(8, 248)
        assert torch.allclose(c[0, 128, inner], exp_r[inner], atol=1.5 / W)
        assert torch.allclose(c[1, inner, 100], exp_g[inner], atol=1.5 / H)
    assert flips == {True, False}


def test_composite_real_difference_stays_inside_mask():
    g = torch.Generator().manual_seed(1)
    real = torch.rand(2, 3, 200, 260, generator=g)
    mask = torch.zeros(2, 1, 200, 260)
    mask[:, :, 60:150, 90:200] = 1
    comp = torch.where(mask > 0.5, (real * 0.5 + 0.3), real)
    out = AlignedRandomResizedCrop(128, seed=3)({"composite": comp, "real": real, "mask": mask})
    changed = (out["composite"] - out["real"]).abs().sum(1) > 1e-6
    assert changed.any()
    assert not (changed & (out["mask"][:, 0] <= 0)).any()


def test_background_crops_are_redrawn():
    mask = torch.zeros(1, 1, 400, 400)
    mask[..., 380:, 380:] = 1  # a small foreground in a corner
    img = torch.rand(1, 3, 400, 400)
    batch = {"composite": img, "real": img, "mask": mask}
    redraw = AlignedRandomResizedCrop(64, keep_background_prob=0.0, max_redraws=100, seed=0)
    keep = AlignedRandomResizedCrop(64, keep_background_prob=-1, seed=0)
    assert all(float(redraw(batch)["mask"].sum()) > 1 for _ in range(15))
    assert any(float(keep(batch)["mask"].sum()) <= 1 for _ in range(15))


def test_empty_mask_never_loops_or_divides():
    img = torch.rand(1, 3, 100, 120)
    aug = AlignedRandomResizedCrop(64, keep_background_prob=0.0, max_redraws=5, mask_threshold=0.5, seed=0)
    out = aug({"composite": img, "real": img, "mask": torch.zeros(1, 1, 100, 120)})
    assert torch.isfinite(out["composite"]).all() and float(out["mask"].sum()) == 0


def test_variable_size_lists_seed_and_replay():
    samples = [
        {"composite": torch.rand(3, h, w), "real": torch.rand(3, h, w), "mask": (torch.rand(1, h, w) > 0.5).float(), "name": str(h)}
        for h, w in [(300, 200), (256, 256), (500, 375)]
    ]
    batch = collate_samples(samples)
    assert isinstance(batch["composite"], list) and batch["name"] == ["300", "256", "500"]
    a = AlignedRandomResizedCrop(256, mask_interpolation="nearest", seed=7)
    out = a(batch)
    assert out["composite"].shape == (3, 3, 256, 256) and out["mask"].shape == (3, 1, 256, 256)
    assert set(out["mask"].unique().tolist()) <= {0.0, 1.0}
    again = AlignedRandomResizedCrop(256, mask_interpolation="nearest", seed=7)(batch)
    assert torch.equal(out["composite"], again["composite"])
    other = AlignedRandomResizedCrop(256, mask_interpolation="nearest", seed=8)(batch)
    assert not torch.equal(out["composite"], other["composite"])
    replay = AlignedRandomResizedCrop(256, mask_interpolation="nearest", seed=99)(batch, params=a.last_params)
    assert torch.equal(replay["real"], out["real"])


def test_input_checks():
    aug = AlignedRandomResizedCrop(32, seed=0)
    with pytest.raises(TypeError, match="uint8"):
        aug({"composite": torch.zeros(1, 3, 40, 40, dtype=torch.uint8), "real": torch.zeros(1, 3, 40, 40), "mask": torch.zeros(1, 1, 40, 40)})
    with pytest.raises(ValueError, match="differ in size"):
        aug({"composite": torch.zeros(1, 3, 40, 40), "real": torch.zeros(1, 3, 40, 41), "mask": torch.zeros(1, 1, 40, 40)})


def test_paired_color_jitter_keeps_pairs_in_sync():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(4, 3, 32, 32, generator=g) * 0.8 + 0.1
    mask = torch.zeros(4, 1, 32, 32)
    mask[..., 8:20, 8:20] = 1
    comp = torch.where(mask > 0.5, real.flip(-1), real)
    jit = AUGMENTATIONS.create("paired_color_jitter", brightness=0.2, contrast=0.3, saturation=0.3, hue=0.1, gamma=(0.8, 1.2), seed=1)
    out = jit({"composite": comp, "real": real, "mask": mask})
    bg = (mask[:, 0] < 0.5)
    assert torch.equal(out["composite"].permute(0, 2, 3, 1)[bg], out["real"].permute(0, 2, 3, 1)[bg])
    assert not torch.allclose(out["real"], real, atol=1e-3)
    assert torch.equal(out["mask"], mask)
    # the same factors for both images: jittering real alone as a composite gives the same output
    again = AUGMENTATIONS.create("paired_color_jitter", brightness=0.2, contrast=0.3, saturation=0.3, hue=0.1, gamma=(0.8, 1.2), seed=1)(
        {"composite": real, "real": real, "mask": mask}
    )
    assert torch.equal(again["composite"], out["real"])


def test_registered_train_pipeline_and_worker_transform():
    pipe = AUGMENTATIONS.create("harmonization_train", size=64, color_jitter={"brightness": 0.1}, seed=0)
    img = torch.rand(2, 3, 90, 100)
    out = pipe({"composite": img, "real": img, "mask": torch.ones(2, 1, 90, 100)})
    assert out["composite"].shape == (2, 3, 64, 64) and torch.equal(out["composite"], out["real"])
    t = RandomResizedCropSample(generator=torch.Generator().manual_seed(0), size=48)
    s = t({"composite": img[0], "real": img[0], "mask": torch.ones(1, 90, 100), "name": "x"})
    assert s["composite"].shape == (3, 48, 48) and s["mask"].shape == (1, 48, 48) and s["name"] == "x"


def test_whole_image_resizes_without_cropping():
    """whole_image=True (DoveNet / Guo et al. loaders): every sample is the whole image resized,
    flipped with flip_p; the mask takes the nearest-neighbour path and stays binary."""
    from harmonykit.data.augment import harmonization_train, resized_crop

    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 300, 420, generator=g)
    mask = (torch.rand(2, 1, 300, 420, generator=g) > 0.6).float()
    batch = {"composite": img.clone(), "real": img.clone(), "mask": mask}
    for flip_p in (0.0, 1.0):
        aug = AlignedRandomResizedCrop(256, whole_image=True, flip_p=flip_p, mask_interpolation="nearest", seed=0)
        out = aug(dict(batch))
        assert aug.last_params == [(0, 0, 300, 420, bool(flip_p))] * 2
        for i in range(2):
            p = aug.last_params[i]
            torch.testing.assert_close(out["composite"][i], resized_crop(img[i], p, (256, 256), "bilinear", True))
            torch.testing.assert_close(out["mask"][i], resized_crop(mask[i], p, (256, 256), "nearest", True))
        assert set(out["mask"].unique().tolist()) <= {0.0, 1.0}
    # the recipe-level factory passes it through
    steps = harmonization_train(whole_image=True, flip_p=0.0, mask_interpolation="nearest")
    crop = next(m for m in steps.modules() if isinstance(m, AlignedRandomResizedCrop))
    assert crop.whole_image and crop.mask_interpolation == "nearest"
