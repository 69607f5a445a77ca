"""taskqueue operator: WorkerPool resources reconciled into autoscaled worker Deployments."""
