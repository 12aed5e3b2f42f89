"""Write generated events to files, batch by batch: Parquet, CSV or JSON Lines (chosen by suffix)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

#: File suffixes :func:`write_batches` understands.
FORMATS = (".parquet", ".csv", ".jsonl")


def output_format(path: Path) -> str:
    """The format of ``path`` from its suffix, or a clear error (also when Parquet's engine is not installed)."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unknown output format {suffix!r}; use one of {', '.join(FORMATS)}")
    if suffix == ".parquet":
        try:
            importlib.import_module("pyarrow")
        except ImportError:
            raise ValueError(
                f"{path}: writing Parquet needs pyarrow, which is not installed (it is an extra, left out of the "
                "Docker image): pip install 'devintel[parquet]', or write .csv or .jsonl"
            ) from None
    return suffix


def write_batches(batches: Iterable[pd.DataFrame], path: Path) -> int:
    """Stream ``batches`` into ``path`` and return the number of rows written.

    The file appears only when complete: it is written next to its final name and renamed at the end,
    so an interrupted run never leaves a truncated dataset behind.
    """
    fmt = output_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    rows = 0
    try:
        if fmt == ".parquet":
            rows = _write_parquet(batches, partial)
        else:
            with partial.open("w", encoding="utf-8", newline="") as out:
                for i, batch in enumerate(batches):
                    if fmt == ".csv":
                        batch.to_csv(out, index=False, header=i == 0, lineterminator="\n")
                    else:
                        out.write(batch.to_json(orient="records", lines=True, double_precision=6))
                    rows += len(batch)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return rows


def _write_parquet(batches: Iterable[pd.DataFrame], path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for batch in batches:
            table = pa.Table.from_pandas(batch, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table)
            rows += len(batch)
    finally:
        if writer is not None:
            writer.close()
    return rows
