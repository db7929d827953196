"""Floor 4: FedAvg as pure functions: the client update, the round (clients vmapped,
DP-FedAvg), and (epsilon, delta) accounting of its defenses."""
