"""Answers one line per sample, but the second is not a number."""
import sys

for i, _ in enumerate(sys.stdin):
    print("0.5" if i != 1 else "positive")
