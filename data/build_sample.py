"""Rebuild data/helios_earth_sample.parquet from the public Helios Earth trace (maintainers only).

Reads the per-VC minute files with idlecap's own `helios` adapter and writes them in the
canonical format (UTC timestamps, the 2020-05-10 blackout kept but flagged in quality_flag).
Usage: python data/build_sample.py /path/to/helios_earth  (folder of *_cluster_sequence_vc.csv.gz)
"""
from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from warehouse.sources.base import SourceOptions  # noqa: E402
from warehouse.sources.helios import translate  # noqa: E402


def main(src: Path, out: Path) -> None:
    tables = []
    for f in sorted(src.glob("*_cluster_sequence_vc.csv*")):
        t = translate(f, SourceOptions())
        tables.append(t.table.drop_columns(["row_number"]))
    table = pa.concat_tables(tables).sort_by([("pool", "ascending"), ("ts", "ascending")])
    table = table.cast(pa.schema([
        ("ts", pa.timestamp("us", tz="UTC")), ("node_id", pa.string()), ("pool", pa.string()),
        ("gpu_model", pa.string()), ("gpus_total", pa.int32()), ("gpus_allocated", pa.int32()),
        ("gpu_util", pa.float64()), ("source", pa.string()), ("quality_flag", pa.string()),
    ]))
    pq.write_table(table, out, compression="zstd", compression_level=9)
    print(f"wrote {table.num_rows:,} rows to {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).resolve().parent / "helios_earth_sample.parquet")
