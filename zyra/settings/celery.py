from __future__ import annotations

from kombu import Exchange, Queue

from zyra.env import env_float, env_int, env_str

# Empty broker URL = embedded: kombu's in-memory transport and an in-process worker.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "") or "memory://localhost/"
ZYRA_EMBEDDED_BROKER = CELERY_BROKER_URL.startswith("memory://")
# Results are ignored (the database is the record); benchmarks of bare chords set one.
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "") or None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "io"
# Each queue has its own direct exchange and key: queues sharing one binding
# would each receive a copy of every message.
CELERY_TASK_QUEUES = [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in ("io", "cpu", "sweep")]
CELERY_TASK_DEFAULT_EXCHANGE = "io"
CELERY_TASK_DEFAULT_ROUTING_KEY = "io"
CELERY_TASK_ROUTES = {
    "executions.sweep": {"queue": "sweep"},
}
CELERY_WORKER_MAX_TASKS_PER_CHILD = env_int("CELERY_WORKER_MAX_TASKS_PER_CHILD", 10000)
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int("CELERY_WORKER_MAX_MEMORY_PER_CHILD", 512_000)  # KiB
# The CPU queue's prefork pool enforces these; the engine records the timeout itself.
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 300)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 330)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Visibility timeout above the largest node timeout (ZYRA_MAX_NODE_TIMEOUT_S):
# long waits live in PostgreSQL (next_attempt_at) and the sweeper, never in ETAs.
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT_S", 7200),
    # Interactive runs' nodes before bulk ones (webhook storms, schedules): one list per message
    # priority, served highest first. (Queues themselves are consumed round robin, kombu's default:
    # its "priority" queue_order_strategy would starve every queue but the first.)
    "priority_steps": list(range(10)),
    "sep": ":",
}
CELERY_TASK_DEFAULT_PRIORITY = 4
if ZYRA_EMBEDDED_BROKER:
    # The memory transport polls once a second by default: 1 s per hop.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"polling_interval": env_float("ZYRA_EMBEDDED_POLL_S", 0.005)}

CELERY_BEAT_SCHEDULE = {
    "zyra-sweep": {"task": "executions.sweep", "schedule": env_float("ZYRA_SWEEP_INTERVAL_S", 2.0)},
    # Database-driven schedules (triggers.Schedule): claims due rows, starts one run per tick.
    "zyra-schedules": {
        "task": "triggers.fire_due_schedules",
        "schedule": env_float("ZYRA_SCHEDULE_TICK_S", 2.0),
        "options": {"queue": "sweep"},
    },
    "zyra-webhook-prune": {"task": "triggers.prune_webhook_deliveries", "schedule": 3600.0, "options": {"queue": "sweep"}},
}
# Retention (executions/retention.py): a no-op unless ZYRA_RETENTION_DAYS > 0.
CELERY_BEAT_SCHEDULE["zyra-prune-runs"] = {
    "task": "executions.prune",
    "schedule": env_float("ZYRA_RETENTION_INTERVAL_S", 3600.0),
    "options": {"queue": "sweep"},
}
