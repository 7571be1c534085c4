"""Run a workflow file end to end and show its progress.

    python manage.py run_workflow examples/order_fulfilment.json --input order_id=1001

Embedded by default (SQLite, in-process broker and worker). The command serves
a small local HTTP API (``{{ input.base_url }}``) that the examples call.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from zyra.errors import ZyraError


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


class Command(BaseCommand):
    help = "Run a workflow definition file and print each node's status as it changes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="workflow JSON file ({name?, definition} or a bare definition)")
        parser.add_argument("--input", action="append", default=[], metavar="KEY=VALUE", help="run input (JSON values allowed)")
        parser.add_argument("--inputs-json", default=None, help="the whole run input as a JSON object")
        parser.add_argument("--timeout", type=float, default=300.0, help="give up waiting after this many seconds")
        parser.add_argument("--user", default="demo", help="owner of the workflow")
        parser.add_argument("--sequential", action="store_true", help="run one node at a time")
        parser.add_argument("--no-migrate", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        from executions import embedded, services
        from executions.demo_server import DemoServer
        from executions.models import Run
        from workflows.models import Workflow
        from workflows.services import workflow_create, workflow_update

        path = Path(opts["path"])
        if not path.exists():
            raise CommandError(f"{path}: no such file")
        try:
            doc = json.loads(path.read_text())
        except ValueError as exc:
            raise CommandError(f"{path}: not JSON: {exc}") from None
        definition = doc.get("definition", doc) if isinstance(doc, dict) else doc
        name = (doc.get("name") if isinstance(doc, dict) else None) or path.stem
        if opts["sequential"] and isinstance(definition, dict):
            definition = {**definition, "settings": {**(definition.get("settings") or {}), "sequential": True}}

        if not opts["no_migrate"]:
            call_command("migrate", verbosity=0, interactive=False)
        demo = DemoServer()
        # The demo API is on loopback: allow it for this process only.
        settings.ZYRA_HTTP_ALLOWLIST = [*settings.ZYRA_HTTP_ALLOWLIST, "127.0.0.1"]
        inputs: dict[str, Any] = {"base_url": demo.base_url}
        if opts["inputs_json"]:
            extra = json.loads(opts["inputs_json"])
            if not isinstance(extra, dict):
                raise CommandError("--inputs-json must be a JSON object")
            inputs.update(extra)
        for item in opts["input"]:
            key, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--input {item!r}: use KEY=VALUE")
            inputs[key] = _parse_value(value)

        user, _ = get_user_model().objects.get_or_create(username=opts["user"])
        try:
            wf = Workflow.objects.filter(owner=user, name=name, is_active=True).first()
            if wf is None:
                wf = workflow_create(owner=user, name=name, definition=definition, description=str(doc.get("description", "")))
            else:
                wf = workflow_update(workflow=wf, user=user, definition=definition)
        except ZyraError as exc:
            self.stderr.write(f"invalid workflow: {exc.message}")
            for d in exc.details:
                self.stderr.write(f"  {d.path}: {d.code}: {d.message}")
            raise CommandError("the workflow did not validate") from None

        embedded.ensure_started()
        started = time.monotonic()
        try:
            run = services.run_start(workflow=wf, inputs=inputs, user=user, trigger="manual", priority=9)
        except ZyraError as exc:
            raise CommandError(f"{exc.code}: {exc.message} {[d.as_dict() for d in exc.details]}") from None
        assert wf.current_version is not None  # run_start raises no_version otherwise
        self.stdout.write(f"run {run.id} of {name!r} v{wf.current_version.number} ({run.nodes_total} nodes)")
        self._follow(run.id, opts["timeout"])
        run = Run.objects.get(id=run.id)
        elapsed = time.monotonic() - started
        self._table(run)
        self.stdout.write(f"\nrun {run.status} in {elapsed:.2f} s")
        if demo.received:
            self.stdout.write(
                f"the demo API received {len(demo.received)} notification(s); last: {json.dumps(demo.received[-1]['body'])[:200]}"
            )
        demo.close()
        if run.status != "succeeded":
            sys.stdout.flush()
            raise SystemExit(1)

    def _follow(self, run_id: Any, timeout: float) -> None:
        from executions.models import Run

        follow_run: Callable[..., str] | None
        try:
            from executions.progress import follow_run
        except ImportError:
            follow_run = None
        if follow_run is not None:
            follow_run(run_id=run_id, stream=self.stdout, timeout_s=timeout)
            return
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            run = Run.objects.get(id=run_id)
            for ev in run.events.filter(seq__gt=seen).order_by("seq"):
                seen = ev.seq
                if ev.type.startswith("node.") or ev.type.startswith("run."):
                    self.stdout.write(f"  {ev.type:<22} {ev.node_id}")
            if run.is_terminal:
                return
            time.sleep(0.05)
        raise CommandError(f"the run did not finish within {timeout} s")

    def _table(self, run: Any) -> None:
        rows = list(run.node_runs.order_by("topo_index"))
        self.stdout.write("")
        self.stdout.write(f"{'node':<22} {'type':<16} {'status':<12} {'attempts':>8} {'duration':>10}  error")
        for nr in rows:
            dur = f"{nr.duration_ms} ms" if nr.duration_ms is not None else "-"
            err = (nr.error or {}).get("code", "") if nr.error else ""
            self.stdout.write(f"{nr.node_id:<22} {nr.type:<16} {nr.status:<12} {nr.attempt:>8} {dur:>10}  {err}")
