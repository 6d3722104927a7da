"""Keras U-Net whose body/border/background maps become nuclei by watershed."""
