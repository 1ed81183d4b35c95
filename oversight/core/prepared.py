"""Read queries compiled once per process: the participant path's SQL is the same on every request.

Compiling a queryset costs more than running it. On the participant path, Django building the SQL for "this
participant with their study" and "their trials" again on every answer took about a fifth of the web process's
CPU under issue 15's burst (py-spy): more than SQLite spent executing them. A `PreparedQuery` is written as an
ordinary queryset, compiled the first time it runs on a database, and afterwards only its parameters change. Its
rows become model instances exactly as Django's own iterator makes them (`Model.from_db`, the backend's and the
fields' converters, `select_related` populated), so the caller cannot tell the difference, except in speed.

Only plain model querysets: no annotations, no `prefetch_related`, no `values()`. The compile checks that each
parameter appears exactly once in the SQL's parameters, so a queryset that transforms one is refused at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.query import ModelIterable, get_related_populators

# Stand-ins the queryset is compiled with, found again in the compiled parameters. An int must lie within every
# integer field's range (Django turns an out-of-range lookup into "no rows" before any SQL exists), so it cannot
# be unlike every real value: a constant equal to one in the queryset is caught by the count in `_compile`.
_MARKERS = {str: lambda i: f"\x1eprepared-parameter-{i}\x1e", int: lambda i: 32_017 + i}


@dataclass(frozen=True)
class _Compiled:
    model: type[Model]
    sql: str
    params: tuple  # the compiled parameters; where `slots` says, the caller's values go instead
    slots: tuple[int | None, ...]
    init_list: list[str]
    fields_slice: slice
    converters: list[tuple[int, list, object]]
    populators: list


class PreparedQuery:
    """`PreparedQuery(lambda token: Participant.objects.filter(token=token), str)`; then `query(token)` gives the
    list of instances, `query.first(token)` the first or None."""

    def __init__(self, build: Callable[..., QuerySet], *types: type) -> None:
        self._build = build
        self._types = types
        self._compiled: dict[tuple, _Compiled] = {}
        self._lock = threading.Lock()

    def __call__(self, *values, using: str = "default") -> list[Model]:
        return [self.instance(row, using=using) for row in self.rows(*values, using=using)]

    def first(self, *values, using: str = "default") -> Model | None:
        rows = self.rows(*values, using=using)
        return self.instance(rows[0], using=using) if rows else None

    def rows(self, *values, using: str = "default") -> list[tuple]:
        """The rows as the database gave them: for a caller that turns only some of them into instances."""
        compiled = self._compiled_for(using)
        params = [compiled.params[i] if slot is None else values[slot] for i, slot in enumerate(compiled.slots)]
        with connections[using].cursor() as cursor:
            cursor.execute(compiled.sql, params)
            return cursor.fetchall()

    def instance(self, row: tuple, *, using: str = "default") -> Model:
        """One of `rows()` as the model instance Django's own iterator would have made of it."""
        compiled = self._compiled_for(using)
        if compiled.converters:
            connection = connections[using]
            row = list(row)
            for position, converters, expression in compiled.converters:
                value = row[position]
                for converter in converters:
                    value = converter(value, expression, connection)
                row[position] = value
        obj = compiled.model.from_db(using, compiled.init_list, row[compiled.fields_slice])
        for populator in compiled.populators:
            populator.populate(row, obj)
        return obj

    def index(self, attname: str, *, using: str = "default") -> int:
        """Where the model's field `attname` is in a row of `rows()` (unconverted there: plain columns only)."""
        compiled = self._compiled_for(using)
        return compiled.fields_slice.start + compiled.init_list.index(attname)

    def _compiled_for(self, using: str) -> _Compiled:
        return self._compiled.get((using, connections[using].vendor)) or self._compile(using)

    def _compile(self, using: str) -> _Compiled:
        markers = [_MARKERS[t](i) for i, t in enumerate(self._types)]
        queryset = self._build(*markers)
        plain = queryset._iterable_class is ModelIterable and not queryset._prefetch_related_lookups
        if not plain or queryset.query.annotations:
            raise ValueError("PreparedQuery takes plain model querysets only")
        compiler = queryset.query.get_compiler(using=using)
        sql, params = compiler.as_sql()
        slots = tuple(markers.index(p) if p in markers else None for p in params)
        for i in range(len(markers)):
            if slots.count(i) != 1:
                raise ValueError(f"parameter {i} of the prepared query appears {slots.count(i)} times in its SQL")
        select, klass_info = compiler.select, compiler.klass_info
        fields = klass_info["select_fields"]
        converters = compiler.get_converters([s[0] for s in select[: compiler.col_count]])
        compiled = _Compiled(
            model=klass_info["model"],
            sql=sql,
            params=tuple(params),
            slots=slots,
            init_list=[f[0].target.attname for f in select[fields[0] : fields[-1] + 1]],
            fields_slice=slice(fields[0], fields[-1] + 1),
            converters=[(position, convs, expression) for position, (convs, expression) in converters.items()],
            populators=get_related_populators(klass_info, select, using),
        )
        with self._lock:
            self._compiled[(using, compiler.connection.vendor)] = compiled
        return compiled


_INSERTS: dict[tuple, tuple[str, list]] = {}


def insert_rows(objs: list[Model], *, using: str = "default") -> None:
    """INSERT `objs` (new rows of one model) in one statement, reading nothing back: their primary keys stay
    unset. For rows written on every request that nothing reads in the same request (the participant path's
    events); `bulk_create` compiled its INSERT anew each time and asked for the new ids."""
    if not objs:
        return
    model = type(objs[0])
    connection = connections[using]
    key = (model, len(objs), using, connection.vendor)
    if key not in _INSERTS:
        pk, quote = model._meta.pk, connection.ops.quote_name
        fields = [f for f in model._meta.local_concrete_fields if not (f is pk and f.db_returning)]
        columns = ", ".join(quote(f.column) for f in fields)
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES {', '.join([row] * len(objs))}"
        _INSERTS[key] = (sql, fields)
    sql, fields = _INSERTS[key]
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for obj in objs for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


_UPDATES: dict[tuple, tuple[str, list, list]] = {}


def update_where(model: type[Model], *, where: dict, values: dict, using: str = "default") -> int:
    """`model.objects.filter(**where).update(**values)` for equalities on concrete fields, its SQL built once per
    shape (the names in `where` and `values`); the number of rows changed. The participant path's conditional
    writes ("answer this trial if it is still shown") are two of these per answer."""
    connection = connections[using]
    key = (model, tuple(where), tuple(values), using, connection.vendor)
    if key not in _UPDATES:
        meta, quote = model._meta, connection.ops.quote_name
        set_fields = [meta.get_field(name) for name in values]
        where_fields = [meta.get_field(name) for name in where]
        assignments = ", ".join(f"{quote(f.column)} = %s" for f in set_fields)
        conditions = " AND ".join(f"{quote(f.column)} = %s" for f in where_fields)
        sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {conditions}"
        _UPDATES[key] = (sql, set_fields, where_fields)
    sql, set_fields, where_fields = _UPDATES[key]
    params = [f.get_db_prep_save(v, connection) for f, v in zip(set_fields, values.values(), strict=True)]
    params += [f.get_db_prep_value(v, connection) for f, v in zip(where_fields, where.values(), strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount
