"""Export a harmonizer to ONNX or to a ``torch.export`` ExportedProgram.

The exported graph is the network at its own resolution (the low-resolution part of
:func:`harmonykit.harmonize`):

- inputs ``composite (B, 3, H, W)`` float32 in [0, 1] and ``mask (B, 1, H, W)`` float32 in
  [0, 1] (foreground = 1);
- output ``image (B, 3, H, W)``: the harmonized image on the [0, 1] scale, exactly
  ``model(composite, mask, domain).image`` (the chosen branch of a multi-domain model, ``real``
  by default; not clamped; background handling as the model's own output).

The full-resolution step of ``harmonize(policy="full")`` (fit a grid of affine colour maps from
the low-resolution composite to this output, apply them to the full-size composite, paste through
the mask) stays outside the graph: see ``docs/inference.md``.

>>> from harmonykit.export import export_model
>>> res = export_model("idih256", "idih256.onnx", dynamic=True)  # doctest: +SKIP
>>> run = load_exported(res.path); image = run(composite, mask)   # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

__all__ = [
    "FORMATS",
    "ExportWrapper",
    "ExportResult",
    "export_model",
    "load_exported",
    "parse_size",
    "format_for_path",
]

FORMATS = ("onnx", "exported-program")
"""``onnx`` (a ``.onnx`` file, onnxruntime and other runtimes) or ``exported-program``
(``torch.export.save`` archive, ``.pt2``; ``torch.export.load(path).module()`` runs it)."""

INPUT_NAMES = ("composite", "mask")
OUTPUT_NAMES = ("image",)
DEFAULT_OPSET = 17


class ExportWrapper(nn.Module):
    """``(composite, mask) -> image``: one branch of a harmonizer as a plain tensor function.

    Args:
        model: a :class:`~harmonykit.models.base.Harmonizer` (put in eval mode).
        domain: the branch of a multi-domain model (default: the model's default, ``real``).

    Forward: composite ``(B, 3, H, W)`` in [0, 1], mask ``(B, 1, H, W)`` in [0, 1] ->
    ``(B, 3, H, W)`` harmonized image on the [0, 1] scale (``model(...).image``).
    """

    def __init__(self, model: nn.Module, domain: Optional[str] = None) -> None:
        super().__init__()
        self.model = model.eval()
        resolve = getattr(model, "resolve_domain", None)
        self.domain = resolve(domain) if resolve is not None else domain

    def forward(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.model(composite, mask, domain=self.domain)
        return out.image if hasattr(out, "image") else out


@dataclass
class ExportResult:
    """What :func:`export_model` wrote and how well it matches eager PyTorch."""

    path: Path
    format: str
    input_size: Tuple[int, int]
    batch_size: int
    dynamic: bool
    domain: Optional[str]
    architecture: str = ""
    max_abs_diff: Optional[float] = None
    checks: Dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        h, w = self.input_size
        shape = "dynamic B, H, W" if self.dynamic else f"B={self.batch_size}, {h}x{w}"
        diff = "" if self.max_abs_diff is None else f"; max |diff| vs PyTorch {self.max_abs_diff:.2e}"
        dom = f", domain {self.domain}" if self.domain else ""
        return f"wrote {self.path} ({self.format}, {shape}{dom}){diff}"


def parse_size(text: Union[str, Sequence[int], int]) -> Tuple[int, int]:
    """``"HxW"`` / ``"N"`` / ``(h, w)`` / ``N`` -> ``(h, w)``; anything else raises ``ValueError``."""
    if isinstance(text, int):
        vals = [text, text]
    elif isinstance(text, str):
        parts = text.lower().replace("×", "x").split("x")
        try:
            vals = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"size {text!r}: expected HxW (e.g. 256x256) or N") from None
        if len(vals) == 1:
            vals = vals * 2
    else:
        vals = [int(v) for v in text]
    if len(vals) != 2 or min(vals) < 1:
        raise ValueError(f"size {text!r}: expected HxW (e.g. 256x256) or N with positive integers")
    return vals[0], vals[1]


def format_for_path(path: Union[str, os.PathLike], format: Optional[str] = None) -> str:
    """The export format: ``format`` when given (validated), else from the file suffix
    (``.onnx`` -> onnx, ``.pt2`` / ``.pt`` -> exported-program), else onnx."""
    if format is not None:
        if format not in FORMATS:
            raise ValueError(f"unknown export format {format!r}; expected one of: {', '.join(FORMATS)}")
        return format
    suffix = Path(path).suffix.lower()
    return "exported-program" if suffix in (".pt2", ".pt", ".ep") else "onnx"


def _resolve_model(
    model: Union[str, nn.Module], checkpoint: Optional[str], pretrained: bool, model_args: Dict[str, Any], allow_random: bool
) -> nn.Module:
    if isinstance(model, nn.Module):
        return model
    from harmonykit.inference import load_model

    return load_model(model, checkpoint_path=checkpoint, pretrained=pretrained, allow_random=allow_random, **model_args)


def _check_exportable(model: nn.Module, name: str) -> None:
    if not getattr(model, "exportable", True):
        why = getattr(model, "export_note", "its forward is data-dependent")
        raise ValueError(f"{name} cannot be exported: {why}")


def _example(model: nn.Module, size: Tuple[int, int], batch: int) -> Tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    h, w = size
    comp = torch.rand(batch, 3, h, w, generator=g)
    mask = torch.zeros(batch, 1, h, w)
    mask[..., h // 4 : h - h // 4, w // 4 : w - w // 4] = 1.0
    return comp, mask


def _second_size(model: nn.Module, size: Tuple[int, int]) -> Tuple[int, int]:
    """Another valid size (taller and wider by one size step) for checking a dynamic export."""
    div = int(getattr(model, "size_divisor", 1) or 1)
    step = div if div > 1 else 16
    return size[0] + step, size[1] + 2 * step


@contextlib.contextmanager
def _quiet() -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*TorchScript.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*dynamo=False.*")
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        yield


def _export_onnx(wrapper: ExportWrapper, example: Tuple[torch.Tensor, torch.Tensor], path: Path, dynamic: bool, opset: int) -> None:
    axes = {0: "batch", 2: "height", 3: "width"}
    dynamic_axes = {n: dict(axes) for n in (*INPUT_NAMES, *OUTPUT_NAMES)} if dynamic else None
    with _quiet(), torch.no_grad():
        # the TorchScript-based exporter: needs only onnx (the dynamo exporter needs onnxscript)
        torch.onnx.export(
            wrapper,
            example,
            str(path),
            dynamo=False,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
        )


def _size_oblivious() -> Any:
    """Treat dynamic sizes as possibly 1 (no 0/1 specialization), so a UNet whose bottleneck is
    1x1 at the smallest size exports one graph for every valid size."""
    try:
        from torch.fx.experimental import _config

        return _config.patch(backed_size_oblivious=True)
    except (ImportError, AttributeError):  # pragma: no cover - older torch
        return contextlib.nullcontext()


def _export_program(wrapper: ExportWrapper, example: Tuple[torch.Tensor, torch.Tensor], path: Path, dynamic: bool) -> None:
    from torch.export import Dim

    dynamic_shapes = None
    if dynamic:
        model = wrapper.model
        div = int(getattr(model, "size_divisor", 1) or 1)
        low = max(int(getattr(model, "min_size", 1) or 1), 2)
        batch = Dim("batch", min=1, max=1024)
        if div > 1:
            hb = Dim("height_blocks", min=max(-(-low // div), 1), max=16384 // div)
            wb = Dim("width_blocks", min=max(-(-low // div), 1), max=16384 // div)
            h, w = div * hb, div * wb
        else:
            h, w = Dim("height", min=low, max=16384), Dim("width", min=low, max=16384)
        dynamic_shapes = {"composite": {0: batch, 2: h, 3: w}, "mask": {0: batch, 2: h, 3: w}}
    with _quiet(), _size_oblivious():
        ep = torch.export.export(wrapper, example, dynamic_shapes=dynamic_shapes, strict=False)
    torch.export.save(ep, str(path))


def load_exported(path: Union[str, os.PathLike], format: Optional[str] = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A function ``(composite, mask) -> image`` (tensors) running an exported file:
    onnxruntime (CPU) for ``.onnx``, ``torch.export.load(path).module()`` for an ExportedProgram."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model not found: {path}")
    fmt = format_for_path(path, format)
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("running an ONNX file needs onnxruntime: pip install 'harmonykit[export]'") from None
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def run_onnx(composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            feeds = {"composite": composite.detach().float().cpu().numpy(), "mask": mask.detach().float().cpu().numpy()}
            return torch.from_numpy(session.run(None, feeds)[0])

        return run_onnx
    module = torch.export.load(str(path)).module()

    def run_ep(composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(composite, mask)

    return run_ep


def export_model(
    model: Union[str, nn.Module],
    out: Union[str, os.PathLike],
    format: Optional[str] = None,
    *,
    size: Optional[Union[str, Tuple[int, int]]] = None,
    dynamic: bool = False,
    domain: Optional[str] = None,
    batch_size: int = 1,
    checkpoint: Optional[Union[str, os.PathLike]] = None,
    pretrained: bool = False,
    model_args: Optional[Dict[str, Any]] = None,
    allow_random: bool = False,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    atol: float = 1e-4,
) -> ExportResult:
    """Export ``model`` (anything :func:`harmonykit.create_model` accepts, or a module) to ``out``.

    Args:
        model: model name (``"idih256"``, ``"arch.tag"``, ``"local-dir:..."``, ``"hf-hub:..."``)
            or a built harmonizer.
        out: output file; its parent folder is created.
        format: ``"onnx"`` or ``"exported-program"``; default from ``out``'s suffix
            (``.pt2`` -> exported-program, else onnx).
        size: ``(h, w)`` or ``"HxW"`` of the example input (the fixed input size unless
            ``dynamic``); default the model's ``pretrained_cfg["input_size"]``. Must be valid for
            the model (``model.check_input_size``).
        dynamic: batch, height and width dynamic (any size the model accepts).
        domain: branch of a multi-domain model (default ``real``).
        batch_size: batch of the example (the fixed batch unless ``dynamic``).
        checkpoint, pretrained, model_args, allow_random: as for
            :func:`harmonykit.inference.load_model` (a name without weights is refused unless
            ``allow_random``).
        opset: ONNX opset.
        verify: run the exported file (onnxruntime / ``torch.export.load``) against eager
            PyTorch at the example size (and a second size when ``dynamic``) and raise
            ``RuntimeError`` when the max |diff| exceeds ``atol``. Skipped for ONNX without
            onnxruntime installed.

    Returns:
        :class:`ExportResult`.
    """
    fmt = format_for_path(out, format)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    net = _resolve_model(model, checkpoint, pretrained, dict(model_args or {}), allow_random).eval()
    name = getattr(net, "architecture", None) or (model if isinstance(model, str) else type(net).__name__)
    _check_exportable(net, repr(name))
    if size is None:
        from harmonykit.inference import model_input_size

        size = model_input_size(net)
    size = parse_size(size)
    if hasattr(net, "check_input_size"):
        net.check_input_size(*size)
    wrapper = ExportWrapper(net, domain).eval()
    trace_size = size
    if dynamic and fmt == "exported-program":
        # torch.export specializes every size of 1 (batch, or a UNet bottleneck of 1x1): trace a
        # batch of 2 at a size whose feature maps are all > 1; the constraints still allow `size`
        batch_size = max(batch_size, 2)
        trace_size = _second_size(net, size)
    example = _example(net, trace_size, batch_size)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part" + path.suffix)
    try:
        if fmt == "onnx":
            _export_onnx(wrapper, example, tmp, dynamic, opset)
        else:
            _export_program(wrapper, example, tmp, dynamic)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    result = ExportResult(path, fmt, size, batch_size, dynamic, getattr(wrapper, "domain", None), str(name))
    if verify:
        if fmt == "onnx":
            try:
                import onnxruntime  # noqa: F401
            except ImportError:
                return result
        run = load_exported(path, fmt)
        sizes = [size] + ([_second_size(net, size)] if dynamic else [])
        for s in sizes:
            b = batch_size if not dynamic else batch_size + 1
            comp, mask = _example(net, s, b)
            with torch.no_grad():
                ref = wrapper(comp, mask)
            got = run(comp, mask)
            diff = float((got - ref).abs().max())
            result.checks[f"{b}x{s[0]}x{s[1]}"] = diff
        result.max_abs_diff = max(result.checks.values())
        if result.max_abs_diff > atol:
            raise RuntimeError(
                f"exported {fmt} model {path} differs from PyTorch by {result.max_abs_diff:.3g} (> {atol}) "
                f"at {result.checks}"
            )
    return result
