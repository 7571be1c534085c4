"""Terminal progress: a bar and one line per node change, from stored events."""

from __future__ import annotations

import io
from typing import Any

from executions.events import event_record
from executions.models import Run
from executions.progress import RunProgress, format_bar, format_node_line
from tests.executions.monitoring.test_ws_auth import make_run


def ev(seq: int, type_: str, node_id: str | None = None, **data: Any) -> dict[str, Any]:
    return {
        "seq": seq,
        "type": type_,
        "run_id": "r",
        "workflow_id": "w",
        "node_id": node_id,
        "ts": "2026-11-25T20:00:00.000Z",
        "data": data,
    }


def test_format_bar_and_node_line() -> None:
    assert format_bar(3, 9, "running", width=9) == "[###------] 3/9  33% running"
    assert format_bar(0, 0, "queued", width=4) == "[----] 0/0   0% queued"
    line = format_node_line(
        ev(5, "node.failed", "fetch", status="failed", attempt=3, duration_ms=1520, error={"code": "http_5xx", "message": "503"})
    )
    assert line.split() == ["fetch", "failed", "attempt", "3", "1.52", "s", "error", "http_5xx"]
    assert "41 ms" in format_node_line(ev(6, "node.succeeded", "a", status="succeeded", attempt=1, duration_ms=41))


def test_feed_prints_one_line_per_node_change_and_the_bar_on_a_plain_stream() -> None:
    out = io.StringIO()
    p = RunProgress("r", out, tty=False, width=4)
    p.feed(
        [
            ev(1, "run.started", status="running", progress={"done": 0, "total": 2}),
            ev(2, "node.started", "a", status="running", attempt=1, progress={"done": 0, "total": 2}),
            ev(3, "node.succeeded", "a", status="succeeded", attempt=1, duration_ms=12, progress={"done": 1, "total": 2}),
            ev(
                3, "node.succeeded", "a", status="succeeded", attempt=1, duration_ms=12, progress={"done": 1, "total": 2}
            ),  # repeated: ignored
        ]
    )
    assert not p.finished
    p.feed(
        [
            ev(
                4,
                "node.failed",
                "b",
                status="failed",
                attempt=2,
                duration_ms=5,
                error={"code": "timeout"},
                progress={"done": 2, "total": 2},
            ),
            ev(5, "run.failed", status="failed", progress={"done": 2, "total": 2}),
        ]
    )
    assert p.finished and p.status == "failed"
    lines = out.getvalue().splitlines()
    assert lines == [
        "[----] 0/2   0% running",
        "  a                         running     attempt 1",
        "  a                         succeeded   attempt 1  12 ms",
        "[##--] 1/2  50% running",
        "  b                         failed      attempt 2  5 ms  error timeout",
        "[####] 2/2 100% running",
        "[####] 2/2 100% failed",
    ]


def test_tty_redraws_the_bar_in_place() -> None:
    out = io.StringIO()
    p = RunProgress("r", out, tty=True, width=2)
    p.feed(
        [
            ev(1, "node.started", "a", status="running", attempt=1, progress={"done": 0, "total": 1}),
            ev(2, "node.succeeded", "a", status="succeeded", attempt=1, progress={"done": 1, "total": 1}),
            ev(3, "run.succeeded", status="succeeded", progress={"done": 1, "total": 1}),
        ]
    )
    text = out.getvalue()
    assert "\r\033[K[##] 1/1 100% succeeded\n" in text
    assert text.count("\n") == 3  # two node lines and the final newline under the bar


def test_follow_polls_the_database_until_the_run_ends(db: Any, user: Any) -> None:
    run = make_run(user)
    event_record(run_id=run.id, type="run.started", data={"status": "running"})
    event_record(run_id=run.id, type="node.succeeded", node_id="a", data={"status": "succeeded", "attempt": 1, "duration_ms": 3})
    calls: list[float] = []

    def fake_sleep(seconds: float) -> None:
        # Between two polls the run finishes (as a worker would commit it).
        calls.append(seconds)
        if len(calls) == 1:
            Run.objects.filter(id=run.id).update(status="succeeded", nodes_done=1)
            event_record(run_id=run.id, type="run.succeeded", data={"status": "succeeded"})

    out = io.StringIO()
    status = RunProgress(run.id, out, tty=False, poll_interval=0.01, sleep=fake_sleep).follow(timeout=10)
    assert status == "succeeded"
    assert len(calls) == 1
    text = out.getvalue()
    assert "  a                         succeeded   attempt 1  3 ms" in text
    assert text.splitlines()[-1].endswith("succeeded")


def test_follow_run_writes_through_a_commands_output_wrapper(db: Any, user: Any) -> None:
    from django.core.management.base import OutputWrapper

    from executions.progress import follow_run

    run = make_run(user)
    event_record(run_id=run.id, type="node.succeeded", node_id="a", data={"status": "succeeded", "attempt": 1})
    Run.objects.filter(id=run.id).update(status="succeeded")
    event_record(run_id=run.id, type="run.succeeded", data={"status": "succeeded"})
    raw = io.StringIO()
    assert follow_run(run_id=run.id, stream=OutputWrapper(raw), timeout_s=5) == "succeeded"
    assert "  a                         succeeded   attempt 1\n" in raw.getvalue()

    unfinished = make_run(user)
    raw = io.StringIO()
    assert follow_run(run_id=unfinished.id, stream=raw, timeout_s=0.2, poll_interval=0.05) == "running"
    assert raw.getvalue().endswith("run still running after 0.2 s\n")
