"""Everything Ray: the CLI, the Tune grid, thin trainables, the results writer and cluster submission."""
