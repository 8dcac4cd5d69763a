"""Generation: orders and masks, output distributions, sampling, policies and the budget DP."""
