"""Text corpora as lists of documents: the embedded Shakespeare, one .txt file, or a folder of them.

A document is one play or one file. The tokenizer puts BOS before every document, so attention
never crosses from one into the next. The validation split is the last `val_fraction` of the
documents joined with "\\n\\n" (cutting the last training document where needed); the char-level
baseline and the token shards both use this one split, and it is never trained on.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
from collections.abc import Sequence
from pathlib import Path

from engine.errors import DataError
from engine.text_input import decode_utf8

SHAKESPEARE = "shakespeare"
# the embedded asset holds the plays joined by two blank lines; a play never has two in a row
PLAY_SEPARATOR = "\n\n\n"
# documents are joined with this when the corpus is seen as one text (split, char-level baseline)
DOCUMENT_JOINER = "\n\n"
# below this many training characters (after the validation split) a model learns nothing useful
MIN_TRAIN_CHARS = 2000

_ASSET = "assets/shakespeare.txt.gz"
_CORPUS_HINT = "data.corpus is 'shakespeare', a path to a .txt file, or a folder of .txt files"


def load_corpus(spec: str) -> list[str]:
    """The documents of a corpus: one per play for "shakespeare", one per file for a path.

    A folder contributes every *.txt below it (recursively, sorted by relative path). Files are
    read as UTF-8 (a leading BOM is dropped) with line endings normalised to "\\n";
    whitespace-only files are skipped.
    """
    if spec == SHAKESPEARE:
        documents = _load_shakespeare()
    else:
        documents = _load_path(spec)
    documents = [doc for doc in documents if doc.strip()]
    if not documents:
        raise DataError(f"the corpus {spec!r} is empty", hint="put some text in it, or use data.corpus = 'shakespeare'")
    total = sum(len(doc) for doc in documents) + len(DOCUMENT_JOINER) * (len(documents) - 1)
    if total < MIN_TRAIN_CHARS:
        raise DataError(
            f"the corpus {spec!r} has only {total:,} characters, too few to train on",
            hint=f"use at least {MIN_TRAIN_CHARS:,} characters plus the validation share, e.g. 10,000 or more",
        )
    return documents


def _load_shakespeare() -> list[str]:
    resource = importlib.resources.files("engine.data").joinpath(_ASSET)
    try:
        text = gzip.decompress(resource.read_bytes()).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise DataError(
            f"the embedded Shakespeare corpus could not be read: {err}",
            hint="reinstall nanogpt-tui, or rebuild it with scripts/build_shakespeare_corpus.py",
        ) from err
    return text.rstrip("\n").split(PLAY_SEPARATOR)


def _load_path(spec: str) -> list[str]:
    if not spec.strip():
        raise DataError("data.corpus is empty", hint=_CORPUS_HINT)
    path = Path(spec).expanduser()
    if path.is_file():
        return [_read_text_file(path)]
    if path.is_dir():
        files = sorted((p for p in path.rglob("*.txt") if p.is_file()), key=lambda p: p.relative_to(path).as_posix())
        if not files:
            raise DataError(f"the folder {path} holds no .txt files", hint=_CORPUS_HINT)
        return [_read_text_file(file) for file in files]
    raise DataError(f"the corpus {spec!r} does not exist", hint=_CORPUS_HINT)


def _read_text_file(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}", hint="check the file's permissions") from err
    text = decode_utf8(raw, str(path), hint="convert it, e.g. `iconv -f latin1 -t utf-8`, or move it out of the corpus")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def corpus_hash(documents: Sequence[str]) -> str:
    """Short sha256 of the documents and their boundaries, for cache keys."""
    digest = hashlib.sha256()
    for doc in documents:
        data = doc.encode("utf-8")
        # the length prefix keeps ["ab", "c"] and ["a", "bc"] apart
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:16]


def split_train_val(documents: Sequence[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """(train documents, validation documents): the last val_fraction of the joined text is held out.

    The cut is made in the joined text (documents joined with "\\n\\n"); the document it falls in
    is split in two. A cut that lands on a joiner moves to the start of the next document, so
    `DOCUMENT_JOINER.join(val)` is always a suffix of the joined text and never shares a
    character with `DOCUMENT_JOINER.join(train)`, which is a prefix.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if not documents:
        raise DataError("the corpus has no documents to split", hint=_CORPUS_HINT)
    lengths = [len(doc) for doc in documents]
    total = sum(lengths) + len(DOCUMENT_JOINER) * (len(documents) - 1)
    cut = total - max(1, round(total * val_fraction))

    start = 0
    for index, doc in enumerate(documents):
        end = start + lengths[index]
        if cut < end:
            offset = max(0, cut - start)  # negative when the cut fell on the joiner before this doc
            head = [doc[:offset]] if offset else []
            train = [*documents[:index], *head]
            val = [doc[offset:], *documents[index + 1 :]]
            break
        start = end + len(DOCUMENT_JOINER)
    else:
        raise AssertionError(f"cut {cut} is not inside a corpus of {total} characters")

    train_chars = sum(len(doc) for doc in train) + len(DOCUMENT_JOINER) * max(0, len(train) - 1)
    if train_chars < MIN_TRAIN_CHARS:
        raise DataError(
            f"after holding out {val_fraction:.0%} for validation only {train_chars:,} of {total:,} "
            f"characters are left to train on (at least {MIN_TRAIN_CHARS:,} are needed)",
            hint="use a larger corpus or a smaller data.val_fraction",
        )
    return train, val


def held_out_text(documents: Sequence[str], val_fraction: float) -> str:
    """The validation text as one string: the tail of the documents joined with "\\n\\n"."""
    return DOCUMENT_JOINER.join(split_train_val(documents, val_fraction)[1])


def train_text(documents: Sequence[str], val_fraction: float) -> str:
    """The training text as one string: the head of the documents joined with "\\n\\n"."""
    return DOCUMENT_JOINER.join(split_train_val(documents, val_fraction)[0])
