"""Command-line tools and the model-independent library: RLE, metric, submission, TTA, post-processing."""
