"""ONNX / ExportedProgram export: the exported file computes what eager PyTorch computes.

Each exported file is run (onnxruntime, ``torch.export.load``) on fresh random inputs at two
sizes and compared with ``model(composite, mask, domain).image``: max |diff| <= 1e-4.
Skips only when onnxruntime is not installed (``pip install 'harmonykit[export]'``).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import harmonykit
from harmonykit.cli import main
from harmonykit.export import export_model, load_exported, parse_size

ort = pytest.importorskip("onnxruntime")
import onnx  # noqa: E402  (installed with onnxruntime by the test and export extras)

ATOL = 1e-4


def tiny(name, **kw):
    return harmonykit.create_model(name, **{**harmonykit.get_pretrained_cfg(name).tiny_args, **kw}).eval()


def _inputs(b, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    comp = torch.rand(b, 3, h, w, generator=g)
    mask = (torch.rand(b, 1, h, w, generator=g) > 0.6).float()
    return comp, mask


def _max_diff(run, model, sizes, domain=None):
    diffs = []
    for i, (b, h, w) in enumerate(sizes):
        comp, mask = _inputs(b, h, w, seed=10 + i)
        with torch.no_grad():
            ref = model(comp, mask, domain=domain).image
        got = run(comp, mask)
        assert got.shape == ref.shape
        diffs.append(float((got - ref).abs().max()))
    return max(diffs)


def _onnx_session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run_onnx(path):
    sess = _onnx_session(path)
    return lambda c, m: torch.from_numpy(sess.run(["image"], {"composite": c.numpy(), "mask": m.numpy()})[0])


# --------------------------------------------------------------------------------------------
# ONNX, dynamic shapes, checked with onnxruntime at two sizes
# --------------------------------------------------------------------------------------------
UNET_SIZES = [(1, 256, 256), (2, 384, 256)]
ANY_SIZES = [(1, 64, 48), (2, 50, 70)]


@pytest.mark.parametrize(
    "name,sizes",
    [("idih256", UNET_SIZES), ("charmnet_idih", UNET_SIZES), ("lab_transfer", ANY_SIZES), ("reinhard", ANY_SIZES), ("identity", ANY_SIZES)],
)
def test_onnx_dynamic_matches_eager(name, sizes, tmp_path):
    model = tiny(name)
    size = sizes[0][1:]
    res = export_model(model, tmp_path / f"{name}.onnx", dynamic=True, size=size)
    assert res.format == "onnx" and res.max_abs_diff is not None and res.max_abs_diff <= ATOL
    assert len(res.checks) == 2  # the export's own check ran at two sizes
    graph = onnx.load(str(res.path)).graph
    assert [i.name for i in graph.input] == ["composite", "mask"] and [o.name for o in graph.output] == ["image"]
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))
    assert _max_diff(_run_onnx(res.path), model, sizes) <= ATOL


def test_onnx_multi_domain_exports_the_chosen_branch(tmp_path):
    model = tiny("charmnet_idih")
    real = export_model(model, tmp_path / "real.onnx", size=(256, 256))
    rendered = export_model(model, tmp_path / "rendered.onnx", size=(256, 256), domain="rendered")
    assert real.domain == "real" and rendered.domain == "rendered"
    sizes = [(1, 256, 256)]
    assert _max_diff(_run_onnx(real.path), model, sizes, domain="real") <= ATOL
    assert _max_diff(_run_onnx(rendered.path), model, sizes, domain="rendered") <= ATOL
    comp, mask = _inputs(1, 256, 256, seed=3)
    a, b = _run_onnx(real.path)(comp, mask), _run_onnx(rendered.path)(comp, mask)
    assert (a - b).abs().max() > 1e-3  # really two different branches


def test_onnx_fixed_size_is_fixed(tmp_path):
    model = tiny("lab_transfer")
    res = export_model(model, tmp_path / "fixed.onnx", size="40x56", batch_size=2)
    dims = [d.dim_value for d in onnx.load(str(res.path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 3, 40, 56]
    assert _max_diff(_run_onnx(res.path), model, [(2, 40, 56)]) <= ATOL


# --------------------------------------------------------------------------------------------
# torch.export ExportedProgram round trip
# --------------------------------------------------------------------------------------------
def test_exported_program_round_trip_dynamic(tmp_path):
    model = tiny("idih256")
    res = export_model(model, tmp_path / "idih.pt2", dynamic=True, verify=False)
    assert res.format == "exported-program"
    ep = torch.export.load(str(res.path))
    assert isinstance(ep, torch.export.ExportedProgram)
    assert _max_diff(load_exported(res.path), model, [(1, 256, 256), (2, 384, 512)]) <= ATOL


def test_exported_program_classical_fixed_size(tmp_path):
    model = tiny("lab_transfer", strength=0.8)
    res = export_model(model, tmp_path / "lab.pt2", size=(48, 64))
    assert res.max_abs_diff <= ATOL
    assert _max_diff(load_exported(res.path), model, [(1, 48, 64)]) <= ATOL


# --------------------------------------------------------------------------------------------
# models given as names: checkpoint, local-dir
# --------------------------------------------------------------------------------------------
def test_export_from_checkpoint_and_local_dir(tmp_path):
    from safetensors.torch import save_file

    model = tiny("idih256")
    with torch.no_grad():  # non-default weights, so loading really matters
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    ckpt = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    res = export_model("idih256", tmp_path / "ckpt.onnx", checkpoint=ckpt, model_args=harmonykit.get_pretrained_cfg("idih256").tiny_args)
    assert _max_diff(_run_onnx(res.path), model, [(1, 256, 256)]) <= ATOL
    harmonykit.save_pretrained(model, tmp_path / "saved")
    res2 = export_model(f"local-dir:{tmp_path / 'saved'}", tmp_path / "local.onnx")
    assert _max_diff(_run_onnx(res2.path), model, [(1, 256, 256)]) <= ATOL


# --------------------------------------------------------------------------------------------
# CLI and bad inputs
# --------------------------------------------------------------------------------------------
def test_cli_export_writes_and_reports(tmp_path, capsys):
    out = tmp_path / "cli" / "lab.onnx"
    assert main(["export", "lab_transfer", str(out), "--size", "32x48", "--model-arg", "strength=0.7"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "max |diff| vs PyTorch" in text
    model = harmonykit.create_model("lab_transfer", strength=0.7)
    assert _max_diff(_run_onnx(out), model, [(1, 32, 48)]) <= ATOL


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--format", "tflite"], "unknown export format 'tflite'; expected one of: onnx, exported-program"),
        (["--size", "25ax3"], "size '25ax3': expected HxW"),
        (["--size", "0x256"], "size '0x256': expected HxW"),
        (["--size", "300x256"], "input size 300x256 (HxW) does not fit a depth-7 iDIH"),
        (["--domain", "nowhere"], "unknown domain 'nowhere'"),
        (["--checkpoint", "/nonexistent/w.pth"], "checkpoint file not found"),
    ],
)
def test_cli_bad_inputs_give_one_line_errors(argv, message, tmp_path, capsys):
    args = ["export", "charmnet_idih", str(tmp_path / "x.onnx"), "--model-arg", "ch=8", "--model-arg", "max_channels=16", "--random-weights", *argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("harmonykit export: error:")
    assert not (tmp_path / "x.onnx").exists()


def test_not_exportable_model_is_refused(tmp_path, capsys):
    assert main(["export", "histogram_matching", str(tmp_path / "h.onnx")]) == 2
    err = capsys.readouterr().err
    assert "'histogram_matching' cannot be exported" in err and "Traceback" not in err


def test_size_and_dynamic_are_exclusive(tmp_path):
    with pytest.raises(SystemExit):
        main(["export", "identity", str(tmp_path / "i.onnx"), "--size", "32", "--dynamic"])


def test_parse_size():
    assert parse_size("256x384") == (256, 384) and parse_size("64") == (64, 64) and parse_size((8, 9)) == (8, 9)
    with pytest.raises(ValueError):
        parse_size("1x2x3")


def test_cli_refuses_random_weights_unless_asked(tmp_path, capsys):
    args = ["export", "idih256", str(tmp_path / "r.onnx"), "--model-arg", "ch=8", "--model-arg", "max_channels=16"]
    assert main(args) == 2 and "--random-weights" in capsys.readouterr().err
    assert not (tmp_path / "r.onnx").exists()
