"""What the test tiers and bench/ share: real processes, polling, the fault app, the history
checker."""
