"""The resume journal: per-image records appended as JSON lines, batch by batch.

Rank r of a run writes ``out/per_image.jsonl`` (rank 0) or ``out/per_image.rank{r}.jsonl``: a
header line ``{"config": ...}``, then one object per image. A run started again with the same
configuration reads every rank's file and skips what is recorded; a torn last line (the process
was killed mid-write) is ignored and overwritten; a file of another configuration is refused.

>>> import tempfile
>>> out = Path(tempfile.mkdtemp())
>>> j = Journal(out, 0, {"steps": 4})
>>> j.read(), j.append([{"index": 0, "metrics": {}}]), [p.name for p in out.iterdir()]
([], None, ['per_image.jsonl'])
>>> Journal(out, 0, {"steps": 4}).read()
[{'index': 0, 'metrics': {}}]
"""
from __future__ import annotations

import glob
import json
import os
from pathlib import Path

from .model import EvaluationInputError

__all__ = ["Journal", "read_records"]


def _rank_files(out_dir: Path) -> list[Path]:
    return sorted(Path(p) for p in glob.glob(str(out_dir / "per_image*.jsonl")))


def read_records(path: Path) -> tuple[dict | None, list[dict], int]:
    """(header, records, byte length of the complete lines) of one JSONL file; a torn last line
    (the process was killed mid-write) is ignored."""
    header, records, good = None, [], 0
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            break
        line = data[pos:end]
        pos = end + 1
        try:
            obj = json.loads(line)
        except ValueError:
            break  # a torn line: nothing after it was written by a live process
        if "config" in obj:
            header = obj
        else:
            records.append(obj)
        good = pos
    return header, records, good


class Journal:
    """The per-image JSONL files of a run in ``out``: this rank appends to its own file, which
    (with ``out`` itself) is created at the first write, so a run that fails before its first
    batch is recorded leaves nothing behind."""

    def __init__(self, out: Path, rank: int, config: dict):
        self.out, self.config = Path(out), config
        self.own = self.out / ("per_image.jsonl" if rank == 0 else f"per_image.rank{rank}.jsonl")
        self._good = 0       # byte length of the complete lines of this rank's file
        self._opened = False

    def read(self) -> list[dict]:
        """The records of every rank's file; a file of another configuration is refused."""
        records = []
        for path in _rank_files(self.out):
            header, recs, good = read_records(path)
            if header is not None and header["config"] != self.config:
                raise EvaluationInputError(f"out_dir {str(self.out)!r} holds a run with another "
                                 f"configuration ({path.name}); use a new out_dir or remove it")
            records += recs
            if path == self.own:
                self._good = good
        return records

    def append(self, records: list[dict]) -> None:
        """One write per batch, on disk before the next batch starts."""
        if not self._opened:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.own.exists():
                os.truncate(self.own, self._good)  # drop a torn last line
            if self._good == 0:
                self.own.write_text(json.dumps({"config": self.config}) + "\n")
            self._opened = True
        with open(self.own, "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in records))
            f.flush()
            os.fsync(f.fileno())

    def own_records(self) -> list[dict]:
        """This rank's records, of every attempt."""
        return read_records(self.own)[1] if self.own.exists() else []

    def all_records(self) -> list[dict]:
        """The records of every rank's file in ``out``."""
        return [r for path in _rank_files(self.out) for r in read_records(path)[1]]
