"""The health figures that need no database: the estimate of a table's free space, and sizes
and durations as they are shown."""

from __future__ import annotations

import pytest

from django_pgjobs.observability.bloat import estimated_bloat_bytes, expected_pages
from django_pgjobs.observability.display import byte_size, elapsed


def test_expected_pages_match_what_postgresql_wrote() -> None:
    # A table of (bigint, text, jsonb, timestamptz) rows, 51 bytes of data on average:
    # PostgreSQL 15 stored 100,000 of them in 1,031 pages of 8 KiB.
    pages = expected_pages(
        100_000, data_width=51, columns=4, has_nulls=False, block_size=8192, fillfactor=100
    )
    assert pages == 1031


def test_fillfactor_and_nulls_make_rows_take_more_pages() -> None:
    base = {"data_width": 51.0, "columns": 4, "block_size": 8192}
    packed = expected_pages(100_000, has_nulls=False, fillfactor=100, **base)  # type: ignore[arg-type]
    assert expected_pages(100_000, has_nulls=False, fillfactor=50, **base) > packed * 1.9  # type: ignore[arg-type]
    # Nine columns' null bitmap (two bytes) pushes the 23-byte header past 24, to 32 aligned;
    # four columns' (one byte) still fits in 24.
    wide = {"data_width": 51.0, "columns": 9, "block_size": 8192}
    assert expected_pages(100_000, has_nulls=True, fillfactor=100, **base) == packed  # type: ignore[arg-type]
    assert expected_pages(100_000, has_nulls=True, fillfactor=100, **wide) > packed  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pages", "rows", "width", "bloat"),
    [
        (1031, 100_000, 51.0, 0),  # packed
        (900, 100_000, 51.0, 0),  # statistics older than the table: never below zero
        (10_310, 100_000, 51.0, (10_310 - 1031) * 8192),  # nine pages in ten empty
        (1031, -1, 51.0, None),  # never vacuumed or analysed
        (1031, 100_000, None, None),  # no column statistics
    ],
)
def test_bloat_is_the_heap_beyond_what_its_rows_need(
    pages: int, rows: float, width: float | None, bloat: int | None
) -> None:
    found = estimated_bloat_bytes(
        pages=pages, rows=rows, data_width=width, columns=4, has_nulls=False, block_size=8192,
        fillfactor=100,
    )  # fmt: skip
    assert found == bloat


@pytest.mark.parametrize(
    ("count", "shown"),
    [(0, "0 bytes"), (8192, "8,192 bytes"), (10 * 1024, "10 KiB"), (97 * 1024**2, "97 MiB"),
     (1536 * 1024**2, "1,536 MiB"), (20 * 1024**3, "20 GiB"), (2 * 1024**5, "2,048 TiB")],
)  # fmt: skip
def test_sizes_are_shown_as_pg_size_pretty_shows_them(count: int, shown: str) -> None:
    assert byte_size(count) == shown


def test_durations_are_shown_to_the_second() -> None:
    assert elapsed(7380.4) == "2:03:00"
    assert elapsed(90061) == "1 day, 1:01:01"
