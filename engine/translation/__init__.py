"""Satellite -> map translation (Pix2Pix): paired data, training, applying."""
