"""Metric protocols: parity with both official codes (numbers read from the fixtures) and the
harmonykit protocol's own rules."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from harmonykit.eval import compute_metrics, get_protocol, list_protocols, mean_metrics, ssim_map
from harmonykit.eval.metrics import CharmNetProtocol
from harmonykit.registry import METRICS

REL = 1e-6


@pytest.fixture(scope="module")
def fx(parity_dir):
    from safetensors.numpy import load_file

    io = load_file(str(parity_dir / "metrics.io.safetensors"))
    ref = json.loads((parity_dir / "metrics.json").read_text())
    return io, ref


def _close(a, b, rel=REL):
    if a is None or b is None or (isinstance(b, float) and math.isnan(b)):  # undefined in both
        return (a is None or math.isnan(a)) and (b is None or math.isnan(b))
    return math.isclose(a, b, rel_tol=rel, abs_tol=0.0)


def test_protocols_registered():
    assert {"charmnet", "idih", "harmonykit"} <= set(list_protocols())
    assert {"charmnet", "idih", "harmonykit"} <= set(METRICS.list())


def test_charmnet_intermediates_exact(fx):
    io, _ = fx
    proto = get_protocol("charmnet")
    pred01 = proto.denormalize(io["pred_norm"])
    out_u8, gt_u8, w = proto.prepare(pred01, io["target_u8"], io["mask_u8"])
    np.testing.assert_array_equal(out_u8.astype(np.uint8), io["charmnet/pred_u8"])
    np.testing.assert_array_equal(gt_u8.astype(np.uint8), io["charmnet/real_u8"])
    np.testing.assert_array_equal(w.astype(np.uint8), io["charmnet/mask_bin"])


def test_idih_prediction_matches_predictor(fx):
    io, _ = fx
    proto = get_protocol("idih")
    out, _, w = proto.prepare(proto.denormalize(io["pred_norm"]), io["target_u8"], io["mask_u8"])
    np.testing.assert_allclose(out, io["samsung/pred_f32"], rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(w, io["samsung/mask_f32"], rtol=0, atol=0)


@pytest.mark.parametrize(
    "protocol,key,mean_key,peak_key,area_key",
    [
        ("charmnet", "charmnet_test_py", "mean", "psnr_peak_data_range", "fore_area"),
        ("idih", "samsung_evaluate_model", "mean_from_MetricsHub", "psnr_peak_target_max", "mask_sum"),
    ],
)
def test_official_protocol_parity(fx, protocol, key, mean_key, peak_key, area_key):
    io, ref = fx
    proto = get_protocol(protocol)
    recs = compute_metrics(proto.denormalize(io["pred_norm"]), io["target_u8"], io["mask_u8"], protocol=protocol)
    per = ref[key]["per_image"]
    assert len(recs) == len(per) == io["pred_norm"].shape[0]
    for i, (r, e) in enumerate(zip(recs, per)):
        for m in ("mse", "fmse", "psnr"):
            assert _close(r[m], e[m]), f"{protocol} image {i} {m}: {r[m]!r} vs official {e[m]!r}"
        assert _close(r["psnr_peak"], e[peak_key])
        assert _close(r["fg_area"], e[area_key])
    mean = proto.mean(recs)
    for m in ("mse", "fmse", "psnr"):
        assert _close(mean[m], ref[key][mean_key][m]), f"{protocol} mean {m}: {mean[m]!r} vs {ref[key][mean_key][m]!r}"
    assert mean["n"] == len(per)


def test_protocols_differ_where_documented(fx):
    """Same inputs, three protocols: PSNR peaks follow each protocol's rule, and soft masks are
    weighted (idih) or binarised (charmnet, harmonykit)."""
    io, ref = fx
    pred = CharmNetProtocol().denormalize(io["pred_norm"])
    r = {p: compute_metrics(pred, io["target_u8"], io["mask_u8"], protocol=p, ssim=False) for p in ("charmnet", "idih", "harmonykit")}
    for i in range(len(r["idih"])):
        assert r["harmonykit"][i]["psnr_peak"] == 255.0
        assert r["idih"][i]["psnr_peak"] == float(io["target_u8"][i].max())
        assert r["charmnet"][i]["psnr_peak"] == float(np.ptp(io["charmnet/pred_u8"][i].astype(np.float64)))
        soft = bool(((io["mask_u8"][i] > 0) & (io["mask_u8"][i] < 255)).any())
        assert math.isclose(r["idih"][i]["fg_area"], float(io["mask_u8"][i].astype(np.float64).sum() / 255.0), rel_tol=1e-6)
        assert r["harmonykit"][i]["fg_area"] == float((io["mask_u8"][i] > 127).sum())
        if not soft:
            assert r["harmonykit"][i]["fg_area"] == r["charmnet"][i]["fg_area"]
        assert r["charmnet"][i]["fg_area"] == float(r["charmnet"][i]["fg_area"] // 1)  # binary: an integer count


def test_harmonykit_protocol_formulas():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (2, 3, 32, 32)).astype(np.float32) / 255.0
    pred = np.clip(gt + rng.normal(0, 0.05, gt.shape).astype(np.float32), -0.2, 1.2)
    mask = np.zeros((2, 1, 32, 32), np.float32)
    mask[0, :, 8:20, 4:30] = 0.8  # soft values > 0.5 count as foreground
    mask[0, :, 0:2, 0:2] = 0.4  # < 0.5: background
    recs = compute_metrics(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(mask), "harmonykit")
    out = np.clip(pred * 255.0, 0, 255).astype(np.float64)
    tgt = np.rint(gt.astype(np.float64) * 255.0)
    d2 = (out - tgt) ** 2
    mse0 = d2[0].mean()
    fg = mask[0, 0] > 0.5
    fmse0 = d2[0][:, fg].sum() / (3 * fg.sum())
    assert _close(recs[0]["mse"], mse0, 1e-5)
    assert _close(recs[0]["fmse"], fmse0, 1e-5)
    assert _close(recs[0]["psnr"], 10 * math.log10(255.0**2 / mse0), 1e-6)
    assert _close(recs[0]["fpsnr"], 10 * math.log10(255.0**2 / fmse0), 1e-6)
    # image 1 has an empty mask: foreground metrics undefined and left out of the mean
    assert math.isnan(recs[1]["fmse"]) and math.isnan(recs[1]["fpsnr"]) and math.isnan(recs[1]["fssim"])
    mean = get_protocol("harmonykit").mean(recs)
    assert mean["n"] == 2 and mean["n_fmse"] == 1
    assert _close(mean["fmse"], recs[0]["fmse"])
    assert _close(mean["mse"], (recs[0]["mse"] + recs[1]["mse"]) / 2)


def test_ssim_properties():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (40, 48, 3)).astype(np.float64)
    assert np.allclose(ssim_map(a, a), 1.0, atol=1e-6)
    noisy = np.clip(a + rng.normal(0, 20, a.shape), 0, 255)
    s = ssim_map(noisy, a)
    assert s.shape == (40, 48) and 0 < s.mean() < 0.99
    ones = np.ones((1, 1, 40, 48), np.float32)
    rec = compute_metrics(noisy[None] / 255.0, a[None] / 255.0, ones, "idih")[0]
    assert _close(rec["fssim"], rec["ssim"], 1e-6)


def test_bad_inputs_have_clear_errors():
    x = np.zeros((1, 3, 16, 16), np.float32)
    with pytest.raises(ValueError, match="unknown metric protocol 'psnr255'.*charmnet"):
        compute_metrics(x, x, np.ones((1, 1, 16, 16)), protocol="psnr255")
    with pytest.raises(ValueError, match="mask size mismatch"):
        compute_metrics(x, x, np.ones((1, 1, 8, 16)))
    with pytest.raises(ValueError, match="same shape"):
        compute_metrics(x, np.zeros((1, 3, 16, 8), np.float32), np.ones((1, 1, 16, 16)))


def test_charmnet_resizes_a_full_size_mask_nearest():
    """CharmNet's test.py binarises the original-size mask and resizes it (NEAREST) itself."""
    x = np.zeros((1, 3, 16, 16), np.float32)
    big = np.zeros((1, 1, 64, 64), np.uint8)
    big[..., 16:48, 16:48] = 255
    rec = compute_metrics(x, x + 0.1, big, protocol="charmnet", ssim=False)[0]
    assert rec["fg_area"] == 64.0  # the 8x8 centre of the 16x16 image


def test_mean_metrics_skip_nan():
    recs = [{"mse": 1.0, "fmse": math.nan}, {"mse": 3.0, "fmse": 4.0}]
    assert mean_metrics(recs)["mse"] == 2.0
    assert math.isnan(mean_metrics(recs)["fmse"])
    m = mean_metrics(recs, skip_nan=True)
    assert m["fmse"] == 4.0 and m["n_fmse"] == 1 and m["n"] == 2
