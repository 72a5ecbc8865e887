"""Who submitted what, and when: Gradescope's export layout for batch grading.

Gradescope's "Export Submissions" gives a folder with one sub-folder per submission
(``submission_<id>/``) and ``submission_metadata.yml``, keyed by those folder names::

    submission_123456:
      :submitters:
      - :name: Ada Lovelace
        :sid: '1815'
        :email: ada@example.edu
      :created_at: 2026-11-20 17:02:11.123456000 -08:00
      ...

:func:`read_roster` turns it into ``{folder: [Submitter, ...]}`` (a group submission has several
submitters; each gets a gradebook row with the group's points). Without the file, every folder is
its own student, named by the folder. Lateness is judged against ``--deadline``, never against
anything the submission says about itself.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

METADATA = "submission_metadata.yml"


class RosterError(Exception):
    """The metadata file cannot be used (one line)."""


@dataclass(frozen=True)
class Submitter:
    name: str = ""
    sid: str = ""
    email: str = ""
    submitted_at: dt.datetime | None = None

    def late(self, deadline: dt.datetime | None) -> str:
        """``"yes"``, ``"no"``, or ``""`` when there is no deadline or no submission time."""
        if deadline is None or self.submitted_at is None:
            return ""
        return "yes" if self.submitted_at > deadline else "no"


def parse_deadline(text: str) -> dt.datetime:
    """An ISO 8601 time with its UTC offset (``2026-11-21T23:59:00-08:00``); one-line error otherwise."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise RosterError(f"--deadline {text!r} is not an ISO 8601 time (e.g. 2026-11-21T23:59:00-08:00)") from None
    if when.tzinfo is None:
        raise RosterError(f"--deadline {text!r} has no UTC offset: add one (e.g. -08:00 or Z)")
    return when


def _time(value: object) -> dt.datetime | None:
    """Gradescope's ``:created_at`` (YAML parses it into a datetime, or leaves it a string)."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, str):
        text = value.strip()
        for candidate in (text, text.replace(" ", "T", 1)):
            try:
                return _time(dt.datetime.fromisoformat(candidate))
            except ValueError:
                continue
        parts = text.split()  # "2026-11-20 17:02:11.123456000 -08:00": nanoseconds, offset apart
        if len(parts) == 3 and "." in parts[1]:
            seconds, fraction = parts[1].split(".", 1)
            return _time(f"{parts[0]}T{seconds}.{fraction[:6]}{parts[2]}")
    return None


def _text(value: object) -> str:
    return "" if value is None else " ".join(str(value).split())[:200]


def read_roster(folder: Path) -> dict[str, list[Submitter]] | None:
    """``{submission folder: submitters}`` from ``folder/submission_metadata.yml``; ``None`` without it."""
    path = folder / METADATA
    if not path.is_file():
        return None
    try:
        import yaml
    except ImportError:
        raise RosterError(f"{path} needs PyYAML to be read: pip install -e '.[ta]'") from None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RosterError(f"{path} cannot be read: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise RosterError(f"{path}: expected a mapping of submission folders, got {type(data).__name__}")
    roster: dict[str, list[Submitter]] = {}
    for key, record in data.items():
        if not isinstance(record, dict):
            continue
        when = _time(record.get(":created_at"))
        people = record.get(":submitters") if isinstance(record.get(":submitters"), list) else []
        roster[str(key)] = [
            Submitter(_text(p.get(":name")), _text(p.get(":sid")), _text(p.get(":email")), when)
            for p in people
            if isinstance(p, dict)
        ] or [Submitter(submitted_at=when)]
    return roster
