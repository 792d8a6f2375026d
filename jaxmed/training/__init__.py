"""Training machinery every family shares: the runner (the one loop), checkpoints, sharding, multi-host
start-up, workdir layout, gradient accumulation, the optimizer, and restoring a run from its workdir."""
