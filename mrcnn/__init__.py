"""Keras 3 Mask R-CNN (ResNet/MobileNetV2-FPN) for nuclei."""
