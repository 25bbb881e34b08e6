"""Reader of the UEA/UCR time-series classification format (``.ts``; docs/DATASETS.md §6).

A ``.ts`` file is a header of ``@tag value`` lines (``#`` lines are comments), an ``@data``
line, then one case per line: the dimensions (channels) separated by ``:``, the values of a
dimension separated by ``,``, and, when ``@classLabel true`` or ``@targetLabel true``, the
label as the last ``:`` field. ``?`` marks a missing value and becomes NaN.

Supported: univariate and multivariate cases, class labels (checked against the declared
classes), regression targets, missing values. Cases of unequal length are returned as a list
of ``[n_channels, n_times_i]`` arrays when asked for (``unequal="list"``), else rejected.
Time-stamped files (``@timeStamps true``) are rejected. Every format error is a DatasetError
naming the file and the line. A ``@seriesLength`` that disagrees with cases of one common
length is not an error (some archive files are off by one): the header then records the
declared value as ``serieslength_declared`` and the actual one as ``serieslength``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mixer.errors import DatasetError

BOOL_TAGS = ("timestamps", "missing", "univariate", "equallength")
INT_TAGS = ("dimensions", "serieslength")
KNOWN_TAGS = ("problemname", *BOOL_TAGS, *INT_TAGS, "classlabel", "targetlabel", "data")


@dataclass
class TsData:
    """The cases of one ``.ts`` file.

    ``X`` is float64 ``[n_cases, n_channels, n_times]`` (or a list of ``[n_channels, n_i]``
    arrays for unequal lengths read with ``unequal="list"``); ``labels`` holds the class
    labels (str) or regression targets (float), or is None when the file has neither.
    """

    X: np.ndarray | list[np.ndarray]
    labels: np.ndarray | None
    header: dict
    name: str
    lines: list[int] = field(default_factory=list)  # line number of every case

    @property
    def n_cases(self) -> int:
        return len(self.X)


def read_ts(path: str | Path, unequal: str = "error") -> TsData:
    """Read a ``.ts`` file from disk; see :func:`parse_ts`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DatasetError(f"{path}: cannot read the .ts file ({err.strerror or err})") from None
    return parse_ts(decode(raw), str(path), unequal=unequal)


def decode(raw: bytes) -> str:
    """UTF-8, else Latin-1 (some archive files carry Latin-1 comments)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse_ts(text: str, name: str, unequal: str = "error") -> TsData:
    """Parse the text of a ``.ts`` file; ``name`` (a path) appears in every error message.

    ``unequal``: 'error' rejects cases of different lengths, 'list' returns them as a list.
    """
    if unequal not in ("error", "list"):
        raise ValueError(f"unequal must be 'error' or 'list', got {unequal!r}")
    lines = text.splitlines()
    header, data_start = _parse_header(lines, name)
    cases, labels, numbers = [], [], []
    n_dims = header.get("dimensions")
    if header.get("univariate") is True:
        if n_dims not in (None, 1):
            raise DatasetError(f"{name}: @univariate true but @dimensions {n_dims}")
        n_dims = 1
    has_class = header["classlabel"] is not None
    has_target = header["targetlabel"] is True
    for number in range(data_start + 1, len(lines) + 1):
        line = lines[number - 1].strip()
        if not line or line.startswith("#"):
            continue
        where = f"{name}, line {number}"
        parts = line.split(":")
        if has_class or has_target:
            if len(parts) < 2:
                raise DatasetError(f"{where}: a case needs values and a label separated by ':'")
            label = parts.pop().strip()
            if has_class:
                if label not in header["classlabel"]:
                    raise DatasetError(
                        f"{where}: class label {label!r} is not declared in @classLabel "
                        f"({' '.join(header['classlabel'])})"
                    )
                labels.append(label)
            else:
                try:
                    labels.append(float(label))
                except ValueError:
                    raise DatasetError(f"{where}: target {label!r} is not a number") from None
        if n_dims is None:
            n_dims = len(parts)
        elif len(parts) != n_dims:
            raise DatasetError(f"{where}: {len(parts)} dimensions, expected {n_dims}")
        dims = [_values(part, where, d) for d, part in enumerate(parts)]
        lengths = {len(v) for v in dims}
        if len(lengths) > 1:
            raise DatasetError(
                f"{where}: the dimensions of one case have different lengths {sorted(lengths)}"
            )
        cases.append(np.stack(dims))
        numbers.append(number)
    if not cases:
        raise DatasetError(f"{name}: no cases after @data (line {data_start})")
    X = _stack(cases, numbers, header, name, unequal)
    if header.get("missing") is False and any(np.isnan(c).any() for c in cases):
        header["missing_values_found"] = True
    out_labels = None
    if labels:
        out_labels = np.asarray(labels, dtype=object if has_class else np.float64)
        if has_class:
            out_labels = out_labels.astype(str)
    return TsData(X=X, labels=out_labels, header=header, name=name, lines=numbers)


def _parse_header(lines: list[str], name: str) -> tuple[dict, int]:
    header: dict = {"classlabel": None, "targetlabel": None}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{name}, line {number}"
        if not line.startswith("@"):
            raise DatasetError(f"{where}: expected a @tag header line or @data, got {line[:40]!r}")
        tag, _, rest = line[1:].partition(" ")
        tag, tokens = tag.lower(), rest.split()
        if tag not in KNOWN_TAGS:
            raise DatasetError(
                f"{where}: unknown header tag @{tag}; known: "
                + ", ".join(f"@{t}" for t in KNOWN_TAGS)
            )
        if tag == "data":
            if header.get("timestamps"):
                raise DatasetError(
                    f"{name}: @timeStamps true (time-stamped values) is not supported; "
                    "convert the file to plain values"
                )
            if header["classlabel"] is not None and header["targetlabel"]:
                raise DatasetError(f"{where}: both @classLabel and @targetLabel are true")
            return header, number
        if tag == "problemname":
            if not tokens:
                raise DatasetError(f"{where}: @problemName needs a value")
            header["problemname"] = rest.strip()
        elif tag in BOOL_TAGS or tag == "targetlabel":
            header[tag] = _bool(tokens, tag, where)
        elif tag in INT_TAGS:
            if len(tokens) != 1 or not tokens[0].isdigit() or int(tokens[0]) < 1:
                raise DatasetError(f"{where}: @{tag} needs one positive integer, got {rest!r}")
            header[tag] = int(tokens[0])
        elif tag == "classlabel":
            flag = _bool(tokens[:1], tag, where)
            if flag and len(tokens) < 2:
                raise DatasetError(f"{where}: @classLabel true needs the class labels after it")
            if not flag and len(tokens) > 1:
                raise DatasetError(f"{where}: @classLabel false takes no labels")
            header["classlabel"] = tokens[1:] if flag else None
    raise DatasetError(f"{name}: no @data line (end of file at line {len(lines)})")


def _bool(tokens: list[str], tag: str, where: str) -> bool:
    if len(tokens) < 1 or tokens[0].lower() not in ("true", "false"):
        raise DatasetError(f"{where}: @{tag} needs 'true' or 'false', got {' '.join(tokens)!r}")
    return tokens[0].lower() == "true"


def _values(part: str, where: str, dim: int) -> np.ndarray:
    tokens = part.replace("?", "nan").split(",")
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise DatasetError(f"{where}: dimension {dim}: {bad.strip()!r} is not a number") from None
    if not len(values) or (len(tokens) == 1 and not tokens[0].strip()):
        raise DatasetError(f"{where}: dimension {dim} is empty")
    return values


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _stack(cases, numbers, header, name, unequal):
    lengths = np.array([c.shape[1] for c in cases])
    expected = header.get("serieslength")
    if expected is not None and (lengths == lengths[0]).all() and lengths[0] != expected:
        # Archive files exist whose @seriesLength is off by one (EyesOpenShut says 127 and
        # holds 128): equal-length cases are trusted and the disagreement is recorded.
        header["serieslength_declared"] = expected
        header["serieslength"] = int(lengths[0])
    if (lengths == lengths[0]).all():
        return np.stack(cases).astype(np.float64, copy=False)
    i = int(np.flatnonzero(lengths != lengths[0])[0])
    if header.get("equallength") is True:
        raise DatasetError(
            f"{name}, line {numbers[i]}: {lengths[i]} values per dimension, the first case has "
            f"{lengths[0]}, but @equalLength is true"
        )
    if unequal == "list":
        return cases
    raise DatasetError(
        f"{name}: cases of unequal length ({lengths.min()} to {lengths.max()} values; "
        f"first difference at line {numbers[i]}); read it with unequal='list'"
    )
