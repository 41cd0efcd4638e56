"""Development tools that are not part of the plugin package: benchmarks, sample data, `make evaluate`."""
