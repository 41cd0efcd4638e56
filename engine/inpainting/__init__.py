"""Cloud inpainting: cloud masks (layers, QA bits, detection), fills, training, applying."""
