"""Process-level CPU settings of training: glibc malloc thresholds (``cpu_malloc``) and niced
DataLoader workers (``TrainData``)."""
from __future__ import annotations

import os
import sys

import pytest
import torch
from torch.utils.data import Dataset

import harmonykit.train.cpu_malloc as cpu_malloc
from harmonykit.train.data import TrainData


class _Niceness(Dataset):
    """Each sample is the niceness of the process that loads it."""

    domain = "real"

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        return {"nice": torch.tensor(os.nice(0))}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="os.nice / glibc mallopt are Linux features")
def test_workers_run_niced_and_the_env_var_keeps_them(monkeypatch):
    base = os.nice(0)
    for env, want in ((None, min(base + 10, 19)), ("0", base), ("3", min(base + 3, 19))):
        if env is None:
            monkeypatch.delenv("HARMONYKIT_WORKER_NICE", raising=False)
        else:
            monkeypatch.setenv("HARMONYKIT_WORKER_NICE", env)
        data = TrainData({"real": _Niceness()}, batch_size=2, seed=0, num_workers=1, persistent_workers=False)
        got = [int(v) for b in data.batches("real", 0) for v in b["nice"]]
        assert got == [want] * 4, (env, got)
    assert os.nice(0) == base  # the main process keeps its priority


@pytest.mark.parametrize("bad", ["ten", "-1", "20", "2.5", ""])
def test_invalid_worker_nice_fails_at_start_naming_the_variable(monkeypatch, bad):
    monkeypatch.setenv("HARMONYKIT_WORKER_NICE", bad)
    data = TrainData({"real": _Niceness()}, batch_size=2, seed=0, num_workers=1, persistent_workers=False)
    with pytest.raises(ValueError, match="HARMONYKIT_WORKER_NICE"):
        next(iter(data.batches("real", 0)))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_keep_freed_memory_applies_once_and_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(cpu_malloc, "_done", False)
    monkeypatch.setenv("HARMONYKIT_MALLOC_TUNE", "0")
    assert cpu_malloc.keep_freed_memory() is False and cpu_malloc._done is False
    monkeypatch.delenv("HARMONYKIT_MALLOC_TUNE")
    assert cpu_malloc.keep_freed_memory() is True and cpu_malloc._done is True
    assert cpu_malloc.keep_freed_memory() is True
