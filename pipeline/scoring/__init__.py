"""Scoring interpolation: the metrics, the methods compared (the two models and the baselines), batched
full-resolution scoring, and the evaluation's plots and example grids."""
