"""Admin registrations of the executions app, one module per concern (additive imports only)."""

from executions.admin_analytics import *  # noqa: F401,F403
from executions.admin_runs import *  # noqa: F401,F403
from executions.resilience.admin import *  # noqa: F401,F403
