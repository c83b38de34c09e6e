"""The federation transaction processor: workflows, rounds, quorum and deadlines, task claims,
results, attestations and the validation gate — thin over ``trustmesh.contracts.rules``."""
