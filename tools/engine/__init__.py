"""The one training engine of both models: fit, checkpoints, resume, time budget, NaN stop, export."""
