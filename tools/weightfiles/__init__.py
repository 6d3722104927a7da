"""Weight files: torchvision checkpoints converted without torch, float16 storage, averaging."""
