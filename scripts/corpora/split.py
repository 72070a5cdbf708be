"""Deterministic train/validation split of the cleaned tilt-mini corpora (stdlib only).

Usage: python split.py CORPUS_DIR [EVERY]

Reads austen.txt, moby-dick.txt, sotu.txt and brown.txt from CORPUS_DIR and writes train.txt and
valid.txt there, in the same convention (paragraph per line, blank line between documents). The
split is by whole document, so no chapter or address is shared between the two: within each
source, documents number i with i % EVERY == EVERY // 2 (default EVERY = 50, about 2%) go to
validation, the rest to training. Counts are printed per source.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import read_documents  # noqa: E402

SOURCES = ["austen", "moby-dick", "sotu", "brown"]


def main() -> None:
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    corpus = sys.argv[1]
    every = int(sys.argv[2]) if len(sys.argv) == 3 else 50
    train, valid = [], []
    print(f"{'source':<10} {'train docs':>10} {'train chars':>12} {'valid docs':>10} {'valid chars':>12}")
    for source in SOURCES:
        docs = read_documents(os.path.join(corpus, f"{source}.txt"))
        t = [d for i, d in enumerate(docs) if i % every != every // 2]
        v = [d for i, d in enumerate(docs) if i % every == every // 2]
        train.extend(t)
        valid.extend(v)
        print(
            f"{source:<10} {len(t):>10} {sum(map(len, t)):>12} "
            f"{len(v):>10} {sum(map(len, v)):>12}"
        )
    for name, docs in (("train.txt", train), ("valid.txt", valid)):
        with open(os.path.join(corpus, name), "w", encoding="utf-8", newline="\n") as f:
            f.write("\n\n".join(docs) + "\n")
    print(
        f"{'total':<10} {len(train):>10} {sum(map(len, train)):>12} "
        f"{len(valid):>10} {sum(map(len, valid)):>12}"
    )


if __name__ == "__main__":
    main()
