"""Benchmark workflow: three no-op steps, so what is measured is the checkpointing itself."""

from __future__ import annotations

from django_pgjobs import step, workflow


@step("bench.noop_step")
def noop_step(value: int) -> int:
    return value


@workflow("bench.three_steps")
def three_steps(n: int) -> int:
    result: int = noop_step(noop_step(noop_step(n)))
    return result
