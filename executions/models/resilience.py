from __future__ import annotations

from django.db import models


class CircuitState(models.TextChoices):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker(models.Model):
    """Breaker state per external service key (default: scheme://host:port). Changed atomically."""

    key = models.CharField(max_length=300, unique=True)
    state = models.CharField(max_length=16, choices=CircuitState.choices, default=CircuitState.CLOSED)
    # Rolling window: list of [epoch_second, calls, failures, slow] buckets.
    window = models.JSONField(default=list, blank=True)
    total_calls = models.PositiveBigIntegerField(default=0)
    total_failures = models.PositiveBigIntegerField(default=0)
    consecutive_opens = models.PositiveIntegerField(default=0)
    opened_at = models.DateTimeField(null=True, blank=True)
    open_until = models.DateTimeField(null=True, blank=True)
    # Half-open: one probe across all workers, holding this lease until it reports.
    probe_lease_until = models.DateTimeField(null=True, blank=True)
    probe_token = models.CharField(max_length=64, blank=True, default="")
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_failure = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.key} ({self.state})"


class ServicePolicy(models.Model):
    """Per-service overrides of the breaker and rate-limit defaults in settings (editable in the admin)."""

    key = models.CharField(max_length=300, unique=True)
    rate_per_s = models.FloatField(null=True, blank=True)
    burst = models.PositiveIntegerField(null=True, blank=True)
    failure_rate_threshold = models.FloatField(null=True, blank=True)
    minimum_calls = models.PositiveIntegerField(null=True, blank=True)
    window_s = models.PositiveIntegerField(null=True, blank=True)
    open_wait_s = models.FloatField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key
