from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from executions.engine.states import NODE_TERMINAL, RUN_TERMINAL


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIALLY_SUCCEEDED = "partially_succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class NodeStatus(models.TextChoices):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    DEFERRED = "deferred"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class Run(models.Model):
    """One execution of one pinned WorkflowVersion. Its row lock serialises the run's bookkeeping."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No single-column indexes where a composite one starts with the column (workflow, owner,
    # created_at below; run on NodeRun and RunEvent): each index is written on every non-HOT update.
    workflow = models.ForeignKey("workflows.Workflow", on_delete=models.CASCADE, related_name="runs", db_index=False)
    version = models.ForeignKey("workflows.WorkflowVersion", on_delete=models.PROTECT, related_name="runs")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="runs", db_index=False)
    status = models.CharField(max_length=24, choices=RunStatus.choices, default=RunStatus.QUEUED)
    trigger = models.CharField(max_length=32, default="manual")  # manual | webhook | schedule | api | resume
    priority = models.PositiveSmallIntegerField(default=5)  # 9 = interactive, 0 = bulk
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    inputs = models.JSONField(default=dict, blank=True)
    outputs = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    # Execution bookkeeping (changed only under this row's lock).
    event_seq = models.PositiveIntegerField(default=0)
    nodes_total = models.PositiveIntegerField(default=0)
    nodes_done = models.PositiveIntegerField(default=0)  # nodes in a terminal state
    in_flight = models.PositiveIntegerField(default=0)  # queued/running/deferred/retrying
    ready_waiting = models.PositiveIntegerField(default=0)  # ready nodes waiting for a parallelism slot
    max_parallel = models.PositiveIntegerField(default=16)
    sequential = models.BooleanField(default=False)
    failed_stop = models.BooleanField(default=False)
    failed_continue = models.PositiveIntegerField(default=0)
    resumes = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"]),
            models.Index(fields=["workflow", "-created_at"]),
            models.Index(fields=["status", "created_at"]),
            # Analytics (executions/analytics.py): time-range scans answered from the index alone.
            models.Index(
                fields=["created_at"],
                include=["workflow", "owner", "status", "started_at", "finished_at"],
                name="run_analytics_idx",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="run_idempotency_unique",
            )
        ]

    def __str__(self) -> str:
        return f"run {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in RUN_TERMINAL

    @property
    def duration_ms(self) -> int | None:
        if self.started_at and self.finished_at:
            return int((self.finished_at - self.started_at).total_seconds() * 1000)
        return None


class NodeRun(models.Model):
    """One node of one run: status, attempt, fan-in counters, lease, result."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="node_runs", db_index=False)
    node_id = models.CharField(max_length=200)
    type = models.CharField(max_length=64)
    queue = models.CharField(max_length=16, default="cpu")
    topo_index = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=NodeStatus.choices, default=NodeStatus.PENDING)
    attempt = models.PositiveIntegerField(default=0)  # attempt number of the current/last try
    # Fan-in: unresolved incoming edges, and how many resolved ones were active.
    pending_deps = models.PositiveIntegerField(default=0)
    active_in = models.PositiveIntegerField(default=0)
    inputs = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    # Per-attempt history: [{"attempt", "status", "started_at", "finished_at", "error"}].
    attempts = models.JSONField(default=list, blank=True)
    state = models.JSONField(null=True, blank=True)  # handler state kept across deferrals (DELAY)
    defer_reason = models.CharField(max_length=32, blank=True, default="")
    worker_lost = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, default="")
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deferred_ms = models.PositiveBigIntegerField(default=0)  # time spent deferred (breaker, rate limit)

    class Meta:
        ordering = ["run", "topo_index"]
        constraints = [models.UniqueConstraint(fields=["run", "node_id"], name="noderun_unique")]
        indexes = [
            # The sweeper's three questions, each over the few rows in one status: a partial index
            # takes an entry only while a node is in that status (most updates change the status).
            models.Index(fields=["lease_until"], condition=models.Q(status="running"), name="noderun_lease_idx"),
            models.Index(fields=["next_attempt_at"], condition=models.Q(status__in=["deferred", "retrying"]), name="noderun_next_idx"),
            models.Index(fields=["dispatched_at"], condition=models.Q(status="queued"), name="noderun_queued_idx"),
            models.Index(fields=["run", "status", "topo_index"], name="noderun_ready_idx"),
            models.Index(fields=["type", "status"], name="noderun_type_idx"),
            # Analytics: per-run node figures without visiting the heap, and the failures alone.
            models.Index(
                fields=["run"],
                include=["type", "status", "attempt", "deferred_ms", "defer_reason", "started_at", "finished_at"],
                name="noderun_analytics_idx",
            ),
            models.Index(
                fields=["run", "node_id"],
                condition=models.Q(status__in=["failed", "timed_out"]),
                name="noderun_failed_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.node_id} ({self.status}, attempt {self.attempt})"

    @property
    def is_terminal(self) -> bool:
        return self.status in NODE_TERMINAL

    @property
    def duration_ms(self) -> int | None:
        if self.started_at and self.finished_at:
            return int((self.finished_at - self.started_at).total_seconds() * 1000)
        return None


class RunEvent(models.Model):
    """Append-only: written in the same transaction as the change it records."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events", db_index=False)
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=40)
    node_id = models.CharField(max_length=200, blank=True, default="")
    ts = models.DateTimeField()
    data = models.JSONField(default=dict)

    class Meta:
        ordering = ["run", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="runevent_seq_unique")]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.seq} {self.type}"
