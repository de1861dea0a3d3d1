"""A small pure-numpy reader of FITS files whose tables use fixed-width binary columns.

An order of magnitude faster than astropy for the spectra bayesslam reads,
because it builds no ``Column`` objects; it promises to read *exactly* what
astropy reads, and declines (:class:`_Decline`) everything else: scaled
columns (other than unsigned integers), ``TDIM`` or ``TNULL`` columns it is
asked for, bit and heap columns, headers with repeated or unusual cards, and
damaged, truncated or otherwise unusual files.
:func:`bayesslam.io.fitsutil.read_fits` tries it first and falls back to
astropy, whose errors are then the ones raised; the helpers of
:mod:`bayesslam.io.fitsutil` take an HDU of either kind.
"""

from __future__ import annotations

import contextvars
import functools
import gzip
import io
import os
import re
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FITS_MAGIC", "FastHDU", "FastHeader"]

FITS_MAGIC = b"SIMPLE  ="

class _Decline(Exception):
    """The fast reader cannot promise astropy's exact result for this file; astropy must read it."""


#: "auto": fast reader, astropy where it declines; "astropy": astropy only; "fast": fast reader only
#: (a decline raises) -- the last two for tests and benchmarks.
_MODE: contextvars.ContextVar[str] = contextvars.ContextVar("bayesslam_fits_reader", default="auto")


@contextmanager
def _reader_mode(mode: str) -> Iterator[None]:
    """Choose the FITS reader of :func:`read_fits` in this context: ``"auto"``, ``"astropy"`` or ``"fast"``."""
    if mode not in ("auto", "astropy", "fast"):
        raise ValueError(f"unknown FITS reader mode {mode!r}")
    token = _MODE.set(mode)
    try:
        yield
    finally:
        _MODE.reset(token)


_BLOCK = 2880
_CARD = 80
_END_CARD = b"END" + b" " * 77
_GZIP_MAGIC = b"\x1f\x8b"
#: A card with a string value without quotes in it, and an optional comment (most string cards).
_PLAIN_STRING = re.compile(rb"[ -~]{8}= +'([ -&(-~]*)' *(?:/[ -~]*)?")
_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[DE][+-]?[0-9]+)?")
_TFORM_RE = re.compile(r"([0-9]*)([LXBIJKAEDCMPQ])(.*)")
#: The first card that astropy takes for the END card: "END" then anything but a keyword character.
_END_SEARCH = re.compile(rb"(?s)(?:.{80})*?END[^A-Z0-9_-]")
#: TFORM letter -> (numpy type of one element, bytes per element); None: not read by the fast reader.
_TFORM_TYPES: dict[str, tuple[str | None, int]] = {
    "L": ("i1", 1), "B": ("u1", 1), "I": (">i2", 2), "J": (">i4", 4), "K": (">i8", 8),
    "E": (">f4", 4), "D": (">f8", 8), "C": (">c8", 8), "M": (">c16", 16), "A": ("S", 1),
    "X": (None, 0), "P": (None, 0), "Q": (None, 0),
}
#: Unsigned integers stored with the FITS TZERO convention (astropy returns them as unsigned).
_UNSIGNED = {"I": (2**15, np.uint16, 0x8000), "J": (2**31, np.uint32, 0x80000000), "K": (2**63, np.uint64, 2**63)}
_MISSING = object()
#: Extension types whose data size astropy computes from the header as the standard says.
_EXTENSIONS = ("BINTABLE", "IMAGE", "TABLE")


def _parse_value(card: bytes) -> Any:
    """The value of a header card as astropy gives it (str, int, float or bool), or _Decline."""
    quick = _PLAIN_STRING.fullmatch(card)
    if quick is not None:
        value = quick.group(1).rstrip(b" ").decode("ascii")
        if value.endswith("&"):
            raise _Decline("long-string (CONTINUE) value")
        return value
    if card[8:10] != b"= ":
        raise _Decline("card without a value")
    text = card[10:].decode("ascii").lstrip(" ")
    if text.startswith("'"):
        parts, start = [], 1
        while True:
            end = text.find("'", start)
            if end < 0:
                raise _Decline("unterminated string value")
            if text[end + 1 : end + 2] == "'":
                parts.append(text[start : end + 1])
                start = end + 2
                continue
            parts.append(text[start:end])
            rest = text[end + 1 :]
            break
        if rest[:1] not in ("", " ", "/") or rest.strip(" ")[:1] not in ("", "/"):
            raise _Decline("text after a string value")
        value = "".join(parts)
        if not value.isprintable() or not value.isascii():
            raise _Decline("unprintable string value")
        value = value.rstrip(" ")
        if value.endswith("&"):
            raise _Decline("long-string (CONTINUE) value")
        return value
    token, _, _ = text.partition("/")
    token = token.strip(" ")
    if token == "T":
        return True
    if token == "F":
        return False
    if _INT_RE.fullmatch(token):
        return int(token)
    if _FLOAT_RE.fullmatch(token):
        return float(token.replace("D", "E"))
    raise _Decline(f"value {token!r} not parsed by the fast reader")


class FastHeader:
    """The cards of one header, their values parsed on demand.

    A keyword's value is its card's (astropy's value parsing, for the value
    types the fast reader knows); a keyword on more than one card declines.
    Everything derived from the cards is kept with them, so a header read
    again (the same bytes, see :func:`_header`) costs nothing more.
    """

    __slots__ = ("_raw", "_first", "_last", "_values", "names", "layout", "structure")

    def __init__(self, raw: bytes):
        if not raw.isascii():
            raise _Decline("non-ASCII header")
        upper = raw.upper()
        # the keywords, as bytes (space-padded to 8; numpy drops trailing NULs, which no keyword looked up has)
        keys = np.ndarray((len(upper) // _CARD,), dtype="S8", buffer=upper, strides=(_CARD,)).tolist()
        self._raw = raw
        self._last = dict(zip(keys, range(len(keys))))
        self._first = dict(zip(reversed(keys), range(len(keys) - 1, -1, -1)))
        self._values: dict[str, Any] = {}
        self.names: list[str] | None = None
        self.layout: _Layout | None = None
        self.structure: dict[bool, tuple[str | None, int]] = {}

    def _card(self, key: str) -> bytes | None:
        pattern = key.encode("ascii").ljust(8)
        found = self._first.get(pattern)
        if found is None:
            return None
        if self._last[pattern] != found:
            raise _Decline(f"keyword {key} appears more than once")
        return self._raw[found * _CARD : (found + 1) * _CARD]

    def value(self, keyword: bytes) -> Any:
        """The value of an upper-case keyword (None if absent), parsed afresh: quicker for many look-ups."""
        keyword = keyword.ljust(8)
        found = self._first.get(keyword)
        if found is None:
            return None
        if self._last[keyword] != found:
            raise _Decline(f"keyword {keyword!r} appears more than once")
        return _parse_value(self._raw[found * _CARD : (found + 1) * _CARD])

    def get(self, key: str, default: Any = None) -> Any:
        key = key.upper()
        try:
            return self._values[key]
        except KeyError:
            pass
        card = self._card(key)
        if card is None:
            return default
        value = self._values[key] = _parse_value(card)
        return value

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._card(key.upper()) is not None

    def first_keyword(self) -> str:
        return self._raw[:8].upper().rstrip(b" ").decode("ascii")


#: Parsed headers by their bytes: a file's headers are parsed once for identifying and reading it, and
#: the table headers that all files of a survey share (their column layouts included) once for all.
_HEADERS: OrderedDict[bytes, FastHeader] = OrderedDict()
_HEADER_CACHE_SIZE = 64


def _header(raw: bytes) -> FastHeader:
    header = _HEADERS.get(raw)
    if header is None:
        header = FastHeader(raw)
        _HEADERS[raw] = header
        while len(_HEADERS) > _HEADER_CACHE_SIZE:
            try:
                _HEADERS.popitem(last=False)
            except KeyError:  # emptied by another thread
                break
    else:
        try:
            _HEADERS.move_to_end(raw)
        except KeyError:
            pass
    return header


class _Column:
    __slots__ = ("name", "code", "repeat", "offset", "index", "view", "unsigned", "why_not")

    def __init__(self, name: str, code: str, repeat: int, offset: int, index: int):
        self.name, self.code, self.repeat, self.offset, self.index = name, code, repeat, offset, index
        #: (dtype, shape, strides) of one row's item, set (last, in one step) by _Layout.describe
        self.view: tuple[np.dtype, tuple[int, ...], tuple[int, ...]] | None = None
        self.unsigned: tuple[Any, ...] | None = None
        self.why_not = ""


@functools.lru_cache(maxsize=1024)
def _tform(tform: str) -> tuple[str, int, int]:
    """A binary table's TFORM: (type letter, repeat count, bytes in a row)."""
    match = _TFORM_RE.fullmatch(tform.strip())
    if match is None:
        raise _Decline(f"TFORM {tform!r}")
    repeat = int(match.group(1)) if match.group(1) else 1
    code = match.group(2)
    if code == "X":
        return code, repeat, (repeat + 7) // 8
    if code in "PQ":
        return code, repeat, (8 if code == "P" else 16) * min(repeat, 1)
    if match.group(3):
        raise _Decline(f"TFORM {tform!r}")
    return code, repeat, repeat * _TFORM_TYPES[code][1]


class _Layout:
    """A binary table's columns: names, byte offsets in a row, how to view each as astropy gives it."""

    def __init__(self, header: FastHeader):
        n_fields = header.get("TFIELDS")
        row_bytes = header.get("NAXIS1")
        if type(n_fields) is not int or n_fields < 1 or type(row_bytes) is not int or row_bytes < 1:
            raise _Decline("table without columns")
        columns, offset = [], 0
        for i in range(1, n_fields + 1):
            name = header.value(b"TTYPE%d" % i)
            tform = header.value(b"TFORM%d" % i)
            if not isinstance(name, str) or not isinstance(tform, str):
                raise _Decline(f"column {i} has no string TTYPE or TFORM")
            code, repeat, width = _tform(tform)
            columns.append(_Column(name, code, repeat, offset, i))
            offset += width
        names = [c.name for c in columns]
        if len(set(names)) != len(names) or any(n != n.strip() for n in names):
            raise _Decline("duplicate or space-padded column names")
        if offset != row_bytes:
            raise _Decline("the columns do not fill NAXIS1")
        self.columns = columns
        self.names = names
        self.row_bytes = row_bytes
        self._header = header
        self._exact = {n: c for n, c in zip(names, columns)}
        folded: dict[str, list[_Column]] = {}
        for column in columns:
            folded.setdefault(column.name.lower(), []).append(column)
        self._folded = folded

    def describe(self, column: _Column) -> None:
        """How the column is viewed in the table's bytes, or why the fast reader leaves it to astropy."""
        if column.view is not None or column.why_not:
            return
        header = self._header
        i, code = column.index, column.code
        kind, size = _TFORM_TYPES[code]
        if kind is None:
            column.why_not = f"TFORM {code} columns are read by astropy"
            return
        if column.repeat == 0 or f"TDIM{i}" in header or f"TNULL{i}" in header or f"TSCAL{i}" in header:
            column.why_not = f"column {column.name!r} has TDIM, TNULL, TSCAL or zero width"
            return
        if f"TZERO{i}" in header:
            zero = header[f"TZERO{i}"]
            if code not in _UNSIGNED or type(zero) is not int or zero != _UNSIGNED[code][0]:
                column.why_not = f"column {column.name!r} is scaled"
                return
            column.unsigned = _UNSIGNED[code]
        if code == "A":
            column.view = (np.dtype(f"S{column.repeat}"), (), ())
        elif column.repeat == 1:
            column.view = (np.dtype(kind), (), ())
        else:
            column.view = (np.dtype(kind), (column.repeat,), (size,))

    def find(self, name: str) -> _Column:
        """A column by name as astropy finds it: the exact name first, else the unique case-insensitive match."""
        column = self._exact.get(name)
        if column is not None:
            return column
        matches = self._folded.get(name.lower(), [])
        if len(matches) != 1:
            raise KeyError(name)
        return matches[0]


class FastHDU:
    """One HDU of a file read by :func:`read_fits`: its header and, for binary tables, its columns."""

    def __init__(self, source: _Source, index: int, header: FastHeader, xtension: str | None, data_offset: int,
                 data_size: int):
        self._source = source
        self.index = index
        self.header = header
        self.xtension = xtension
        self.data_offset = data_offset
        self.data_size = data_size
        self._rows: dict[int | None, bytes] = {}

    @property
    def name(self) -> str:
        """``EXTNAME``, as astropy's ``HDU.name`` gives it."""
        return str(self.header.get("EXTNAME", "PRIMARY" if self.index == 0 else ""))

    @property
    def is_table(self) -> bool:
        """A binary or ASCII table (astropy's ``BinTableHDU`` or ``TableHDU``)."""
        return self.xtension in ("BINTABLE", "TABLE")

    @property
    def is_bintable(self) -> bool:
        return self.xtension == "BINTABLE"

    def column_names(self) -> list[str]:
        """``TTYPEn`` as :func:`column_names` reads them from an astropy header."""
        header = self.header
        if header.names is None:
            header.names = [
                str(header.get(f"TTYPE{i}", "")).strip() for i in range(1, int(header.get("TFIELDS", 0)) + 1)
            ]
        return header.names

    @property
    def n_rows(self) -> int:
        return int(self.header["NAXIS2"])

    def layout(self) -> _Layout:
        """The binary table's columns."""
        if not self.is_bintable:
            raise _Decline(f"HDU {self.index} is not a binary table")
        header = self.header
        if header.layout is None:
            header.layout = _Layout(header)
        return header.layout

    def _table_bytes(self, row: int | None) -> bytes:
        """The raw bytes of all rows (row None) or of one row."""
        try:
            return self._rows[row]
        except KeyError:
            pass
        row_bytes, n_rows = self.layout().row_bytes, self.n_rows
        if row is None:
            data = self._source.read(self.data_offset, row_bytes * n_rows)
        else:
            if not 0 <= row < n_rows:
                raise IndexError(f"row {row} of a {n_rows}-row table")
            data = self._source.read(self.data_offset + row * row_bytes, row_bytes)
        self._rows[row] = data
        return data

    def field(self, name: str, row: int | None = None) -> Any:
        """``hdu.data[name]`` (row None) or ``hdu.data[name][row]`` as astropy gives them, as new arrays."""
        layout = self.layout()
        col = layout.find(name)
        layout.describe(col)
        if col.view is None:
            raise _Decline(col.why_not)
        dtype, shape, strides = col.view
        data = self._table_bytes(row)
        n = 1 if row is not None else self.n_rows
        raw = np.ndarray((n, *shape), dtype=dtype, buffer=data, offset=col.offset, strides=(layout.row_bytes, *strides))
        if col.code == "A":
            if not all(item.isascii() for item in raw.tolist()):
                raise _Decline(f"column {name!r} holds non-ASCII text")
            values = raw.astype(f"U{col.repeat}")
            if row is not None:
                return str(values[0]).rstrip()
            return values
        if col.code == "L":
            values = np.equal(raw, ord("T"))
        elif col.unsigned is not None:
            _, utype, flip = col.unsigned  # astropy: cast to unsigned, add TZERO (wrapping): the sign bit flipped
            values = np.bitwise_xor(raw.view(raw.dtype.str.replace("i", "u")), utype(flip)).astype(utype)
        else:
            values = np.array(raw)
        return values[0] if row is not None else values


class _Source:
    """The bytes of a FITS file (an open file, or the decompressed content of a gzipped one), read in chunks."""

    _CHUNK = 8 * _BLOCK

    def __init__(self, handle: Any, size: int):
        self._handle = handle
        self.size = size
        self._chunk = b""
        self._chunk_offset = 0

    def read(self, offset: int, size: int) -> bytes:
        start = offset - self._chunk_offset
        if start >= 0 and start + size <= len(self._chunk):
            return self._chunk[start : start + size]
        self._handle.seek(offset)
        if size >= self._CHUNK:
            data = self._handle.read(size)
        else:
            self._chunk, self._chunk_offset = self._handle.read(self._CHUNK), offset
            data = self._chunk[:size]
        if len(data) != size:
            raise _Decline("short read")
        return data


def _read_header(source: _Source, offset: int) -> tuple[bytes, int]:
    """The cards of the header starting at ``offset`` (without END), and the header's length in bytes."""
    blocks: list[bytes] = []
    while True:
        block = source.read(offset + len(blocks) * _BLOCK, _BLOCK)
        end = _END_SEARCH.match(block)
        if end is not None:
            start = end.end() - 4
            if block[start : start + _CARD] != _END_CARD:
                raise _Decline("malformed END card")  # astropy ends the header there, with a warning
            blocks.append(block[:start])
            return b"".join(blocks), len(blocks) * _BLOCK
        blocks.append(block)


def _data_size(header: FastHeader, primary: bool) -> int:
    """Bytes of the HDU's data (without padding), as astropy computes it."""
    naxis = header.get("NAXIS")
    bitpix = header.get("BITPIX")
    if type(naxis) is not int or not 0 <= naxis <= 999 or type(bitpix) is not int or bitpix not in (8, 16, 32, 64, -32, -64):
        raise _Decline("bad NAXIS or BITPIX")
    gcount, pcount = header.get("GCOUNT", 1 if primary else None), header.get("PCOUNT", 0 if primary else None)
    if type(gcount) is not int or type(pcount) is not int or gcount < 0 or pcount < 0:
        raise _Decline("bad GCOUNT or PCOUNT")
    if naxis == 0:
        return 0
    size = 1
    for i in range(1, naxis + 1):
        length = header.get(f"NAXIS{i}")
        if type(length) is not int or length < 0:
            raise _Decline(f"bad NAXIS{i}")
        size *= length
    return abs(bitpix) * gcount * (pcount + size) // 8


def _structure(header: FastHeader, primary: bool) -> tuple[str | None, int]:
    """(XTENSION, bytes of data without padding) of a standard HDU; the rest declines."""
    first = header.first_keyword()
    xtension = None
    if primary:
        if first != "SIMPLE" or header.get("SIMPLE") is not True or "GROUPS" in header:
            raise _Decline("not a standard primary HDU")
    else:
        xtension = header.get("XTENSION")
        if first != "XTENSION" or not isinstance(xtension, str) or xtension.rstrip() not in _EXTENSIONS:
            raise _Decline("unusual extension")
        xtension = xtension.rstrip()
        if "ZIMAGE" in header:
            raise _Decline("compressed image HDU")
    data_size = _data_size(header, primary)
    if xtension == "BINTABLE" and (header.get("BITPIX") != 8 or header.get("NAXIS") != 2
                                   or header.get("GCOUNT") != 1):
        raise _Decline("unusual binary table")
    return xtension, data_size


def _walk(source: _Source) -> list[FastHDU]:
    """All HDUs of the file; the file must end exactly after the last HDU's padded data."""
    hdus: list[FastHDU] = []
    offset = 0
    while offset < source.size:
        raw, header_size = _read_header(source, offset)
        header = _header(raw)
        primary = not hdus
        structure = header.structure.get(primary)
        if structure is None:
            structure = header.structure[primary] = _structure(header, primary)
        xtension, data_size = structure
        data_offset = offset + header_size
        hdus.append(FastHDU(source, len(hdus), header, xtension, data_offset, data_size))
        offset = data_offset + -(-data_size // _BLOCK) * _BLOCK
    if offset != source.size or not hdus:
        raise _Decline("the file does not end after its last HDU")
    return hdus


@contextmanager
def _open_fast(path: Path) -> Iterator[list[FastHDU]]:
    with open(path, "rb", buffering=0) as handle:
        magic = handle.read(2)
        if magic == _GZIP_MAGIC:
            handle.seek(0)
            try:
                content = gzip.decompress(handle.read())
            except (OSError, EOFError, ValueError) as exc:
                raise _Decline(f"gzip: {exc}") from exc
            source = _Source(io.BytesIO(content), len(content))
        else:
            source = _Source(handle, os.fstat(handle.fileno()).st_size)
        if source.read(0, len(FITS_MAGIC)) != FITS_MAGIC:
            raise _Decline("no FITS signature")
        yield _walk(source)
