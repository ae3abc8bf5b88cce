"""End-to-end evaluation against numbers the official scripts printed.

``tests/fixtures/official_eval/*.json`` hold the per-image MSE / fMSE / PSNR that CharmNet
``test.py`` and Samsung ``scripts/evaluate_model.py`` gave on real triplets with the tiny
parity weights (see the folder's README). The images are found from each json's ``dataset``
under ``HARMONYKIT_REAL_DATA`` and the weights under ``HARMONYKIT_PARITY_DIR``; another data set
of the same layout, with its own json, may be substituted (``HARMONYKIT_OFFICIAL_EVAL`` names
another fixture folder).

``prep_official.safetensors`` pins the input preparation itself (decode, image resize, mask
reading rule, model mask) on synthetic soft-mask triplets run through both official loaders.

Tolerance: 1e-6 relative on MSE and fMSE, and on PSNR's ratio ``peak^2 / MSE`` (i.e. PSNR within
4.3e-6 dB; a relative error on a PSNR near 0 dB would only magnify the float32 noise of the
official MSE). Observed: charmnet exact, idih <= 1.3e-7.

The sensitivity tests change one preparation step at a time and require the official numbers
to notice, so the fixtures keep pinning what they claim to pin.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Dict, List

import numpy as np
import pytest
import torch

import harmonykit
from harmonykit.convert import infer_model_args, load_weights, read_state_dict
from harmonykit.eval import evaluate, find_triplets
from harmonykit.eval import prepare as P
from harmonykit.eval.metrics import get_protocol

ROOT = pathlib.Path(
    os.environ.get("HARMONYKIT_OFFICIAL_EVAL") or pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "official_eval"
)
RTOL = 1e-6
CASES = sorted(ROOT.glob("*.json"))


def _case(path: pathlib.Path) -> dict:
    d = json.loads(path.read_text())
    for k in ("protocol", "dataset", "size", "weights", "images"):
        assert k in d, f"{path}: missing key {k!r}"
    assert d["images"], f"{path}: no images"
    return d


_MODELS: Dict[str, torch.nn.Module] = {}
_READ_CACHE: Dict[tuple, np.ndarray] = {}


def _model(parity_dir: pathlib.Path, file: str) -> torch.nn.Module:
    if file not in _MODELS:
        sd = read_state_dict(parity_dir / file)
        arch, args = infer_model_args(sd)
        m = harmonykit.create_model(arch, **args)
        load_weights(m, sd)
        _MODELS[file] = m.eval()
    return _MODELS[file]


def _triplets(real_data_dir: pathlib.Path, case: dict):
    """The fixture's images: by ``files`` (paths relative to HARMONYKIT_REAL_DATA) when given,
    else by subset and composite name in the iHarmony4-layout folder ``dataset``."""
    from harmonykit.eval import Triplet

    if all("files" in i for i in case["images"]):
        out = []
        for i in case["images"]:
            f = {k: real_data_dir / v for k, v in i["files"].items()}
            missing = [str(v) for v in f.values() if not v.is_file()]
            assert not missing, f"files of the fixture not found under HARMONYKIT_REAL_DATA: {missing}"
            out.append(Triplet(f["composite"], f["mask"], f["real"], i["subset"], i["name"]))
        return out
    root = real_data_dir / case["dataset"]
    assert root.is_dir(), f"data set {case['dataset']!r} of the fixture not found under HARMONYKIT_REAL_DATA: {root}"
    by_name = {(t.subset, t.name): t for t in find_triplets(root, split=None)}
    missing = [(i["subset"], i["name"]) for i in case["images"] if (i["subset"], i["name"]) not in by_name]
    assert not missing, f"images of the fixture not found under {root}: {missing}"
    return [by_name[(i["subset"], i["name"])] for i in case["images"]]


def _rel_errors(dirs, case: dict) -> List[float]:
    parity_dir, real_data_dir = dirs
    res = evaluate(
        _model(parity_dir, case["weights"]["file"]), _triplets(real_data_dir, case), case["protocol"], size=tuple(case["size"]),
        ssim=False, progress=False, domain=case["weights"].get("domain"),
    )
    ours = {(r["subset"], r["name"]): r for r in res.records}
    errs = []
    for img in case["images"]:
        r = ours[(img["subset"], img["name"])]
        for k in ("mse", "fmse"):
            errs.append(abs(r[k] - img[k]) / abs(img[k]))
        # PSNR through the ratio inside its log (peak^2 / MSE): a dark image has a PSNR near 0 dB,
        # where a relative error on the dB value would magnify the official float32 MSE noise
        errs.append(abs(10.0 ** ((r["psnr"] - img["psnr"]) / 10.0) - 1.0))
    return errs


@pytest.fixture(autouse=True)
def _cached_reads(monkeypatch):
    """Decode each file once per session (the HAdobe5k images are 12 MP)."""
    cache = _READ_CACHE
    rgb, m0 = P.cv2_read_rgb, P.cv2_read_mask_channel0

    def read_rgb(path, what="image"):
        key = ("rgb", str(path))
        if key not in cache:
            cache[key] = rgb(path, what)
        return cache[key]

    def read_mask(path):
        key = ("m", str(path))
        if key not in cache:
            cache[key] = m0(path)
        return cache[key]

    monkeypatch.setattr(P, "cv2_read_rgb", read_rgb)
    monkeypatch.setattr(P, "cv2_read_mask_channel0", read_mask)


def test_fixtures_present():
    assert CASES, f"no official evaluation fixtures (*.json) in {ROOT}"
    assert {_case(c)["protocol"] for c in CASES} >= {"charmnet", "idih"}


@pytest.mark.parametrize("path", CASES, ids=[c.stem for c in CASES])
def test_matches_official_per_image(path, parity_dir, real_data_dir):
    case = _case(path)
    errs = _rel_errors((parity_dir, real_data_dir), case)
    assert max(errs) <= RTOL, f"{path.name}: max relative difference {max(errs):.3g} > {RTOL}"


# --- every preparation step is pinned ------------------------------------------------------
def _antialiased(img, size):
    t = torch.from_numpy(np.ascontiguousarray(img)).float()
    t = t.permute(2, 0, 1)[None] if t.ndim == 3 else t[None, None]
    y = torch.nn.functional.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    y = y[0].permute(1, 2, 0) if img.ndim == 3 else y[0, 0]
    return (y.round().clamp(0, 255).to(torch.uint8) if img.dtype == np.uint8 else y).numpy()


def _torch_bilinear(img, size):
    if img.dtype == np.uint8 and img.ndim == 3:
        return P.torch_resize_u8(img, size)
    t = torch.from_numpy(np.ascontiguousarray(img)).float()[None, None]
    y = torch.nn.functional.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)[0, 0]
    return (y.round().to(torch.uint8) if img.dtype == np.uint8 else y).numpy()


def _nearest(img, size):
    import cv2

    return cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def _images_only(fn):
    """Apply ``fn`` to RGB images, keep the official resize for masks."""
    official = P.cv2_resize_linear

    def resize(img, size):
        return fn(img, size) if img.ndim == 3 else official(img, size)

    return resize


def _masks_only(fn):
    official = P.cv2_resize_linear

    def resize(img, size):
        return fn(img, size) if img.ndim == 2 else official(img, size)

    return resize


def _other_mask_rule(rule):
    """Read masks by another rule (only on the fixtures whose masks are soft can this show)."""
    official = P.cv2_read_mask_channel0

    def read(path):
        m = official(path)
        if rule == "threshold":
            return np.where(m >= 128, 255, 0).astype(np.uint8)
        return m

    return read


MUTATIONS = {
    # CharmNet fed the soft mask (Samsung's rule) instead of the truncated one
    "charmnet_mask_soft": lambda mp: mp.setattr(P, "truncate_mask", lambda m: m.astype(np.float32) / np.float32(255.0)),
    # CharmNet truncation replaced by a threshold at 0.5
    "charmnet_mask_threshold": lambda mp: mp.setattr(P, "truncate_mask", lambda m: (m >= 128).astype(np.uint8)),
    # Samsung's soft mask binarised at 0.5 when read
    "idih_mask_threshold": lambda mp: mp.setattr(P, "cv2_read_mask_channel0", _other_mask_rule("threshold")),
    "image_torch_bilinear": lambda mp: mp.setattr(P, "cv2_resize_linear", _images_only(_torch_bilinear)),
    "image_antialias": lambda mp: mp.setattr(P, "cv2_resize_linear", _images_only(_antialiased)),
    "model_mask_nearest": lambda mp: mp.setattr(P, "cv2_resize_linear", _masks_only(_nearest)),
    "model_mask_antialias": lambda mp: mp.setattr(P, "cv2_resize_linear", _masks_only(_antialiased)),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_changed_preparation_is_detected(mutation, monkeypatch, parity_dir, real_data_dir):
    """Each altered step moves some official per-image number of each protocol it touches by
    more than the tolerance (mask rules: only fixtures with soft masks can show them)."""
    MUTATIONS[mutation](monkeypatch)
    head = mutation.split("_")[0]
    protocols = [head] if head in ("charmnet", "idih") else ["charmnet", "idih"]
    # small images first: stop at the first fixture of a protocol that notices
    cases = sorted(map(_case, CASES), key=lambda c: (c["dataset"] != "rendered", c["dataset"]))
    for proto in protocols:
        worst = 0.0
        for case in (c for c in cases if c["protocol"] == proto):
            worst = max(worst, max(_rel_errors((parity_dir, real_data_dir), case)))
            if worst > RTOL:
                break
        assert worst > RTOL, f"{proto}: changing '{mutation}' went unnoticed (max rel diff {worst:.3g})"


# --- the preparation itself, against the official loaders ---------------------------------
def _prep_cases():
    from safetensors.numpy import load_file

    f = ROOT / "prep_official.safetensors"
    assert f.is_file(), f"missing fixture {f}"
    d = load_file(str(f))
    ids = sorted({k.split("/")[0] for k in d})
    assert ids, f"{f}: no cases"
    return d, ids


@pytest.mark.parametrize("protocol", ["charmnet", "idih"])
def test_preparation_matches_official_loaders(protocol, tmp_path):
    import cv2

    d, ids = _prep_cases()
    proto = get_protocol(protocol)
    for cid in ids:
        comp, real, mask = d[f"{cid}/composite"], d[f"{cid}/real"], d[f"{cid}/mask"]
        paths = [tmp_path / f"{cid}_c.png", tmp_path / f"{cid}_m.png", tmp_path / f"{cid}_r.png"]
        cv2.imwrite(str(paths[0]), cv2.cvtColor(comp, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(paths[1]), mask)
        cv2.imwrite(str(paths[2]), cv2.cvtColor(real, cv2.COLOR_RGB2BGR))
        want_mask = d[f"{cid}/{protocol}/model_mask"]
        size = tuple(want_mask.shape[:2])
        got = proto.prepare_inputs(*paths, size)
        np.testing.assert_array_equal(got.composite, d[f"{cid}/{protocol}/composite"], err_msg=f"{cid} composite")
        np.testing.assert_array_equal(got.real, d[f"{cid}/{protocol}/real"], err_msg=f"{cid} real")
        assert got.model_mask.dtype == np.float32
        np.testing.assert_array_equal(got.model_mask, want_mask.astype(np.float32), err_msg=f"{cid} model mask")
        if protocol == "charmnet":  # the truncation rule: only 255 survives, the mask stays {0, 1}
            assert set(np.unique(got.model_mask).tolist()) <= {0.0, 1.0}
        else:
            np.testing.assert_array_equal(got.metric_mask, want_mask, err_msg=f"{cid} metric mask")


@pytest.mark.parametrize("rule", ["threshold", "soft", "truncate"])
def test_changed_mask_rule_is_detected(rule, monkeypatch, tmp_path):
    """A different mask reading rule changes the official model masks of the soft-mask cases."""
    import cv2

    d, ids = _prep_cases()
    rules = {
        "truncate": P.truncate_mask,
        "threshold": lambda m: (m >= 128).astype(np.uint8),
        "soft": lambda m: m.astype(np.float32) / np.float32(255.0),
    }
    for protocol, official in (("charmnet", "truncate"), ("idih", "soft")):
        if rule == official:
            continue
        proto = get_protocol(protocol)
        differs = False
        for cid in ids:
            m8 = d[f"{cid}/mask"]
            want = d[f"{cid}/{protocol}/model_mask"].astype(np.float32)
            got = P.cv2_resize_linear(rules[rule](m8), want.shape).astype(np.float32)
            differs |= not np.array_equal(got, want)
        assert differs, f"{protocol}: the '{rule}' mask rule is not told apart from the official one"
        assert proto.preparation().mask_rule.startswith(official)
