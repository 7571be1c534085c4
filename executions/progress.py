"""Terminal progress of a run: a progress bar plus one line per node change.

``RunProgress(run_id, stream).follow(timeout)`` polls the run's stored events
after the last seen ``seq`` (the database is the truth, and polling works in
the embedded in-process case where no channel layer is shared) and renders
them. ``feed(payloads)`` is the pure part: it takes DESIGN §6 payloads and
writes to the stream, so it is unit-tested with a fake stream.

On a TTY the bar is redrawn in place (``\\r``) below the node lines; on any
other stream (a pipe, a log file, a test's StringIO) the bar is its own line,
written when the progress or the run status changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from executions.broadcast import RUN_TERMINAL_EVENTS

BAR_WIDTH = 30


def format_duration(ms: Any) -> str:
    if not isinstance(ms, (int, float)):
        return ""
    if ms < 1000:
        return f"{int(ms)} ms"
    return f"{ms / 1000:.2f} s"


def format_bar(done: int, total: int, status: str, width: int = BAR_WIDTH) -> str:
    """``[######------]  3/9  33% running``."""
    total = max(total, 0)
    done = max(0, min(done, total)) if total else 0
    filled = int(width * done / total) if total else 0
    pct = int(100 * done / total) if total else 0
    return f"[{'#' * filled}{'-' * (width - filled)}] {done}/{total} {pct:3d}% {status}"


def format_node_line(payload: dict[str, Any]) -> str:
    """One node change: node id, status, attempt, duration, error code."""
    data = payload.get("data") or {}
    status = str(data.get("status") or payload["type"].split(".", 1)[1])
    parts = [f"  {payload.get('node_id') or ''!s:<24}", f"{status:<10}"]
    attempt = data.get("attempt")
    if attempt:
        parts.append(f"attempt {attempt}")
    duration = format_duration(data.get("duration_ms"))
    if duration:
        parts.append(duration)
    error = data.get("error")
    if isinstance(error, dict) and error.get("code"):
        parts.append(f"error {error['code']}")
    reason = data.get("reason")
    if reason and status in {"deferred", "skipped", "cancelled"}:
        parts.append(f"({reason})")
    return "  ".join(parts).rstrip()


class RunProgress:
    """Follows one run's events and renders them to ``stream``."""

    def __init__(
        self,
        run_id: Any,
        stream: TextIO,
        *,
        poll_interval: float = 0.1,
        width: int = BAR_WIDTH,
        tty: bool | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.run_id = run_id
        self.stream = stream
        self.poll_interval = poll_interval
        self.width = width
        self.tty = bool(stream.isatty()) if tty is None else tty
        self.sleep = sleep
        self.last_seq = 0
        self.status = "queued"
        self.done = 0
        self.total = 0
        self.finished = False
        self._bar_shown = ""
        self._workflow_id: Any = None

    # -- rendering (pure) -------------------------------------------------

    def feed(self, payloads: Iterable[dict[str, Any]]) -> None:
        """Render events in seq order; events already seen are ignored."""
        for payload in payloads:
            seq = int(payload["seq"])
            if seq <= self.last_seq:
                continue
            self.last_seq = seq
            data = payload.get("data") or {}
            kind = str(payload["type"])
            progress = data.get("progress")
            if isinstance(progress, dict):
                self.done = int(progress.get("done") or 0)
                self.total = int(progress.get("total") or 0)
            if kind.startswith("node."):
                self._line(format_node_line(payload))
            elif kind.startswith("run."):
                self.status = str(data.get("status") or kind.split(".", 1)[1])
                if kind in RUN_TERMINAL_EVENTS:
                    self.finished = True
                elif kind == "run.resumed":
                    self.finished = False
            self._bar()
        if self.finished:
            self._end()

    def _line(self, text: str) -> None:
        if self.tty and self._bar_shown:
            self.stream.write("\r\033[K")
            self._bar_shown = ""
        self.stream.write(text + "\n")

    def _bar(self) -> None:
        bar = format_bar(self.done, self.total, self.status, self.width)
        if self.tty:
            self.stream.write("\r\033[K" + bar)
            self._bar_shown = bar
        elif bar != self._bar_shown:
            self.stream.write(bar + "\n")
            self._bar_shown = bar
        self.stream.flush()

    def _end(self) -> None:
        if self.tty and self._bar_shown:
            self.stream.write("\n")
            self._bar_shown = ""
        self.stream.flush()

    # -- polling (database) ------------------------------------------------

    def poll(self, limit: int = 500) -> list[dict[str, Any]]:
        """Fetch and render the stored events after the last seen seq."""
        from executions.broadcast import run_events_after
        from executions.models import Run

        if self._workflow_id is None:
            row = Run.objects.filter(id=self.run_id).values("workflow_id", "status", "nodes_done", "nodes_total").first()
            if row is None:
                raise LookupError(f"run {self.run_id} not found")
            self._workflow_id = row["workflow_id"]
            if self.last_seq == 0:
                # Until its first run.* event, show what the row says.
                self.status, self.done, self.total = row["status"], row["nodes_done"], row["nodes_total"]
        out: list[dict[str, Any]] = []
        while True:
            page = run_events_after(run_id=self.run_id, workflow_id=self._workflow_id, after=self.last_seq, limit=limit)
            self.feed(page)
            out.extend(page)
            if len(page) < limit:
                return out

    def follow(self, timeout: float | None = None) -> str:
        """Poll until the run's terminal event (or ``timeout`` seconds); return the run status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.poll()
            if self.finished:
                return self.status
            if deadline is not None and time.monotonic() >= deadline:
                self._end()
                return self.status
            self.sleep(self.poll_interval)


def follow_run(*, run_id: Any, stream: Any, timeout_s: float | None = None, poll_interval: float = 0.1) -> str:
    """Render a run's progress until it ends or ``timeout_s`` passes; return its last status.

    ``stream`` may be a management command's ``self.stdout``: Django's
    OutputWrapper appends a newline to every write, which would break the
    in-place bar, so the wrapped stream is written to directly.
    """
    out: TextIO = getattr(stream, "_out", stream)
    progress = RunProgress(run_id, out, poll_interval=poll_interval)
    status = progress.follow(timeout=timeout_s)
    if not progress.finished:
        out.write(f"run still {status} after {timeout_s} s\n")
        out.flush()
    return status
