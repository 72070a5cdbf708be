#!/usr/bin/env bash
# tilt GPU check: run the backend-matrix test suite (tilt-tests) on an NVIDIA GPU from test
# binaries built beforehand, time tilt's GDC++ training step there against the same work in
# PyTorch/transformers, and write everything to one results file.
#
# The GPU machine has an NVIDIA GPU with a CUDA 13 driver and PyTorch 2.11 in
# /opt/torch/.venv, but no Rust toolchain and no package registry. So the binaries are built
# here and copied there as one folder, the "bundle":
#
#   BUNDLE/gpu-check.sh                    this script
#   BUNDLE/bin/cuda/*                      test executables built with --features cuda (CubeCL)
#   BUNDLE/bin/tch/*                       test executables built with --features tch against
#                                          the GPU machine's exact torch (2.11)
#   BUNDLE/bench/{cuda,tch}/throughput     tilt-tests' throughput example, same features
#   BUNDLE/torch_step.py                   bench-suite/compare/torch_step.py (the PyTorch side)
#   BUNDLE/fixtures/                       policies/tests/fixtures (the transformers reference)
#   BUNDLE/BUILD-INFO.txt                  git revision, toolchain, torch, build commands
#
# 1. Build the bundle (x86-64 Linux with Rust, from the repository root):
#
#      scripts/gpu-check.sh pack BUNDLE cuda       # and/or: tch, or: all
#
#    `pack cuda` runs
#      CUDARC_CUDA_VERSION=13000 CARGO_TARGET_DIR=target-cuda \
#        cargo test --release -p tilt-tests --no-default-features --features cuda --no-run
#    (which builds tilt-tests' examples too)
#    (CUDARC_CUDA_VERSION=13000: there is no nvcc here, so cudarc would otherwise assume the
#    newest CUDA it knows, 13.4; 13.0 is the oldest CUDA 13 API and runs on any CUDA 13
#    driver. libcuda and NVRTC are loaded at run time.)
#
#    `pack tch` needs libtorch of the GPU machine's exact torch version (a tch binary built
#    against 2.9 does not run against 2.11's libraries). Once, with a registry:
#      TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130 \
#        scripts/setup-libtorch.sh 2.11.0 ~/.local/share/tilt/torch-2.11.0
#    (use the index matching `torch.__version__` there, e.g. 2.11.0+cu130), then
#      source ~/.local/share/tilt/torch-2.11.0/tilt-libtorch.env
#      scripts/gpu-check.sh pack BUNDLE tch
#    which runs
#      CARGO_TARGET_DIR=target-tch-gpu \
#        cargo test --release -p tilt-tests --no-default-features --features tch --no-run
#    (and the example). `pack` copies the executables named in cargo's JSON ("executable" of
#    the tilt-tests targets: the library's unit tests, the tests binary, the example).
#
#    The executables are stripped, and `pack` also writes BUNDLE.tar.xz (about 10 MB for cuda):
#    copy either to the GPU machine.
#
# 2. Copy BUNDLE to the GPU machine and run (no Rust, no network):
#
#      BUNDLE/gpu-check.sh run BUNDLE [RESULTS_FILE]      # default BUNDLE/gpu-check-results.txt
#
#    Runs, within a hard overall limit of 8 minutes (`timeout`; each run gets at most what is
#    left, so the results file is always finished), in this order:
#      cuda binaries  TILT_DEVICE=cuda:0   (CubeCL: f32 matmuls on tensor cores use TF32, so the
#                                           TF32 tolerances of tests/src/backend.rs apply)
#      tch binaries   TILT_DEVICE=cuda:0   with NVIDIA_TF32_OVERRIDE=0 (full f32 in cuBLAS)
#      throughput     GPU_CHECK_ROUNDS (2) alternating rounds, each process fresh: tilt's
#                     throughput example on cuda (in round 1 also with TILT_DRAW=host: the
#                     logits read back at every token) and on tch, then torch_step.py with
#                     TF32 off and on; GPT-2 small (random weights), GPU_CHECK_BATCH (64) sequences of
#                     GPU_CHECK_NEW_TOKENS (40), one untimed step then GPU_CHECK_STEPS (3)
#                     timed ones; a summary with the medians and the ratios tilt / torch
#                     (GPU_CHECK_DEVICE, default cuda:0, runs it elsewhere: cpu for a dry run)
#      tch binaries   TILT_DEVICE=cpu
#    with --test-threads=1 --nocapture, so every measured error is in the results.
#    Environment: TORCH_PYTHON (default /opt/torch/.venv/bin/python, else python3) locates
#    site-packages and runs torch_step.py (it needs torch and transformers): the directories
#    of libnvrtc*.so* (for CubeCL) and torch/lib + nvidia/*/lib (for tch) go on
#    LD_LIBRARY_PATH. GPU_CHECK_LIMIT_S overrides the 480 s limit.
set -euo pipefail

usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    exit 2
}

# ---------------------------------------------------------------------------------- pack ---
pack() {
    local bundle="$1" which="${2:-all}"
    local repo self
    repo="$(cd "$(dirname "$0")/.." && pwd -P)"
    self="$repo/scripts/gpu-check.sh"
    mkdir -p "$bundle/bin" "$bundle/fixtures"
    bundle="$(cd "$bundle" && pwd -P)"
    cd "$repo"
    local info="$bundle/BUILD-INFO.txt"
    {
        echo "tilt gpu-check bundle, packed $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -srm)"
        echo "git: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (working tree modified)')"
        echo "rustc: $(rustc --version)"
    } >>"$info"

    build_one() {
        local feature="$1" target_dir="$2"
        shift 2
        local json
        json="$(mktemp)"
        echo "== building $feature test binaries and the throughput example (CARGO_TARGET_DIR=$target_dir $*)"
        # `cargo test --no-run` builds the crate's examples too, and names them in its JSON.
        env "$@" CARGO_TARGET_DIR="$target_dir" cargo test --release -p tilt-tests \
            --no-default-features --features "$feature" --no-run --message-format=json >"$json"
        rm -rf "${bundle:?}/bin/$feature" "${bundle:?}/bench/$feature"
        mkdir -p "$bundle/bin/$feature" "$bundle/bench/$feature"
        # Executables of tilt-tests' test targets, named after the target (tilt_tests, tests),
        # into bin/; its throughput example into bench/.
        python3 - "$json" "$bundle" "$feature" <<'PY'
import json, shutil, subprocess, sys, os
src, bundle, feature = sys.argv[1:4]
tests = 0
example = 0
for line in open(src):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
        continue
    if "tilt-tests" not in msg["package_id"]:
        continue
    name = msg["target"]["name"]
    kind = "bench" if "example" in msg["target"]["kind"] else "bin"
    dest = os.path.join(bundle, kind, feature, name)
    # Without symbols (a fifth of the size: the CubeCL test binary is 254 MB with line
    # tables, 36 MB without); a plain copy where `strip` is missing.
    if shutil.which("strip"):
        subprocess.run(["strip", "-o", dest, msg["executable"]], check=True)
    else:
        shutil.copy2(msg["executable"], dest)
    print(f"   {msg['executable']} -> {kind}/{feature}/{name}")
    if kind == "bin":
        tests += 1
    else:
        example += 1
if tests == 0 or example == 0:
    sys.exit(f"cargo reported {tests} tilt-tests test executables and {example} examples")
PY
        rm -f "$json"
        echo "$feature: env $* CARGO_TARGET_DIR=$target_dir cargo test --release -p tilt-tests --no-default-features --features $feature --no-run (tests and examples)" >>"$info"
    }

    if [[ "$which" == cuda || "$which" == all ]]; then
        build_one cuda "${CUDA_TARGET_DIR:-target-cuda}" CUDARC_CUDA_VERSION=13000
    fi
    if [[ "$which" == tch || "$which" == all ]]; then
        local libtorch="${LIBTORCH:-}"
        if [[ -z "$libtorch" && -n "${VIRTUAL_ENV:-}" ]]; then
            libtorch="$("$VIRTUAL_ENV/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
        fi
        if [[ -z "$libtorch" || ! -f "$libtorch/version.py" ]]; then
            echo "error: pack tch needs libtorch of the GPU machine's torch: source the env file of scripts/setup-libtorch.sh 2.11.0 first" >&2
            exit 2
        fi
        local tv
        tv="$(sed -n "s/^__version__ = '\(.*\)'.*/\1/p" "$libtorch/version.py")"
        echo "== tch against torch $tv ($libtorch)"
        build_one tch "${TCH_TARGET_DIR:-target-tch-gpu}"
        echo "tch built against torch $tv" >>"$info"
    fi

    cp -r policies/tests/fixtures/gpt2_expected.json policies/tests/fixtures/tiny-gpt2 "$bundle/fixtures/"
    chmod -R a+r "$bundle/fixtures"
    cp bench-suite/compare/torch_step.py "$bundle/torch_step.py"
    cp "$self" "$bundle/gpu-check.sh"
    chmod +x "$bundle/gpu-check.sh"
    # One compressed file to carry (a device machine takes 64 MiB of files per call).
    tar -C "$bundle" -cf - . | xz -T0 -6 >"$bundle.tar.xz"
    echo "== bundle ready: $bundle ($(du -sh "$bundle" | cut -f1)), and $bundle.tar.xz ($(du -sh "$bundle.tar.xz" | cut -f1)):"
    echo "   on the GPU machine: mkdir B && tar -C B -xJf bundle.tar.xz && B/gpu-check.sh run B"
    cat "$info"
}

# ----------------------------------------------------------------------------------- run ---
run() {
    local bundle="$1"
    bundle="$(cd "$bundle" && pwd -P)"
    local results="${2:-$bundle/gpu-check-results.txt}"
    local limit="${GPU_CHECK_LIMIT_S:-480}"
    # The hard limit: this script re-runs itself under `timeout`. Each run below also gets at
    # most the time left before the deadline, so the results file gets its summary.
    if [[ -z "${TILT_GPU_CHECK_INNER:-}" ]]; then
        export TILT_GPU_CHECK_INNER=1 TILT_GPU_CHECK_START="$(date +%s)"
        # TERM at limit - 10 s, KILL 10 s later: never past the limit.
        exec timeout --kill-after=10 "$((limit - 10))" "$0" run "$bundle" "$results"
    fi
    local deadline=$((TILT_GPU_CHECK_START + limit - 25))
    : >"$results"
    log() { echo "$*" | tee -a "$results"; }
    local summary=()
    trap 'log "== stopped by the overall limit of ${limit} s"; printf "%s\n" "${summary[@]}" | tee -a "$results"; exit 124' TERM

    log "== tilt gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname) ($(uname -srm)), limit ${limit} s"
    [[ -f "$bundle/BUILD-INFO.txt" ]] && { log "== bundle:"; tee -a "$results" <"$bundle/BUILD-INFO.txt"; }
    log "== nvidia-smi"
    { timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1 \
        && timeout 20 nvidia-smi 2>&1 | sed -n '1,4p'; } | tee -a "$results" || log "(nvidia-smi failed)"

    # Python site-packages of the machine's torch: NVRTC for CubeCL, libtorch for tch.
    local py="${TORCH_PYTHON:-/opt/torch/.venv/bin/python}"
    [[ -x "$py" ]] || py="$(command -v python3 || true)"
    local site="" torch_dir=""
    if [[ -n "$py" ]]; then
        site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null || true)"
    fi
    [[ -d "$site/torch/lib" ]] && torch_dir="$site/torch"
    log "== python: ${py:-none}, site-packages: ${site:-none}"
    if [[ -n "$torch_dir" ]]; then
        timeout "$(( (deadline - $(date +%s)) / 4 > 60 ? 60 : (deadline - $(date +%s)) / 4 + 1 ))" "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' 2>&1 \
            | tee -a "$results" || log "(import torch failed)"
    fi
    local built_torch here_torch
    built_torch="$(sed -n 's/^tch built against torch //p' "$bundle/BUILD-INFO.txt" 2>/dev/null | tail -1 || true)"
    if [[ -n "$built_torch" && -n "$torch_dir" && -d "$bundle/bin/tch" ]]; then
        here_torch="$(sed -n "s/^__version__ = '\(.*\)'.*/\1/p" "$torch_dir/version.py")"
        [[ "$built_torch" == "$here_torch" ]] ||
            log "== WARNING: tch binaries built against torch $built_torch, this machine has $here_torch (C++ ABI: they may not load)"
    fi
    local nvrtc_dirs="" torch_lib_dirs=""
    if [[ -n "$site" ]]; then
        nvrtc_dirs="$(find "$site" -name 'libnvrtc*.so*' -printf '%h\n' 2>/dev/null | sort -u | paste -sd: -)"
    fi
    if [[ -n "$torch_dir" ]]; then
        torch_lib_dirs="$torch_dir/lib"
        for d in "$site"/nvidia/*/lib; do [[ -d "$d" ]] && torch_lib_dirs="$torch_lib_dirs:$d"; done
    fi
    log "== NVRTC dirs: ${nvrtc_dirs:-none found (CubeCL will look on the default library path)}"
    log "== libtorch dirs: ${torch_lib_dirs:-none}"

    # run_one NAME CAP_S CMD...: one process, at most CAP_S and the time left, its output into
    # the results and its status into the summary.
    run_one() {
        local name="$1" cap="$2"
        shift 2
        local left t0 rc status
        left=$((deadline - $(date +%s)))
        ((left > cap)) && left=$cap
        if ((left < 15)); then
            summary+=("SKIP  $name (no time left)")
            return 0
        fi
        log ""
        log "== $name (at most ${left} s): $*"
        t0="$(date +%s)"
        set +e
        (cd "$bundle" && timeout --kill-after=5 "$left" "$@") >>"$results" 2>&1
        rc=$?
        set -e
        case $rc in
        0) status=PASS ;;
        124 | 137) status=TIMEOUT ;;
        *) status="FAIL (exit $rc)" ;;
        esac
        summary+=("$status  $name ($(($(date +%s) - t0)) s)")
        log "== $name: $status in $(($(date +%s) - t0)) s"
    }

    # run_suite NAME DIR CAP_S VAR=VALUE...: every executable in DIR, under the environment.
    run_suite() {
        local name="$1" dir="$2" cap="$3"
        shift 3
        if ! compgen -G "$dir/*" >/dev/null; then
            summary+=("SKIP  $name (no binaries in ${dir#"$bundle"/})")
            log "== $name: skipped, no binaries in $dir"
            return
        fi
        local exe
        for exe in "$dir"/*; do
            if [[ "$name" == tch* ]]; then
                env "$@" ldd "$exe" 2>&1 | grep -E 'not found|torch' | tee -a "$results" || true
            fi
            run_one "$name: $(basename "$exe")" "$cap" env "$@" "$exe" --test-threads=1 --nocapture
        done
    }

    local common=(TILT_FIXTURES="$bundle/fixtures" RUST_BACKTRACE=1)
    run_suite "cuda (CubeCL) on cuda:0" "$bundle/bin/cuda" 240 "${common[@]}" TILT_DEVICE=cuda:0 \
        LD_LIBRARY_PATH="${nvrtc_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    if [[ -z "$torch_lib_dirs" && -d "$bundle/bin/tch" ]]; then
        log "== tch: no torch/lib under ${site:-?}; the tch binaries will probably not load"
    fi
    local tch_env=("${common[@]}" LD_LIBRARY_PATH="${torch_lib_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
    run_suite "tch on cuda:0" "$bundle/bin/tch" 150 "${tch_env[@]}" TILT_DEVICE=cuda:0 NVIDIA_TF32_OVERRIDE=0

    # Throughput: tilt's GDC++ training step (tilt-tests' throughput example, per backend built)
    # against the same work in PyTorch/transformers (torch_step.py, TF32 off and on), each in a
    # fresh process, in alternating rounds; every process runs one untimed step first.
    local tp=(gpt2-small "${GPU_CHECK_BATCH:-64}" "${GPU_CHECK_NEW_TOKENS:-40}" "${GPU_CHECK_STEPS:-3}")
    local rounds="${GPU_CHECK_ROUNDS:-2}" r dev="${GPU_CHECK_DEVICE:-cuda:0}"
    for ((r = 1; r <= rounds; r++)); do
        local cuda_tp=(env "${common[@]}" TILT_DEVICE="$dev" LD_LIBRARY_PATH="${nvrtc_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
        [[ -x "$bundle/bench/cuda/throughput" ]] && run_one "throughput round $r: tilt cuda (CubeCL)" 150 \
            "${cuda_tp[@]}" "$bundle/bench/cuda/throughput" "${tp[@]}"
        # Once: the same with each step's logits read back and drawn on the host (TILT_DRAW).
        ((r == 1)) && [[ -x "$bundle/bench/cuda/throughput" ]] && run_one "throughput round $r: tilt cuda (CubeCL), host draws" 150 \
            "${cuda_tp[@]}" TILT_DRAW=host "$bundle/bench/cuda/throughput" "${tp[@]}"
        [[ -x "$bundle/bench/tch/throughput" ]] && run_one "throughput round $r: tilt tch" 90 \
            env "${tch_env[@]}" TILT_DEVICE="$dev" "$bundle/bench/tch/throughput" "${tp[@]}"
        if [[ -n "$torch_dir" ]]; then
            local torch_args=(--device "$dev" --batch "${tp[1]}" --new-tokens "${tp[2]}" --steps "${tp[3]}")
            run_one "throughput round $r: torch f32" 90 "$py" "$bundle/torch_step.py" "${torch_args[@]}"
            run_one "throughput round $r: torch tf32" 90 "$py" "$bundle/torch_step.py" "${torch_args[@]}" --tf32
        fi
    done
    if [[ -n "$py" ]]; then
        log ""
        log "== throughput summary (median over every timed step of each side)"
        "$py" - "$results" "${tp[1]}" "${tp[2]}" <<'PY' 2>&1 | tee -a "$results" || true
import re, statistics, sys
side, steps = None, {}
for line in open(sys.argv[1]):
    m = re.match(r"== throughput round \d+: (.*) \(at most", line)
    if m:
        side = m.group(1)
    elif side and re.match(r"(tilt|torch)-train-step ", line):
        row = dict(kv.split("=") for kv in line.split()[1:])
        steps.setdefault(side, []).append({k: float(v) for k, v in row.items()})
    elif side and re.match(r"(tilt|torch)-backend ", line):
        print(f"{side}: {line.strip()}")
batch, tokens = int(sys.argv[2]), int(sys.argv[3])
med = {s: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for s, rows in steps.items()}
for s, m in med.items():
    print(f"{s:24s} step {m['seconds']:.4f} s = {batch / m['seconds']:.1f} samples/s "
          f"(sample {m['sample']:.4f} s = {batch * tokens / m['sample']:.0f} new tokens/s, "
          f"target {m['target']:.4f}, policy {m['policy']:.4f}, optimizer {m['optimizer']:.4f}) "
          f"over {len(steps[s])} steps")
for s, m in med.items():
    if s.startswith("tilt"):
        for ref in ("torch f32", "torch tf32"):
            if ref in med:
                r = med[ref]
                print(f"{s} / {ref}: step throughput {r['seconds'] / m['seconds']:.2f}x, "
                      f"sampling {r['sample'] / m['sample']:.2f}x, "
                      f"policy pass {r['policy'] / m['policy']:.2f}x")
PY
    fi

    run_suite "tch on cpu" "$bundle/bin/tch" 90 "${tch_env[@]}" TILT_DEVICE=cpu

    trap - TERM
    log ""
    log "== summary ($(($(date +%s) - TILT_GPU_CHECK_START)) s)"
    printf '%s\n' "${summary[@]}" | tee -a "$results"
    log "== results: $results"
    ! printf '%s\n' "${summary[@]}" | grep -qv '^PASS'
}

case "${1:-}" in
pack) [[ $# -ge 2 ]] || usage; pack "$2" "${3:-all}" ;;
run) [[ $# -ge 2 ]] || usage; run "$2" "${3:-}" ;;
*) usage ;;
esac
