"""Staging (``autograder/judge/staging.py``) reads only the editable files of a submission, and safely.

What this proves, on real files, links, FIFOs and zips: the editable files are found at the top
level, in ``assignment/``, or in one wrapping folder (and the same inside a zip); they are laid over
a pristine copy of ``assignment/`` in a fresh folder; every other file of the submission
(``conftest.py``, ``__init__.py``, ``model.py``, ...) is never copied; a link, a file behind a
link, a FIFO, a file over 1 MiB, NUL bytes or non-UTF-8 text is refused with its reason and the
skeleton's file is used; a missing file is listed as missing; a zip's ``..``, absolute,
symlink and too-deep entries never reach the staged folder, more than 2000 entries or a broken
archive is a :class:`StagingError`.
"""

from __future__ import annotations

import filecmp
import os
import stat
import zipfile
from pathlib import Path

import pytest

from autograder import practical
from autograder.judge import staging
from autograder.judge.staging import MAX_FILE_BYTES, MAX_ZIP_ENTRIES, StagingError, stage
from tests.support import ROOT

EDITABLE = practical.EDITABLE_FILES
PRISTINE = ROOT / practical.PACKAGE
MARK = "# submitted {name}\n"


def submitted(name: str) -> str:
    return MARK.format(name=name) + (ROOT / "solutions" / name).read_text()


def write_files(folder: Path, names=EDITABLE, text=submitted) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(text(name))
    return folder


def make_zip(path: Path, entries: dict[str, str | bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def assert_staged_submission(staged, names=EDITABLE):
    """Each of ``names`` is the submitted text; every other file of the package is the pristine one."""
    pkg = staged.package_dir
    assert pkg == staged.root / practical.SUBMISSION_PACKAGE
    for name in names:
        assert (pkg / name).read_text() == submitted(name)
        assert staged.sources[name] == submitted(name)
    for name in set(EDITABLE) - set(names):
        assert (pkg / name).read_bytes() == (PRISTINE / name).read_bytes(), f"{name} is not the skeleton's"
    for name in practical.PROVIDED_FILES:
        assert (pkg / name).read_bytes() == (PRISTINE / name).read_bytes()


def assert_skeleton_used(staged, name):
    assert (staged.package_dir / name).read_bytes() == (PRISTINE / name).read_bytes()
    assert name not in staged.sources


# -- layouts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["", "assignment", "my-work", "my-work/assignment"])
def test_folder_layouts_are_found(tmp_path, layout):
    sub = tmp_path / "sub"
    write_files(sub / layout if layout else sub)
    staged = stage(sub, tmp_path / "out")
    assert staged.missing == [] and staged.rejected == {}
    assert_staged_submission(staged)


@pytest.mark.parametrize("prefix", ["", "assignment/", "my-work/", "my-work/assignment/", "a\\"])
def test_zip_layouts_are_found(tmp_path, prefix):
    archive = make_zip(tmp_path / "sub.zip", {f"{prefix}{n}": submitted(n) for n in EDITABLE})
    staged = stage(archive, tmp_path / "out")
    assert staged.missing == [] and staged.rejected == {}
    assert_staged_submission(staged)


def test_top_level_file_wins_over_a_nested_one(tmp_path):
    sub = write_files(tmp_path / "sub", ["partition.py"])
    (sub / "assignment").mkdir()
    (sub / "assignment" / "partition.py").write_text("NESTED = 1\n")
    staged = stage(sub, tmp_path / "out")
    assert staged.sources["partition.py"] == submitted("partition.py")


def test_zip_prefers_the_shallowest_copy(tmp_path):
    archive = make_zip(
        tmp_path / "sub.zip", {"w/assignment/partition.py": "DEEP = 1\n", "partition.py": submitted("partition.py")}
    )
    staged = stage(archive, tmp_path / "out")
    assert staged.sources["partition.py"] == submitted("partition.py")


def test_macos_metadata_in_zip_is_ignored(tmp_path):
    archive = make_zip(
        tmp_path / "sub.zip", {"__MACOSX/partition.py": "\0\1junk", "partition.py": submitted("partition.py")}
    )
    staged = stage(archive, tmp_path / "out")
    assert staged.sources["partition.py"] == submitted("partition.py")
    assert staged.rejected == {}


def test_two_wrapping_folders_are_not_guessed_between(tmp_path):
    sub = tmp_path / "sub"
    write_files(sub / "one", ["partition.py"])
    write_files(sub / "two", ["partition.py"])
    staged = stage(sub, tmp_path / "out")
    assert "partition.py" in staged.missing
    assert_skeleton_used(staged, "partition.py")


def test_hidden_and_macos_folders_do_not_count_as_the_wrapping_folder(tmp_path):
    sub = tmp_path / "sub"
    write_files(sub / "work")
    (sub / ".git").mkdir(parents=True)
    (sub / "__MACOSX").mkdir()
    staged = stage(sub, tmp_path / "out")
    assert staged.missing == []
    assert_staged_submission(staged)


def test_staged_folder_is_fresh_and_private(tmp_path):
    staged = stage(write_files(tmp_path / "sub"), tmp_path / "out")
    assert stat.S_IMODE(os.stat(staged.root).st_mode) == 0o700
    assert not list(staged.package_dir.rglob("__pycache__"))
    assert sorted(p.name for p in staged.package_dir.iterdir()) == sorted(
        p.name for p in PRISTINE.iterdir() if p.name != "__pycache__"
    )


def test_destination_that_exists_is_not_reused(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError):
        stage(write_files(tmp_path / "sub"), tmp_path / "out")


def test_staging_the_reference_gives_the_reference(tmp_path):
    staged = stage(ROOT / "solutions", tmp_path / "x")
    for name in EDITABLE:
        assert filecmp.cmp(staged.package_dir / name, ROOT / "solutions" / name, shallow=False)


# -- missing and extra files ----------------------------------------------------------------------------


def test_missing_files_are_listed_and_the_skeleton_is_used(tmp_path):
    staged = stage(write_files(tmp_path / "sub", ["schedules.py"]), tmp_path / "out")
    assert staged.missing == [n for n in EDITABLE if n != "schedules.py"]
    assert staged.rejected == {}
    assert_staged_submission(staged, ["schedules.py"])
    for name in staged.missing:
        assert_skeleton_used(staged, name)


def test_empty_folder_is_all_missing(tmp_path):
    (tmp_path / "sub").mkdir()
    staged = stage(tmp_path / "sub", tmp_path / "out")
    assert staged.missing == list(EDITABLE) and staged.sources == {}


@pytest.mark.parametrize(
    "extra",
    [
        "conftest.py",
        "__init__.py",
        "model.py",
        "devices.py",
        "run.py",
        "pytest.ini",
        "assignment/conftest.py",
        "assignment/model.py",
        "sitecustomize.py",
    ],
)
def test_extra_files_are_never_copied(tmp_path, extra):
    sub = write_files(tmp_path / "sub")
    path = sub / extra
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("raise SystemExit('extra file was imported')\n")
    staged = stage(sub, tmp_path / "out")
    assert_staged_submission(staged)
    copied = [p for p in staged.root.rglob("*") if p.is_file() and "extra file" in p.read_text(errors="replace")]
    assert copied == []


def test_extra_files_in_a_zip_are_never_copied(tmp_path):
    bad = "raise SystemExit('extra file was imported')\n"
    entries = {n: submitted(n) for n in EDITABLE} | {
        "conftest.py": bad,
        "__init__.py": bad,
        "model.py": bad,
        "assignment/conftest.py": bad,
    }
    staged = stage(make_zip(tmp_path / "sub.zip", entries), tmp_path / "out")
    assert_staged_submission(staged)
    assert not [p for p in staged.root.rglob("*") if p.is_file() and "extra file" in p.read_text(errors="replace")]


# -- refused files (folders) ----------------------------------------------------------------------------


def test_link_to_a_file_is_refused(tmp_path):
    sub = write_files(tmp_path / "sub", ["partition.py", "microbatch.py", "per_stage.py"])
    os.symlink(ROOT / "solutions" / "schedules.py", sub / "schedules.py")
    staged = stage(sub, tmp_path / "out")
    assert "link" in staged.rejected["schedules.py"]
    assert "schedules.py" not in staged.missing
    assert_skeleton_used(staged, "schedules.py")
    assert_staged_submission(staged, ["partition.py", "microbatch.py", "per_stage.py"])


def test_link_to_a_file_inside_the_submission_is_refused(tmp_path):
    sub = write_files(tmp_path / "sub", ["partition.py"])
    (sub / "real").mkdir()
    (sub / "real" / "schedules.py").write_text(submitted("schedules.py"))
    os.symlink("real/schedules.py", sub / "schedules.py")
    staged = stage(sub, tmp_path / "out")
    assert "link" in staged.rejected["schedules.py"]


def test_dangling_link_is_refused_not_missing(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    os.symlink(tmp_path / "nowhere.py", sub / "partition.py")
    staged = stage(sub, tmp_path / "out")
    assert "partition.py" in staged.rejected
    assert_skeleton_used(staged, "partition.py")


def test_folder_link_named_assignment_is_refused(tmp_path):
    other = write_files(tmp_path / "other-student")
    sub = tmp_path / "sub"
    sub.mkdir()
    os.symlink(other, sub / "assignment")
    staged = stage(sub, tmp_path / "out")
    assert set(staged.rejected) == set(EDITABLE)
    assert all("link" in why for why in staged.rejected.values())
    for name in EDITABLE:
        assert_skeleton_used(staged, name)


def test_folder_link_to_the_reference_is_refused(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    os.symlink(ROOT / "solutions", sub / "assignment")
    staged = stage(sub, tmp_path / "out")
    assert set(staged.rejected) == set(EDITABLE)
    assert staged.sources == {}


def test_wrapping_folder_that_is_a_link_is_not_followed(tmp_path):
    other = write_files(tmp_path / "other-student")
    sub = tmp_path / "sub"
    sub.mkdir()
    os.symlink(other, sub / "work")
    staged = stage(sub, tmp_path / "out")
    assert staged.sources == {}
    assert set(staged.missing) | set(staged.rejected) == set(EDITABLE)


def test_fifo_is_refused_without_blocking(tmp_path):
    sub = write_files(tmp_path / "sub", ["partition.py"])
    os.mkfifo(sub / "microbatch.py")
    staged = stage(sub, tmp_path / "out")  # a blocking open of a FIFO would hang here
    assert "regular" in staged.rejected["microbatch.py"]
    assert_skeleton_used(staged, "microbatch.py")


def test_folder_in_place_of_a_file_is_refused(tmp_path):
    sub = tmp_path / "sub"
    (sub / "partition.py").mkdir(parents=True)
    staged = stage(sub, tmp_path / "out")
    assert "regular" in staged.rejected["partition.py"]


def test_huge_file_is_refused(tmp_path):
    sub = write_files(tmp_path / "sub", ["partition.py"])
    with open(sub / "schedules.py", "wb") as f:
        f.truncate(64 * MAX_FILE_BYTES)  # sparse: 64 MiB that take no disk space
    staged = stage(sub, tmp_path / "out")
    assert "larger than" in staged.rejected["schedules.py"]
    assert_skeleton_used(staged, "schedules.py")


def test_file_of_exactly_the_limit_is_accepted_and_one_byte_more_is_not(tmp_path):
    body = "# " + "x" * (MAX_FILE_BYTES - 3) + "\n"
    assert len(body.encode()) == MAX_FILE_BYTES
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "partition.py").write_text(body)
    (sub / "microbatch.py").write_text(body + "\n")
    staged = stage(sub, tmp_path / "out")
    assert staged.sources["partition.py"] == body
    assert "larger than" in staged.rejected["microbatch.py"]


def test_nul_bytes_are_refused(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "partition.py").write_bytes(submitted("partition.py").encode() + b"\0# hidden\n")
    staged = stage(sub, tmp_path / "out")
    assert "NUL" in staged.rejected["partition.py"]
    assert_skeleton_used(staged, "partition.py")


def test_latin1_bytes_are_refused(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "per_stage.py").write_bytes("# caf\u00e9\n".encode("latin-1") + submitted("per_stage.py").encode())
    staged = stage(sub, tmp_path / "out")
    assert "UTF-8" in staged.rejected["per_stage.py"]
    assert_skeleton_used(staged, "per_stage.py")


def test_utf8_text_with_non_ascii_is_accepted(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    text = "# caf\u00e9 \u2603 \U0001f600\n" + submitted("partition.py")
    (sub / "partition.py").write_text(text, encoding="utf-8")
    staged = stage(sub, tmp_path / "out")
    assert staged.sources["partition.py"] == text
    assert (staged.package_dir / "partition.py").read_text(encoding="utf-8") == text


def test_refusal_reasons_are_one_line(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "partition.py").write_bytes(b"\0")
    (sub / "microbatch.py").write_bytes(b"\xff")
    os.mkfifo(sub / "schedules.py")
    os.symlink("/etc/passwd", sub / "per_stage.py")
    staged = stage(sub, tmp_path / "out")
    assert set(staged.rejected) == set(EDITABLE)
    assert all(why and "\n" not in why for why in staged.rejected.values())


# -- zips ------------------------------------------------------------------------------------------------


def test_zip_parent_paths_are_ignored_and_nothing_is_written_outside(tmp_path):
    entries = {"../partition.py": "UP = 1\n", "a/../../microbatch.py": "UP = 2\n", "..\\schedules.py": "UP = 3\n"}
    (tmp_path / "deep").mkdir()
    archive = make_zip(tmp_path / "deep" / "sub.zip", entries)
    staged = stage(archive, tmp_path / "deep" / "out")
    assert {"partition.py", "microbatch.py", "schedules.py"} <= set(staged.missing)
    assert staged.sources == {}
    assert not (tmp_path / "partition.py").exists() and not (tmp_path / "deep" / "microbatch.py").exists()


def test_zip_absolute_paths_never_write_outside_the_destination(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    entries = {f"{target}/partition.py": "ABS = 1\n", "/microbatch.py": "ABS = 2\n"}
    staged = stage(make_zip(tmp_path / "sub.zip", entries), tmp_path / "out")
    assert list(target.iterdir()) == []
    for name in ("partition.py", "microbatch.py"):
        staged_file = staged.package_dir / name
        assert staged_file.resolve().is_relative_to(staged.root.resolve())
        assert name in staged.missing or name in staged.sources


def test_zip_symlink_entries_are_refused(tmp_path):
    entries = {n: submitted(n) for n in ("partition.py", "microbatch.py", "per_stage.py")}
    archive = make_zip(tmp_path / "sub.zip", entries, links={"schedules.py": str(ROOT / "solutions" / "schedules.py")})
    staged = stage(archive, tmp_path / "out")
    assert "link" in staged.rejected["schedules.py"]
    assert_skeleton_used(staged, "schedules.py")
    assert_staged_submission(staged, list(entries))


def test_zip_entries_nested_too_deep_are_not_looked_at(tmp_path):
    archive = make_zip(
        tmp_path / "sub.zip",
        {"a/b/c/partition.py": submitted("partition.py"), "a/b/c/d/microbatch.py": submitted("microbatch.py")},
    )
    staged = stage(archive, tmp_path / "out")
    assert {"partition.py", "microbatch.py"} <= set(staged.missing)
    assert staged.sources == {}


def test_zip_directory_entries_named_like_files_are_ignored(tmp_path):
    archive = make_zip(tmp_path / "sub.zip", {"partition.py/": b"", "partition.py/x": "1\n"})
    staged = stage(archive, tmp_path / "out")
    assert "partition.py" in staged.missing


def test_zip_with_too_many_entries_is_refused(tmp_path):
    entries = {f"junk/{i}.txt": "" for i in range(MAX_ZIP_ENTRIES)} | {"partition.py": submitted("partition.py")}
    with pytest.raises(StagingError, match=str(MAX_ZIP_ENTRIES)):
        stage(make_zip(tmp_path / "sub.zip", entries), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_zip_with_exactly_the_limit_of_entries_is_accepted(tmp_path):
    entries = {f"junk/{i}.txt": "" for i in range(MAX_ZIP_ENTRIES - 1)} | {"partition.py": submitted("partition.py")}
    staged = stage(make_zip(tmp_path / "sub.zip", entries), tmp_path / "out")
    assert staged.sources["partition.py"] == submitted("partition.py")


def test_zip_entry_over_the_size_limit_is_refused(tmp_path):
    archive = tmp_path / "sub.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("partition.py", "#" * (2 * MAX_FILE_BYTES))  # compresses to a few KiB
    staged = stage(archive, tmp_path / "out")
    assert "larger than" in staged.rejected["partition.py"]
    assert_skeleton_used(staged, "partition.py")


@pytest.mark.parametrize(
    "name,data,reason",
    [("partition.py", b"x = 1\0\n", "NUL"), ("microbatch.py", "# \u00e9\n".encode("latin-1"), "UTF-8")],
)
def test_zip_entries_with_bad_text_are_refused(tmp_path, name, data, reason):
    staged = stage(make_zip(tmp_path / "sub.zip", {name: data}), tmp_path / "out")
    assert reason in staged.rejected[name]
    assert_skeleton_used(staged, name)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a zip", b"\x00" * 100])
def test_bad_zip_is_a_staging_error(tmp_path, content):
    archive = tmp_path / "sub.zip"
    archive.write_bytes(content)
    with pytest.raises(StagingError, match="not a valid zip"):
        stage(archive, tmp_path / "out")


def test_truncated_zip_is_a_staging_error(tmp_path):
    archive = make_zip(tmp_path / "sub.zip", {n: submitted(n) for n in EDITABLE})
    archive.write_bytes(archive.read_bytes()[:-30])
    with pytest.raises(StagingError):
        stage(archive, tmp_path / "out")


def test_zip_whose_data_is_corrupt_is_a_staging_error(tmp_path):
    archive = make_zip(tmp_path / "sub.zip", {"partition.py": "x = 1\n" * 50})
    data = bytearray(archive.read_bytes())
    start = data.find(b"x = 1")
    data[start : start + 5] = b"y = 2"  # the CRC no longer matches
    archive.write_bytes(bytes(data))
    with pytest.raises(StagingError):
        stage(archive, tmp_path / "out")


def _patch_first_entry(archive: Path, local_offset: int, central_offset: int, value: int, mode: str) -> None:
    data = bytearray(archive.read_bytes())
    for signature, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
        at = data.find(signature) + offset
        if mode == "or":
            data[at] |= value
        else:
            data[at : at + 2] = value.to_bytes(2, "little")
    archive.write_bytes(bytes(data))


def test_encrypted_zip_entry_is_refused_or_a_staging_error(tmp_path):
    archive = make_zip(tmp_path / "sub.zip", {"partition.py": submitted("partition.py")})
    _patch_first_entry(archive, 6, 8, 0x01, "or")  # general purpose flag bit 0: encrypted
    try:
        staged = stage(archive, tmp_path / "out")
    except StagingError:
        return
    assert "partition.py" in staged.rejected


def test_unsupported_compression_is_refused_or_a_staging_error(tmp_path):
    archive = make_zip(tmp_path / "sub.zip", {"partition.py": submitted("partition.py")})
    _patch_first_entry(archive, 8, 10, 9, "set")  # method 9: deflate64
    try:
        staged = stage(archive, tmp_path / "out")
    except StagingError:
        return
    assert "partition.py" in staged.rejected


# -- what cannot be staged at all -----------------------------------------------------------------------


def test_missing_submission_is_a_staging_error(tmp_path):
    with pytest.raises(StagingError, match="no such file"):
        stage(tmp_path / "nothing", tmp_path / "out")


def test_file_that_is_not_a_zip_is_a_staging_error(tmp_path):
    (tmp_path / "partition.py").write_text("x = 1\n")
    with pytest.raises(StagingError, match="not a folder or a .zip"):
        stage(tmp_path / "partition.py", tmp_path / "out")


def test_missing_pristine_package_is_a_staging_error(tmp_path, monkeypatch):
    monkeypatch.setattr(staging, "PRISTINE", tmp_path / "no-such-package")
    with pytest.raises(StagingError, match="pristine"):
        stage(write_files(tmp_path / "sub"), tmp_path / "out")


def test_staging_error_messages_are_one_line(tmp_path):
    (tmp_path / "bad.zip").write_bytes(b"junk")
    for target in (tmp_path / "nothing", tmp_path / "bad.zip"):
        with pytest.raises(StagingError) as excinfo:
            stage(target, tmp_path / "out")
        assert "\n" not in str(excinfo.value)
