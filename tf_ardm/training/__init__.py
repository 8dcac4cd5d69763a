"""Training: the loop as a function of its configs; callbacks, preemption, optimizers."""
