"""Run logs: ``log.jsonl`` (every row), ``<split>.csv`` and TensorBoard scalars, and the
running averages shown on the progress bar."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

__all__ = ["RunLogger", "RunningMean"]


class RunLogger:
    """Appends rows to the run folder (main process only; ``run_dir=None`` writes nothing).

    Args:
        run_dir: the run folder.
        csv: also write ``<split>.csv`` (header from the first row, kept on resume).
        tensorboard: also write scalars under ``run_dir/tb`` (skipped when not installed).
        enabled: ``False`` on non-main ranks.
    """

    def __init__(self, run_dir: Optional[Path], csv: bool = True, tensorboard: bool = True, enabled: bool = True) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.csv, self.tensorboard = csv, tensorboard
        self.enabled = enabled and self.run_dir is not None
        self._csv_fields: Dict[str, List[str]] = {}
        self._tb: Any = None

    def row(self, split: str, row: Mapping[str, Any], iteration: int) -> None:
        """Log one row (``{"iteration": ..., metric: value, ...}``) of ``split`` (train / val)."""
        if not self.enabled:
            return
        assert self.run_dir is not None
        row = {"split": split, **row}
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.csv:
            self._csv_row(split, row)
        if self.tensorboard:
            tb = self._writer()
            if tb:
                for k, v in row.items():
                    if isinstance(v, (int, float)) and k != "iteration":
                        tb.add_scalar(f"{split}/{k}", v, row.get("iteration", iteration))

    def _csv_row(self, split: str, row: Mapping[str, Any]) -> None:
        assert self.run_dir is not None
        path = self.run_dir / f"{split}.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            if split not in self._csv_fields:
                self._csv_fields[split] = list(row.keys()) if new else _csv_header(path) or list(row.keys())
            w = csv.DictWriter(f, fieldnames=self._csv_fields[split], extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    def _writer(self) -> Any:
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tb"))
            except Exception:  # noqa: BLE001 - tensorboard is optional
                self._tb = False
        return self._tb

    def close(self) -> None:
        if self._tb:
            self._tb.close()
        self._tb = None


class RunningMean:
    """Exponential moving averages (factor 0.9) of the logged loss terms, for the progress bar."""

    def __init__(self) -> None:
        self.values: Dict[str, float] = {}

    def update(self, vals: Mapping[str, float]) -> None:
        for k, v in vals.items():
            self.values[k] = v if k not in self.values else 0.9 * self.values[k] + 0.1 * v


def _csv_header(path: Path) -> Optional[List[str]]:
    try:
        with open(path, newline="") as f:
            return next(csv.reader(f))
    except (OSError, StopIteration):
        return None
