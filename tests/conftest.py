"""Shared test set-up: no network, a private HF cache, and the two data folders.

``HARMONYKIT_PARITY_DIR`` (official-code fixtures) and ``HARMONYKIT_REAL_DATA`` (real images)
default to ``../shared/...`` beside the checkout. Tests that need them skip with a reason
only when the folder does not exist.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# Before anything imports huggingface_hub: offline, private cache, closed endpoint.
_HF_HOME = tempfile.mkdtemp(prefix="hk-hf-home-")
atexit.register(shutil.rmtree, _HF_HOME, True)  # the private cache goes with the session
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_CACHE"] = os.path.join(_HF_HOME, "hub")
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ.setdefault("HARMONYKIT_DISABLE_PROGRESS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

_REPO = Path(__file__).resolve().parents[1]


def _env_dir(var: str, default: Path) -> Path:
    return Path(os.environ.get(var) or default).expanduser().resolve()


PARITY_DIR = _env_dir("HARMONYKIT_PARITY_DIR", _REPO.parent / "shared" / "parity" / "public")
REAL_DATA_DIR = _env_dir("HARMONYKIT_REAL_DATA", _REPO.parent / "shared" / "data")
# Model-zoo parity fixtures made by the official code of each network (see its README):
# ``<root>/<model>/``; another fixture set of the same format can replace the root.
ZOO_FIXTURES_DIR = _env_dir("HARMONYKIT_ZOO_FIXTURES", _REPO / "tests" / "fixtures" / "zoo")


def zoo_fixture_dir(model: str) -> Path:
    """``<HARMONYKIT_ZOO_FIXTURES>/<model>``; a missing folder is a failure, not a skip (the
    fixtures are committed with the tests)."""
    d = ZOO_FIXTURES_DIR / model
    if not d.is_dir():
        raise FileNotFoundError(f"zoo parity fixtures for {model!r} not found at {d} (HARMONYKIT_ZOO_FIXTURES)")
    return d


IN_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")


def _required_dir(path: Path, what: str, var: str) -> Path:
    """The folder, or a skip with a reason; under ``CI=true`` a missing folder FAILS the test,
    so the project's proof cannot vanish from a CI run unnoticed."""
    if not path.is_dir():
        msg = f"{what} not found at {path} (set {var})"
        if IN_CI:
            pytest.fail(f"CI=true and {msg}", pytrace=False)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    return _required_dir(PARITY_DIR, "parity fixtures", "HARMONYKIT_PARITY_DIR")


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    return _required_dir(REAL_DATA_DIR, "real test data", "HARMONYKIT_REAL_DATA")


@pytest.fixture(scope="session")
def hf_cache_dir() -> Path:
    return Path(os.environ["HF_HUB_CACHE"])


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
