"""Floor 1: datasets by shape (bundled, official files, TFDS) and their partition into
padded per-participant client arrays."""
