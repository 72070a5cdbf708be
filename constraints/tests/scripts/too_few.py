"""Answers one line fewer than it was sent."""
import sys

lines = sys.stdin.readlines()
for _ in lines[1:]:
    print(1)
