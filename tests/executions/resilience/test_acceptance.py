"""Engine-level acceptance (issue 4): a failing service is isolated by its breaker and recovers by itself.

Real Celery worker processes (4, threads pool) on the test database, real
HTTP servers on loopback, no manual reset anywhere.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from executions import services
from executions.models import CircuitBreaker, CircuitState, NodeRun, Run, RunEvent, ServicePolicy
from executions.resilience import outbound
from tests.support.factories import edge, make_workflow, node, statuses
from tests.support.servers import LocalServer
from tests.support.workers import wait_until

OPEN_WAIT_S = 4.0
PROBE_S = 0.4  # the recovered service answers slowly, so a second probe would overlap the first


def _wait_all(run_ids: list[Any], timeout: float) -> list[Run]:
    def done() -> bool:
        return (
            not Run.objects.filter(id__in=run_ids)
            .exclude(status__in=["succeeded", "failed", "cancelled", "timed_out", "partially_succeeded"])
            .exists()
        )

    wait_until(done, timeout, interval=0.2, message=f"{len(run_ids)} runs to finish")
    return list(Run.objects.filter(id__in=run_ids))


@pytest.mark.timeout(300)
def test_failing_service_is_isolated_then_recovers_with_one_probe(process_group: Any, user: Any, server: LocalServer) -> None:
    service_a = server  # fails, then recovers
    service_b = LocalServer()  # healthy all along
    try:
        for i in range(4):
            process_group.start_worker(f"w-res-{i}", queues="io,cpu,sweep", pool="threads", concurrency=4)
        process_group.wait_ready([f"w-res-{i}" for i in range(4)])  # the spread asserted below needs all four
        key_a = outbound.service_key(service_a.base)
        ServicePolicy.objects.create(key=key_a, minimum_calls=3, failure_rate_threshold=0.5, window_s=60, open_wait_s=OPEN_WAIT_S)
        health = {"up": False}

        def service_a_answer(req: Any) -> tuple[int, dict[str, str], bytes]:
            if not health["up"]:
                return 503, {"Content-Type": "application/json"}, b'{"error": "down"}'
            time.sleep(PROBE_S)
            return 200, {"Content-Type": "application/json"}, b'{"ok": true}'

        service_a.route("/a", service_a_answer)

        retry = {"max_attempts": 20, "backoff_s": 0.2, "max_backoff_s": 1.0}
        wf_a = make_workflow(
            user,
            {
                "nodes": [node("start", "MANUAL"), node("call_a", "HTTP_REQUEST", {"url": service_a.url("/a")}, retry=retry)],
                "edges": [edge("start", "call_a")],
            },
            name="uses-a",
        )
        wf_b = make_workflow(
            user,
            {
                "nodes": [node("start", "MANUAL"), node("call_b", "HTTP_REQUEST", {"url": service_b.url("/b")})],
                "edges": [edge("start", "call_b")],
            },
            name="uses-b",
        )
        wf_plain = make_workflow(
            user, {"nodes": [node("start", "MANUAL"), node("m", "MERGE")], "edges": [edge("start", "m")]}, name="no-http"
        )

        # Workers up (a warm-up run goes through).
        warm = services.run_start(workflow=wf_plain, inputs={}, user=user)
        assert _wait_all([warm.id], 90)[0].status == "succeeded"

        # Phase 1: service A fails; its breaker opens.
        runs_a = [services.run_start(workflow=wf_a, inputs={"i": i}, user=user).id for i in range(8)]
        wait_until(
            lambda: CircuitBreaker.objects.filter(key=key_a, state=CircuitState.OPEN).exists(), 60, message="service A's breaker to open"
        )
        opened_at = time.time()

        # Phase 2: 50 runs against B and 10 without HTTP complete normally meanwhile.
        started = time.time()
        others = [services.run_start(workflow=wf_b, inputs={"i": i}, user=user).id for i in range(50)]
        others += [services.run_start(workflow=wf_plain, inputs={"i": i}, user=user).id for i in range(10)]
        finished = _wait_all(others, 120)
        phase2_s = time.time() - started
        assert [r.status for r in finished].count("succeeded") == 60, {str(r.id): statuses(r) for r in finished if r.status != "succeeded"}
        assert service_b.count("/b") == 50

        # ...while A-bound nodes were deferred by the breaker (not failed, no attempt spent on it).
        assert not Run.objects.filter(id__in=runs_a, status__in=["failed", "succeeded"]).exists()
        deferred = RunEvent.objects.filter(run_id__in=runs_a, type="node.deferred", node_id="call_a")
        assert deferred.filter(data__reason="circuit_open").exists(), list(deferred.values_list("data", flat=True)[:5])
        # Once open, A saw at most one probe per open period.
        later = sorted(r.ts for r in service_a.requests if r.ts > opened_at + 0.5)
        assert all(b - a >= OPEN_WAIT_S - 0.5 for a, b in itertools.pairwise(later)), later
        assert len(later) <= (time.time() - opened_at) / (OPEN_WAIT_S - 0.5) + 1

        # Phase 3: A recovers. Exactly one probe reaches it; the breaker closes; every deferred node completes.
        switched = time.time()
        health["up"] = True
        done_a = _wait_all(runs_a, 90)
        assert [r.status for r in done_a].count("succeeded") == 8, {str(r.id): statuses(r) for r in done_a}
        after = sorted(r.ts for r in service_a.requests if r.ts >= switched)
        assert len(after) == 8  # one call per deferred node, nothing more
        probe, rest = after[0], after[1:]
        # No other request while the probe was in flight: exactly one probe across the 4 workers.
        assert all(ts >= probe + PROBE_S - 0.05 for ts in rest), [round(ts - probe, 3) for ts in after]
        assert CircuitBreaker.objects.get(key=key_a).state == CircuitState.CLOSED
        assert RunEvent.objects.filter(run_id__in=runs_a, type="circuit.closed").count() == 1
        # The A attempts really were spread over several worker processes (every attempt's worker, not only
        # the last one's: after the recovery one process may hold all the deferred messages).
        histories = NodeRun.objects.filter(run_id__in=runs_a, node_id="call_a").values_list("attempts", flat=True)
        workers = {a.get("worker") for history in histories for a in history}
        assert len(workers) >= 2, workers
        print(f"phase 2 (50 B runs + 10 plain) took {phase2_s:.1f}s while A was open")
    finally:
        service_b.close()


@pytest.mark.timeout(300)
def test_100_nodes_limited_to_10_per_s_over_3_worker_processes(process_group: Any, user: Any, server: LocalServer) -> None:
    from collections import Counter

    for i in range(3):
        process_group.start_worker(f"w-rl-{i}", queues="io,cpu,sweep", pool="threads", concurrency=4)
    process_group.wait_ready([f"w-rl-{i}" for i in range(3)])
    ServicePolicy.objects.create(key=outbound.service_key(server.base), rate_per_s=10, burst=1)
    nodes = [node("start", "MANUAL")] + [node(f"c{i}", "HTTP_REQUEST", {"url": server.url(f"/limited/{i}")}) for i in range(10)]
    wf = make_workflow(user, {"nodes": nodes, "edges": [edge("start", f"c{i}") for i in range(10)]}, name="limited")
    run_ids = [services.run_start(workflow=wf, inputs={"r": r}, user=user).id for r in range(10)]
    done = _wait_all(run_ids, 200)
    assert [r.status for r in done].count("succeeded") == 10, {str(r.id): statuses(r) for r in done if r.status != "succeeded"}
    stamps = sorted(r.ts for r in server.requests if r.path.startswith("/limited/"))
    assert len(stamps) == 100  # all 100 completed, each called exactly once
    per_second = Counter(int(ts) for ts in stamps)
    assert max(per_second.values()) <= 10, sorted(per_second.items())
    windows = [round(stamps[i + 10] - stamps[i], 3) for i in range(len(stamps) - 10)]
    assert min(windows) >= 0.8, sorted(windows)[:5]
    limited = RunEvent.objects.filter(run_id__in=run_ids, type="node.deferred", data__reason="rate_limited").count()
    assert limited > 0  # the limiter deferred nodes (it did not fail them: every run succeeded)
    workers = set(NodeRun.objects.filter(run_id__in=run_ids).exclude(node_id="start").values_list("worker", flat=True))
    assert len(workers) >= 2, workers


@pytest.mark.timeout(300)
def test_retry_after_2_stops_every_worker_for_2_seconds(process_group: Any, user: Any, server: LocalServer) -> None:
    import redis
    from django.conf import settings

    from executions.resilience.ratelimit import PREFIX

    for i in range(3):
        process_group.start_worker(f"w-429-{i}", queues="io,cpu,sweep", pool="threads", concurrency=4)
    key = outbound.service_key(server.base)
    first = {"seen": False}

    def answer(req: Any) -> tuple[int, dict[str, str], bytes]:
        if not first["seen"]:
            first["seen"] = True
            return 429, {"Retry-After": "2", "Content-Type": "application/json"}, b'{"error": "slow down"}'
        return 200, {"Content-Type": "application/json"}, b'{"ok": true}'

    server.route("/api", answer)
    retry = {"max_attempts": 3, "backoff_s": 0.1, "max_backoff_s": 5}
    one = make_workflow(
        user,
        {
            "nodes": [node("start", "MANUAL"), node("call", "HTTP_REQUEST", {"url": server.url("/api")}, retry=retry)],
            "edges": [edge("start", "call")],
        },
        name="first",
    )
    many = make_workflow(
        user,
        {
            "nodes": [node("start", "MANUAL")] + [node(f"c{i}", "HTTP_REQUEST", {"url": server.url("/api")}) for i in range(4)],
            "edges": [edge("start", f"c{i}") for i in range(4)],
        },
        name="many",
    )
    warm = services.run_start(
        workflow=make_workflow(user, {"nodes": [node("start", "MANUAL")], "edges": []}, name="warm"), inputs={}, user=user
    )
    assert _wait_all([warm.id], 90)[0].status == "succeeded"

    r1 = services.run_start(workflow=one, inputs={}, user=user)
    client = redis.Redis.from_url(settings.REDIS_URL)
    wait_until(lambda: (client.pttl(PREFIX + "block:" + key) or 0) > 0, 30, message="the upstream block")
    rest = [services.run_start(workflow=many, inputs={"i": i}, user=user).id for i in range(5)]
    done = _wait_all([r1.id, *rest], 120)
    assert all(r.status == "succeeded" for r in done), {str(r.id): statuses(r) for r in done}
    stamps = sorted(r.ts for r in server.requests)
    assert len(stamps) == 1 + 1 + 20  # the 429, its retry, and 5 runs x 4 nodes
    gap = stamps[1] - stamps[0]
    assert gap >= 1.95, f"a worker called the service {gap:.3f}s after the 429"
    assert gap < 6.0  # and work resumed after the block
    assert RunEvent.objects.filter(run_id__in=rest, type="node.deferred", data__reason="upstream_429").exists()
    first_node = NodeRun.objects.get(run_id=r1.id, node_id="call")
    assert first_node.attempt == 2 and first_node.status == "succeeded"  # the 429 itself cost one attempt
