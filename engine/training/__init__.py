"""What every trainer shares: configuration options, checkpoints, reports, losses."""
