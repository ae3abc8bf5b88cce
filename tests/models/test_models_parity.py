"""Numerical parity with the official iDIH and CharmNet code (fixtures in HARMONYKIT_PARITY_DIR).

Everything is read from the fixture files: architecture arguments are inferred from the
state-dict shapes and cases are discovered from the tensor names, so any fixture set of the
same format (other seeds, other input sizes) runs through the same tests.
"""
from __future__ import annotations

import re
from typing import Dict

import pytest
import torch
from safetensors.torch import load_file

import harmonykit
from harmonykit.convert import infer_model_args, load_weights
from harmonykit.models.idih import official_idih_to_unet
from harmonykit.normalization import denormalize
from harmonykit.registry import DISCRIMINATORS, STYLE_HEADS

pytestmark = pytest.mark.parity

ATOL = RTOL = 1e-4  # forward outputs / features (fixture README)
BUF_ATOL = 1e-5  # BN buffers


def _close(ours: torch.Tensor, ref: torch.Tensor, what: str, atol: float = ATOL, rtol: float = RTOL) -> None:
    if tuple(ours.shape) != tuple(ref.shape) and tuple(ours.squeeze().shape) == tuple(ref.shape):
        ours = ours.squeeze()  # the official style head squeezes every size-1 dim (batch 1 -> (10,))
    assert tuple(ours.shape) == tuple(ref.shape), f"{what}: shape {tuple(ours.shape)} vs {tuple(ref.shape)}"
    diff = (ours.double() - ref.double()).abs()
    bound = atol + rtol * ref.double().abs()
    worst = (diff - bound).max().item()
    assert worst <= 0, f"{what}: max |diff| {diff.max().item():.3g} exceeds atol {atol} + rtol {rtol}"


def _cases(io: Dict[str, torch.Tensor]):
    return sorted({k.split("/")[0] for k in io if re.match(r"case\d+/", k)})


def _load(parity_dir, name):
    path = parity_dir / name
    if not path.is_file():
        pytest.skip(f"{path} not in this fixture set")
    return load_file(str(path))


def _idih_from(sd):
    arch, args = infer_model_args(sd)
    model = harmonykit.create_model(arch, **args)
    load_weights(model, sd)
    return model


@pytest.mark.parametrize("fixture", ["idih_tiny", "idih256_full"])
def test_idih_eval_matches_official(parity_dir, fixture):
    sd = _load(parity_dir, f"{fixture}.state_dict.safetensors")
    io = _load(parity_dir, f"{fixture}.io.safetensors")
    model = _idih_from(sd).eval()
    prefixes = _cases(io) or [""]
    for pre in prefixes:
        p = f"{pre}/" if pre else ""
        comp = denormalize(io[p + "image"])  # our models take [0, 1] images
        with torch.no_grad():
            out = model(comp, io[p + "mask"])
        _close(out.image_normalized, io[p + "eval/images"], f"{fixture} {pre} eval output")
        # the public .image is the same output mapped back with x*std+mean
        _close(out.image, denormalize(io[p + "eval/images"]), f"{fixture} {pre} eval .image")


def test_idih_tiny_train_mode_and_buffers(parity_dir):
    sd = _load(parity_dir, "idih_tiny.state_dict.safetensors")
    io = _load(parity_dir, "idih_tiny.io.safetensors")
    for case in _cases(io):
        model = _idih_from(sd).train()
        out = model(denormalize(io[f"{case}/image"]), io[f"{case}/mask"])
        _close(out.image_normalized.detach(), io[f"{case}/train/images"], f"{case} train output")
        ours = harmonykit.models.idih.unet_to_official_idih(model.state_dict())
        bufs = {k[len(f"{case}/train/buffers_after/"):]: v for k, v in io.items() if k.startswith(f"{case}/train/buffers_after/")}
        assert bufs, "fixture has no BN buffers"
        for k, ref in bufs.items():
            if ref.dtype == torch.int64:
                assert int(ours[k]) == int(ref), k
            else:
                _close(ours[k], ref, f"{case} buffer {k}", atol=BUF_ATOL, rtol=0)


def test_idih_tiny_intermediate_stages(parity_dir):
    sd = _load(parity_dir, "idih_tiny.state_dict.safetensors")
    io = _load(parity_dir, "idih_tiny.io.safetensors")
    model = _idih_from(sd).eval()
    checked = 0
    for case in _cases(io):
        inter = {k.split("/intermediate/")[1]: v for k, v in io.items() if k.startswith(f"{case}/eval/intermediate/")}
        if not inter:
            continue
        captured = {}
        hooks = []
        for i, st in enumerate(model.encoder):
            name = f"encoder.block{i}" if i < 2 else f"encoder.blocks_connected.block{i}"
            hooks.append(st.register_forward_hook(lambda m, a, o, n=name: captured.__setitem__(n, o)))
        for j, st in enumerate(model.decoder):
            hooks.append(st.register_forward_hook(lambda m, a, o, n=f"decoder.deconv_blocks.{j}": captured.__setitem__(n, o)))
        hooks.append(model.head.conv_attention.register_forward_hook(lambda m, a, o: captured.__setitem__("decoder.conv_attention", o)))
        hooks.append(model.head.to_rgb.register_forward_hook(lambda m, a, o: captured.__setitem__("decoder.to_rgb", o)))
        with torch.no_grad():
            model(denormalize(io[f"{case}/image"]), io[f"{case}/mask"])
        for h in hooks:
            h.remove()
        for name, ref in inter.items():
            _close(captured[name], ref, f"{case} {name}")
            checked += 1
    if checked == 0:
        pytest.skip("no case with intermediate outputs in this fixture set")


def _charmnet_nets(parity_dir):
    g_sd = _load(parity_dir, "charmnet_tiny.netG.safetensors")
    arch, args = infer_model_args(g_sd)
    assert arch == "charmnet_idih"
    G = harmonykit.create_model(arch, **args)
    load_weights(G, g_sd)
    d_sd = _load(parity_dir, "charmnet_tiny.netD.safetensors")
    D = DISCRIMINATORS.create("fc", in_channels=d_sd["net.0.weight"].shape[1], width=d_sd["net.0.weight"].shape[0])
    D.load_state_dict(d_sd)
    heads = []
    for name in ("netSC1", "netSC2"):
        s = _load(parity_dir, f"charmnet_tiny.{name}.safetensors")
        h = STYLE_HEADS.create("style_classifier", in_channels=s["net.0.weight"].shape[1], width=s["net.0.weight"].shape[0], num_styles=s["net.12.weight"].shape[0])
        h.load_state_dict(s)
        heads.append(h)
    return G, D, heads[0], heads[1]


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_charmnet_tiny_matches_official(parity_dir, mode):
    io = _load(parity_dir, "charmnet_tiny.io.safetensors")
    for case in _cases(io):
        domains = sorted({k.split("/")[1] for k in io if k.startswith(case + "/domain")})
        for dkey in domains:
            G, D, P_in, P_out = _charmnet_nets(parity_dir)  # fresh weights: BN stats untouched
            for net in (G, D, P_in, P_out):
                net.train(mode == "train")
            domain = G.domains[int(dkey[len("domain"):])]  # official flag 0 = rendered, 1 = real
            inp = io[f"{case}/{dkey}/input"]
            with torch.no_grad():
                out = G(denormalize(inp[:, :3]), inp[:, 3:], domain=domain)
                pin = torch.softmax(P_in(out.features_in), dim=1)
                pout = torch.softmax(P_out(out.features_out), dim=1)
                score = D(out.features_in)
            ref = lambda n: io[f"{case}/{dkey}/{mode}/{n}"]  # noqa: E731
            what = f"{case} {domain} {mode}"
            _close(out.features_in, ref("f"), what + " f")
            _close(out.features_out, ref("g"), what + " g")
            _close(out.image_normalized, ref("harmonized"), what + " harmonized")
            _close(out.attention, ref("attention"), what + " attention")
            _close(score, ref("D_f"), what + " D(f)")
            _close(pin, ref("SC1_f"), what + " P_in(f)")
            _close(pout, ref("SC2_g"), what + " P_out(g)")


def test_official_key_lists_round_trip(parity_dir):
    """Every official key list converts to our names and back without loss."""
    import json

    keys = json.loads((parity_dir / "official_keys.json").read_text())
    for name, entry in keys.items():
        nets = entry.get("keys") and {"G": entry} or {k: v for k, v in entry.items() if k == "G"}
        for net in nets.values():
            if not isinstance(net, dict) or "keys" not in net:
                continue
            sd = {k: torch.zeros(shape, dtype=torch.int64 if dt == "int64" else torch.float32) for k, shape, dt in net["keys"]}
            layout = harmonykit.convert.detect_layout(sd)
            ours_layout = {"official_idih": "unet", "official_charmnet": "split"}[layout]
            ours = harmonykit.convert.convert_state_dict(sd, layout, ours_layout)
            back = harmonykit.convert.convert_state_dict(ours, ours_layout, layout)
            assert list(sd) == [k for k in sd if k in back] and set(back) == set(sd), name
            arch, args = infer_model_args(sd)
            model = harmonykit.create_model(arch, **args)
            load_weights(model, sd)  # strict: shapes and names must fit exactly
