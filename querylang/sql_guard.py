"""The raw-SQL guard: one read-only SELECT over the documented views, or a reason why not.

`guard` checks a statement and returns the SQL to run; `run_sql` guards, runs it as
the tenant through the storage console and names the database's refusals as query
errors.

The guard is the first of two walls around `POST /v1/sql`; the second is the
database itself (sql/0005_sql_reader.sql: a reader role that may only read the views,
row-level security on the tenant, a read-only transaction, a statement timeout).
The statement the database runs is generated from the checked sqlglot tree, never the
text the tenant sent, so comments, quoting tricks and parser differences cannot smuggle
anything past the checks: what was checked is what runs.

Checks are an ordered tuple of small functions over the parsed tree; each raises
SqlRejected naming the construct it refuses. Functions, cast types and relations are
allowlists: anything the guard does not know is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol
from uuid import UUID

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from querylang.errors import EvaluationError, QueryLimitExceeded, QueryTimeout, SqlRejected
from storage.sql_console import SqlDataError, SqlInvalid, SqlResourceLimit, SqlRows, SqlTimeout

VIEWS_SCHEMA = "query"
"""The schema of the views tenants read (sql/repeatable/query_views.sql)."""

VIEWS = frozenset({"samples", "series"})
"""The documented views: the only relations a statement may read besides its CTEs."""

MAX_SQL_CHARS = 100_000
MAX_NESTING = 32
"""Deepest parenthesis nesting a statement may have: the parser recurses per level, and
refusing before it parses keeps it far from Python's recursion limit (where it would
fail near depth 45, and any finalizer that ran in that stack would fail too)."""

_DIALECT = "postgres"

# Functions sqlglot parses into typed nodes, by node class. Exact classes only: a
# subclass sqlglot adds later is refused until someone vets what it generates.
TYPED_FUNCTIONS: frozenset[type[exp.Expr]] = frozenset(
    {
        # aggregates
        exp.Count,
        exp.Sum,
        exp.Avg,
        exp.Min,
        exp.Max,
        exp.Stddev,
        exp.StddevPop,
        exp.StddevSamp,
        exp.Variance,
        exp.VariancePop,
        exp.PercentileCont,
        exp.PercentileDisc,
        exp.Mode,
        exp.LogicalAnd,
        exp.LogicalOr,
        exp.ArrayAgg,
        exp.GroupConcat,
        exp.JSONArrayAgg,
        exp.JSONBObjectAgg,
        exp.Corr,
        exp.CovarPop,
        exp.CovarSamp,
        exp.RegrSlope,
        exp.RegrIntercept,
        exp.RegrR2,
        exp.RegrCount,
        # window functions
        exp.RowNumber,
        exp.Rank,
        exp.DenseRank,
        exp.PercentRank,
        exp.CumeDist,
        exp.Ntile,
        exp.Lag,
        exp.Lead,
        exp.FirstValue,
        exp.LastValue,
        exp.NthValue,
        # math
        exp.Abs,
        exp.Ceil,
        exp.Floor,
        exp.Round,
        exp.Trunc,
        exp.Sqrt,
        exp.Cbrt,
        exp.Exp,
        exp.Ln,
        exp.Log,
        exp.Pow,
        exp.Sign,
        exp.Pi,
        exp.Degrees,
        exp.Radians,
        exp.Sin,
        exp.Cos,
        exp.Tan,
        exp.Asin,
        exp.Acos,
        exp.Atan,
        exp.Atan2,
        exp.WidthBucket,
        # conditionals and logic
        exp.Coalesce,
        exp.Nullif,
        exp.Greatest,
        exp.Least,
        exp.Case,
        exp.If,
        exp.And,
        exp.Or,
        # strings
        exp.Lower,
        exp.Upper,
        exp.Length,
        exp.Substring,
        exp.Replace,
        exp.Concat,
        exp.ConcatWs,
        exp.Left,
        exp.Right,
        exp.Trim,
        exp.SplitPart,
        exp.StrPosition,
        exp.StartsWith,
        exp.RegexpReplace,
        exp.RegexpLike,
        exp.RegexpILike,
        exp.Initcap,
        exp.Reverse,
        exp.MD5,
        exp.TimeToStr,
        exp.ToNumber,
        # dates and times
        exp.CurrentTimestamp,
        exp.CurrentDate,
        exp.TimestampTrunc,
        exp.Extract,
        exp.DateBin,
        exp.UnixToTime,
        exp.MakeInterval,
        exp.JustifyInterval,
        exp.JustifyDays,
        exp.JustifyHours,
        # jsonb operators
        exp.JSONExtract,
        exp.JSONExtractScalar,
        exp.JSONBExtract,
        exp.JSONBExtractScalar,
        exp.JSONBContainsTopKey,
        exp.JSONBContainsAnyTopKeys,
        exp.JSONBContainsAllTopKeys,
        exp.ArrayContainsAll,
        exp.ArrayContainedBy,
        # arrays and casts
        exp.Array,
        exp.Unnest,
        exp.Explode,
        exp.ArraySize,
        exp.ArrayPosition,
        exp.ArrayToString,
        exp.Cast,
    }
)

# Functions sqlglot leaves as plain calls, by PostgreSQL name. `time_bucket` is the
# wrapper in the views schema, not TimescaleDB's own (which tenants cannot reach).
NAMED_FUNCTIONS = frozenset(
    {
        "every",
        "jsonb_agg",
        "regexp_match",
        "regexp_matches",
        "regexp_split_to_array",
        "age",
        "isfinite",
        "time_bucket",
        "jsonb_extract_path",
        "jsonb_extract_path_text",
        "jsonb_object_keys",
        "jsonb_typeof",
        "jsonb_array_length",
        "jsonb_build_object",
        "jsonb_build_array",
        "jsonb_strip_nulls",
        "jsonb_each",
        "jsonb_each_text",
        "jsonb_array_elements",
        "jsonb_array_elements_text",
        "to_jsonb",
        "cardinality",
        "num_nulls",
        "num_nonnulls",
        "row",
    }
)

# Refused with a reason of their own: they make rows or memory out of nothing.
_UNBOUNDED: dict[type[exp.Expr], str] = {
    exp.GenerateSeries: "generate_series",
    exp.ExplodingGenerateSeries: "generate_series",
}

CAST_TYPES = frozenset(
    {
        exp.DataType.Type.TEXT,
        exp.DataType.Type.VARCHAR,
        exp.DataType.Type.CHAR,
        exp.DataType.Type.SMALLINT,
        exp.DataType.Type.INT,
        exp.DataType.Type.BIGINT,
        exp.DataType.Type.DECIMAL,
        exp.DataType.Type.FLOAT,
        exp.DataType.Type.DOUBLE,
        exp.DataType.Type.BOOLEAN,
        exp.DataType.Type.DATE,
        exp.DataType.Type.TIME,
        exp.DataType.Type.TIMETZ,
        exp.DataType.Type.TIMESTAMP,
        exp.DataType.Type.TIMESTAMPTZ,
        exp.DataType.Type.INTERVAL,
        exp.DataType.Type.JSON,
        exp.DataType.Type.JSONB,
        exp.DataType.Type.UUID,
        exp.DataType.Type.ARRAY,
    }
)

_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\(")

_STATEMENTS = (
    exp.DML,
    exp.DDL,
    exp.Drop,
    exp.Alter,
    exp.TruncateTable,
    exp.Grant,
    exp.Command,
    exp.Set,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
)


def guard(text: str) -> str:
    """The statement the database should run for `text`, or SqlRejected saying why not."""
    try:
        tree = _parse(text)
        for check in _CHECKS:
            check(tree)
        _qualify_views(tree, frozenset())
        checked = tree.sql(dialect=_DIALECT, comments=False, identify=True)
        # What runs is checked again as the database will read it: a generator quirk
        # that turned an allowed node into something else would be refused here.
        again = _parse(checked)
        for check in _CHECKS:
            check(again)
        _qualify_views(again, frozenset())
    except RecursionError:
        raise SqlRejected("the statement is nested too deeply") from None
    return checked


class SqlRunner(Protocol):
    """What runs a guarded statement as a tenant: storage's SqlConsole."""

    def run(self, tenant_id: UUID, statement: str) -> SqlRows:
        """The statement's rows as the tenant may see them."""
        ...


def run_sql(runner: SqlRunner, tenant_id: UUID, text: str) -> SqlRows:
    """Guard `text`, run it as the tenant, and raise the query error for any failure."""
    statement = guard(text)
    try:
        return runner.run(tenant_id, statement)
    except SqlTimeout as exc:
        raise QueryTimeout(str(exc)) from exc
    except SqlResourceLimit as exc:
        raise QueryLimitExceeded(f"the statement exceeded a limit: {exc}") from exc
    except SqlInvalid as exc:
        raise SqlRejected(f"the database refused the statement: {exc}") from exc
    except SqlDataError as exc:
        raise EvaluationError(f"the statement failed: {exc}") from exc


def _nesting(text: str) -> int:
    """The deepest parenthesis nesting of `text` outside quotes and comments."""
    depth = deepest = 0
    position, length = 0, len(text)
    while position < length:
        char = text[position]
        if char in "'\"":
            end = text.find(char, position + 1)
            position = length if end < 0 else end + 1
            continue
        if text.startswith("--", position):
            end = text.find("\n", position)
            position = length if end < 0 else end + 1
            continue
        if text.startswith("/*", position):
            end = text.find("*/", position + 2)
            position = length if end < 0 else end + 2
            continue
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
        position += 1
    return deepest


def _parse(text: str) -> exp.Expr:
    if len(text) > MAX_SQL_CHARS:
        raise SqlRejected(f"the statement is longer than {MAX_SQL_CHARS} characters")
    if _nesting(text) > MAX_NESTING:
        raise SqlRejected(
            f"the statement is nested too deeply (more than {MAX_NESTING} parentheses)"
        )
    try:
        parsed = sqlglot.parse(text, dialect=_DIALECT)
        # A trailing comment after the last `;` parses as a Semicolon node: not a statement.
        statements = [s for s in parsed if s is not None and not isinstance(s, exp.Semicolon)]
    except SqlglotError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax error"
        raise SqlRejected(f"cannot parse the statement: {first}") from None
    if len(statements) != 1:
        raise SqlRejected(f"expected exactly one statement, got {len(statements)}")
    tree: exp.Expr = normalize_identifiers(statements[0], dialect=_DIALECT)
    return tree


def _one_select(tree: exp.Expr) -> None:
    """The statement is a SELECT or a set operation of SELECTs, maybe in parentheses."""
    query = tree.unnest() if isinstance(tree, exp.Subquery) else tree
    if not isinstance(query, exp.Select | exp.SetOperation):
        raise SqlRejected(f"only a SELECT statement is allowed, not {_statement_name(query)}")


def _read_only(tree: exp.Expr) -> None:
    """No statement inside (data-modifying CTEs), no INTO, no locking clause."""
    for node in tree.walk():
        if node is not tree and isinstance(node, _STATEMENTS):
            raise SqlRejected(
                f"{_statement_name(node)} inside a SELECT is not allowed: statements are read-only"
            )
        if isinstance(node, exp.Select):
            if node.args.get("into"):
                raise SqlRejected("SELECT ... INTO is not allowed: statements are read-only")
            for lock in node.args.get("locks") or ():
                raise SqlRejected(f"locking clause {lock.sql(dialect=_DIALECT)} is not allowed")
        if isinstance(node, exp.With) and node.recursive:
            raise SqlRejected("WITH RECURSIVE is not allowed")


def _no_parameters(tree: exp.Expr) -> None:
    """No bind parameters: values are written into the statement."""
    for node in tree.find_all(exp.Placeholder, exp.Parameter, exp.SessionParameter):
        raise SqlRejected(
            f"parameter {node.sql(dialect=_DIALECT)} is not supported: write values inline"
        )


def _allowed_functions(tree: exp.Expr) -> None:
    """Every function is on the allowlist and called by its bare name."""
    for node in tree.find_all(exp.Func):
        name = _function_name(node)
        if isinstance(node.parent, exp.Dot) and node.arg_key == "expression":
            qualifier = node.parent.this.sql(dialect=_DIALECT)
            raise SqlRejected(
                f"function {qualifier}.{name} is not allowed: call functions unqualified"
            )
        if type(node) in _UNBOUNDED:
            raise SqlRejected(
                f"function {_UNBOUNDED[type(node)]} is not allowed: it can make unbounded rows; "
                "use VALUES or the data in samples instead"
            )
        if isinstance(node, exp.Anonymous):
            if name not in NAMED_FUNCTIONS:
                raise SqlRejected(f"function {name} is not allowed")
        elif type(node) not in TYPED_FUNCTIONS:
            raise SqlRejected(f"function {name} is not allowed")


def _allowed_types(tree: exp.Expr) -> None:
    """Casts and column definitions use plain data types (no regclass, xml, oid …)."""
    for node in tree.find_all(exp.DataType):
        if node.this not in CAST_TYPES:
            raise SqlRejected(f"type {node.sql(dialect=_DIALECT).lower()} is not allowed")


_CHECKS: tuple[Callable[[exp.Expr], None], ...] = (
    _one_select,
    _read_only,
    _no_parameters,
    _allowed_functions,
    _allowed_types,
)


def _qualify_views(node: exp.Expr, ctes: frozenset[str]) -> None:
    """Resolve every relation to a CTE in scope or a documented view, qualifying views.

    Scope follows PostgreSQL: a CTE is visible to later CTEs of its WITH and to the
    query that owns the WITH, including its subqueries, and shadows a view of its name.
    """
    with_ = node.args.get("with_")
    if isinstance(with_, exp.With):
        for cte in with_.expressions:
            _qualify_views(cte.this, ctes)
            ctes = ctes | {cte.alias_or_name}
    if isinstance(node, exp.Table):
        _qualify_view(node, ctes)
    for child in node.iter_expressions():
        if child is not with_:
            _qualify_views(child, ctes)


def _qualify_view(table: exp.Table, ctes: frozenset[str]) -> None:
    if table.this is None or isinstance(table.this, exp.Func):
        return  # a function in FROM (or ROWS FROM): _allowed_functions checks it
    name, schema = table.name, table.db
    if table.catalog or not isinstance(table.this, exp.Identifier):
        raise SqlRejected(f"relation {table.sql(dialect=_DIALECT)} is not allowed: {_READABLE}")
    if not schema and name in ctes:
        return
    if schema in ("", VIEWS_SCHEMA) and name in VIEWS:
        table.set("db", exp.to_identifier(VIEWS_SCHEMA))
        return
    shown = f"{schema}.{name}" if schema else name
    raise SqlRejected(f"relation {shown} is not allowed: {_READABLE}")


_READABLE = "statements read only the views " + ", ".join(sorted(VIEWS)) + " and their own CTEs"


def _function_name(node: exp.Func) -> str:
    """The name a person wrote: PostgreSQL's own where sqlglot renders a call, e.g. `lpad`."""
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    called = _CALL.match(node.sql(dialect=_DIALECT))
    return (called[1] if called else node.sql_name()).lower()


def _statement_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return node.key.upper()
