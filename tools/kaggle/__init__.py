"""Kaggle's DSB 2018 formats and metric: run-length encoding, submission files, the score."""
