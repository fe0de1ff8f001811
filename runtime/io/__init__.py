"""Image and pair I/O: decoding, encoding, atomic writes, pairs on disk."""
