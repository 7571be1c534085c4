"""Zyra's own knobs. Each one is read from the environment with a safe default."""

from __future__ import annotations

from zyra.env import env_bool, env_features, env_float, env_int, env_str

# Feature flags: ZYRA_FEATURES="parallel=on,circuit_breaker=off".
ZYRA_FEATURES = env_features(
    "ZYRA_FEATURES",
    {
        "parallel": True,
        "circuit_breaker": True,
        "rate_limit": True,
        "live_events": True,
        "webhook_signatures": True,
    },
)

ZYRA_MAX_NODES = env_int("ZYRA_MAX_NODES", 5000)
ZYRA_MAX_DEFINITION_BYTES = env_int("ZYRA_MAX_DEFINITION_BYTES", 2 * 1024 * 1024)
ZYRA_MAX_INPUT_BYTES = env_int("ZYRA_MAX_INPUT_BYTES", 256 * 1024)
ZYRA_MAX_OUTPUT_BYTES = env_int("ZYRA_MAX_OUTPUT_BYTES", 1024 * 1024)
ZYRA_EVENT_OUTPUT_BYTES = env_int("ZYRA_EVENT_OUTPUT_BYTES", 4096)
ZYRA_DEFAULT_MAX_PARALLEL = env_int("ZYRA_DEFAULT_MAX_PARALLEL", 16)
ZYRA_DEFAULT_RUN_TIMEOUT_S = env_int("ZYRA_DEFAULT_RUN_TIMEOUT_S", 3600)
ZYRA_MAX_NODE_TIMEOUT_S = env_int("ZYRA_MAX_NODE_TIMEOUT_S", 3600)
# A running node's worker renews its lease every LEASE_S/3; the sweeper re-queues
# nodes whose lease lapsed (the worker died).
ZYRA_LEASE_S = env_int("ZYRA_LEASE_S", 30)
# Retries or deferrals shorter than this go out as Celery countdowns (the sweeper
# is the safety net); longer ones wait in PostgreSQL for the sweeper.
ZYRA_MAX_COUNTDOWN_S = env_int("ZYRA_MAX_COUNTDOWN_S", 300)
ZYRA_WORKER_LOST_MAX = env_int("ZYRA_WORKER_LOST_MAX", 5)
ZYRA_IDEMPOTENCY_HEADER = env_str("ZYRA_IDEMPOTENCY_HEADER", "Idempotency-Key")
# A queued node whose message has not been picked up after this long is re-sent
# (the message may have been lost with a broker restart); duplicates are harmless.
ZYRA_REQUEUE_AFTER_S = env_int("ZYRA_REQUEUE_AFTER_S", 30)
# A deferred/retrying node still waiting this long after its time is re-sent by the sweeper.
ZYRA_WAKE_GRACE_S = env_int("ZYRA_WAKE_GRACE_S", 2)
# Concurrent running runs per user (0 = no limit); per workflow it is Workflow.max_concurrent_runs.
ZYRA_MAX_RUNS_PER_USER = env_int("ZYRA_MAX_RUNS_PER_USER", 0)

# Retention (executions/retention.py): finished runs older than this many days are
# pruned by the beat task "executions.prune", their figures kept as daily
# aggregates. 0 keeps everything (the default: deleting history is opt-in).
ZYRA_RETENTION_DAYS = env_int("ZYRA_RETENTION_DAYS", 0)
ZYRA_RETENTION_BATCH = env_int("ZYRA_RETENTION_BATCH", 500)  # runs per transaction
ZYRA_RETENTION_MAX_BATCHES = env_int("ZYRA_RETENTION_MAX_BATCHES", 200)  # per beat tick
ZYRA_RETENTION_PAUSE_S = env_float("ZYRA_RETENTION_PAUSE_S", 0.05)  # between batches
ZYRA_RETENTION_INTERVAL_S = env_float("ZYRA_RETENTION_INTERVAL_S", 3600.0)
# Hand-off fast path: a worker thread may run up to this many successors of the node it
# just finished itself (claimed through the database like any attempt) before going
# back through the broker. 0 = every hand-off goes through the broker.
ZYRA_INLINE_HANDOFFS = env_int("ZYRA_INLINE_HANDOFFS", 64)
# With no successor ready, a worker thread that finished a node also takes a queued sibling of the same
# run and queue (its message then finds it claimed): a fan-out needs one locked transaction per node, not two.
ZYRA_INLINE_SIBLINGS = env_bool("ZYRA_INLINE_SIBLINGS", True)
# A thread that finished a node may take its next one (a successor or a sibling) from any node queue
# its worker consumes, its own queue first; off: only from the finished node's own queue.
ZYRA_INLINE_ANY_QUEUE = env_bool("ZYRA_INLINE_ANY_QUEUE", True)
# A completion that makes several successors ready claims, with the one its thread takes next, as
# many others as this worker process has fan-out threads free, and starts each at once on one of
# them: a fan-out's branches neither wait behind the queue's backlog nor for each other. Threads per
# worker process (thread pools only; each may hold a database connection); 0 = off.
ZYRA_FANOUT_THREADS = env_int("ZYRA_FANOUT_THREADS", 8)
# Threads of one worker process that take an engine step (a claim; a completion with the instant nodes
# after it) at once; handlers run outside them, so I/O still waits on every thread. A free slot goes
# first to a node's claim, then to a completion, then to a countdown's claim (a DELAY's wake-up, a
# retry): executions/gate.py. Per process; 0 = off. One: a process runs Python on one core at a time
# (the GIL) and waits on PostgreSQL in every step; 2 gave ~10% more runs/s at overload on a 2-core box
# shared with PostgreSQL, and twice the hand-off tail (docs/operations.md §2).
ZYRA_ENGINE_SLOTS = env_int("ZYRA_ENGINE_SLOTS", 1)
# A step that has held its slot this long (ms) - waiting on a row lock, a slow statement - no longer
# holds the others back: the next waiter goes ahead beside it. 0: wait for the slot, however long.
ZYRA_ENGINE_SLOT_STALL_MS = env_int("ZYRA_ENGINE_SLOT_STALL_MS", 250)
# Threads of one worker process that finish nodes of the same run at the same time record their
# results in one transaction (executions/combine.py: one lock, two round trips and one commit for
# the batch instead of per node). PostgreSQL only; off: a transaction per completion.
ZYRA_COMBINE_COMPLETIONS = env_bool("ZYRA_COMBINE_COMPLETIONS", True)
# A new run's instant nodes (NodeTypeSpec.instant: trigger roots, which only check and hand on the
# run's input, and a DELAY after them, whose first attempt only computes when to wake) run in the
# transaction that starts the run, instead of as a message to a worker; off: like any node.
ZYRA_INLINE_TRIGGERS = env_bool("ZYRA_INLINE_TRIGGERS", True)
# Instant nodes (NodeTypeSpec.instant: the above, and CALCULATOR, CONDITION, SWITCH and MERGE, which do
# no I/O and whose work is capped) made ready by a completion run in that completion's transaction, and
# an instant node's own message (a DELAY's wake-up) is claimed, run and completed in one transaction:
# no message, claim or completion of their own. Off: they go to workers like any node.
ZYRA_INSTANT_NODES = env_bool("ZYRA_INSTANT_NODES", True)
# Time one transaction may spend running instant nodes (their handlers and bookkeeping; the run's
# row stays locked meanwhile); those made ready after it is spent go to workers.
ZYRA_INSTANT_BUDGET_MS = env_int("ZYRA_INSTANT_BUDGET_MS", 50)
# A transaction that makes more nodes ready on one queue than this sends messages for this many;
# the others stay queued without one ("parked") and are taken by the threads that finish their
# siblings, or handed a message by a completion that takes nothing else (so as many carriers as
# were sent keep working through them). Saves a publish, a delivery and an ack per node of a wide
# fan-out, most of whose messages would find their node already taken. 0 = a message per node.
# Only with ZYRA_INLINE_SIBLINGS.
ZYRA_DISPATCH_AHEAD = env_int("ZYRA_DISPATCH_AHEAD", 64)
