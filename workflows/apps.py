from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register every node type's spec (schemas, defaults) at start-up.
        from workflows import node_types  # noqa: F401
