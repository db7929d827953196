"""Floor 2: the paper's Table II classifiers, the class-conditional generator, and masked
minibatch training over padded client arrays."""
