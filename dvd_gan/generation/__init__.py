"""The EMA generator at work, shared by training's sample grids and in-training FVD and by
the sample and evaluate commands: its inputs and sampler (`sampling`), its standing
BatchNorm statistics (`standing_stats`), and its evaluation (`evaluation`)."""
