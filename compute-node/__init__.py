"""Compute nodes: close rounds, claim and run the aggregate and evaluate tasks, attest results,
keep block time moving while a round waits, and write the round history."""
