"""Models of the executions app, one module per concern."""

from executions.models.resilience import CircuitBreaker, CircuitState, ServicePolicy
from executions.models.runs import NodeRun, NodeStatus, Run, RunEvent, RunStatus

__all__ = ["CircuitBreaker", "CircuitState", "NodeRun", "NodeStatus", "Run", "RunEvent", "RunStatus", "ServicePolicy"]
