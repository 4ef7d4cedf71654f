"""What to run and what a result looks like: the spec, trial identity and the Parquet table declarations.

Imports neither torch nor ray, so specs and results can be handled on any machine."""
