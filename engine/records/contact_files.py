"""Contact files as people export them from spreadsheets and CRMs: CSV -> contacts, row by row.

- Text: UTF-8, with or without a byte order mark, or UTF-16 (Excel's "Unicode text", tab
  separated; with its byte order mark, or without it when NUL bytes say which order). A file
  that is neither is read as Windows-1252 (what Excel's plain "CSV" writes on Windows; it covers
  Latin-1) with a warning. Anything else is refused, a workbook (.xlsx, .xls) with what to do.
  The whole file is checked before the first row is read, so an import never stops half-way
  on an undecodable byte.
- Excel quoting (double quotes, "" inside, line breaks inside quotes). The separator is the
  one the header row uses most outside its quotes: a comma, or a semicolon or tab (Excel in
  many locales), unless a first line `sep=;` (Excel's way to say it) names it.
- The header is the first row that is not blank (blank rows before it, `,,,` too, are
  skipped; they keep their numbers). Each name is a column; a name given twice is an error
  naming it. The phone column is `--phone-column`, else the one whose name is a known phone heading
  (PHONE_HEADINGS, compared without case, spaces, dashes, dots or underscores); the email
  column likewise (optional). Every other named column is an embedded-data field, under
  its name as written (without surrounding spaces). A column without a name is not kept.
- Rows are numbered as a spreadsheet shows them (the header is row 1 when it comes first).
  A row is a Contact or a Rejected with its reason; empty rows are counted and said in one
  warning. Values lose their surrounding spaces.

Reading is streaming: one row at a time, whatever the size of the file.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from engine.render import first_unsendable
from engine.sms.phones import InvalidNumber, contact_number

PHONE_HEADINGS = frozenset({
    "phone", "phonenumber", "phoneno", "phone#", "mobile", "mobilephone", "mobilenumber",
    "mobileno", "cell", "cellphone", "cellnumber", "cellular", "telephone", "telephonenumber",
    "tel", "number", "msisdn", "sms", "smsnumber", "contactnumber", "whatsapp", "whatsappnumber",
    # as other languages' exports head it (German, French, Spanish, Portuguese, Italian)
    "telefon", "telefonnummer", "handy", "mobil", "mobilnummer", "téléphone", "portable",
    "teléfono", "telefono", "celular", "móvil", "movil", "telemóvel", "cellulare",
    "telefone", "handynummer", "mobiltelefon", "telefoon", "mobiel", "mobile#", "cell#",
    "mobilephonenumber", "cellphonenumber", "primaryphone", "numérodetéléphone",
    "numerodetelephone", "numérodeportable", "numerodeportable", "númerodetelefone",
    "numerodetelefone", "númerodeteléfono", "numerodetelefono", "númerodecelular",
    "numerodecelular", "numerodicellulare", "numeroditelefono",
})
EMAIL_HEADINGS = frozenset({"email", "emailaddress", "mail"})
HEADING_NOISE = re.compile(r"[\s_.\-]+")
SEPARATORS = (",", ";", "\t")
SEPARATOR_LINE = re.compile(r"sep=(.)", re.IGNORECASE)
CHUNK = 1 << 20
BLANK_ROW = " \t\r\n,;\""  # what a row of empty cells is written with (Excel writes ",,,")
HEADER_LINES = 50  # lines one header row may take (quoted line breaks in its names)
# What spreadsheets run as a formula at the start of a value: exports write such a value after
# an apostrophe (engine.runtime.exports), which an import of it takes off again
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
WINDOWS_1252 = "cp1252"


class ContactFileError(ValueError):
    """The file cannot be imported at all (no row is read); `reason` is a stable code for the
    API's answer, `columns` the header when it matters to the fix."""

    def __init__(self, reason: str, message: str, columns: list[str] | None = None):
        super().__init__(message)
        self.reason, self.message, self.columns = reason, message, columns


@dataclass(frozen=True)
class Contact:
    row: int
    phone: str  # E.164
    written: str  # the phone number as the file wrote it
    email: str | None
    fields: dict[str, str]
    line_warning: str | None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rejected:
    row: int
    value: str
    reason: str


@dataclass
class Header:
    columns: list[str]
    phone: int
    email: int | None
    fields: dict[int, str] = field(default_factory=dict)  # column index -> field name

    @property
    def field_names(self) -> list[str]:
        return list(self.fields.values())

def heading(name: str) -> str:
    return HEADING_NOISE.sub("", name).casefold()


# What people upload by mistake for a CSV: a workbook as Excel saves it
WORKBOOKS = ((b"PK\x03\x04", "an Excel workbook (.xlsx) or another zip archive"),
             (b"\xd0\xcf\x11\xe0", "an Excel 97-2003 workbook (.xls)"))
UTF_16_NUL_SHARE = 0.3  # of the code units whose high byte is NUL: UTF-16 text without a BOM


def encoding_of(binary: BinaryIO) -> str:
    """The codec the file is read with (utf-8-sig, utf-16 with or without its byte order mark,
    or cp1252), checked over the whole file; ContactFileError for a workbook and for bytes no
    codec here reads. Leaves the file at its start."""
    start = binary.read(CHUNK)
    for magic, what in WORKBOOKS:
        if start.startswith(magic):
            raise ContactFileError("not_csv", f"the file is {what}, not CSV text: open it in your "
                                              "spreadsheet and save it as \"CSV UTF-8\"")
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates: tuple[str, ...] = ("utf-16",)  # Excel's "Unicode text" (the BOM says the order)
    elif b"\x00" in start:
        candidates = tuple(codec for codec, high in (("utf-16-le", start[1::2]), ("utf-16-be", start[0::2]))
                           if high.count(0) >= UTF_16_NUL_SHARE * max(1, len(start) // 2))
    else:
        candidates = ("utf-8-sig", WINDOWS_1252)
    chosen = None
    for codec in candidates:
        binary.seek(0)
        decoder = codecs.getincrementaldecoder(codec)()
        try:
            while chunk := binary.read(CHUNK):
                text = decoder.decode(chunk)
                if codec.startswith("utf-16") and "\x00" in text:  # (no CSV holds NUL: a wrong guess)
                    raise UnicodeDecodeError(codec, b"", 0, 1, "NUL character")
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        chosen = codec
        break
    binary.seek(0)
    if chosen is None:
        why = ("NUL bytes, which no CSV text holds" if b"\x00" in start else
               "bytes that Windows-1252 leaves unused: a Mac's or another encoding")
        raise ContactFileError("bad_encoding", f"the file is not text in UTF-8, UTF-16 or Windows-1252 "
                                               f"({why}): save it as \"CSV UTF-8\" and import that")
    return chosen


class HeaderScan:
    """The header record read line by line as the csv module reads it, whatever the separator
    (any of SEPARATORS may end a field): a quote opens a value only at a field's start (elsewhere,
    an inch mark, it is a character), and `""` inside a quoted value is a quote. Counts the
    separators outside quotes; `open` while a quoted value goes on past the line."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(SEPARATORS, 0)
        self.open = False
        self._closing = False  # a quote in a quoted value: it closes it, or a second one follows

    def feed(self, line: str) -> None:
        field_start = not self.open
        for char in line:
            if self.open:
                if char == '"':
                    self.open, self._closing = False, True
                continue
            if char == '"' and (field_start or self._closing):
                self.open, self._closing = True, False  # ("" inside a quoted value: it goes on)
                continue
            self._closing = False
            field_start = char in self.counts or char in "\r\n"
            if char in self.counts:
                self.counts[char] += 1

    def separator(self) -> str:
        """The separator the header uses most ("Last, First";"Phone": a semicolon); else a comma."""
        best = max(SEPARATORS, key=lambda sep: self.counts[sep])
        return best if self.counts[best] else ","


def unclosed_quote(record: str, separator: str) -> bool:
    """Whether a record's text ends inside a quoted value: a quote opened and never closed,
    which makes the rest of the file one value (the csv module says so only past 128 KiB)."""
    try:
        for _ in csv.reader(io.StringIO(record, newline=""), delimiter=separator, strict=True):
            pass
    except csv.Error as err:
        return "unexpected end of data" in str(err)
    return False


def unescaped(value: str) -> str:
    """A field as Canvass's exports wrote it: a value that a spreadsheet would run as a formula
    is written after an apostrophe (engine.runtime.exports), taken off here."""
    return value[1:] if value[:1] == "'" and value[1:2] in FORMULA_STARTS else value


def read_header(names: list[str], phone_column: str | None) -> Header:
    columns = [name.strip() for name in names]
    seen: set[str] = set()
    for name in columns:
        if name and name in seen:
            raise ContactFileError("duplicate_column", f"the column '{name}' appears twice in the "
                                   "header: rename one of them", columns)
        seen.add(name)
        bad = first_unsendable(name)
        if bad is not None:
            raise ContactFileError("bad_column", f"the column name '{name!r}' holds U+{ord(bad):04X}, "
                                   "a control character: rename the column", columns)
    phone = _phone_column(columns, phone_column)
    emails = [i for i, name in enumerate(columns) if i != phone and heading(name) in EMAIL_HEADINGS]
    if len(emails) > 1:
        raise ContactFileError("ambiguous_column", "several columns could hold the email: "
                               f"{', '.join(columns[i] for i in emails)}; rename all but one", columns)
    email = emails[0] if emails else None
    fields = {i: name for i, name in enumerate(columns) if name and i not in (phone, email)}
    return Header(columns, phone, email, fields)


def _phone_column(columns: list[str], chosen: str | None) -> int:
    listed = ", ".join(f"'{name}'" for name in columns)
    if chosen is not None:
        wanted = chosen.strip()
        for matches in (lambda name: name == wanted, lambda name: heading(name) == heading(wanted)):
            found = [i for i, name in enumerate(columns) if matches(name)]
            if len(found) == 1:
                return found[0]
        raise ContactFileError("no_phone_column", f"there is no column '{chosen}'; the columns are "
                               f"{listed}", columns)
    found = [i for i, name in enumerate(columns) if heading(name) in PHONE_HEADINGS]
    if not found:
        raise ContactFileError("no_phone_column", "no column looks like the phone number (Phone, "
                               f"Phone Number, Mobile, Cell, Telephone, Number...); the columns are "
                               f"{listed}: name the phone column with --phone-column", columns)
    if len(found) > 1:
        raise ContactFileError("ambiguous_column", "several columns could hold the phone number: "
                               f"{', '.join(columns[i] for i in found)}; choose one with --phone-column",
                               columns)
    return found[0]


class ContactFile:
    """One contact file, opened: its header read and checked (ContactFileError when it cannot
    be imported), its rows read by rows()."""

    def __init__(self, binary: BinaryIO, phone_column: str | None = None,
                 default_country: str | None = None):
        self.encoding = encoding_of(binary)
        if self.encoding == WINDOWS_1252 and binary.read(len(codecs.BOM_UTF8)) != codecs.BOM_UTF8:
            binary.seek(0)  # (a UTF-8 BOM before bytes UTF-8 cannot read: not text, not kept)
        self._binary, self._text_start = binary, binary.tell()
        self.default_country = default_country
        # newline="": line breaks inside quoted cells reach the csv module as written
        self.text = io.TextIOWrapper(binary, encoding=self.encoding, newline="")
        first = self.text.readline()
        declared = SEPARATOR_LINE.fullmatch(first.rstrip("\r\n"))
        if declared:  # Excel's "sep=;" line: not a row in Excel, so not one here
            first = self.text.readline()
        self.header_row = 1  # as a spreadsheet numbers it: after the blank rows before it
        while first and not first.strip(BLANK_ROW):
            self.header_row += 1
            first = self.text.readline()
        self._lines_before = self.header_row - 1 + bool(declared)  # what the csv reader does not see
        if not first:
            raise ContactFileError("empty_file", "the file is empty: its first row must name the "
                                                 "columns (Phone, Email, FirstName...)")
        header_lines, scan = [first], HeaderScan()  # names may hold quoted line breaks
        scan.feed(first)
        while scan.open and len(header_lines) < HEADER_LINES and (more := self.text.readline()):
            header_lines.append(more)
            scan.feed(more)
        if scan.open:
            raise ContactFileError("unclosed_quote", "a quote (\") opened in the header row is never "
                                                     "closed: close it, or take it out, and import again")
        self.separator = declared.group(1) if declared else scan.separator()
        self._reader = csv.reader(itertools.chain(header_lines, self.text), delimiter=self.separator)
        self.header = read_header(next(self._reader), phone_column)
        self._unnamed = [i for i, name in enumerate(self.header.columns) if not name]  # not kept
        self.warnings: list[dict] = []
        if self.encoding == WINDOWS_1252:
            self.warnings.append({"row": None, "value": "", "reason": (
                "the file is not UTF-8: it was read as Windows-1252 (Excel's plain CSV on "
                "Windows); check accented letters, or save it as \"CSV UTF-8\"")})
        self.empty_rows, self.first_empty = 0, None

    def rows(self) -> Iterator[Contact | Rejected]:
        header, reader = self.header, self._reader
        width = len(header.columns)
        row = self.header_row
        # the row read and not yet given, with its first line (the csv reader's count): the
        # file's last row may be a quote left open, that took in the rest of the file
        last: tuple[int, list[str], int] | None = None
        read = reader.line_num  # lines the csv reader has read
        try:
            for cells in reader:
                row += 1
                if not "".join(cells).strip():  # every cell empty or spaces
                    self.empty_rows += 1
                    self.first_empty = self.first_empty or row
                    read = reader.line_num
                    continue
                if last is not None:
                    yield self._contact(last[0], last[1], width)
                last = (row, cells, read + 1)
                read = reader.line_num
        except csv.Error as err:  # e.g. a quote never closed: the rest of the file is one cell
            if last is not None:
                yield self._contact(last[0], last[1], width)
                last = None
            yield Rejected(row + 1, "", f"the file cannot be read from here on: {err}")
        if last is not None:
            yield self._last(*last, read, width)
        if self.empty_rows:
            self.warnings.append({"row": self.first_empty, "value": "", "reason": (
                f"{self.empty_rows} empty row(s) skipped, the first at row {self.first_empty}")})

    def _last(self, row: int, cells: list[str], first: int, end: int, width: int) -> Contact | Rejected:
        """The file's last row, unless a quote opened in it was never closed and took in the lines
        after it (rows, most likely: a quote left open on the last line alone cuts nothing).
        `first` and `end`: its lines, as the csv reader counts them."""
        lines = self._lines(first, end) if end > first else []
        record = "".join(lines)
        if any(line.strip() for line in lines[1:]) and '"' in record and unclosed_quote(record, self.separator):
            written = cells[self.header.phone].strip() if self.header.phone < len(cells) else ""
            return Rejected(row, written, f"a quote (\") opened in this row is never closed, so the "
                                          f"rest of the file ({len(lines)} lines) would be one value: "
                                          "close the quote, or take it out, and import again")
        return self._contact(row, cells, width)

    def _lines(self, first: int, end: int) -> list[str]:
        """Lines `first` to `end` of what the csv reader read, read again (the file's last row,
        when it took more than one line: rare enough to read the file twice for)."""
        self._binary.seek(self._text_start)
        text = io.TextIOWrapper(self._binary, encoding=self.encoding, newline="")
        try:
            skip = self._lines_before + first - 1
            return list(itertools.islice(text, skip, skip + end - first + 1))
        finally:
            text.detach()  # (the file stays open: it is the caller's)

    def _contact(self, row: int, cells: list[str], width: int) -> Contact | Rejected:
        header = self.header
        written = cells[header.phone].strip() if header.phone < len(cells) else ""
        if len(cells) > width and any(cell.strip() for cell in cells[width:]):
            return Rejected(row, written, f"the row has {len(cells)} cells but the header names "
                                          f"{width} columns (a value with a comma not in quotes?)")
        try:
            number = contact_number(written, self.default_country)
        except InvalidNumber as err:
            return Rejected(row, written, str(err))
        if len(cells) < width:
            cells = cells + [""] * (width - len(cells))
        values = [cells[index].strip() for index in header.fields]
        joined = "".join(values)
        if "'" in joined:
            values = [unescaped(value) for value in values]
        if first_unsendable(joined) is not None:  # one search for the row, not one a field
            for name, value in zip(header.fields.values(), values, strict=True):
                bad = first_unsendable(value)
                if bad is not None:
                    return Rejected(row, written, f"the field '{name}' holds U+{ord(bad):04X}, a "
                                                  "control character no message can carry")
        fields = dict(zip(header.fields.values(), values, strict=True))
        warnings = []
        if number.line_warning is not None:
            warnings.append(f"{number.line_warning.replace('_', ' ')} number: it may not receive "
                            "SMS, and messages sent to it are still charged")
        if number.also is not None:
            warnings.append(f"read with its country code as {number.e164}; it is also the US or "
                            f"Canadian number {number.also} without one: if that is what it is, "
                            "import with --default-country US")
        email = cells[header.email].strip() if header.email is not None else ""
        if email and "@" not in email:
            warnings.append(f"the email '{email}' has no @; it was kept as written")
        dropped = [i for i in self._unnamed if cells[i].strip()]
        if dropped:
            warnings.append(f"column {dropped[0] + 1} has no name: its value was not kept "
                            "(name the column to keep it as a field)")
        return Contact(row, number.e164, written, email or None, fields, number.line_warning,
                       tuple(warnings))
