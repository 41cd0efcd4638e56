"""Training loops, one module per task; checkpoints and reports shared."""
