"""Starts a child that inherits stdout and outlives it, then exits without answering."""
import subprocess
import sys

sys.stdin.read()
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
