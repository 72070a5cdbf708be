"""Shared text normalisation for the tilt-mini corpora (stdlib only).

Output convention, for every cleaned file: one paragraph per line, documents (a chapter, an
address, a Brown text) separated by one blank line, UTF-8, trailing newline.
"""

import re
import unicodedata

_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2011": "-",  # non-breaking hyphen
        "\u00a0": " ",  # no-break space
    }
)
_DASHES = re.compile(r"\s*(?:-{2,}|\u2014)\s*")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """One paragraph of clean text: NFC, straight quotes, em dashes, single spaces.

    `--` (typewriter em dash, used by Austen's edition and Brown) and the Unicode em dash both
    become a bare `\u2014` with no spaces around it, the way Moby-Dick prints it, so that every
    source writes the dash one way. Control characters are dropped.
    """
    text = unicodedata.normalize("NFC", text).translate(_QUOTES)
    text = "".join(ch if ch in "\t\n" or unicodedata.category(ch) != "Cc" else "" for ch in text)
    text = _DASHES.sub("\u2014", text)
    return _SPACE.sub(" ", text).strip()


def write_documents(path: str, documents: list[list[str]]) -> tuple[int, int]:
    """Writes documents (lists of paragraphs) in the corpus convention.

    Empty paragraphs and documents are skipped. Returns (documents, characters) written.
    """
    docs = []
    for doc in documents:
        paras = [p for p in (normalise(p) for p in doc) if p]
        if paras:
            docs.append("\n".join(paras))
    text = "\n\n".join(docs) + "\n"
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    return len(docs), len(text)


def read_documents(path: str) -> list[str]:
    """Reads a file in the corpus convention back into documents (paragraphs joined by \\n)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [d.strip("\n") for d in re.split(r"\n\s*\n", text) if d.strip()]
