"""``python -m autograder.gradescope build [--out dist/autograder.zip]``: the zip to upload to Gradescope.

At its root: ``setup.sh`` and ``run_autograder`` (Gradescope's entry points), then what grading
needs: ``pyproject.toml``, ``constraints.txt``, the generated ``assignment/`` (the pristine package
submissions are laid over) and ``autograder/`` with its hidden tests (``autograder.layout``:
``"grader"``). Never ``solutions/`` or ``autograder/instructor/``: the judge needs no reference code,
it computes the ground truth from the provided model.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

from .. import layout
from .package import REPO_ROOT, check, package_files
from .skeleton import ReleaseError

HERE = REPO_ROOT / "autograder" / "gradescope"
ENTRY_POINTS = ("setup.sh", "run_autograder")


def zip_entries(root: Path = REPO_ROOT) -> dict[str, Path]:
    """Archive name -> file on disk."""
    entries = {name: HERE / name for name in ENTRY_POINTS}
    entries["pyproject.toml"] = root / "pyproject.toml"
    entries["README.md"] = root / "README.md"
    entries["constraints.txt"] = root / "constraints.txt"
    for rel in package_files(root / "assignment"):
        entries[f"assignment/{rel}"] = root / "assignment" / rel
    for rel in layout.files_for("grader", root / "autograder"):  # hidden tests in, instructor/ out
        entries[f"autograder/{rel}"] = root / "autograder" / rel
    return entries


def build(out: Path, root: Path = REPO_ROOT) -> Path:
    stale = check(root / "solutions", root / "assignment")
    if stale:
        raise SystemExit(
            f"error: assignment/ is out of sync with solutions/ ({', '.join(stale)}): "
            f"run python -m autograder.release first"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, path in sorted(zip_entries(root).items()):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # reproducible archive
            info.external_attr = (0o755 if name in ENTRY_POINTS else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.gradescope")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the Gradescope autograder zip")
    b.add_argument("--out", type=Path, default=REPO_ROOT / "dist" / "autograder.zip")
    args = parser.parse_args(argv)
    try:
        path = build(args.out)
    except (ReleaseError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with zipfile.ZipFile(path) as zf:
        count = len(zf.namelist())
    print(f"wrote {path} ({count} files; upload it as the Gradescope autograder)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
