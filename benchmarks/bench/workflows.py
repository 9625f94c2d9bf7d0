"""Benchmark workflows: three no-op steps, so what is measured is the checkpointing itself; one
that waits for a message."""

from __future__ import annotations

from django_pgjobs import recv, step, workflow


@step("bench.noop_step")
def noop_step(value: int) -> int:
    return value


@workflow("bench.three_steps")
def three_steps(n: int) -> int:
    result: int = noop_step(noop_step(noop_step(n)))
    return result


@workflow("bench.receive_one")
def receive_one() -> object:
    """Waits for one message (benchmarks/pooled.py times send() to get_result())."""
    return recv("go", timeout=60)
