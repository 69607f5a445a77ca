"""taskqueue worker runtime and task SDK."""
