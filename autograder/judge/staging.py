"""Staging a submission: the only place that reads anything of it, and only the editable files.

The editable files (``practical.EDITABLE_FILES``) are looked for by name at the submission's top
level, in an ``assignment/`` folder, or in the one folder a zip or an upload wraps them in; each
must be a regular file (no link), at most ``MAX_FILE_BYTES``, UTF-8 text without NUL bytes. They
are copied into a fresh folder the grader owns, laid over a pristine copy of the generated
``assignment/`` package (the provided files always come from there). Nothing else of the
submission is ever opened, imported or handed to pytest: a ``conftest.py``, ``__init__.py``,
``model.py`` or anything else in it is simply never read.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .. import practical

REPO_ROOT = Path(__file__).resolve().parents[2]
PRISTINE = REPO_ROOT / practical.PACKAGE
MAX_FILE_BYTES = 1 << 20
MAX_ZIP_ENTRIES = 2000


class StagingError(ValueError):
    """The submission cannot be staged at all (one line: a missing folder, a broken zip)."""


@dataclass
class Staged:
    """A staged implementation: ``root/<package>`` is importable as the package ``package``.

    ``missing``: editable files the submission did not have (the skeleton's are used);
    ``rejected``: ``{file: reason}`` for files found but refused (also replaced by the skeleton's);
    ``sources``: the submitted text of each accepted editable file (for the TAs' integrity report).
    """

    root: Path
    package: str = practical.SUBMISSION_PACKAGE
    missing: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def package_dir(self) -> Path:
        return self.root / self.package


def _check_text(name: str, data: bytes) -> str:
    if len(data) > MAX_FILE_BYTES:
        raise StagingError(f"{name} is larger than {MAX_FILE_BYTES // 1024} KiB")
    if b"\0" in data:
        raise StagingError(f"{name} contains NUL bytes: it is not a Python source file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise StagingError(f"{name} is not UTF-8 text") from None


def _read_regular(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file reached without following a link at its end."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StagingError(f"{path.name} is not a regular file")
        if info.st_size > limit:
            raise StagingError(f"{path.name} is larger than {limit // 1024} KiB")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit + 1)
    finally:
        os.close(fd)


def _folder_candidates(folder: Path) -> list[Path]:
    """Where editable files may sit: the folder, its ``assignment/``, and the same in its one subfolder."""
    places = [folder, folder / practical.PACKAGE]
    try:
        subfolders = [
            c
            for c in folder.iterdir()
            if c.is_dir()
            and not c.is_symlink()
            and not c.name.startswith((".", "__MACOSX"))
            and c.name != practical.PACKAGE
        ]
    except OSError:
        subfolders = []
    if len(subfolders) == 1:
        places += [subfolders[0], subfolders[0] / practical.PACKAGE]
    return places


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` resolves inside ``folder`` with no link on the way (a link could point at
    the grader's files or at another student's submission)."""
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([real, top]) == top and os.path.normpath(str(path)) == os.path.join(
        os.path.normpath(str(folder)), os.path.relpath(real, top)
    )


def _from_folder(
    folder: Path, staged: Staged, names=practical.EDITABLE_FILES, limit: int = MAX_FILE_BYTES
) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    places = _folder_candidates(folder)
    for name in names:
        for place in places:
            path = place / name
            if not os.path.lexists(path):
                continue
            if not _inside(path, folder):
                staged.rejected[name] = f"{name} is a link or lies behind one"
                break
            try:
                found[name] = _read_regular(path, limit)
            except (StagingError, OSError) as exc:
                staged.rejected[name] = str(exc) if isinstance(exc, StagingError) else f"{name} cannot be read"
            break
    return found


def _from_zip(
    archive: Path, staged: Staged, names=practical.EDITABLE_FILES, limit: int = MAX_FILE_BYTES
) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ZIP_ENTRIES:
                raise StagingError(f"{archive.name} has more than {MAX_ZIP_ENTRIES} entries")
            by_name: dict[str, list[zipfile.ZipInfo]] = {}
            for info in infos:
                parts = PurePosixPath(info.filename.replace("\\", "/")).parts
                if info.is_dir() or not parts or ".." in parts or parts[0].startswith("__MACOSX") or len(parts) > 3:
                    continue
                by_name.setdefault(parts[-1], []).append(info)
            found = {}
            for name in names:
                choices = sorted(by_name.get(name, []), key=lambda i: i.filename.count("/"))
                if not choices:
                    continue
                info = choices[0]
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    staged.rejected[name] = f"{name} is a link"
                    continue
                if info.file_size > limit:
                    staged.rejected[name] = f"{name} is larger than {limit // 1024} KiB"
                    continue
                try:
                    with zf.open(info) as src:
                        found[name] = src.read(limit + 1)
                except (RuntimeError, NotImplementedError) as exc:  # encrypted, or an unknown compression
                    staged.rejected[name] = (
                        f"{name} cannot be read from the zip ({type(exc).__name__}): "
                        f"zip it again without a password, with the default compression"
                    )
                except (zipfile.BadZipFile, EOFError, zlib.error):
                    raise StagingError(
                        f"{archive.name} is damaged ({name} does not match its checksum): upload it again"
                    ) from None
            return found
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError):
        raise StagingError(f"{archive.name} is not a valid zip file") from None


def stage(submission: Path, dest: Path) -> Staged:
    """Copy the editable files of ``submission`` (a folder or a ``.zip``) into ``dest``, laid over
    a pristine copy of ``assignment/``; ``dest`` must not exist yet. Raises :class:`StagingError`."""
    if not (PRISTINE / "__init__.py").is_file():
        raise StagingError(f"the pristine package {PRISTINE} is missing: run python -m autograder.release")
    if not submission.exists():
        raise StagingError(f"{submission}: no such file or folder")
    staged = Staged(dest)
    if submission.is_file() and submission.suffix == ".zip":
        found = _from_zip(submission, staged)
    elif submission.is_dir():
        found = _from_folder(submission, staged)
    else:
        raise StagingError(f"{submission}: not a folder or a .zip file")
    dest.mkdir(parents=True, mode=0o700)
    shutil.copytree(PRISTINE, staged.package_dir, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in practical.EDITABLE_FILES:
        if name not in found:
            if name not in staged.rejected:
                staged.missing.append(name)
            continue
        try:
            text = _check_text(name, found[name])
        except StagingError as exc:
            staged.rejected[name] = str(exc)
            continue
        (staged.package_dir / name).write_text(text, encoding="utf-8")
        staged.sources[name] = text
    return staged


def read_files(submission: Path, names: tuple[str, ...], limit: int) -> tuple[dict[str, bytes], dict[str, str]]:
    """``names`` from a submission (folder or ``.zip``), found where :func:`stage` finds the code,
    read the same careful way (no links, regular files, at most ``limit`` bytes): ``(found, rejected)``."""
    staged = Staged(Path("/nonexistent"))
    if submission.is_file() and submission.suffix == ".zip":
        return _from_zip(submission, staged, names, limit), staged.rejected
    if submission.is_dir():
        return _from_folder(submission, staged, names, limit), staged.rejected
    raise StagingError(f"{submission}: not a folder or a .zip file")
