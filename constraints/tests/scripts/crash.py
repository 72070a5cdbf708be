"""Reads its input, complains on stderr and exits with status 3."""
import sys

sys.stdin.read()
sys.stderr.write("loading classifier...\n")
sys.stderr.write("error: the model file is corrupt\n")
sys.exit(3)
