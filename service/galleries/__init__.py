"""Galleries of known faces: the SQLite store, coarse search and bundles."""
