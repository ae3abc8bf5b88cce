"""Fixtures of the evaluation / inference / publishing tests."""
from __future__ import annotations

import pytest
import torch

import harmonykit


@pytest.fixture(scope="module", autouse=True)
def _one_intra_op_thread():
    """These tests run many small tensor ops; with one intra-op thread they do not stall on
    OpenMP barriers when the two cores are shared with other processes (results are identical)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny():
    """The real iDIH-256 architecture at reduced width (randomly initialised, eval mode)."""
    torch.manual_seed(0)
    return harmonykit.create_model("idih256", ch=8, max_channels=64).eval()
