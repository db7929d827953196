"""Floor 6: the run. Reads an ``ml_collections`` config once, builds the library's pure
functions, runs batches of runs round by round, checkpoints, sweeps and writes outputs."""
