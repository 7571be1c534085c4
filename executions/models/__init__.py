"""Models of the executions app, one module per concern."""

from executions.models.analytics import DailyWorkflowStats
from executions.models.resilience import CircuitBreaker, CircuitState, ServicePolicy
from executions.models.runs import NodeRun, NodeStatus, Run, RunEvent, RunStatus

__all__ = ["CircuitBreaker", "CircuitState", "DailyWorkflowStats", "NodeRun", "NodeStatus", "Run", "RunEvent", "RunStatus", "ServicePolicy"]
