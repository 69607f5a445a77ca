"""Kubernetes pieces shared by the broker and the operator: leader election on a Lease.

Imports nothing of ours, so both may use it without depending on each other or on the
client's wire models.
"""
