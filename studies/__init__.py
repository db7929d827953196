"""Studies: one-off comparisons built on the library (each script documents its question)."""
