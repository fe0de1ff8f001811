"""Compression: pruning (masks, the amount search, pairs runs)."""
