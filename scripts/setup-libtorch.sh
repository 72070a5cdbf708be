#!/usr/bin/env bash
# Prepare libtorch for tilt's `tch` backend (burn-tch 0.21 / tch 0.22) from a Python `torch`.
#
# Usage: scripts/setup-libtorch.sh [TORCH_VERSION] [VENV_DIR] [ENV_FILE]
#   TORCH_VERSION  default 2.9.0, the version tch 0.22 checks for (torch-sys 0.22 build.rs:
#                  TORCH_VERSION). Another version works only with the version check bypassed,
#                  and a binary runs only against the exact torch it was built with (C++ ABI).
#   VENV_DIR       default ${XDG_DATA_HOME:-~/.local/share}/tilt/torch-<version>; must lie
#                  outside the repository. An existing venv that already has this torch
#                  version is used as it is (nothing is installed or changed in it).
#   ENV_FILE       default <VENV_DIR>/tilt-libtorch.env: the variables to `source` before
#                  building and running with `--features tch`.
# Environment:
#   PYTHON           interpreter that creates the venv (default python3; torch 2.9 wants 3.10+)
#   TORCH_INDEX_URL  a pip index for torch, e.g. https://download.pytorch.org/whl/cpu for the
#                    CPU-only wheel (~200 MB instead of ~4 GB of CUDA libraries from PyPI's
#                    default wheel; that one runs on the CPU too)
#
# Then, from the repository root:
#   source <ENV_FILE>
#   CARGO_TARGET_DIR=target-tch cargo test -p tilt-tests --no-default-features --features tch
#   TILT_DEVICE=cuda:0 <the same>          # on a machine with an NVIDIA GPU and a CUDA wheel
#
# What the variables do:
#   build, torch 2.9.0: LIBTORCH_USE_PYTORCH=1 with the venv's python first on PATH (torch-sys
#     and burn-tch run `python` when VIRTUAL_ENV is set to find headers, libraries and the
#     C++ ABI).
#   build, other versions: LIBTORCH=<site-packages>/torch, LIBTORCH_BYPASS_VERSION_CHECK=1 and
#     LIBTORCH_CXX11_ABI from the installed torch.
#   run: LD_LIBRARY_PATH=<site-packages>/torch/lib plus the wheel's nvidia/*/lib directories
#     (the binaries do not carry an rpath to them).
# Without these variables the torch-sys build tries to download libtorch and fails offline.
set -euo pipefail

version="${1:-2.9.0}"
venv="${2:-${XDG_DATA_HOME:-$HOME/.local/share}/tilt/torch-$version}"
python="${PYTHON:-python3}"
expected_by_tch="2.9.0"

repo="$(cd "$(dirname "$0")/.." && pwd -P)"
mkdir -p "$(dirname "$venv")"
venv_abs="$(cd "$(dirname "$venv")" && pwd -P)/$(basename "$venv")"
case "$venv_abs/" in
"$repo"/*)
    echo "error: VENV_DIR $venv_abs is inside the repository $repo; choose a directory outside it" >&2
    exit 2
    ;;
esac
env_file="${3:-$venv_abs/tilt-libtorch.env}"

installed_version() {
    "$venv_abs/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true
}

if [[ -x "$venv_abs/bin/python" && "$(installed_version)" == "$version" ]]; then
    echo "== using the existing venv $venv_abs (torch $version already installed)"
else
    if [[ ! -x "$venv_abs/bin/python" ]]; then
        echo "== creating venv $venv_abs with $python"
        "$python" -m venv "$venv_abs"
    fi
    echo "== pip install torch==$version into $venv_abs (a few minutes; ~4 GB from PyPI's default index)"
    pip_args=(install --disable-pip-version-check "torch==$version")
    if [[ -n "${TORCH_INDEX_URL:-}" ]]; then
        pip_args+=(--index-url "$TORCH_INDEX_URL")
    fi
    "$venv_abs/bin/python" -m pip "${pip_args[@]}"
    got="$(installed_version)"
    if [[ "$got" != "$version" ]]; then
        echo "error: torch $version was requested but the venv has '${got:-none}'" >&2
        exit 1
    fi
fi

# Paths and ABI from the installed torch itself.
read -r site torch_dir cxx11 cuda_build < <("$venv_abs/bin/python" - <<'PY'
import os, sysconfig, torch
print(sysconfig.get_paths()["purelib"], os.path.dirname(torch.__file__),
      int(torch._C._GLIBCXX_USE_CXX11_ABI), torch.version.cuda or "none")
PY
)
lib_dirs="$torch_dir/lib"
if [[ -d "$site/nvidia" ]]; then
    for d in "$site"/nvidia/*/lib; do
        [[ -d "$d" ]] && lib_dirs="$lib_dirs:$d"
    done
fi

mkdir -p "$(dirname "$env_file")"
{
    echo "# Written by scripts/setup-libtorch.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ): torch $version (CUDA build: $cuda_build)"
    echo "# from $venv_abs. Source it before building or running tilt with --features tch."
    if [[ "$version" == "$expected_by_tch" ]]; then
        echo "# Build: torch-sys/burn-tch ask the venv's python for headers, libraries and the ABI."
        echo "export VIRTUAL_ENV=\"$venv_abs\""
        echo "export PATH=\"$venv_abs/bin:\${PATH}\""
        echo "export LIBTORCH_USE_PYTORCH=1"
    else
        echo "# Build: torch $version is not the $expected_by_tch that tch 0.22 expects; link it"
        echo "# directly and skip the version check (the binary then runs only against $version)."
        echo "export LIBTORCH=\"$torch_dir\""
        echo "export LIBTORCH_BYPASS_VERSION_CHECK=1"
        echo "export LIBTORCH_CXX11_ABI=$cxx11"
        echo "unset LIBTORCH_USE_PYTORCH"
    fi
    echo "# Run: libtorch and the wheel's CUDA libraries."
    echo "export LD_LIBRARY_PATH=\"$lib_dirs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
} >"$env_file"

echo "== wrote $env_file:"
cat "$env_file"
echo "== next: source $env_file && CARGO_TARGET_DIR=target-tch cargo test -p tilt-tests --no-default-features --features tch"
