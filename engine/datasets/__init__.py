"""Training data sets built from rasters: aligned image pairs, spatial
train/validation splits and the patch samplers that feed the training loops."""
