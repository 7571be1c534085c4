"""Pure execution logic: graph analysis, routing, status transitions, retry arithmetic. No ORM."""
