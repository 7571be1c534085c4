"""Run in a subprocess by test_embedded.py: the breaker and limiter in embedded mode (SQLite, no Redis)."""

from __future__ import annotations

import json
from datetime import timedelta


def main() -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from executions.models import CircuitBreaker, ServicePolicy
    from executions.nodes.base import Defer
    from executions.resilience import outbound
    from tests.support.servers import LocalServer

    out: dict[str, object] = {"engine": settings.DATABASES["default"]["ENGINE"], "redis_url": settings.REDIS_URL}
    server = LocalServer()
    try:
        server.responses("/down", [(503, {"e": 1})])
        ServicePolicy.objects.create(key="emb-a", minimum_calls=3, failure_rate_threshold=0.5, open_wait_s=30)
        out["statuses"] = [outbound.request(None, "GET", server.url("/down"), service="emb-a").status for _ in range(3)]
        out["state_after_failures"] = CircuitBreaker.objects.get(key="emb-a").state
        try:
            outbound.request(None, "GET", server.url("/down"), service="emb-a")
            out["deferred"] = None
        except Defer as d:
            out["deferred"] = d.reason
        CircuitBreaker.objects.filter(key="emb-a").update(open_until=timezone.now() - timedelta(seconds=1))
        out["probe_status"] = outbound.request(None, "GET", server.url("/up"), service="emb-a").status
        out["state_after_probe"] = CircuitBreaker.objects.get(key="emb-a").state
        ServicePolicy.objects.create(key="emb-rl", rate_per_s=2, burst=1)
        outbound.request(None, "GET", server.url("/rl"), service="emb-rl")
        try:
            outbound.request(None, "GET", server.url("/rl"), service="emb-rl")
            out["limited"] = None
        except Defer as d:
            out["limited"] = d.reason
        out["server_counts"] = {"down": server.count("/down"), "up": server.count("/up"), "rl": server.count("/rl")}
    finally:
        server.close()
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
