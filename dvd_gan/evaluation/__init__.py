"""Evaluation: I3D and C3D features, FVD, FID and Inception Score."""
