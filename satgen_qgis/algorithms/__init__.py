"""One small module per Processing algorithm; shared parameter glue in base.py."""
