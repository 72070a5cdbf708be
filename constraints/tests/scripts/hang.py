"""Writes its process id to the file named by its argument, then never answers."""
import os
import sys
import time

with open(sys.argv[1], "w") as f:
    f.write(str(os.getpid()))
sys.stderr.write("thinking...\n")
sys.stderr.flush()
time.sleep(600)
