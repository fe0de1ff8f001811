"""Checks: graph structure and receptive field, float error bounds, verify and its comparators."""
