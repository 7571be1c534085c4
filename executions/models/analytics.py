"""Daily aggregates that outlive pruned runs (retention keeps the analytics series)."""

from __future__ import annotations

from django.db import models


class DailyWorkflowStats(models.Model):
    """One workflow's runs of one UTC day (by ``Run.created_at``), folded in when they were pruned.

    Every figure is additive, so batches of the same day merge into one row:
    counts and sums add up, ``duration_hist`` (log-scale buckets, see
    ``executions.analytics.hist_bucket``) adds bucket-wise and yields
    percentiles within one bucket's width (10 %).
    """

    workflow = models.ForeignKey("workflows.Workflow", on_delete=models.CASCADE, related_name="daily_stats")
    day = models.DateField()
    runs = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    partially_succeeded = models.PositiveIntegerField(default=0)
    cancelled = models.PositiveIntegerField(default=0)
    timed_out = models.PositiveIntegerField(default=0)
    duration_count = models.PositiveIntegerField(default=0)  # runs with both timestamps
    duration_sum_ms = models.PositiveBigIntegerField(default=0)
    duration_hist = models.JSONField(default=dict, blank=True)  # {"<bucket>": count}
    node_runs = models.PositiveIntegerField(default=0)
    nodes_retried = models.PositiveIntegerField(default=0)  # node runs with attempt > 1
    extra_attempts = models.PositiveIntegerField(default=0)  # sum of (attempt - 1)
    deferred_ms = models.JSONField(default=dict, blank=True)  # {"<defer_reason>": ms}
    # {"<node_id>": {"type": str, "failures": int, "codes": {"<code>": int}}}
    failing_nodes = models.JSONField(default=dict, blank=True)
    # {"<type>": {"node_runs", "succeeded", "failed", "skipped", "nodes_retried", "extra_attempts",
    #             "deferred_ms": {reason: ms}, "duration_hist": {...}}}
    node_types = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-day"]
        constraints = [models.UniqueConstraint(fields=["workflow", "day"], name="dailystats_unique")]
        indexes = [models.Index(fields=["day"], name="dailystats_day_idx")]
        verbose_name_plural = "daily workflow stats"

    def __str__(self) -> str:
        return f"{self.workflow_id} {self.day}: {self.runs} runs"
