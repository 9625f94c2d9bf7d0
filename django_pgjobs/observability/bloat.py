"""How much of a table's heap holds no live row, estimated from the planner's statistics.

Exact figures need ``pgstattuple``, an extension that reads every page and that we cannot
require (creating it takes a superuser). Instead, as the statistics-based queries operators have
long used, we compute how many pages the live rows *should* take, from ``pg_class.reltuples``
and each column's average width and null fraction in ``pg_stats``, and call the rest of
``pg_class.relpages`` bloat: dead rows vacuum has not removed yet, and the free space it left,
which later inserts and updates reuse and only ``VACUUM FULL`` or ``pg_repack`` give back to the
operating system.

Limits, said plainly:

- it is as fresh as the last ``ANALYZE`` or ``VACUUM`` (``relpages``, ``reltuples``) and the
  last ``ANALYZE`` (widths); a table never analysed has no estimate (None);
- padding between columns is not counted, so a row is taken as a few bytes narrower than it
  is and bloat is overstated by a few percent; on tables under ~100 pages the rounding to whole
  pages dominates and the figure means little;
- it covers the heap: TOAST (large payloads and errors stored out of line) and indexes are not
  estimated, only measured (``pg_table_size``, ``pg_indexes_size``).
"""

from __future__ import annotations

import math

# PostgreSQL's layout constants (src/include/storage/bufpage.h, access/htup_details.h): a page
# header, a tuple header before its null bitmap, a line pointer per tuple, the alignment of
# tuple headers and data (MAXALIGN on 64-bit platforms), and the most tuples a heap page holds.
PAGE_HEADER = 24
TUPLE_HEADER = 23
LINE_POINTER = 4
MAXALIGN = 8
MAX_TUPLES_PER_PAGE = 291


def _align(size: float) -> int:
    return math.ceil(size / MAXALIGN) * MAXALIGN


def expected_pages(
    rows: float,
    *,
    data_width: float,
    columns: int,
    has_nulls: bool,
    block_size: int,
    fillfactor: int,
) -> int:
    """Heap pages ``rows`` rows take when packed to ``fillfactor``: each row a header (with a
    null bitmap when any column holds nulls), its data and a line pointer."""
    header = TUPLE_HEADER + (math.ceil(columns / 8) if has_nulls else 0)
    row_bytes = _align(header) + _align(data_width) + LINE_POINTER
    usable = (block_size - PAGE_HEADER) * fillfactor / 100
    per_page = max(1, min(MAX_TUPLES_PER_PAGE, math.floor(usable / row_bytes)))
    return math.ceil(rows / per_page)


def estimated_bloat_bytes(
    *,
    pages: int,
    rows: float,
    data_width: float | None,
    columns: int,
    has_nulls: bool,
    block_size: int,
    fillfactor: int,
) -> int | None:
    """Bytes of the heap beyond what its live rows need, or None when the statistics to say
    are missing (never analysed: ``reltuples`` is -1 and ``pg_stats`` empty)."""
    if rows < 0 or data_width is None:
        return None
    needed = expected_pages(
        rows,
        data_width=data_width,
        columns=columns,
        has_nulls=has_nulls,
        block_size=block_size,
        fillfactor=fillfactor,
    )
    return max(0, pages - needed) * block_size
