"""Floor 0: the types, errors, config checks and file writes every other part uses."""
