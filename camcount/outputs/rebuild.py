"""The warehouse rebuilt from the archive: a backup that is also a replay.

The archive holds every raw event, window row, dead letter and camera
version the pipeline made, each with its identity, so loading it into an
empty warehouse gives every documented query the answer the original
gave. Into a warehouse that has rows already it adds what is missing and
doubles nothing: the tables keep one row per identity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

from camcount.outputs.archive import dataset, kinds_in
from camcount.outputs.errors import ArchiveError
from camcount.warehouse.connection import Warehouse
from camcount.warehouse.rows import KINDS

#: Rows per insert: large enough that each costs little, small enough to
#: keep memory flat on a large archive.
REBUILD_BATCH_ROWS = 50_000

#: ``progress(rows done, rows in all)``.
Progress = Callable[[int, int], None]


@dataclass
class RebuildReport:
    """Rows read from the archive and inserted, per kind."""

    rows: dict[str, int] = field(default_factory=dict)
    files: int = 0

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def rebuild_from_archive(
    uri: str,
    warehouse: Warehouse,
    progress: Progress | None = None,
    batch_rows: int = REBUILD_BATCH_ROWS,
) -> RebuildReport:
    """Insert every row of the archive at ``uri`` into ``warehouse``.

    1. list the kinds the archive holds (``ArchiveError`` when it holds
       none: a wrong URI must not look like an empty success);
    2. count their rows, so progress has a total;
    3. read each kind in batches, in its event schema, and insert them.
    """
    # Step 1
    kinds = [k for k in kinds_in(uri) if k in KINDS]
    if not kinds:
        raise ArchiveError(uri, "holds no archive files (kind=.../part-*.parquet)")
    # Step 2
    sets = {kind: dataset(uri, kind) for kind in kinds}
    total = sum(d.count_rows() for d in sets.values())
    report = RebuildReport(files=sum(len(d.files) for d in sets.values()))
    done = 0
    if progress is not None:
        progress(0, total)
    # Step 3
    for kind, data in sets.items():
        schema = KINDS[kind].source_schema
        report.rows[kind] = 0
        for batch in data.to_batches(columns=schema.names, batch_size=batch_rows):
            table = pa.Table.from_batches([batch]).cast(schema)
            n = warehouse.insert(kind, table)
            report.rows[kind] += n
            done += batch.num_rows
            if progress is not None:
                progress(done, total)
    return report
