"""Where the model-zoo parity fixtures live, and the reader of the manifest-style sets.

``ZOO_ROOT`` is ``$HARMONYKIT_ZOO_FIXTURES`` (another fixture set of the same format, e.g. one
made with another seed and sizes) or ``tests/fixtures/zoo``. Each model has its own folder; its
README says how the official code produced it. A missing set is a failure, never a skip.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Dict, List, Tuple

import torch
from safetensors.torch import load_file

ZOO_ROOT = pathlib.Path(os.environ.get("HARMONYKIT_ZOO_FIXTURES") or pathlib.Path(__file__).resolve().parent / "fixtures" / "zoo")
TOL = dict(atol=1e-4, rtol=1e-4)


class ManifestFixtures:
    """A set laid out as ``<model>/manifest.json`` (``configs``, ``param_counts``) plus one
    ``<config>.json`` (meta: ``official_keys``, cases) / ``<config>.safetensors`` (weights under
    ``state_dict.<key>``, inputs under ``<case>.composite_uint8`` / ``<case>.mask_uint8``) per
    configuration. Reading the manifest happens at construction (test collection)."""

    def __init__(self, model: str) -> None:
        self.dir = ZOO_ROOT / model
        path = self.dir / "manifest.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{model} parity fixtures not found: {path} (HARMONYKIT_ZOO_FIXTURES={os.environ.get('HARMONYKIT_ZOO_FIXTURES')})"
            )
        self.manifest: Dict[str, Any] = json.loads(path.read_text())
        self.configs: List[str] = list(self.manifest["configs"])

    def load(self, config: str) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
        """(meta, tensors) of one configuration."""
        meta = json.loads((self.dir / f"{config}.json").read_text())
        return meta, load_file(str(self.dir / f"{config}.safetensors"))

    @staticmethod
    def official_sd(meta: Dict[str, Any], tensors: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The official state dict, in the official key order."""
        return {k: tensors[f"state_dict.{k}"] for k in meta["official_keys"]}

    @staticmethod
    def inputs(tensors: Dict[str, torch.Tensor], case: Dict[str, Any]) -> Tuple[torch.Tensor, torch.Tensor]:
        """composite (B, 3, H, W) in [0, 1] and mask (B, 1, H, W) in {0, 1} of one case."""
        name = case["name"]
        comp = tensors[f"{name}.composite_uint8"].float() / 255
        mask = tensors[f"{name}.mask_uint8"].float()
        assert tuple(comp.shape) == (case["batch"], 3, *case["size"])
        return comp, mask


def assert_official_layout_loads(arch: str, official_keys, to_ours, tmp_path: pathlib.Path) -> None:
    """A random state dict with the official default model's ``(key, shape)`` list (official
    order; empty shape = an integer buffer) loads strictly through ``create_model(arch,
    checkpoint_path=)``, and ``to_ours`` maps it one-to-one onto our state dict."""
    import harmonykit

    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(shape, generator=g) if shape else torch.tensor(3) for k, shape in official_keys}
    path = tmp_path / "official.pth"
    torch.save(sd, path)
    net = harmonykit.create_model(arch, checkpoint_path=path)
    ours = to_ours(sd)
    assert len(ours) == len(sd) == len(net.state_dict())
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, ours[k].to(v.dtype), atol=0, rtol=0)
