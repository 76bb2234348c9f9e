"""Reference rates, cost floors, demand, optimizer, guardrails, price sheets. Not built yet."""
