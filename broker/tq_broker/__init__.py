"""taskqueue broker: the REST API on PostgreSQL, leader election and the maintenance sweeps."""
