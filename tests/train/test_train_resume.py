"""End-to-end CLI training, checkpoint loading, exact kill/resume, NaN stop and Ctrl-C."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from harmonykit.train.checkpoint import CHECKPOINT_FORMAT, load_training_checkpoint, save_checkpoint

ITERS = 4  # tiny.yaml: 4 iterations, checkpoint after every one

@pytest.fixture(autouse=True)
def _restore_global_torch_state():
    """Trainers switch on deterministic algorithms and seed torch; undo that for other tests."""
    yield
    torch.use_deterministic_algorithms(False)


def _cmd(out: Path, name: str, *extra: str):
    return [sys.executable, "-m", "harmonykit", "train", "tiny", "--output-dir", str(out), "--name", name, *extra]


def _env():
    env = dict(os.environ, HARMONYKIT_DISABLE_PROGRESS="1", OMP_NUM_THREADS="2")
    return env


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    r = subprocess.run(_cmd(out, "ref"), env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return out / "ref"


def _wait_for_checkpoint(proc, path: Path, timeout: float = 240.0) -> int:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.is_file():
            try:
                return int(torch.load(str(path), weights_only=True)["iteration"])
            except Exception:  # noqa: BLE001 - the rename is atomic; a read race only delays
                pass
        if proc.poll() is not None:
            pytest.fail(f"training exited early: {proc.stderr.read()[-2000:]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no checkpoint appeared")


def _assert_same_state(a, b):
    for key in ("model", "discriminator"):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), f"{key}.{k} differs"
    for head in ("in", "out"):
        for k in a["style_heads"][head]:
            assert torch.equal(a["style_heads"][head][k], b["style_heads"][head][k]), f"style_heads.{head}.{k}"
    for opt in ("generator", "discriminator"):
        sa, sb = a["optimizer"][opt]["state"], b["optimizer"][opt]["state"]
        assert sa.keys() == sb.keys()
        for i in sa:
            for k in sa[i]:
                assert torch.equal(torch.as_tensor(sa[i][k]), torch.as_tensor(sb[i][k])), f"optimizer {opt} {i}.{k}"


def test_cli_train_writes_loadable_checkpoints(reference_run):
    import harmonykit

    ck = torch.load(str(reference_run / "last.pth"), weights_only=True)  # plain types only
    assert ck["format"] == CHECKPOINT_FORMAT and ck["iteration"] == ITERS
    assert ck["recipe"]["name"] == "ref" and ck["discriminator"] and ck["style_heads"]["in"]
    assert (reference_run / "recipe.yaml").is_file() and (reference_run / "best.pth").is_file()
    rows = (reference_run / "log.jsonl").read_text().splitlines()
    assert len([r for r in rows if '"train"' in r]) == ITERS and any('"val"' in r for r in rows)
    net = harmonykit.create_model(ck["model_name"], checkpoint_path=str(reference_run / "last.pth"), **{
        k: v for k, v in ck["model_args"].items() if k in ("ch", "max_channels")})
    for k, v in net.state_dict().items():
        assert torch.equal(v, ck["model"][k]), k
    net2 = harmonykit.from_pretrained(reference_run / "pretrained")
    for k, v in net2.state_dict().items():
        assert torch.equal(v, ck["model"][k]), k
    init = harmonykit.create_model("charmnet_idih", ch=8, max_channels=64)
    assert any(not torch.equal(v, ck["model"][k]) for k, v in init.state_dict().items() if v.is_floating_point())


def test_kill_and_resume_equals_uninterrupted(reference_run, tmp_path):
    proc = subprocess.Popen(_cmd(tmp_path, "killed"), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    it = _wait_for_checkpoint(proc, tmp_path / "killed" / "last.pth")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_training_checkpoint(tmp_path / "killed" / "last.pth")["iteration"]
    assert it <= killed_at < ITERS, "the run finished before it was killed"
    r = subprocess.run(_cmd(tmp_path, "killed", "--resume"), env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = load_training_checkpoint(tmp_path / "killed" / "last.pth")
    assert resumed["iteration"] == ITERS
    _assert_same_state(resumed, load_training_checkpoint(reference_run / "last.pth"))


def test_ctrl_c_saves_and_exits(tmp_path):
    proc = subprocess.Popen(_cmd(tmp_path, "intr"), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(proc, tmp_path / "intr" / "last.pth")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted at iteration" in err
    ck = load_training_checkpoint(tmp_path / "intr" / "last.pth")
    assert 1 <= ck["iteration"] < ITERS
    n = int(err.split("interrupted at iteration ")[1].split(";")[0])
    assert ck["iteration"] == n  # the checkpoint holds the iteration it stopped at


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    from harmonykit.cli import main
    from harmonykit.losses.adversarial import HingeGeneratorLoss

    calls = {"n": 0}
    orig = HingeGeneratorLoss.forward

    def flaky(self, score):
        calls["n"] += 1
        out = orig(self, score)
        return out * float("nan") if calls["n"] >= 3 else out  # the 3rd iteration (index 2) fails

    monkeypatch.setattr(HingeGeneratorLoss, "forward", flaky)
    rc = main(["train", "tiny", "--output-dir", str(tmp_path), "--name", "nan"])
    err = capsys.readouterr().err
    assert rc == 3
    assert "'adversarial'" in err and "iteration 2" in err and "last good checkpoint" in err
    ck = load_training_checkpoint(tmp_path / "nan" / "last.pth")
    assert ck["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_atomic_save_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    save_checkpoint({"format": CHECKPOINT_FORMAT, "iteration": 1, "x": torch.ones(3)}, path)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"format": CHECKPOINT_FORMAT, "iteration": 2}, path)
    assert load_training_checkpoint(path)["iteration"] == 1  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]  # no temp file left
    monkeypatch.undo()
    with pytest.raises(ValueError, match="not a harmonykit training checkpoint"):
        torch.save({"a": torch.ones(1)}, str(tmp_path / "other.pth"))
        load_training_checkpoint(tmp_path / "other.pth")
