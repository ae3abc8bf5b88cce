"""harmonize(): input kinds, both policies, every real pair at its own size, background kept
exactly under the full-resolution policy, bounded memory."""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from harmonykit.eval import compute_metrics, find_pairs, mean_metrics
from harmonykit.data.io import load_image_u8, load_mask_u8
from harmonykit.inference import _downsample, apply_color_grid, fit_color_grid, harmonize


def _pil(a):
    from PIL import Image

    return Image.fromarray(a)


def _pair(h=300, w=420, seed=0):
    rng = np.random.default_rng(seed)
    comp = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4 : 3 * h // 4, w // 5 : 3 * w // 5] = 255
    return comp, mask


class _Affine:
    """A stand-in 'network' whose low-resolution prediction is a known colour change of its input
    (so the full-resolution result can be checked against the same change at full resolution)."""

    def __init__(self, gain, bias):
        self.gain = torch.tensor(gain).view(1, 3, 1, 1)
        self.bias = torch.tensor(bias).view(1, 3, 1, 1)

    def __call__(self, composite, mask):
        return composite * self.gain + self.bias


def test_input_kinds_round_trip(tiny, tmp_path):
    comp, mask = _pair()
    ref = harmonize(comp, mask, tiny, "full")
    assert isinstance(ref, np.ndarray) and ref.dtype == np.uint8 and ref.shape == comp.shape
    pil = harmonize(Image.fromarray(comp), Image.fromarray(mask), tiny, "full")
    assert isinstance(pil, Image.Image) and pil.size == (comp.shape[1], comp.shape[0])
    np.testing.assert_array_equal(np.asarray(pil), ref)
    Image.fromarray(comp).save(tmp_path / "c.png")
    Image.fromarray(mask // 255).save(tmp_path / "m.png")  # a 0/1 mask file
    from_paths = harmonize(tmp_path / "c.png", str(tmp_path / "m.png"), tiny, "full")
    assert isinstance(from_paths, Image.Image)
    np.testing.assert_array_equal(np.asarray(from_paths), ref)
    # float inputs take a float path (the random tiny network amplifies the 1/255 differences of
    # the uint8 and float down-sampling, so compare the two paths with a smooth colour change)
    net = _Affine((0.7, 0.9, 1.1), (0.1, 0.0, -0.05))
    ref_u8 = harmonize(comp, mask, net, "full")
    t = torch.from_numpy(comp).permute(2, 0, 1).float() / 255.0
    m = torch.from_numpy(mask).float()[None] / 255.0
    out3 = harmonize(t, m, net, "full")
    assert out3.shape == t.shape and out3.dtype == torch.float32
    assert np.abs(out3.permute(1, 2, 0).numpy() * 255.0 - ref_u8).max() <= 1.0
    assert harmonize(t, m, tiny, "full").shape == t.shape
    out4 = harmonize(torch.stack([t, t]), torch.stack([m, m]), tiny, "resize")
    assert out4.shape == (2, 3, 300, 420)
    torch.testing.assert_close(out4[0], out4[1])
    f = harmonize(comp.astype(np.float32) / 255.0, mask > 0, tiny, "resize")
    assert f.dtype == np.float32 and f.shape == comp.shape and 0.0 <= f.min() and f.max() <= 1.0


def test_full_policy_applies_the_low_res_change_at_full_res():
    comp, mask = _pair(600, 900)
    gain, bias = (0.7, 0.9, 1.1), (0.1, 0.0, -0.05)
    out = harmonize(comp, mask, _Affine(gain, bias), "full")
    fg = mask > 0
    expect = np.clip(comp.astype(np.float64) / 255.0 * np.array(gain) + np.array(bias), 0, 1) * 255.0
    err = np.abs(out.astype(np.float64) - expect)[fg]
    assert np.percentile(err, 99) <= 2.0, f"99th percentile error {np.percentile(err, 99)}"
    np.testing.assert_array_equal(out[~fg], comp[~fg])
    # the resize policy loses the full-resolution detail of this noise image
    res = harmonize(comp, mask, _Affine(gain, bias), "resize")
    assert np.abs(res.astype(np.float64) - expect)[fg].mean() > 5 * err.mean()


def test_identity_prediction_is_a_no_op():
    comp, mask = _pair(257, 511, seed=3)
    out = harmonize(comp, mask, lambda c, m: c, "full")
    np.testing.assert_array_equal(out, comp)


def test_soft_mask_blends_and_empty_mask_keeps_everything():
    comp, _ = _pair(200, 200)
    soft = np.zeros((200, 200), np.float32)
    soft[50:150, 50:150] = 0.5
    out = harmonize(comp, soft, _Affine((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), "full")  # predicts white
    inside = out[60:140, 60:140].astype(np.float64)
    np.testing.assert_allclose(inside, (comp[60:140, 60:140] + 255.0) / 2, atol=1.01)
    np.testing.assert_array_equal(out[soft == 0], comp[soft == 0])
    empty = harmonize(comp, np.zeros((200, 200), np.uint8), _Affine((0.5,) * 3, (0.0,) * 3), "full")
    np.testing.assert_array_equal(empty, comp)


def test_fit_color_grid_recovers_local_maps():
    torch.manual_seed(0)
    x = torch.rand(3, 64, 64)
    y = x.clone()
    y[:, :, :32] = x[:, :, :32] * 0.5 + 0.2  # left half one map, right half identity
    A = fit_color_grid(x, y, torch.ones(64, 64), grid=(2, 8), reg=1e-4)
    assert A.shape == (2, 8, 4, 3)
    torch.testing.assert_close(A[:, 0, :3, :3], 0.5 * torch.eye(3).expand(2, 3, 3), atol=0.02, rtol=0)
    torch.testing.assert_close(A[:, -1, :3, :3], torch.eye(3).expand(2, 3, 3), atol=0.02, rtol=0)
    out = apply_color_grid(x.permute(1, 2, 0).contiguous(), torch.ones(64, 64), A)
    assert out.shape == (64, 64, 3)


def test_bad_inputs(tiny, tmp_path):
    comp, mask = _pair()
    with pytest.raises(ValueError, match="mask size mismatch.*420x300.*419x300"):
        harmonize(comp, mask[:, :419], tiny)
    with pytest.raises(ValueError, match="unknown policy 'tiles'"):
        harmonize(comp, mask, tiny, policy="tiles")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        harmonize(tmp_path / "nope.png", mask, tiny)
    with pytest.raises(ValueError, match="multiples of 128|256"):
        harmonize(comp, mask, tiny, size=(200, 200))
    with pytest.raises(Exception, match="unknown model 'idih_typo'"):
        harmonize(comp, mask, "idih_typo")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_every_real_pair_at_its_size_background_exact_bounded_memory(tiny, real_data_dir):
    """Every composite/mask pair of the shared data (iharmony4_mini, triplets, composites,
    rendered): output at the input size, background bit-exact under the full policy, and the
    memory growth during the 4256x2832 images bounded."""
    pairs = find_pairs(real_data_dir)
    groups = {t.name.split("/")[0] for t in pairs}
    assert {"iharmony4_mini", "triplets", "composites"} <= groups
    assert len(pairs) >= 190
    peak = {"v": 0.0}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak["v"] = max(peak["v"], _rss_mb())
            time.sleep(0.003)

    growth = []
    for t in pairs:
        comp, mask = _pil(load_image_u8(t.composite)), _pil(load_mask_u8(t.mask))
        big = comp.size[0] * comp.size[1] > 10_000_000
        if big:
            base = _rss_mb()
            peak["v"] = base
            th = threading.Thread(target=watch)
            th.start()
        out = harmonize(comp, mask, tiny, "full")
        if big:
            stop.set()
            th.join()
            stop.clear()
            growth.append(peak["v"] - base)
        assert out.size == comp.size, t.name
        c, o, m = np.asarray(comp), np.asarray(out), np.asarray(mask)
        if m.max() <= 1:
            m = m * 255
        assert not ((o != c).any(-1) & (m == 0)).any(), f"{t.name}: background changed"
    assert len(growth) >= 3  # the two HAdobe5k composites and the DCCF one
    # the image itself is 36 MB as uint8; a float32 copy of it alone would be 145 MB
    assert max(growth) < 400, f"memory grew by {max(growth):.0f} MB on a 12 MP image"


def test_resize_policy_sizes_on_real_pairs(tiny, real_data_dir):
    pairs = [t for t in find_pairs(real_data_dir) if not t.name.startswith("composites/le_")]
    for t in pairs[:: max(1, len(pairs) // 12)]:
        comp, mask = _pil(load_image_u8(t.composite)), _pil(load_mask_u8(t.mask))
        out = harmonize(comp, mask, tiny, "resize")
        assert out.size == comp.size and out.mode == "RGB", t.name


def test_full_policy_beats_resize_with_an_oracle_on_real_triplets(real_data_dir):
    """With the ground truth as the low-resolution prediction (a perfect 256 x 256 network), the
    full-resolution policy is closer to the ground truth than resize -> predict -> resize back."""
    trips = [t for t in find_pairs(real_data_dir) if t.real is not None and not t.name.startswith("rendered/")]
    assert len(trips) >= 7
    res = {"resize": [], "full": []}
    for t in trips:
        comp, mask, real = _pil(load_image_u8(t.composite)), _pil(load_mask_u8(t.mask)), _pil(load_image_u8(t.real))
        gt_lr = _downsample(torch.from_numpy(np.array(real)), (256, 256))
        for policy in res:
            out = harmonize(comp, mask, lambda c, m, g=gt_lr: g, policy, size=(256, 256))
            res[policy] += compute_metrics(np.asarray(out)[None], np.asarray(real)[None], np.asarray(mask)[None], "harmonykit", ssim=False)
    full, resize = mean_metrics(res["full"], True), mean_metrics(res["resize"], True)
    assert full["fmse"] < resize["fmse"] and full["mse"] < resize["mse"], (full, resize)


def test_paths_follow_the_data_decoding_rules(tmp_path):
    """Inference reads files like the datasets do: EXIF orientation applied, 16-bit masks scaled."""
    from PIL import Image

    im = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert load_image_u8(tmp_path / "rot.jpg").shape == (40, 20, 3)
    m16 = Image.fromarray((np.arange(20 * 40).reshape(20, 40) % 2 * 65535).astype(np.uint16))
    m16.save(tmp_path / "m16.png")
    m = load_mask_u8(tmp_path / "m16.png")
    assert m.dtype == np.uint8 and set(np.unique(m)) == {0, 255}
    with pytest.raises(FileNotFoundError, match="absent.png"):
        load_mask_u8(tmp_path / "absent.png")
    # harmonize() reads paths by the same rules (rotated size comes back)
    Image.fromarray(np.full((40, 20), 255, np.uint8)).save(tmp_path / "m.png")
    out = harmonize(tmp_path / "rot.jpg", tmp_path / "m.png", lambda c, m: c, "resize", size=(32, 32))
    assert out.size == (20, 40)
