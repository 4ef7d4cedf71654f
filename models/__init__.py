"""Everything torch: model construction, initialization, accounting, data, training, checkpoints and probes.

Never imports ray: every function here runs in a plain Python process."""
