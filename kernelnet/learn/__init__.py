"""Learning: models, data, gradient and exact solvers, pairs training, checkpoints."""
