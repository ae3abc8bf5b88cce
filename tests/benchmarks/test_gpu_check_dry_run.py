"""``benchmarks/gpu_check.sh`` runs only where a GPU is lent, for minutes: its own logic (the
training run and its log checks, kornia on a device, torchrun, the throughput children) is run
here on the CPU with ``GPU_CHECK_DEVICE=cpu`` so that a broken step shows up before a GPU does."""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def _run(tmp_path, **env):
    e = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path / "out"), TMPDIR=str(tmp_path), **env)
    return subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=e, capture_output=True, text=True, timeout=600)


def test_every_step_passes_on_the_cpu(tmp_path):
    if not pathlib.Path(os.environ.get("HARMONYKIT_PARITY_DIR", REPO / ".." / "shared" / "parity" / "public"), "charmnet_step.losses.json").is_file():
        pytest.fail("HARMONYKIT_PARITY_DIR has no charmnet_step fixtures: the step-parity step cannot run")
    r = _run(tmp_path, GPU_CHECK_DEVICE="cpu")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    summary = out[out.index("=== summary"):]
    steps = re.findall(r"^(PASS|FAIL|SKIP)  (.+)$", summary, flags=re.M)
    assert [s for s, _ in steps] == ["PASS"] * 5, summary
    assert "compiled bf16 run: 3 iterations" in out
    assert (tmp_path / "out" / "compiled" / "last.pth").is_file()
    assert "done: 2 iterations" in out  # the torchrun run
    assert re.search(r"charmnet_idih +eager +[0-9.]+ ms per iteration", out), out[-2000:]


def test_unknown_device_is_refused(tmp_path):
    r = _run(tmp_path, GPU_CHECK_DEVICE="tpu")
    assert r.returncode == 2 and "GPU_CHECK_DEVICE=tpu" in r.stderr
