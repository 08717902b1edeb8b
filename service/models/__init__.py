"""The model files: manifest, pull, verify, prepare, synthesise, quantise, thresholds."""
