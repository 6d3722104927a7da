"""Reading, normalising, augmenting and sampling nucleus images; shared by both models."""
