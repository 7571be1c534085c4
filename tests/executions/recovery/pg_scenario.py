"""Set-up half of the PostgreSQL-restart test, run in its own process against the throw-away cluster.

    DATABASE_URL=postgres://...:5440/zyra python -m tests.executions.recovery.pg_scenario <server base URL> <runs>

Migrates the cluster's database, creates a user and the 10-node workflow
calling ``<server base URL>``, starts the runs (their first messages go to
CELERY_BROKER_URL) and prints ``{"run_ids": [...]}`` as its last line. The
test process keeps its own Django connection on the suite's database; this
process is the only one whose Django talks to the cluster.
"""

from __future__ import annotations

import json
import os
import sys


class _Server:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def url(self, path: str) -> str:
        return self.base + path


def main() -> None:
    base, runs = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zyra.settings.test")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from executions import services
    from tests.executions.recovery.support import ten_node_workflow
    from tests.support.factories import make_workflow

    call_command("migrate", verbosity=0, interactive=False)
    user = get_user_model().objects.create_user("pg-restart", "pg@example.com", "pw-pg-123")
    wf = make_workflow(user, ten_node_workflow(_Server(base)))  # type: ignore[arg-type]
    run_ids = [str(services.run_start(workflow=wf, inputs={"i": i}, user=user).id) for i in range(runs)]
    print(json.dumps({"run_ids": run_ids}), flush=True)


if __name__ == "__main__":
    main()
