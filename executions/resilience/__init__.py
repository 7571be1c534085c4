"""Resilience for outbound calls (DESIGN §5): safe HTTP, circuit breakers, rate limits.

Entry point for node handlers: ``executions.resilience.outbound.request``.
"""
