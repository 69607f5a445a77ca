"""The HTTP layer: one router per resource, an error table, request-size limits."""
