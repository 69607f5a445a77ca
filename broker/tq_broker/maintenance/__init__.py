"""The leader's maintenance services. Each is one file: a config with named defaults and a
`run_once()` returning counters, which tests call directly. Each statement is conditional, so
two leaders overlapping for a moment do no harm."""
