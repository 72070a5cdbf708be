#!/usr/bin/env bash
# Installs the Python environment of the comparison harness (compare/*.py): pinned torch and
# transformers, and naver/disco from PyPI (disco-generation).
#
# Usage: bench-suite/compare/setup.sh [VENV]     (default VENV: ~/.local/share/tilt/venv-compare)
# Needs python3 (3.11 was checked) and access to PyPI.
#
# disco-generation declares python_requires "<3.11", so it is installed with
# --ignore-requires-python and --no-deps (its declared dependencies pull notebook, spacy,
# wandb and neptune, which the tuner does not import). Version 1.0.0, not the latest 1.1.1:
# 1.1.0 and 1.1.1 on PyPI import `disco.tuners.losses.misc`, which their sdists do not contain,
# so `from disco.tuners import DPGTuner` fails with ModuleNotFoundError. 1.0.0's DPGTuner
# trains with KLLoss(), whose baseline is on by default: GDC++. (Its LMDistribution takes the
# model directory as `network=`, not `model=`.)
set -euo pipefail
venv=${1:-$HOME/.local/share/tilt/venv-compare}
python3 -m venv "$venv"
pip="$venv/bin/pip"
"$pip" install --upgrade pip
"$pip" install "torch==2.9.0" "transformers==4.57.1" "huggingface-hub==0.36.2" "tokenizers==0.22.2" \
  "numpy==2.4.6" "scipy" "datasets==3.6.0"
"$pip" install --no-deps --ignore-requires-python "disco-generation==1.0.0"
"$venv/bin/python" -c "from disco.tuners import DPGTuner; from disco.tuners.losses import KLLoss; import transformers, torch; print('ok: torch', torch.__version__, 'transformers', transformers.__version__)"
echo "environment ready: $venv/bin/python bench-suite/compare/train_step.py"
