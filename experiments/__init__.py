"""Research scripts behind the synthesis figures of README.md (see experiments/README.md); not part of the plugin."""
