"""evaluate(model_mode=...): DoveNet's official train-mode evaluation as an option."""
from __future__ import annotations

import copy

import pytest
import torch

import harmonykit
from harmonykit.eval import MODEL_MODES, TrainModeNetwork, evaluate, find_triplets, resolve_model_mode


@pytest.fixture(scope="module")
def dovenet():
    torch.manual_seed(0)
    return harmonykit.create_model("dovenet", ngf=2)  # eval mode, BatchNorm (the released checkpoint's norm)


@pytest.fixture(scope="module")
def trips(real_data_dir):
    return find_triplets(real_data_dir / "iharmony4_mini")[:3]


def test_official_mode_comes_from_the_pretrained_cfg(dovenet):
    assert resolve_model_mode(dovenet, "official") == "train"
    assert resolve_model_mode(harmonykit.create_model("idih256", ch=8, max_channels=64), "official") == "eval"
    assert resolve_model_mode(dovenet, "eval") == "eval" and resolve_model_mode(dovenet, "train") == "train"
    with pytest.raises(ValueError, match="'inference'.*eval, train, official"):
        resolve_model_mode(dovenet, "inference")
    assert MODEL_MODES == ("eval", "train", "official")


def test_train_mode_network_is_a_seeded_copy_in_train_mode(dovenet):
    g = torch.Generator().manual_seed(1)
    c, m = torch.rand(1, 3, 256, 256, generator=g), (torch.rand(1, 1, 256, 256, generator=g) > 0.7).float()
    before = {k: v.clone() for k, v in dovenet.state_dict().items()}
    rng = torch.get_rng_state()
    wrapped = TrainModeNetwork(dovenet, seed=5)
    out = wrapped(c, m).image
    # by hand: a copy in train mode, the same seed, no grad
    ref_net = copy.deepcopy(dovenet).train()
    torch.manual_seed(5)
    with torch.no_grad():
        ref = ref_net(c, m).image
    torch.set_rng_state(rng)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    with torch.no_grad():
        assert (out - dovenet(c, m).image).abs().max() > 1e-4  # batch statistics differ from the running ones
    # the caller's network and the global RNG are untouched
    assert not dovenet.training
    for k, v in dovenet.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(torch.get_rng_state(), rng)
    assert wrapped.domains == dovenet.domains  # attributes come from the network


def test_evaluate_train_mode_differs_and_is_reproducible(dovenet, trips):
    kw = dict(protocol="idih", ssim=False, progress=False)
    ev = evaluate({"dovenet": dovenet}, trips, **kw)
    tr1 = evaluate({"dovenet": dovenet}, trips, model_mode="train", **kw)
    tr2 = evaluate({"dovenet": dovenet}, trips, model_mode="official", **kw)
    assert ev.settings["model_mode"] == {"dovenet": "eval"}
    assert tr1.settings["model_mode"] == tr2.settings["model_mode"] == {"dovenet": "train"}
    f = lambda r: [x["fmse"] for x in r.records]  # noqa: E731
    assert f(tr1) == f(tr2)  # seeded: the same numbers twice
    assert max(abs(a - b) for a, b in zip(f(tr1), f(ev))) > 1e-3
    assert "train mode" in tr1.format_table() and "train mode" not in ev.format_table()
    assert not dovenet.training


def test_cli_model_mode(real_data_dir, capsys):
    from harmonykit.cli import main

    args = ["eval", "dovenet", str(real_data_dir / "iharmony4_mini"), "--model-arg", "ngf=2", "--random-weights",
            "--subset", "HCOCO", "--no-ssim", "--protocol", "idih"]
    assert main(args + ["--model-mode", "official"]) == 0
    assert "run in train mode (batch statistics, live dropout): dovenet" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(args + ["--model-mode", "inference"])
    assert "invalid choice: 'inference'" in capsys.readouterr().err
