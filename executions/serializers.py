from __future__ import annotations

from typing import Any

from rest_framework import serializers

from executions.models import NodeRun, Run


class RunStartSerializer(serializers.Serializer):
    inputs = serializers.JSONField(required=False, default=dict)
    idempotency_key = serializers.CharField(required=False, allow_null=True, max_length=200, min_length=1)

    def validate_idempotency_key(self, value: Any) -> Any:
        raw = self.initial_data.get("idempotency_key") if isinstance(self.initial_data, dict) else None
        if raw is not None and not isinstance(raw, str):
            raise serializers.ValidationError("idempotency_key must be a string.", code="type")
        return value

    def validate_inputs(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise serializers.ValidationError("inputs must be a JSON object.", code="type")
        return value


class NodeRunSerializer(serializers.ModelSerializer):
    duration_ms = serializers.IntegerField(read_only=True, allow_null=True)
    error = serializers.SerializerMethodField()

    class Meta:
        model = NodeRun
        fields = [
            "node_id",
            "type",
            "status",
            "attempt",
            "inputs",
            "output",
            "error",
            "attempts",
            "defer_reason",
            "next_attempt_at",
            "started_at",
            "finished_at",
            "duration_ms",
            "deferred_ms",
        ]

    def get_error(self, obj: NodeRun) -> dict[str, Any] | None:
        if not obj.error:
            return None
        return {
            "code": obj.error.get("code"),
            "message": obj.error.get("message"),
            **({"details": obj.error["details"]} if "details" in obj.error else {}),
        }


class RunSummarySerializer(serializers.ModelSerializer):
    workflow_id = serializers.UUIDField(read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    duration_ms = serializers.IntegerField(read_only=True, allow_null=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "id",
            "workflow_id",
            "version",
            "status",
            "trigger",
            "idempotency_key",
            "created_at",
            "started_at",
            "finished_at",
            "duration_ms",
            "progress",
            "error",
        ]

    def get_progress(self, obj: Run) -> dict[str, int]:
        return {"done": obj.nodes_done, "total": obj.nodes_total}


_summary: RunSummarySerializer | None = None


def run_summary(run: Run) -> dict[str, Any]:
    """``RunSummarySerializer(run).data``, from one serializer per process: DRF builds a ModelSerializer's
    fields for every instance (deep copies, model introspection), a fifteenth of the API's CPU per run
    start. Its fields hold no per-call state, so one instance serves every thread."""
    global _summary
    if _summary is None:
        _summary = RunSummarySerializer()
    return dict(_summary.to_representation(run))


class RunDetailSerializer(RunSummarySerializer):
    nodes = NodeRunSerializer(source="node_runs", many=True, read_only=True)

    class Meta(RunSummarySerializer.Meta):
        fields = [*RunSummarySerializer.Meta.fields, "inputs", "outputs", "resumes", "nodes"]
