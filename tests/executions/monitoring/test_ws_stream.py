"""The run stream: every event exactly once in seq order, replay + live with no gap, through Redis."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from django.utils import timezone

from executions import services
from executions.events import event_record
from executions.models import Run, RunEvent
from tests.executions.monitoring.conftest import token_for
from tests.executions.monitoring.support import HERE, AsgiServer, api_events, read
from tests.executions.monitoring.test_ws_auth import make_run
from tests.support.factories import edge, make_workflow, node, wait_run
from tests.support.workers import ROOT, worker_env

TERMINAL = {"run.succeeded", "run.partially_succeeded", "run.failed", "run.cancelled", "run.timed_out"}
# One event per frame (the default) and ?batch=1 ({"type": "batch", "events": [...]} frames).
BATCH = pytest.mark.parametrize("batch", ["", "&batch=1"], ids=["single", "batch"])


def parallel_definition(width: int = 17, delay_s: float = 1.0) -> dict[str, Any]:
    """start -> wait (DELAY) -> ``width`` parallel nodes -> join: width + 3 nodes."""
    nodes = [node("start", "MANUAL"), node("wait", "DELAY", {"seconds": delay_s})]
    edges = [edge("start", "wait")]
    for i in range(width):
        nodes.append(node(f"p{i:02d}", "MERGE"))
        edges += [edge("wait", f"p{i:02d}"), edge(f"p{i:02d}", "join")]
    nodes.append(node("join", "MERGE"))
    return {"nodes": nodes, "edges": edges}


@BATCH
def test_client_receives_every_event_of_a_20_node_parallel_run_once_in_order(
    asgi_server: AsgiServer, worker: Any, user: Any, api: Any, batch: str
) -> None:
    wf = make_workflow(user, parallel_definition(width=17, delay_s=2.0))
    run = services.run_start(workflow=wf, inputs={}, user=user)
    assert run.nodes_total == 20
    stream = read(f"{asgi_server.ws}/ws/runs/{run.id}/?token={token_for(user)}{batch}", origin=asgi_server.http, timeout=60)
    run = wait_run(run.id, timeout=30)
    assert run.status == "succeeded"

    # Exactly once, in seq order, nothing missing; then a clean close after the terminal event.
    assert stream.seqs == list(range(1, run.event_seq + 1)), stream.seqs
    assert stream.events[-1]["type"] == "run.succeeded"
    assert stream.close_code == 1000, (stream.close_code, stream.close_reason, stream.timed_out)
    # Same payloads as the REST event log (DESIGN §6 shape).
    assert stream.events == api_events(api, run.id)
    first = stream.events[0]
    assert set(first) == {"seq", "type", "run_id", "workflow_id", "node_id", "ts", "data"}
    assert first["run_id"] == str(run.id) and first["workflow_id"] == str(wf.id)
    succeeded = [e for e in stream.events if e["type"] == "node.succeeded"]
    assert len(succeeded) == 20
    assert succeeded[-1]["data"]["progress"] == {"done": 20, "total": 20}
    # Most of the run happened after the client connected: those events came live.
    live = [e for e, t in zip(stream.events, stream.received_at, strict=True) if stream.replay_done_at and t > stream.replay_done_at]
    assert any(e["node_id"] == "join" for e in live), "expected the fan-in after the delay to arrive live"
    if not batch:
        assert set(stream.frames) == {1}


@BATCH
def test_reconnect_with_after_yields_exactly_the_missing_events(asgi_server: AsgiServer, worker: Any, user: Any, batch: str) -> None:
    wf = make_workflow(user, parallel_definition(width=17, delay_s=1.5))
    run = services.run_start(workflow=wf, inputs={}, user=user)
    url = f"{asgi_server.ws}/ws/runs/{run.id}/?token={token_for(user)}{batch}"
    first = read(url, origin=asgi_server.http, stop_after_seq=4, timeout=20)
    cut = first.seqs[-1]
    # One event per frame stops right at 4; a batch frame may carry a few more (all before the delay ends).
    assert first.seqs == list(range(1, cut + 1)) and (cut == 4 if not batch else cut >= 4)
    run_now = Run.objects.get(id=run.id)
    assert not run_now.is_terminal, "the reconnect should happen mid-run"

    second = read(f"{url}&after={cut}", origin=asgi_server.http, timeout=60)
    run = wait_run(run.id, timeout=30)
    assert run.status == "succeeded"
    assert second.seqs == list(range(cut + 1, run.event_seq + 1))
    assert second.close_code == 1000
    assert [e["seq"] for e in first.events + second.events] == list(range(1, run.event_seq + 1))


@BATCH
def test_events_committed_during_the_replay_are_neither_lost_nor_duplicated(
    asgi_server: AsgiServer, transactional_db: Any, user: Any, batch: str
) -> None:
    """300 stored events, replayed 5 per query, while a thread commits 300 more."""
    run = make_run(user)
    now = timezone.now()
    RunEvent.objects.bulk_create(
        [RunEvent(run=run, seq=i, type="node.started", node_id=f"n{i}", ts=now, data={"i": i}) for i in range(1, 301)]
    )
    Run.objects.filter(id=run.id).update(event_seq=300)
    total = 600
    commits: list[float] = []
    started = threading.Event()

    def writer() -> None:
        from django.db import connection

        try:
            started.set()
            for i in range(301, total + 1):
                event_record(run_id=run.id, type="node.succeeded", node_id=f"n{i}", data={"i": i})
                commits.append(time.time())
                time.sleep(0.002)
        finally:
            connection.close()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    started.wait(5)
    stream = read(
        f"{asgi_server.ws}/ws/runs/{run.id}/?token={token_for(user)}{batch}", origin=asgi_server.http, stop_after_seq=total, timeout=60
    )
    thread.join(30)
    assert not thread.is_alive()

    assert stream.seqs == list(range(1, total + 1)), f"{len(stream.seqs)} events, first gaps/dups near {_first_problem(stream.seqs)}"
    assert [e["data"]["i"] for e in stream.events] == list(range(1, total + 1))
    # The overlap really happened: commits landed between the handshake and the end of the replay,
    # and some events still arrived after it (live).
    assert stream.replay_done_at is not None
    during = [t for t in commits if stream.opened_at < t < stream.replay_done_at]
    assert during, "no event was committed during the replay"
    after = [t for t in stream.received_at if t > stream.replay_done_at]
    assert after, "no event arrived live after the replay"
    if batch:
        # Replay pages (5 events on this server) travel as one frame each.
        assert max(stream.frames) >= 5, stream.frames[:20]


def _first_problem(seqs: list[int]) -> int | None:
    for i, s in enumerate(seqs, start=1):
        if s != i:
            return i
    return None


@BATCH
def test_a_live_event_that_overtakes_others_is_preceded_by_the_missing_ones(
    asgi_server: AsgiServer, transactional_db: Any, user: Any, batch: str
) -> None:
    """Broadcasts from two workers may arrive out of order: a jump is filled from the database."""
    from executions.broadcast import flush, publish, row_payload

    run = make_run(user)
    holder: dict[str, Any] = {}

    def produce() -> None:
        from django.db import connection

        try:
            time.sleep(1.5)  # after the replay and after the consumer's first resync (1 s)
            now = timezone.now()
            rows = [RunEvent(run=run, seq=i, type="node.queued", node_id=f"n{i}", ts=now, data={"i": i}) for i in (1, 2, 3)]
            RunEvent.objects.bulk_create(rows)
            Run.objects.filter(id=run.id).update(event_seq=3)
            # Only the last one is broadcast (the first two "lost" or late).
            holder["published_at"] = time.time()
            publish(
                [row_payload(seq=3, type="node.queued", run_id=run.id, workflow_id=run.workflow_id, node_id="n3", ts=now, data={"i": 3})]
            )
            flush(5)
        finally:
            connection.close()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    stream = read(
        f"{asgi_server.ws}/ws/runs/{run.id}/?token={token_for(user)}{batch}", origin=asgi_server.http, stop_after_seq=3, timeout=25
    )
    thread.join(10)
    assert stream.seqs == [1, 2, 3]
    assert stream.frames == ([3] if batch else [1, 1, 1])
    # Delivered on the live broadcast, long before the next periodic resync (30 s after
    # the first one); the margin absorbs a loaded machine.
    assert stream.received_at[0] - holder["published_at"] < 10.0


def test_many_clients_of_one_run_each_receive_every_event_once_in_order(asgi_server: AsgiServer, transactional_db: Any, user: Any) -> None:
    """30 clients (half of them batched) share the server's one subscription to the run."""
    import asyncio

    from tests.executions.monitoring.support import read_stream

    run = make_run(user)
    count = 60
    for i in range(1, 11):
        event_record(run_id=run.id, type="node.started", node_id=f"n{i}", data={"i": i})

    def produce() -> None:
        from django.db import connection

        try:
            time.sleep(1.5)  # every client subscribed and replayed
            for i in range(11, count + 1):
                event_record(run_id=run.id, type="node.succeeded", node_id=f"n{i}", data={"i": i})
                time.sleep(0.005 if i % 10 else 0.05)
        finally:
            connection.close()

    base = f"{asgi_server.ws}/ws/runs/{run.id}/?token={token_for(user)}"

    async def scenario() -> list[Any]:
        clients = [
            read_stream(base + ("&batch=1" if i % 2 else ""), origin=asgi_server.http, stop_after_seq=count, timeout=40) for i in range(30)
        ]
        return list(await asyncio.gather(asyncio.to_thread(produce), *clients))[1:]

    streams = asyncio.run(scenario())
    for i, stream in enumerate(streams):
        assert stream.seqs == list(range(1, count + 1)), (i, stream.seqs)
        assert [e["data"]["i"] for e in stream.events] == list(range(1, count + 1))
        assert stream.replay_done_at is not None and all(t > stream.replay_done_at for t in stream.received_at[10:])
        if i % 2 == 0:
            assert set(stream.frames) == {1}


def test_events_of_a_separate_producer_process_arrive_through_redis(asgi_server: AsgiServer, transactional_db: Any, user: Any) -> None:
    run = make_run(user)
    from django.db import connection

    env = worker_env(connection.settings_dict["NAME"])
    count = 20
    stream_box: dict[str, Any] = {}

    def client() -> None:
        stream_box["s"] = read(
            f"{asgi_server.ws}/ws/runs/{run.id}/?token={token_for(user)}", origin=asgi_server.http, stop_after_seq=count, timeout=30
        )

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    time.sleep(1.5)  # subscribed, replayed (nothing) and past the first resync
    proc = subprocess.run(
        [sys.executable, str(HERE / "produce_events.py"), str(run.id), str(count), "0.1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    thread.join(30)
    stream = stream_box["s"]
    assert stream.seqs == list(range(1, count + 1))
    assert stream.replay_done_at is not None and all(t > stream.replay_done_at for t in stream.received_at)
    # Each arrived promptly after its commit: through Redis, not through the resync
    # (at 1 s, before the producer started, then every 30 s); margin for a loaded machine.
    delays = [t - _parse_ts(e["ts"]) for e, t in zip(stream.events, stream.received_at, strict=True)]
    assert max(delays) < 10.0, delays
    assert json.loads(proc.stdout.decode().strip().splitlines()[-1])["pid"] != __import__("os").getpid()


def _parse_ts(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def test_finished_run_replays_then_closes_unless_asked_to_stay_open(asgi_server: AsgiServer, transactional_db: Any, user: Any) -> None:
    run = make_run(user, status="running")
    for t in ("run.started", "node.succeeded"):
        event_record(run_id=run.id, type=t, node_id="a" if t.startswith("node") else "")
    Run.objects.filter(id=run.id).update(status="succeeded")
    event_record(run_id=run.id, type="run.succeeded", data={"status": "succeeded"})
    url = f"{asgi_server.ws}/ws/runs/{run.id}/?token={token_for(user)}"

    closed = read(url, origin=asgi_server.http, timeout=10)
    assert closed.seqs == [1, 2, 3] and closed.close_code == 1000 and not closed.timed_out

    caught_up = read(f"{url}&after=3", origin=asgi_server.http, timeout=10)
    assert caught_up.seqs == [] and caught_up.close_code == 1000

    kept = read(f"{url}&stay_open=1", origin=asgi_server.http, timeout=2.5)
    assert kept.seqs == [1, 2, 3] and kept.close_code is None and kept.timed_out
    beats = [c for c in kept.controls if c["type"] == "heartbeat"]
    assert beats and beats[0]["last_seq"] == 3


def test_workflow_stream_carries_the_events_of_all_its_runs(asgi_server: AsgiServer, worker: Any, user: Any) -> None:
    wf = make_workflow(user, {"nodes": [node("a", "MANUAL"), node("b", "MERGE")], "edges": [edge("a", "b")]})
    box: dict[str, Any] = {}
    runs: list[Any] = []

    def done(stream: Any) -> bool:
        finished = {e["run_id"] for e in stream.events if e["type"] in TERMINAL}
        return len(finished) == 2

    def client() -> None:
        box["s"] = read(f"{asgi_server.ws}/ws/workflows/{wf.id}/?token={token_for(user)}", origin=asgi_server.http, stop=done, timeout=30)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    time.sleep(0.8)
    runs = [services.run_start(workflow=wf, inputs={}, user=user) for _ in range(2)]
    thread.join(40)
    stream = box["s"]
    for r in runs:
        r = wait_run(r.id)
        got = sorted(e["seq"] for e in stream.events if e["run_id"] == str(r.id))
        assert got == list(range(1, r.event_seq + 1))


@BATCH
def test_workflow_stream_keeps_overtaken_events_and_drops_repeats(
    asgi_server: AsgiServer, transactional_db: Any, user: Any, batch: str
) -> None:
    from executions.broadcast import flush, publish, row_payload

    run = make_run(user)
    now = timezone.now()

    def ev(seq: int) -> dict[str, Any]:
        return row_payload(seq=seq, type="node.started", run_id=run.id, workflow_id=run.workflow_id, node_id=f"n{seq}", ts=now, data={})

    def produce() -> None:
        time.sleep(0.8)
        for seq in (2, 1, 2, 3):  # 1 overtaken by 2, then 2 repeated
            publish([ev(seq)])
            flush(5)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    stream = read(
        f"{asgi_server.ws}/ws/workflows/{run.workflow_id}/?token={token_for(user)}{batch}",
        origin=asgi_server.http,
        stop=lambda s: 3 in s.seqs,
        timeout=10,
    )
    thread.join(10)
    assert stream.seqs == [2, 1, 3]


def test_secret_values_never_reach_a_subscriber(asgi_server: AsgiServer, transactional_db: Any, user: Any, api: Any) -> None:
    from zyra.redaction import global_redactor

    secret = "sk-live-" + "7f3a9c" * 4
    global_redactor().register("PAYMENT_KEY", secret)
    run = make_run(user)
    event_record(
        run_id=run.id,
        type="node.failed",
        node_id="charge",
        data={"status": "failed", "error": {"code": "auth", "message": f"bad key {secret}"}},
    )
    stream = read(f"{asgi_server.ws}/ws/runs/{run.id}/?token={token_for(user)}", origin=asgi_server.http, stop_after_seq=1, timeout=10)
    assert stream.seqs == [1]
    assert secret not in json.dumps(stream.events)
    assert stream.events[0]["data"]["error"]["message"] == "bad key [redacted:PAYMENT_KEY]"
    assert secret not in json.dumps(api_events(api, run.id))
