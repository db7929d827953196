"""Floor 5: what a malicious participant can do with what it sees: its view, the generator
trained against frozen global params, D_gen and the attack classifier, membership scores,
malicious uploads, and label recovery from global-model deltas."""
