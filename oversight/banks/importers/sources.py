"""Reading the files an import names: a file, a directory tree, or a tar/zip archive, all read into memory.

Archive members are only read, never extracted, so member names cannot write outside anything.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .base import BankImportError


@dataclass(frozen=True)
class SourceFile:
    name: str  # shown in messages: the file's path, or "archive!member"
    relpath: PurePosixPath  # the path below the directory or inside the archive (just the name for a file)
    data: bytes

    @property
    def filename(self) -> str:
        return self.relpath.name


@dataclass(frozen=True)
class Source:
    kind: str  # "file", "directory", "tar" or "zip"
    files: list[SourceFile]


def _is_junk(relpath: PurePosixPath) -> bool:
    # macOS zips carry __MACOSX/…/._name resource forks that look like real CSVs by name but are binary.
    return any(part == "__MACOSX" or part.startswith(".") for part in relpath.parts)


def read_source(path: Path, *, want: Callable[[PurePosixPath], bool]) -> Source:
    """The files under `path` for which `want(relpath)` holds, in path order.

    A plain file that is not an archive is returned as itself, whatever `want` says; the importer decides
    whether it can read it.
    """
    if not path.exists():
        raise BankImportError(str(path), None, "no such file or directory")
    if path.is_dir():
        files = []
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            relpath = PurePosixPath(child.relative_to(path).as_posix())
            if not _is_junk(relpath) and want(relpath):
                files.append(SourceFile(str(child), relpath, child.read_bytes()))
        return Source("directory", files)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                files = []
                for info in sorted(archive.infolist(), key=lambda i: i.filename):
                    relpath = PurePosixPath(info.filename)
                    if not info.is_dir() and not _is_junk(relpath) and want(relpath):
                        files.append(SourceFile(f"{path}!{info.filename}", relpath, archive.read(info)))
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise BankImportError(str(path), None, f"cannot read the zip archive: {exc}") from exc
        return Source("zip", files)
    if _is_tarfile(path):
        try:
            with tarfile.open(path) as archive:
                files = []
                for member in sorted(archive.getmembers(), key=lambda m: m.name):
                    relpath = PurePosixPath(member.name)
                    if member.isfile() and not _is_junk(relpath) and want(relpath):
                        extracted = archive.extractfile(member)
                        assert extracted is not None  # regular files always have content
                        files.append(SourceFile(f"{path}!{member.name}", relpath, extracted.read()))
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise BankImportError(str(path), None, f"cannot read the tar archive: {exc}") from exc
        return Source("tar", files)
    return Source("file", [SourceFile(str(path), PurePosixPath(path.name), path.read_bytes())])


def _is_tarfile(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def decode(file: SourceFile) -> str:
    """The file's text. UTF-8 only (a leading BOM, as Excel writes, is dropped)."""
    data = file.data
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = data[exc.start : exc.start + 1].hex()
        raise BankImportError(
            file.name, line, f"not valid UTF-8 (byte 0x{bad} at column {column}); save the file as UTF-8"
        ) from exc


def physical_lines(text: str) -> Iterator[str]:
    """The text's lines, split on \\n only, endings kept.

    Line numbers in messages count \\n like editors and `grep -n` do: a bare \\r (MMLU has some inside
    quoted fields) does not start a new line. csv.reader parses these chunks exactly as it parses a file
    opened with newline=''.
    """
    return iter(io.StringIO(text, newline="\n"))


def csv_records(file: SourceFile, text: str) -> Iterator[tuple[int, list[str]]]:
    """(start line, fields) for each non-blank record.

    csv.reader's line_num is the line a record *ends* on (quoted fields span lines), so the start line is
    one past where the previous record ended. strict=True turns an unterminated quote into an error at the
    record that opened it instead of silently swallowing the rest of the file into one field.
    """
    reader = csv.reader(physical_lines(text), strict=True)
    ended = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise BankImportError(file.name, ended + 1, f"CSV syntax error: {exc}") from exc
        start, ended = ended + 1, reader.line_num
        if row:  # csv.reader yields [] for a blank line
            yield start, row


def json_lines(file: SourceFile, text: str) -> Iterator[tuple[int, object]]:
    """(line, parsed value) for each non-blank line of a JSON Lines file."""
    for number, line in enumerate(physical_lines(text), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise BankImportError(file.name, number, f"invalid JSON: {exc.msg} (column {exc.colno})") from exc


def require_content(file: SourceFile, text: str) -> None:
    if not text.strip():
        raise BankImportError(file.name, 1, "the file is empty")
