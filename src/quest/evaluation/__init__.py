"""Scores, statistics, comparisons, curves and pictures, computed from models' outputs."""
