"""Reading a labelled corpus: a directory with ``labels.tsv`` or a ``.tar.gz`` of one.

A directory whose ``labels.tsv`` names files that are not unpacked but which holds
exactly one ``.tar.gz`` (the shared corpus layout) is read from that archive.

``labels.tsv`` lines are ``<path>\\t<ham|spam>``; paths are relative to the directory
holding the file (for the tarball: relative to the archive root, or to the directory
holding the innermost ``labels.tsv`` in it, whichever resolves).
"""

from __future__ import annotations

import mailbox
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CorpusError", "Sample", "iter_messages", "load_corpus"]

MAX_MESSAGE = 4 * 1024 * 1024


class CorpusError(Exception):
    """The corpus is missing, empty or malformed."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One labelled raw message; ``folder`` is the first directory of its path."""

    path: str
    folder: str
    is_spam: bool
    raw: bytes


def _parse_labels(text: str) -> list[tuple[str, bool]]:
    labels: list[tuple[str, bool]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path, sep, label = line.rpartition("\t")
        label = label.strip().lower()
        if not sep or label not in ("ham", "spam"):
            raise CorpusError(f"labels.tsv line {lineno}: expected <path>TAB<ham|spam>")
        labels.append((path.strip(), label == "spam"))
    if not labels:
        raise CorpusError("labels.tsv lists no messages")
    return labels


def _folder(path: str) -> str:
    parts = path.split("/")
    return parts[-2] if len(parts) >= 2 else ""


def _from_dir(root: Path) -> Iterator[Sample]:
    label_file = root / "labels.tsv"
    if not label_file.is_file():
        found = sorted(root.glob("*/labels.tsv"), key=lambda p: len(str(p)), reverse=True)
        if not found:
            raise CorpusError(f"no labels.tsv in {root}")
        label_file = found[0]
    base = label_file.parent
    for path, is_spam in _parse_labels(label_file.read_text("utf-8")):
        file = base / path
        if not file.is_file():
            raise CorpusError(f"missing message {file}")
        yield Sample(path, _folder(path), is_spam, file.read_bytes()[:MAX_MESSAGE])


def _from_tar(archive: Path) -> Iterator[Sample]:
    with tarfile.open(archive, "r:*") as tar:
        members = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
        label_names = sorted((n for n in members if n.rsplit("/", 1)[-1] == "labels.tsv"), key=len)
        if not label_names:
            raise CorpusError(f"no labels.tsv in {archive}")
        label_name = label_names[-1]
        prefix = label_name[: -len("labels.tsv")]
        stream = tar.extractfile(members[label_name])
        assert stream is not None
        labels = _parse_labels(stream.read().decode("utf-8"))
        for path, is_spam in labels:
            member = members.get(prefix + path) or members.get(path)
            if member is None:
                raise CorpusError(f"missing message {path} in {archive}")
            data = tar.extractfile(member)
            assert data is not None
            yield Sample(path, _folder(path), is_spam, data.read(MAX_MESSAGE))


def load_corpus(location: str | Path) -> list[Sample]:
    """All samples of a corpus directory or ``.tar.gz``, in ``labels.tsv`` order."""
    path = Path(location)
    if path.is_dir():
        archives = sorted(path.glob("*.tar.gz")) + sorted(path.glob("*.tgz"))
        try:
            samples = list(_from_dir(path))
        except CorpusError:
            if len(archives) != 1:
                raise
            samples = list(_from_tar(archives[0]))  # e.g. labels.tsv + the packed messages
    elif path.is_file() and tarfile.is_tarfile(path):
        samples = list(_from_tar(path))
    else:
        raise CorpusError(f"{path}: not a corpus directory or tar archive")
    if not samples:
        raise CorpusError(f"{path}: empty corpus")
    return samples


def iter_messages(location: str | Path, label: bool | None) -> Iterator[tuple[bytes, bool]]:
    """``(raw, is_spam)`` of every message of a mail store, for bulk teaching.

    ``location`` is a Maildir (``cur``/``new``), an mbox file, a labelled corpus
    (``labels.tsv``; ``label`` None keeps its labels) or a directory of raw message
    files (every regular file below it, in path order). Messages are capped at
    ``MAX_MESSAGE`` bytes.
    """
    path = Path(location)
    if path.is_dir() and (path / "cur").is_dir() and (path / "new").is_dir():
        box = mailbox.Maildir(path, factory=None, create=False)
        for key in sorted(box.keys()):
            yield box.get_bytes(key)[:MAX_MESSAGE], _need(label)
        return
    if path.is_file() and not tarfile.is_tarfile(path):
        mbox = mailbox.mbox(path, factory=None, create=False)
        try:
            for key in mbox.iterkeys():
                yield mbox.get_bytes(key)[:MAX_MESSAGE], _need(label)
        finally:
            mbox.close()
        return
    labelled = (path / "labels.tsv").is_file() or any(path.glob("*/labels.tsv")) \
        or path.is_file() or any(path.glob("*.tar.gz"))
    if labelled:
        for sample in load_corpus(path):
            yield sample.raw, sample.is_spam if label is None else label
        return
    if not path.is_dir():
        raise CorpusError(f"{path}: no such mail store")
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        with file.open("rb") as handle:
            yield handle.read(MAX_MESSAGE), _need(label)


def _need(label: bool | None) -> bool:
    if label is None:
        raise CorpusError("unlabelled mail store: pass --label spam or --label ham")
    return label
