"""Configuration files, loaded by path (`--config=configs/kinetics600.py:48x128`)."""
