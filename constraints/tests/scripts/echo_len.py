"""Answers the length of each sample's text in characters (code points), one per line.

Test scorer for tilt-constraints: reads JSON lines {"text", "tokens", "eos"} on stdin.
With the argument `tokens` it answers the number of tokens instead, with `eos` 1 or 0.
"""
import json
import sys

mode = sys.argv[1] if len(sys.argv) > 1 else "text"
for line in sys.stdin:
    sample = json.loads(line)
    if mode == "tokens":
        print(len(sample["tokens"]))
    elif mode == "eos":
        print(1 if sample["eos"] else 0)
    else:
        print(len(sample["text"]))
