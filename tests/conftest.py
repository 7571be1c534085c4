"""Shared fixtures: users and API clients, real Celery workers, local servers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.support.servers import LocalServer
from tests.support.workers import LOG_DIR, ProcessGroup

# Logs and screenshots of test processes; a fresh clone has no artifacts/ yet.
LOG_DIR.mkdir(parents=True, exist_ok=True)


def _retry_flush_on_deadlock() -> None:
    """Transactional tests end with a TRUNCATE of every table. Worker processes of the session
    (sweeper, schedules, breaker writes) may still commit while it runs, and PostgreSQL can then
    abort the TRUNCATE as a deadlock victim: a transient, so the flush is retried."""
    import time

    from django.core.management.base import CommandError
    from django.test import testcases

    # A private Django hook (not in the stubs), hence getattr/setattr.
    original = getattr(testcases.TransactionTestCase, "_fixture_teardown")  # noqa: B009

    def fixture_teardown(self: Any) -> None:
        for attempt in range(5):
            try:
                original(self)
                return
            except CommandError as exc:
                if "deadlock" not in str(exc.__cause__).lower() or attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    setattr(testcases.TransactionTestCase, "_fixture_teardown", fixture_teardown)  # noqa: B010


_retry_flush_on_deadlock()


@pytest.fixture
def user(db: Any) -> Any:
    return get_user_model().objects.create_user("alice", "alice@example.com", "pw-alice-123")


@pytest.fixture
def other_user(db: Any) -> Any:
    return get_user_model().objects.create_user("bob", "bob@example.com", "pw-bob-123")


@pytest.fixture
def staff_user(db: Any) -> Any:
    return get_user_model().objects.create_user("root", "root@example.com", "pw-root-123", is_staff=True, is_superuser=True)


def client_for(user: Any) -> APIClient:
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def api(user: Any) -> APIClient:
    return client_for(user)


@pytest.fixture
def other_api(other_user: Any) -> APIClient:
    return client_for(other_user)


@pytest.fixture
def staff_api(staff_user: Any) -> APIClient:
    return client_for(staff_user)


@pytest.fixture
def anon_api() -> APIClient:
    return APIClient()


@pytest.fixture
def server() -> Iterator[LocalServer]:
    srv = LocalServer()
    yield srv
    srv.close()


def _purge_broker() -> None:
    import redis
    from django.conf import settings

    r = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    r.flushdb()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[Any]:
    """A real SMTP server on loopback; the session worker sends its email there."""
    from tests.support.smtp import SMTPServer

    srv = SMTPServer()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def _worker_group(django_db_setup: Any, django_db_blocker: Any, smtp_server: Any) -> Iterator[ProcessGroup]:
    from django.db import connection

    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    _purge_broker()
    group = ProcessGroup(db_name, {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp_server.port)})
    group.start_worker(
        "w-session",
        queues="io,cpu,sweep",
        pool="threads",
        concurrency=int(os.environ.get("ZYRA_TEST_WORKER_C", "8")),
        extra_args=["-B", "-s", str(LOG_DIR / f"beat-session-{os.getpid()}")],
    )
    yield group
    group.stop_all()


@pytest.fixture
def worker(_worker_group: ProcessGroup, transactional_db: Any) -> ProcessGroup:
    """A real Celery worker process (threads pool) on the test database.

    Tests using it see committed data only (transactional_db).
    """
    return _worker_group


@pytest.fixture
def process_group(django_db_setup: Any, django_db_blocker: Any, transactional_db: Any) -> Iterator[ProcessGroup]:
    """A fresh group for tests that start, kill and restart their own workers."""
    from django.db import connection

    db_name = connection.settings_dict["NAME"]
    group = ProcessGroup(db_name)
    yield group
    group.stop_all()


@pytest.fixture
def no_foreign_sweeper(request: pytest.FixtureRequest, transactional_db: Any) -> Iterator[None]:
    """Pause the suite's shared worker (beat: sweeper, schedules) for this test, if a test started it.

    It runs beat, so it sweeps this same database every two seconds and would
    re-send what it finds into its own broker: a test that counts what the
    sweepers do must be the only sweeper. SIGSTOP, not a kill, so it carries
    on afterwards; never while one of its transactions is open (it would
    hold row locks while frozen).
    """
    import os
    import signal
    import time

    from django.db import connection

    defs = request._fixturemanager.getfixturedefs("_worker_group", request.node) or []
    cached = defs[-1].cached_result if defs else None
    group = cached[0] if cached is not None else None
    pids = [p.pid for p in group.procs.values() if p.poll() is None] if isinstance(group, ProcessGroup) else []

    def open_transactions() -> int:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend' AND state <> 'idle'"
            )
            return int(cur.fetchone()[0])

    def signal_all(sig: int) -> None:
        for pid in pids:
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                pass

    for _ in range(50):
        signal_all(signal.SIGSTOP)
        if not pids or open_transactions() == 0:
            break
        signal_all(signal.SIGCONT)
        time.sleep(0.05)
    try:
        yield
    finally:
        signal_all(signal.SIGCONT)
