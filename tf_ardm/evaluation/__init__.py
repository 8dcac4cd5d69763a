"""Evaluation: likelihoods on held-out data, classic baselines, plots and image grids."""
