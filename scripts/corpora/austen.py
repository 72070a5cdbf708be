"""Jane Austen's six novels from Debian's r-cran-janeaustenr, as plain text (stdlib + rdata).

The package keeps the novels as R lazy-load data: `data/Rdata.rdx` is a gzip'd serialised R list
whose `variables` map each object name to (offset, length) in `data/Rdata.rdb`; each record there
is a 4-byte big-endian length followed by a zlib stream of one serialised R character vector (one
element per printed line). rdata parses the serialised objects, so R is not needed.

Usage: python austen.py JANEAUSTENR_DIR OUT.txt
(JANEAUSTENR_DIR is .../usr/lib/R/site-library/janeaustenr from `dpkg-deb -x`.)

One document per chapter. Dropped: title pages and everything before the first chapter heading
(including Northanger Abbey's "Advertisement"), the bare chapter and volume headings, the closing
"THE END"/"FINIS", and the modern "A NOTE ON THE TEXT" after Northanger Abbey. `_italics_`
underscores are removed.
"""

import gzip
import os
import re
import struct
import sys
import warnings
import zlib

import rdata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import write_documents  # noqa: E402

# Publication order.
NOVELS = [
    "sensesensibility",
    "prideprejudice",
    "mansfieldpark",
    "emma",
    "northangerabbey",
    "persuasion",
]

CHAPTER = re.compile(r"^(?:CHAPTER|Chapter)\s+[0-9IVXLC]+\.?$")
VOLUME = re.compile(r"^VOLUME\s+[IVX]+$")
END = re.compile(r"^(?:THE END|FINIS|Finis|A NOTE ON THE TEXT)$")


def parse_r(data: bytes):
    """Parses one serialised R object (XDR format) into Python values."""
    with warnings.catch_warnings():
        # rdata warns that a bare serialisation stream has no RDS/RDA magic; that is expected.
        warnings.simplefilter("ignore")
        return rdata.conversion.convert(rdata.parser.parse_data(data))


def load_novels(pkg_dir: str) -> dict[str, list[str]]:
    """Reads every novel as its list of printed lines."""
    data_dir = os.path.join(pkg_dir, "data")
    with open(os.path.join(data_dir, "Rdata.rdx"), "rb") as f:
        index = parse_r(gzip.decompress(f.read()))
    with open(os.path.join(data_dir, "Rdata.rdb"), "rb") as f:
        rdb = f.read()
    novels = {}
    for name, (offset, length) in index["variables"].items():
        record = rdb[int(offset) : int(offset) + int(length)]
        (size,) = struct.unpack(">I", record[:4])
        body = zlib.decompress(record[4:])
        if len(body) != size:
            raise ValueError(f"{name}: record says {size} bytes, zlib gave {len(body)}")
        novels[str(name)] = [str(line) for line in parse_r(body)]
    return novels


def chapters(lines: list[str]) -> list[list[str]]:
    """Splits a novel's lines into chapters of paragraphs, dropping headings and front matter."""
    paragraphs, current = [], []
    for line in lines + [""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    docs: list[list[str]] = []
    for para in paragraphs:
        if END.match(para):
            break
        if CHAPTER.match(para):
            docs.append([])
        elif docs and not VOLUME.match(para):
            docs[-1].append(re.sub(r"_", "", para))
    return docs


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    pkg_dir, out = sys.argv[1], sys.argv[2]
    novels = load_novels(pkg_dir)
    missing = set(NOVELS) - set(novels)
    if missing:
        sys.exit(f"austen.py: {pkg_dir} lacks {sorted(missing)}")
    docs = []
    for name in NOVELS:
        chs = chapters(novels[name])
        print(f"  austen/{name}: {len(chs)} chapters", file=sys.stderr)
        docs.extend(chs)
    n_docs, n_chars = write_documents(out, docs)
    print(f"austen.txt: {n_docs} documents, {n_chars} characters")


if __name__ == "__main__":
    main()
