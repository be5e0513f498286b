"""Excel workbooks of Jira issues, written row by row with openpyxl's write-only mode.

One sheet per environment (frozen bold header, autofilter, real Excel dates,
the key linked to the issue) and a Summary sheet first (the request, counts by
status, type and assignee per environment). Rows go straight to disk, so memory
stays flat whatever the number of issues.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

DATE_FORMAT = "yyyy-mm-dd hh:mm"
MAX_CELL_TEXT = 32_767  # Excel's limit per cell
# Excel refuses more hyperlinks than this on one sheet; later keys get a HYPERLINK() formula instead.
MAX_SHEET_LINKS = 65_000
UNASSIGNED = "(unassigned)"
SUMMARY = "Summary"

HEADER_FONT = Font(bold=True, color="FFFFFF")
HEADER_FILL = PatternFill("solid", fgColor="305496")
LINK_FONT = Font(color="0563C1", underline="single")
TITLE_FONT = Font(bold=True, size=14)
BOLD = Font(bold=True)


@dataclass(frozen=True)
class Column:
    """A sheet column: its header, width and whether its values are dates or numbers."""

    header: str
    width: float = 14
    kind: str = "text"  # text | date | number | link


def clean_text(value: str) -> str:
    """Return ``value`` as Excel can store it: no control characters, at most 32,767 characters."""
    value = ILLEGAL_CHARACTERS_RE.sub("", value)
    return value if len(value) <= MAX_CELL_TEXT else value[: MAX_CELL_TEXT - 1] + "…"


def sheet_title(name: str, taken: set[str]) -> str:
    """Return a valid, unused sheet title for ``name`` (Excel: 31 characters, no []:*?/\\)."""
    base = re.sub(r"[\[\]:*?/\\]", "_", name).strip("'") or "Sheet"
    title, n = base[:31], 2
    while title.lower() in {t.lower() for t in taken} or title.lower() == "history":
        suffix = f" ({n})"
        title, n = base[: 31 - len(suffix)] + suffix, n + 1
    return title


@dataclass
class Counts:
    """Issue counts of one sheet by status, type and assignee."""

    rows: int = 0
    status: Counter[str] = field(default_factory=Counter)
    type: Counter[str] = field(default_factory=Counter)
    assignee: Counter[str] = field(default_factory=Counter)


class IssueSheet:
    """One environment's sheet: append issue rows; counts are kept for the summary."""

    def __init__(self, book: ExportWorkbook, ws: WriteOnlyWorksheet, label: str, columns: Sequence[Column]) -> None:
        self.book, self.ws, self.label, self.columns = book, ws, label, list(columns)
        self.counts = Counts()
        for index, column in enumerate(self.columns, 1):
            ws.column_dimensions[get_column_letter(index)].width = column.width
        ws.freeze_panes = "A2"
        ws.append([self._header(column.header) for column in self.columns])

    def _header(self, text: str) -> WriteOnlyCell:
        cell = WriteOnlyCell(self.ws, value=text)
        cell.font, cell.fill = HEADER_FONT, HEADER_FILL
        cell.alignment = Alignment(vertical="center")
        return cell

    def append(
        self, values: Sequence[Any], *, link: str | None = None, status: str = "", type_: str = "", assignee: str = ""
    ) -> None:
        """Write one issue row; ``link`` is the URL of the first (key) cell."""
        self.counts.rows += 1
        self.counts.status[status or "(none)"] += 1
        self.counts.type[type_ or "(none)"] += 1
        self.counts.assignee[assignee or UNASSIGNED] += 1
        row: list[Any] = []
        for column, value in zip(self.columns, values, strict=True):
            row.append(self._cell(column, value, link if column.kind == "link" else None))
        self.ws.append(row)

    def _cell(self, column: Column, value: Any, link: str | None) -> Any:
        if value is None or value == "":
            return None
        if column.kind == "date" and isinstance(value, datetime):
            cell = WriteOnlyCell(self.ws, value=value)
            cell.number_format = DATE_FORMAT
            return cell
        if isinstance(value, str):
            value = clean_text(value)
            if link:
                if self.counts.rows <= MAX_SHEET_LINKS:
                    cell = WriteOnlyCell(self.ws, value=value)
                    cell.hyperlink = link
                    cell.font = LINK_FONT
                    return cell
                escaped = value.replace('"', '""')
                cell = WriteOnlyCell(self.ws, value=f'=HYPERLINK("{link}","{escaped}")')
                cell.font = LINK_FONT
                return cell
            if value.startswith("="):
                # Text from Jira is never a formula: "=cmd|..." in a summary must stay text.
                cell = WriteOnlyCell(self.ws, value=value)
                cell.data_type = "s"
                return cell
        return value

    def close(self) -> None:
        """Set the autofilter over every written row."""
        last = get_column_letter(len(self.columns))
        self.ws.auto_filter.ref = f"A1:{last}{self.counts.rows + 1}"


class ExportWorkbook:
    """A write-only workbook: issue sheets first, the Summary sheet put in front when saving."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.wb = Workbook(write_only=True)
        self.sheets: list[IssueSheet] = []
        self._titles: set[str] = {SUMMARY}

    def add_sheet(self, label: str, columns: Sequence[Column]) -> IssueSheet:
        """Start the sheet of one environment."""
        title = sheet_title(label, self._titles)
        self._titles.add(title)
        sheet = IssueSheet(self, self.wb.create_sheet(title), label, columns)
        self.sheets.append(sheet)
        return sheet

    def save(self, info: Sequence[tuple[str, Any]], notes: Sequence[str] = ()) -> Path:
        """Write the Summary sheet and save; the file appears complete or not at all."""
        for sheet in self.sheets:
            sheet.close()
        self._write_summary(info, notes)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.partial")
        try:
            self.wb.save(partial)
            os.replace(partial, self.path)
        finally:
            partial.unlink(missing_ok=True)
        return self.path

    def discard(self) -> None:
        """Close the sheets and delete their temporary files (an export that failed half-way)."""
        for sheet in self.sheets:
            ws = sheet.ws
            try:
                if not ws.closed:
                    ws.close()
                if ws._writer is not None:
                    ws._writer.cleanup()
            except (OSError, ValueError):
                pass  # best effort: the file may already be gone

    def _write_summary(self, info: Sequence[tuple[str, Any]], notes: Sequence[str]) -> None:
        ws = self.wb.create_sheet(SUMMARY, 0)
        labels = [sheet.label for sheet in self.sheets]
        ws.column_dimensions["A"].width = 28
        for index in range(2, len(labels) + 3):
            ws.column_dimensions[get_column_letter(index)].width = 18

        def bold(value: Any, font: Font = BOLD) -> WriteOnlyCell:
            cell = WriteOnlyCell(ws, value=value)
            cell.font = font
            return cell

        ws.append([bold("Jira export", TITLE_FONT)])
        for name, value in info:
            if isinstance(value, datetime):
                cell = WriteOnlyCell(ws, value=value)
                cell.number_format = DATE_FORMAT
                value = cell
            elif isinstance(value, str):
                value = clean_text(value)
            ws.append([bold(name), value])
        for note in notes:
            ws.append([bold("Note"), clean_text(note)])
        ws.append([])
        ws.append([self._summary_header(ws, text) for text in ["Issues", *labels, "Total"]])
        rows = [sheet.counts.rows for sheet in self.sheets]
        ws.append(["All issues", *rows, sum(rows)])
        for title, attr in (("Status", "status"), ("Type", "type"), ("Assignee", "assignee")):
            ws.append([])
            header = [title, *labels, "Total"]
            ws.append([self._summary_header(ws, text) for text in header])
            totals: Counter[str] = Counter()
            for sheet in self.sheets:
                totals.update(getattr(sheet.counts, attr))
            for value, total in sorted(totals.items(), key=lambda item: (-item[1], item[0].lower())):
                counts = [getattr(sheet.counts, attr).get(value, 0) for sheet in self.sheets]
                ws.append([clean_text(value), *counts, total])

    @staticmethod
    def _summary_header(ws: WriteOnlyWorksheet, text: str) -> WriteOnlyCell:
        cell = WriteOnlyCell(ws, value=text)
        cell.font, cell.fill = HEADER_FONT, HEADER_FILL
        return cell
