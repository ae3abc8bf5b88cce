"""intrinsic_harmony's training losses against the official v1.0 ``backward_G`` numbers.

Inputs (the official network outputs and a target) and the official loss values and gradients
are read from the fixture cases (see tests/fixtures/zoo/intrinsic_harmony/README.md).
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from harmonykit.models.outputs import HarmonizationOutput
from harmonykit.registry import LOSSES
from zoo_fixtures import TOL, ZOO_ROOT

ROOT = ZOO_ROOT
DIR = ROOT / "intrinsic_harmony"
OUTPUTS = ("harmonized", "reflectance", "illumination", "ifm_mean")


@pytest.fixture(scope="module")
def meta():
    path = DIR / "meta.json"
    assert path.is_file(), f"intrinsic_harmony fixtures missing: {path} (set HARMONYKIT_ZOO_FIXTURES)"
    return json.loads(path.read_text())


def _cases(meta):
    assert meta["cases"], "the fixture lists no cases"
    for case in meta["cases"]:
        t = load_file(str(DIR / case["file"]))
        assert any(k.startswith("loss.") for k in t), f"{case['file']} holds no loss values"
        yield case, t


def _output(t):
    outs = {k: t[f"eval.{k}"].clone().requires_grad_(True) for k in OUTPUTS}
    out = HarmonizationOutput(image=outs["harmonized"], image_normalized=outs["harmonized"],
                              extras={k: outs[k] for k in OUTPUTS[1:]})
    return out, outs


def test_total_and_every_term_equal_official(meta):
    lam = meta["loss_lambdas"]
    loss = LOSSES.create("intrinsic_harmony", **lam)
    for case, t in _cases(meta):
        out, outs = _output(t)
        terms = loss.terms(out, t["real"])
        for name in ("G_L1", "G_R_grident", "G_I_L2", "G_I_smooth", "IF", "G"):
            torch.testing.assert_close(terms[name].detach(), t[f"loss.{name}"], **TOL, msg=lambda m: f"{case['name']} {name}: {m}")
        loss(out, t["real"]).backward()
        for k in OUTPUTS:
            torch.testing.assert_close(outs[k].grad, t[f"loss_grad.{k}"], **TOL, msg=lambda m: f"{case['name']} d G / d {k}: {m}")


@pytest.mark.parametrize("name,key,inputs", [
    ("intrinsic_gradient", "raw_gradient", ("eval.reflectance", "real")),
    ("intrinsic_smooth", "raw_smooth", ("eval.illumination",)),
    ("intrinsic_ifm", "raw_dssim_cs", ("eval.ifm_mean", "real")),
])
def test_registered_terms_equal_official_unweighted(meta, name, key, inputs):
    fn = LOSSES.create(name)
    for case, t in _cases(meta):
        torch.testing.assert_close(fn(*(t[i] for i in inputs)), t[f"loss.{key}"], **TOL)


def test_terms_are_zero_or_minimal_at_the_target(meta):
    """Sanity of the terms' direction: a perfect prediction zeroes L1 / L2 / gradient terms."""
    case, t = next(_cases(meta))
    real = t["real"]
    assert LOSSES.create("intrinsic_gradient")(real, real) == 0
    assert LOSSES.create("intrinsic_smooth")(torch.ones_like(real)) == 0


def test_missing_extras_are_named(meta):
    case, t = next(_cases(meta))
    out = HarmonizationOutput(image=t["real"], image_normalized=t["real"])
    with pytest.raises(ValueError, match="reflectance"):
        LOSSES.create("intrinsic_harmony")(out, t["real"])
