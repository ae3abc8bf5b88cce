"""Trainer paths beyond the paper step: modes, precision / EMA / clipping options, schedules,
the sampler contract and the synthetic data."""
from __future__ import annotations

import pytest
import torch

from harmonykit.train.distributed import ShardedBatchSampler
from harmonykit.train.recipe import load_recipe
from harmonykit.train.synthetic import SyntheticHarmonizationDataset
from harmonykit.train.trainer import TrainData, Trainer

SMALL = ["model.ch=8", "model.max_channels=64", "train.batch_size=2", "data.synthetic.length=4"]

@pytest.fixture(autouse=True)
def _restore_global_torch_state():
    """Trainers switch on deterministic algorithms and seed torch; undo that for other tests."""
    yield
    torch.use_deterministic_algorithms(False)


def _batches(trainer, data):
    return {d: next(data.batches(d, 0, 0)) for d in trainer._step_domains(trainer.iteration)}


def test_sampler_shards_equal_one_big_batch():
    one = list(ShardedBatchSampler(20, 4, seed=3))
    r0 = list(ShardedBatchSampler(20, 2, seed=3, rank=0, world_size=2))
    r1 = list(ShardedBatchSampler(20, 2, seed=3, rank=1, world_size=2))
    assert len(one) == len(r0) == 5
    assert [a + b for a, b in zip(r0, r1)] == one
    s = ShardedBatchSampler(20, 4, seed=3)
    s.set_epoch(0, start_batch=2)
    assert list(s) == one[2:]
    s.set_epoch(1)
    assert list(s) != one  # a new permutation each epoch
    with pytest.raises(ValueError, match="fewer than one global batch"):
        ShardedBatchSampler(3, 2, world_size=2)


def test_synthetic_is_deterministic_and_well_formed():
    ds = SyntheticHarmonizationDataset(4, 256, "rendered", seed=1)
    a, b = ds[2], ds[2]
    assert torch.equal(a["composite"], b["composite"])
    assert not torch.equal(ds[1]["real"], a["real"])
    frac = a["mask"].mean().item()
    assert 0.05 < frac < 0.45
    assert torch.isclose(a["style_soft"].sum(), torch.tensor(1.0))
    assert a["style_soft"][a["style"]] == pytest.approx(1 - frac)
    inside = a["mask"].bool().expand(3, -1, -1)
    assert torch.equal(a["composite"][~inside], a["real"][~inside])
    assert not torch.equal(a["composite"][inside], a["real"][inside])


@pytest.mark.parametrize("recipe,extra", [
    ("dataset_fusion", []),
    ("idih_real_only", ["sched.name=none"]),
])
def test_single_network_modes(recipe, extra):
    r = load_recipe(recipe, overrides=SMALL + extra, check_data=False)
    tr = Trainer(r, device="cpu")
    data = TrainData.from_recipe(r, synthetic=True)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    logs = tr.train_step(_batches(tr, data))
    expected = {"recon_rendered", "recon_real"} if r["train"]["mode"] == "fusion" else {"recon_real"}
    assert set(logs) == expected | {"G_total"}
    assert tr.discriminator is None and tr.style_in is None
    assert any(not torch.equal(before[k], v) for k, v in tr.model.state_dict().items())


def test_two_stage_switches_domain():
    r = load_recipe("two_stage", overrides=SMALL + ["train.stage1_iterations=1", "train.stage1_epochs=null",
                                                   "train.iterations=2", "train.epochs=null"], check_data=False)
    tr = Trainer(r, device="cpu")
    data = TrainData.from_recipe(r, synthetic=True)
    ipe, total = tr.plan(data)
    assert total == 2
    assert tr._step_domains(0) == ("rendered",) and tr._step_domains(1) == ("real",)
    tr.iteration = 0
    assert set(tr.train_step(_batches(tr, data))) == {"recon_rendered", "G_total"}
    tr.iteration = 1
    assert set(tr.train_step(_batches(tr, data))) == {"recon_real", "G_total"}


def test_bf16_channels_last_ema_clip_and_schedule():
    r = load_recipe("tiny", overrides=[
        "train.precision=bf16", "train.channels_last=true", "train.ema.enabled=true", "train.ema.decay=0.5",
        "optim.clip_grad=0.1", "sched.name=cosine", "sched.step_on_epochs=false", "train.iterations=4",
        "sched.warmup_epochs=0", "optim.opt=adamw", "optim.weight_decay=0.01"])
    tr = Trainer(r, device="cpu")
    data = TrainData.from_recipe(r)
    ipe, total = tr.plan(data)
    tr.build_schedulers(ipe, max(1, -(-total // ipe)))
    lr0 = tr.opt_g.param_groups[0]["lr"]
    logs = tr.train_step(_batches(tr, data))
    tr.iteration = 1
    tr._sched_step(ipe)
    tr.train_step(_batches(tr, data))  # timm's EMA copies the weights at its first update
    assert tr.opt_g.param_groups[0]["lr"] < lr0  # cosine decays per iteration
    assert all(torch.isfinite(v) for v in logs.values())
    w4 = [p for p in tr.model.parameters() if p.ndim == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in w4)
    ema_w = dict(tr.ema.module.named_parameters())
    diffs = [(ema_w[n] - p).abs().max().item() for n, p in tr.model.named_parameters()]
    assert max(diffs) > 0  # EMA lags the trained weights
    state = tr.state_dict()
    assert state["ema"] is not None and state["scheduler"]["generator"] is not None
    tr2 = Trainer(r, device="cpu")
    tr2.build_schedulers(ipe, max(1, -(-total // ipe)))
    tr2.load_state_dict(state)
    assert tr2.opt_g.param_groups[0]["lr"] == tr.opt_g.param_groups[0]["lr"]


def test_mode_needs_two_domain_model():
    r = load_recipe("tiny", overrides=["model.name=idih256"])
    with pytest.raises(ValueError, match="two-domain model"):
        Trainer(r, device="cpu")


def test_registered_datasets_plug_in(real_data_dir, tmp_path):
    """data.kind=datasets: DATASETS / AUGMENTATIONS entries from the recipe feed the trainer
    (differently sized images: the aligned crop makes the training batch, validation resizes)."""
    root = real_data_dir / "iharmony4_mini"
    if not root.is_dir():
        pytest.skip("iharmony4_mini not in the real data folder")
    r = load_recipe("tiny", overrides=[
        "model.name=idih256", "train.mode=single", "train.domain=real", "train.iterations=1",
        "data.kind=datasets", f"data.real={{name: iharmony4, root: {root}, split: test}}",
        f"data.val={{name: iharmony4, root: {root}, split: test}}", "data.num_workers=0",
        "data.augmentation={name: aligned_crop, size: 256, seed: 0}", "val.batch_size=3", "val.max_batches=1",
        f"output_dir={tmp_path}"])
    tr = Trainer(r, run_dir=tmp_path / "run", device="cpu")
    data = TrainData.from_recipe(r)
    assert tr.fit(data) == "done"
    rows = (tmp_path / "run" / "val.csv").read_text().splitlines()
    assert rows[0].split(",")[:3] == ["split", "iteration", "mse"] and len(rows) == 2
    assert float(rows[1].split(",")[3]) > 0  # fMSE of a barely trained net is positive


def test_zero_weight_or_null_removes_a_term():
    r = load_recipe("tiny", overrides=["loss.entropy.weight=0", "loss.consistency=null"])
    tr = Trainer(r, device="cpu")
    assert "entropy" not in tr.losses and "consistency" not in tr.losses and "style_in" in tr.losses
    data = TrainData.from_recipe(r)
    logs = tr.train_step(_batches(tr, data))
    assert "entropy" not in logs and "consistency" not in logs and "style_out" in logs
    expected = sum(tr.losses[k][1] * logs[k] for k in tr.losses if k in logs and k != "discriminator")
    assert torch.isclose(logs["G_total"], expected.to(logs["G_total"].dtype), rtol=1e-6)


def test_time_budget_ends_the_run_like_a_finished_one(tmp_path):
    """fit(max_seconds=...) stops after the iteration that crosses the budget and still writes
    last.pth and the inference export; without a budget the same recipe runs to the end."""
    r = load_recipe("tiny", overrides=["train.iterations=1000", f"output_dir={tmp_path}"])
    tr = Trainer(r, run_dir=tmp_path / "run", device="cpu")
    status = tr.fit(TrainData.from_recipe(r), max_seconds=0.0, progress=False)
    assert status == "time_budget"
    assert tr.iteration == 1  # the first iteration already crossed a zero budget
    assert (tmp_path / "run" / "last.pth").is_file()
    assert (tmp_path / "run" / "pretrained" / "model.safetensors").is_file()
