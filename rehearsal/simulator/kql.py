"""A small KQL subset over in-memory tables: where, project, take/limit, order/sort, top, count,
summarize count() by, distinct. Anything else is rejected the way Log Analytics rejects bad queries."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rehearsal.simulator.timefmt import parse_time

Row = dict[str, Any]
Predicate = Callable[[Row], bool]
_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<dt>datetime\(\s*(?P<dtval>"[^"]*"|'[^']*'|[^)]*?)\s*\))
      | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<span>\d+(?:\.\d+)?(?:ms|d|h|m|s))(?![A-Za-z0-9_])
      | (?P<num>\d+(?:\.\d+)?)(?![A-Za-z_])
      | (?P<op>==|!=|=~|!~|>=|<=|\.\.|[<>(),=])
      | (?P<word>!?[A-Za-z_][A-Za-z0-9_]*~?)""",
    re.VERBOSE | re.IGNORECASE,
)
_ESCAPE = re.compile(r"\\(.)")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
_SPAN_UNITS = {"ms": 0.001, "d": 86400, "h": 3600, "m": 60, "s": 1}
_STRING_OPS = {
    "has",
    "has_cs",
    "contains",
    "contains_cs",
    "startswith",
    "startswith_cs",
    "endswith",
    "endswith_cs",
    "in",
    "in~",
    "between",
}


class KqlError(Exception):
    """A query Log Analytics would refuse; code is its inner error code (SyntaxError/SemanticError)."""

    def __init__(self, code: str, message: str, engine_code: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.engine_code = engine_code  # the Kusto code (e.g. SEM0100) Log Analytics nests inside


@dataclass
class Table:
    """Rows plus an ordered (name, type) schema."""

    columns: list[tuple[str, str]]
    rows: list[Row]

    def column(self, name: str) -> str:
        """The column's canonical name; KQL column names are case-sensitive."""
        if name not in {c for c, _ in self.columns}:
            raise KqlError("SemanticError", f"Failed to resolve scalar expression named '{name}'")
        return name


def infer_type(values: list[Any]) -> str:
    """Log Analytics column type from the values present (nulls ignored)."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "bool"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "long"
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return "real"
    if present and all(isinstance(v, str) and _ISO.match(v) for v in present):
        return "datetime"
    return "string"


def table_from_rows(rows: list[Row]) -> Table:
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return Table([(n, infer_type([r.get(n) for r in rows])) for n in names], [dict(r) for r in rows])


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise KqlError("SyntaxError", f"Syntax error near '{text[pos : pos + 20]}'")
        pos = match.end()
        kind = match.lastgroup or ""
        if kind == "dtval":
            kind = "dt"
        if kind == "dt":
            tokens.append(("dt", match.group("dtval").strip("\"'")))
        elif kind != "ws":
            tokens.append((kind, match.group(kind)))
    return tokens


def split_pipes(query: str) -> list[str]:
    """Split on | outside string literals, after dropping whole-line // comments."""
    lines = [ln for ln in query.splitlines() if not ln.strip().startswith("//")]
    text, parts, current, quote = "\n".join(lines), [], [], ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "|":
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts]


class _Cursor:
    """Token reader shared by the operator parsers."""

    def __init__(self, tokens: list[tuple[str, str]], now: datetime) -> None:
        self.tokens, self.i, self.now = tokens, 0, now

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def at(self, kind: str, value: str | None = None, offset: int = 0) -> bool:
        token = self.peek(offset)
        return bool(token and token[0] == kind and (value is None or token[1].lower() == value))

    def take(self, kind: str, value: str | None = None) -> str:
        token = self.peek()
        if not self.at(kind, value):
            found = token[1] if token else "end of query"
            raise KqlError("SyntaxError", f"Syntax error: expected {value or kind}, found '{found}'")
        self.i += 1
        return token[1] if token else ""

    def done(self) -> None:
        if self.peek() is not None:
            raise KqlError("SyntaxError", f"Syntax error: unexpected '{self.peek()[1]}'")  # type: ignore[index]

    def names(self) -> list[str]:
        names = [self.take("word")]
        while self.at("op", ","):
            self.i += 1
            names.append(self.take("word"))
        return names

    def literal(self) -> Any:
        token = self.peek()
        if token is None:
            raise KqlError("SyntaxError", "Syntax error: expected a value")
        kind, value = token
        self.i += 1
        if kind == "str":
            return _ESCAPE.sub(lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), value[1:-1])
        if kind == "num":
            return float(value) if "." in value else int(value)
        if kind == "span":
            return _span(value)
        if kind == "dt":
            try:
                return parse_time(value)
            except ValueError as exc:
                raise KqlError("SyntaxError", f"Invalid datetime literal '{value}'") from exc
        if kind == "word" and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if kind == "word" and value.lower() in ("ago", "now"):
            self.take("op", "(")
            span = timedelta(0) if self.at("op", ")") else self.literal()
            self.take("op", ")")
            if not isinstance(span, timedelta):
                raise KqlError("SyntaxError", f"{value}() expects a timespan")
            return self.now - span if value.lower() == "ago" else self.now + span
        raise KqlError("SyntaxError", f"Syntax error: unexpected '{value}'")


def _span(text: str) -> timedelta:
    unit = "ms" if text.lower().endswith("ms") else text[-1].lower()
    return timedelta(seconds=float(text[: -len(unit)]) * _SPAN_UNITS[unit])


def _coerce(cell: Any, like: Any) -> Any:
    """Bring a cell to the literal's type, or None when it cannot be."""
    if cell is None:
        return None
    try:
        if isinstance(like, datetime):
            return cell if isinstance(cell, datetime) else parse_time(str(cell))
        if isinstance(like, bool):
            return cell if isinstance(cell, bool) else str(cell).lower() == "true"
        if isinstance(like, int | float):
            return float(cell)
    except (TypeError, ValueError):
        return None
    if isinstance(cell, bool):
        return "true" if cell else "false"
    return str(cell)


def _has(cell: str, term: str, flags: int) -> bool:
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(term)}(?![A-Za-z0-9])", cell, flags) is not None


def _compare(op: str, cell: Any, value: Any) -> bool:
    """Evaluate one comparison; string operators without _cs are case-insensitive, as in KQL."""
    if op in ("in", "in~"):
        cells = [_coerce(cell, v) for v in value]
        if op == "in~":
            pairs = zip(cells, value, strict=True)
            return any(isinstance(c, str) and c.lower() == str(v).lower() for c, v in pairs)
        return any(c == v for c, v in zip(cells, value, strict=True))
    if op == "between":
        low, high = value
        other = _coerce(cell, low)
        try:
            return other is not None and low <= other <= high
        except TypeError:
            return False
    other = _coerce(cell, value)
    if op in ("==", "!="):
        return (other == value) == (op == "==")
    if op in ("=~", "!~"):
        same = isinstance(other, str) and other.lower() == str(value).lower()
        return same == (op == "=~")
    if op in ("<", ">", "<=", ">="):
        if other is None or isinstance(other, bool):
            return False
        try:
            return {"<": other < value, ">": other > value, "<=": other <= value, ">=": other >= value}[op]
        except TypeError:
            return False
    text, term = other or "", str(value)
    flags = 0 if op.endswith("_cs") else re.IGNORECASE
    base = op.removesuffix("_cs")
    if base == "has":
        return _has(text, term, flags)
    if base == "contains":
        return re.search(re.escape(term), text, flags) is not None
    if base == "startswith":
        return re.match(re.escape(term), text, flags) is not None
    return re.search(re.escape(term) + r"\Z", text, flags) is not None  # endswith


class _Where:
    """Recursive-descent parser for where conditions (or / and / not / parentheses)."""

    def __init__(self, cur: _Cursor, table: Table) -> None:
        self.cur, self.table = cur, table

    def expr(self) -> Predicate:
        parts = [self.conj()]
        while self.cur.at("word", "or"):
            self.cur.i += 1
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else lambda row: any(p(row) for p in parts)

    def conj(self) -> Predicate:
        parts = [self.atom()]
        while self.cur.at("word", "and"):
            self.cur.i += 1
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else lambda row: all(p(row) for p in parts)

    def atom(self) -> Predicate:
        cur = self.cur
        if cur.at("op", "("):
            cur.i += 1
            inner = self.expr()
            cur.take("op", ")")
            return inner
        if cur.at("word", "not") and cur.at("op", "(", 1):
            cur.i += 1
            negated = self.atom()
            return lambda row: not negated(row)
        if cur.at("word") and cur.at("op", "(", 1):
            return self.function()
        column = self.table.column(cur.take("word"))
        return self.comparison(column)

    def function(self) -> Predicate:
        name = self.cur.take("word").lower()
        self.cur.take("op", "(")
        column = self.table.column(self.cur.take("word"))
        self.cur.take("op", ")")
        empty = {"isempty": True, "isnull": True, "isnotempty": False, "isnotnull": False}
        if name not in empty:
            raise KqlError("SemanticError", f"Unsupported function '{name}'")
        wanted = empty[name]
        if name.endswith("null"):
            return lambda row: (row.get(column) is None) == wanted
        return lambda row: (row.get(column) in (None, "")) == wanted

    def comparison(self, column: str) -> Predicate:
        cur = self.cur
        token = cur.peek()
        if token is None:
            raise KqlError("SyntaxError", "Syntax error: expected an operator")
        cur.i += 1
        op = token[1].lower()
        negate = token[0] == "word" and op.startswith("!")
        op = op.removeprefix("!") if negate else op
        if token[0] == "op" and op in ("==", "!=", "=~", "!~", "<", ">", "<=", ">="):
            value: Any = cur.literal()
        elif token[0] == "word" and op in _STRING_OPS:
            value = self.operand(op)
        else:
            raise KqlError("SyntaxError", f"Syntax error: unsupported operator '{token[1]}'")
        return lambda row: _compare(op, row.get(column), value) != negate

    def operand(self, op: str) -> Any:
        cur = self.cur
        if op in ("in", "in~"):
            cur.take("op", "(")
            values = [cur.literal()]
            while cur.at("op", ","):
                cur.i += 1
                values.append(cur.literal())
            cur.take("op", ")")
            return values
        if op == "between":
            cur.take("op", "(")
            low = cur.literal()
            cur.take("op", "..")
            high = cur.literal()
            cur.take("op", ")")
            return (low, high)
        return cur.literal()


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, bool | int | float):
        return (1, float(value))
    return (2, str(value))


def _order(table: Table, cur: _Cursor) -> Table:
    keys: list[tuple[str, bool]] = []
    while True:
        column = table.column(cur.take("word"))
        descending = True  # KQL sorts descending unless told otherwise
        if cur.at("word", "asc") or cur.at("word", "desc"):
            descending = cur.take("word").lower() == "desc"
        if cur.at("word", "nulls"):
            cur.i += 1
            cur.take("word")
        keys.append((column, descending))
        if not cur.at("op", ","):
            break
        cur.i += 1
    rows = list(table.rows)
    for column, descending in reversed(keys):
        rows.sort(key=lambda r, c=column: _sort_key(r.get(c)), reverse=descending)
    return Table(table.columns, rows)


def _count_of(cur: _Cursor) -> int:
    value = cur.literal()
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise KqlError("SyntaxError", "take/limit/top expect a non-negative integer")
    return value


def _summarize(table: Table, cur: _Cursor) -> Table:
    alias = "count_"
    if cur.at("word") and cur.at("op", "=", 1):
        alias = cur.take("word")
        cur.take("op", "=")
    if cur.take("word").lower() != "count":
        raise KqlError("SemanticError", "Only summarize count() is supported")
    cur.take("op", "(")
    cur.take("op", ")")
    by: list[str] = []
    if cur.at("word", "by"):
        cur.i += 1
        by = [table.column(c) for c in cur.names()]
    groups: dict[tuple[Any, ...], int] = {}
    for row in table.rows:
        key = tuple(row.get(c) for c in by)
        groups[key] = groups.get(key, 0) + 1
    types = dict(table.columns)
    rows = [{**dict(zip(by, key, strict=True)), alias: n} for key, n in groups.items()]
    return Table([(c, types[c]) for c in by] + [(alias, "long")], rows)


def _apply(table: Table, segment: str, now: datetime) -> Table:
    cur = _Cursor(tokenize(segment), now)
    name = cur.take("word").lower()
    if name in ("where", "filter"):
        predicate = _Where(cur, table).expr()
        result = Table(table.columns, [r for r in table.rows if predicate(r)])
    elif name in ("project", "distinct"):
        columns = [table.column(c) for c in cur.names()]
        types = dict(table.columns)
        rows = [{c: r.get(c) for c in columns} for r in table.rows]
        if name == "distinct":
            rows = list({tuple(r.values()): r for r in rows}.values())
        result = Table([(c, types[c]) for c in columns], rows)
    elif name in ("take", "limit"):
        result = Table(table.columns, table.rows[: _count_of(cur)])
    elif name in ("order", "sort"):
        cur.take("word", "by")
        result = _order(table, cur)
    elif name == "top":
        n = _count_of(cur)
        cur.take("word", "by")
        ordered = _order(table, cur)
        result = Table(ordered.columns, ordered.rows[:n])
    elif name == "count":
        result = Table([("Count", "long")], [{"Count": len(table.rows)}])
    elif name == "summarize":
        result = _summarize(table, cur)
    else:
        raise KqlError("SyntaxError", f"Unsupported query operator '{name}'")
    cur.done()
    return result


def run_query(
    tables: dict[str, list[Row]], query: str, start: datetime | None, end: datetime | None, now: datetime
) -> Table:
    """Evaluate a query over seeded tables, keeping only rows whose TimeGenerated is in [start, end]."""
    segments = split_pipes(query)
    head = tokenize(segments[0])
    if len(head) != 1 or head[0][0] != "word":
        raise KqlError("SyntaxError", "A query must start with a table name")
    name = head[0][1]
    if name not in tables:
        # a workspace has a table only once something sends it data (MicrosoftDocs/azure-docs#78711)
        operator = tokenize(segments[1])[0][1] if len(segments) > 1 and tokenize(segments[1]) else ""
        prefix = f"'{operator}' operator: " if operator else ""
        raise KqlError(
            "SemanticError", f"{prefix}Failed to resolve table or column expression named '{name}'", "SEM0100"
        )
    table = table_from_rows(tables[name])
    if start is not None and end is not None and any(c == "TimeGenerated" for c, _ in table.columns):
        kept = []
        for row in table.rows:
            stamp = _coerce(row.get("TimeGenerated"), start)
            if stamp is not None and start <= stamp <= end:
                kept.append(row)
        table = Table(table.columns, kept)
    for segment in segments[1:]:
        if not segment:
            raise KqlError("SyntaxError", "Syntax error: empty pipe segment")
        table = _apply(table, segment, now)
    return table


def to_response(table: Table) -> dict[str, Any]:
    """The Log Analytics query API body for one result table."""
    names = [c for c, _ in table.columns]
    return {
        "tables": [
            {
                "name": "PrimaryResult",
                "columns": [{"name": c, "type": t} for c, t in table.columns],
                "rows": [[row.get(c) for c in names] for row in table.rows],
            }
        ]
    }
