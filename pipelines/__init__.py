"""Prefect flows and the `idlecap` CLI: thin wiring over the domain packages, no domain logic."""
