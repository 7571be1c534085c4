"""Request and response shapes of the workflow API (DESIGN §7).

Request serializers check the envelope (name, tags, ...); the definition
itself is any JSON value here and is judged by ``workflows.validation``.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from workflows.models import Workflow, WorkflowVersion

MAX_TAGS = 50


class ErrorDetailSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="JSON pointer into the request body ('' for the whole body)")
    code = serializers.CharField()
    message = serializers.CharField()


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = ErrorDetailSerializer(many=True)


class ErrorSerializer(serializers.Serializer):
    """The one error shape of the API."""

    error = ErrorBodySerializer()


class WorkflowWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=20_000, required=False, allow_blank=True, trim_whitespace=False)
    tags = serializers.ListField(child=serializers.CharField(max_length=64), max_length=MAX_TAGS, required=False)
    definition = serializers.JSONField(help_text="The builder's React Flow document plus settings (see GET /api/workflows/schema/).")


class WorkflowSerializer(serializers.ModelSerializer):
    version = serializers.SerializerMethodField()
    definition = serializers.SerializerMethodField(help_text="The definition exactly as submitted.")
    normalized = serializers.SerializerMethodField(help_text="The canonical form the engine runs.")
    tags = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = Workflow
        fields = ["id", "name", "description", "tags", "version", "definition", "normalized", "created_at", "updated_at"]
        read_only_fields = fields

    def get_version(self, obj: Workflow) -> int | None:
        return obj.current_version.number if obj.current_version else None

    def get_definition(self, obj: Workflow) -> dict[str, Any] | None:
        return obj.current_version.submitted_document if obj.current_version else None

    def get_normalized(self, obj: Workflow) -> dict[str, Any] | None:
        return obj.current_version.definition if obj.current_version else None


class WorkflowVersionSerializer(serializers.ModelSerializer):
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = WorkflowVersion
        fields = ["number", "checksum", "created_by", "created_at"]
        read_only_fields = fields

    def get_created_by(self, obj: WorkflowVersion) -> str | None:
        return obj.created_by.get_username() if obj.created_by else None


class WorkflowVersionDetailSerializer(WorkflowVersionSerializer):
    definition = serializers.JSONField(source="submitted_document", read_only=True, help_text="As submitted.")
    normalized = serializers.JSONField(source="definition", read_only=True, help_text="Canonical form.")

    class Meta(WorkflowVersionSerializer.Meta):
        fields = [*WorkflowVersionSerializer.Meta.fields, "definition", "normalized"]
        read_only_fields = fields


class ValidateRequestSerializer(serializers.Serializer):
    definition = serializers.JSONField()


class ValidateResponseSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    # DRF's metaclass moves declared fields off the class, so this does not
    # shadow Serializer.errors at run time.
    errors = ErrorDetailSerializer(many=True)  # type: ignore[assignment]


class RetryDefaultsSerializer(serializers.Serializer):
    max_attempts = serializers.IntegerField()
    backoff_s = serializers.FloatField()
    max_backoff_s = serializers.FloatField()
    multiplier = serializers.FloatField()
    jitter = serializers.FloatField()


class NodeTypeDefaultsSerializer(serializers.Serializer):
    timeout_s = serializers.FloatField()
    retry = RetryDefaultsSerializer()
    queue = serializers.ChoiceField(choices=["io", "cpu"])


class NodeTypeSerializer(serializers.Serializer):
    type = serializers.CharField()
    category = serializers.ChoiceField(choices=["trigger", "action", "logic"])
    label = serializers.CharField()  # type: ignore[assignment]  # a declared field, not Field.label
    description = serializers.CharField(allow_blank=True)
    config_schema = serializers.DictField(help_text="JSON Schema (2020-12) of data.config")
    output_schema = serializers.DictField(help_text="JSON Schema (2020-12) of the node's output")
    defaults = NodeTypeDefaultsSerializer()
    side_effects = serializers.BooleanField()
    handles = serializers.ListField(child=serializers.CharField(), allow_null=True)
