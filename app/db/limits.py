"""How many characters each bounded text column holds, read from the models: the one source of
these numbers.

SQLite ignores a VARCHAR's length; PostgreSQL refuses a longer value (DataError), which surfaced as
a 500 on an upload and crashed a folder scan. So every value that comes from outside is measured
here before it is written, on both databases alike, and the caller decides what a value that does
not fit means: an upload is refused with what to change; a folder scan, an import or a transfer
skips a row that cannot be stored without it (a required column: a name, a version, a filename, a
storage key) and stores the row without an optional value (a nullable column, informational).
Both databases count characters (code points), as ``len`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Column, String, Table
from sqlalchemy.orm import InstrumentedAttribute

from app.db.models import Event, File, Project

PROJECTS, FILES, EVENTS = (cast(Table, m.__table__) for m in (Project, File, Event))


def max_length(column: InstrumentedAttribute[Any] | Column[Any]) -> int | None:
    """The column's VARCHAR length, or None if it is unbounded (Text, or not a string)."""
    col = column.property.columns[0] if isinstance(column, InstrumentedAttribute) else column
    return col.type.length if isinstance(col.type, String) else None


#: User names are recorded as a file's uploader and as the actor of journal entries.
USERNAME_CHARS = min(cast(int, max_length(File.uploader)), cast(int, max_length(Event.actor)))

#: What each bounded column holds, in words, for messages ("its <label> is N characters long").
LABELS = {
    "projects.name": "project name as the metadata's Name spells it",
    "projects.normalized_name": "project name",
    "files.version": "version",
    "files.filename": "filename",
    "files.filetype": "filetype",
    "files.pyversion": "Python tag (pyversion)",
    "files.storage_key": "storage key (in a package folder: its path there)",
    "files.metadata_version": "Metadata-Version",
    "files.requires_python": "Requires-Python",
    "files.description_content_type": "Description-Content-Type",
    "files.uploader": "uploader's user name",
    "events.action": "journal action",
    "events.project": "project name",
    "events.version": "version",
    "events.filename": "filename",
    "events.actor": "user name",
}


@dataclass(frozen=True, slots=True)
class Overflow:
    """A value longer than its column."""

    table: str
    column: str
    length: int  # of the value, in characters
    limit: int  # of the column
    required: bool  # the column is NOT NULL: the row cannot be stored without it

    @property
    def key(self) -> str:
        return f"{self.table}.{self.column}"

    @property
    def label(self) -> str:
        return LABELS.get(self.key, self.key)

    def describe(self) -> str:
        """``its <label> is N characters long, and at most M are stored``."""
        return f"its {self.label} is {self.length} characters long, and this index stores at most {self.limit}"


def overflows(table: Table, values: Mapping[str, object]) -> list[Overflow]:
    """Every string in ``values`` (column name -> value) longer than its column of ``table``."""
    out = []
    for name, value in values.items():
        if isinstance(value, str) and name in table.c:
            column = table.c[name]
            limit = max_length(column)
            if limit is not None and len(value) > limit:
                out.append(Overflow(table.name, name, len(value), limit, not column.nullable))
    return out


def fits(column: InstrumentedAttribute[Any], value: str | None) -> bool:
    limit = max_length(column)
    return value is None or limit is None or len(value) <= limit


@dataclass(frozen=True, slots=True)
class Fitted:
    """A row measured against its table: ``values`` with every optional value that did not fit
    set to None (``dropped``); ``blocking``: required values that did not fit (the row cannot be
    stored)."""

    values: dict[str, Any]
    dropped: list[Overflow]
    blocking: list[Overflow]


def fit(table: Table, values: Mapping[str, Any]) -> Fitted:
    found = overflows(table, values)
    dropped = [o for o in found if not o.required]
    fitted = dict(values)
    for o in dropped:
        fitted[o.column] = None
    return Fitted(fitted, dropped, [o for o in found if o.required])
