"""The Dataverse Web API v9.2 resources under `/api/data/v9.2/`: entity sets and records, single
properties, `$count`, WhoAmI, the service document, `$metadata`, `EntityDefinitions` and the
CreateMultiple/UpdateMultiple/UpsertMultiple actions. `$batch` (batch.py) calls back into `WebApi.handle`
for each part, so a request behaves the same inside and outside a batch.

Query semantics follow "Query data using the Web API": `Prefer: odata.maxpagesize` (5,000 at most and by
default) with `@odata.nextLink`/`$skiptoken`, `$top` capping the rows over all pages, `$count`
capped at 5,000, `$skip` refused, NULL sorting first ascending, `@odata.etag` on every row. Change
tracking follows "Use change tracking": `Prefer: odata.track-changes` answers a full load whose last page
carries `@odata.deltaLink`; a delta link answers the changed rows and `$deletedEntity` entries.
"""

from __future__ import annotations

import json
import re
import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from . import errors, metadata, paging
from .audit import change_history
from .changetracking import ChangeTracker, DeltaToken
from .clock import EmulatorClock, utc_iso
from .metadata import EntityDef, MetadataRegistry
from .odata import (
    DictSchema,
    Getter,
    Literal,
    annotation_matcher,
    compile_filter,
    parse_expand,
    parse_key_segment,
    parse_orderby,
    parse_prefer,
    parse_select,
    sort_key_function,
)
from .payload import PayloadReader, Representer, find_by_alternate_key, key_values_as_row
from .store import LOOKUP_TYPE, RecordStore, RecordWriter, Row

API_PATH = "/api/data/v9.2"
PAGE_SIZE_CAP = 5000
COUNT_CAP = 5000
JSON_TYPE = "application/json; odata.metadata=minimal"
_SEGMENT_RE = re.compile(r"^(?P<name>[A-Za-z_$][\w.$]*)(?:\((?P<key>.*)\))?$")
_UNSUPPORTED_OPTIONS = {"$apply": "aggregation ($apply)", "$search": "$search"}


@dataclass
class Config:
    """Org settings the control API can change."""

    max_page_size: int = PAGE_SIZE_CAP

    def describe(self) -> dict[str, Any]:
        return {"max_page_size": self.max_page_size}


@dataclass
class CallContext:
    user_id: str | None
    api_url: str
    in_batch: bool = False


@dataclass
class ApiResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def json(
        cls,
        payload: Any,
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
        content_type: str = JSON_TYPE,
    ) -> ApiResponse:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        return cls(status, [("Content-Type", content_type), ("OData-Version", "4.0"), *(headers or [])], body)

    @classmethod
    def empty(cls, status: int = 204, headers: list[tuple[str, str]] | None = None) -> ApiResponse:
        return cls(status, [("OData-Version", "4.0"), *(headers or [])])

    @classmethod
    def error(cls, exc: errors.DataverseError) -> ApiResponse:
        return cls.json(exc.body(), exc.status, list(exc.headers.items()))


@dataclass
class Prefer:
    values: dict[str, str]

    @property
    def max_page_size(self) -> int | None:
        raw = self.values.get("odata.maxpagesize")
        return int(raw) if raw and raw.isdigit() and int(raw) > 0 else None

    @property
    def annotations(self) -> str | None:
        return self.values.get("odata.include-annotations")

    @property
    def track_changes(self) -> bool:
        return "odata.track-changes" in self.values

    @property
    def representation(self) -> bool:
        return self.values.get("return") == "representation"


class EntitySchema:
    """Property names of one table for the $filter compiler, with their Edm types."""

    def __init__(self, entity: EntityDef, clock: EmulatorClock) -> None:
        self.entity = entity
        self.clock = clock

    def resolve(self, path: str) -> tuple[Getter, str | None]:
        attribute = self.entity.properties.get(path)
        if attribute is None:
            raise errors.property_not_found(path, self.entity.logical_name)
        return _getter(path), attribute.edm_type

    def now(self) -> datetime:
        return self.clock.now()


@dataclass
class _QueryResult:
    rows: list[Row]
    keys: list[tuple[Any, ...]]
    key_function: Callable[[Any], tuple[Any, ...]]


class WebApi:
    def __init__(
        self,
        registry: MetadataRegistry,
        store: RecordStore,
        tracker: ChangeTracker,
        clock: EmulatorClock,
        config: Config,
        lock: threading.RLock,
        whoami: Callable[[str | None], dict[str, str]],
    ) -> None:
        self.registry = registry
        self.store = store
        self.writer = RecordWriter(store)
        self.reader = PayloadReader(registry, store)
        self.tracker = tracker
        self.clock = clock
        self.config = config
        self.lock = lock
        self.whoami = whoami
        self._cache: OrderedDict[tuple[Any, ...], _QueryResult] = OrderedDict()

    # -- dispatch ---------------------------------------------------------------------------------------
    def handle(
        self,
        method: str,
        path: str,
        args: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        ctx: CallContext,
    ) -> ApiResponse:
        """One Web API request; `path` is relative to /api/data/v9.2/ and already percent-decoded."""
        try:
            return self._route(method.upper(), path.strip("/"), args, headers, body, ctx)
        except errors.DataverseError as exc:
            return ApiResponse.error(exc)

    def _route(
        self,
        method: str,
        path: str,
        args: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        ctx: CallContext,
    ) -> ApiResponse:
        prefer = Prefer(_prefer(headers))
        if path == "":
            return self._service_document(ctx)
        if path == "$metadata":
            return ApiResponse(
                200,
                [("Content-Type", "application/xml"), ("OData-Version", "4.0")],
                metadata.csdl(self.registry, annotations=args.get("annotations") == "true").encode(),
            )
        segments = _split_path(path)
        first = _SEGMENT_RE.match(segments[0])
        if first is None:
            raise errors.segment_not_found(segments[0])
        name, key = first.group("name"), first.group("key")
        if name == "WhoAmI" and len(segments) == 1:
            return self._whoami(method, ctx)
        if name == "RetrieveRecordChangeHistory" and len(segments) == 1:
            return self._record_change_history(method, key, args, ctx)
        if name == "RetrieveTotalRecordCount" and len(segments) == 1:
            return self._total_record_count(method, key, args, ctx)
        if name == "EntityDefinitions":
            return self._entity_definitions(method, key, segments[1:], args, ctx)
        if name == "GlobalOptionSetDefinitions":
            return self._global_option_sets(method, key, args, ctx)
        entity = self.registry.entity_for_set(name)
        if entity is None:
            raise errors.segment_not_found(name)
        if entity.logical_name == "audit" and method != "GET":
            raise _method_not_allowed(method, name)  # the audit table is read-only
        rest = segments[1:]
        if key is None:
            if rest == ["$count"] and method == "GET":
                with self.lock:
                    total = len(self.store.table(entity).rows)
                return ApiResponse(
                    200,
                    [("Content-Type", "text/plain"), ("OData-Version", "4.0")],
                    str(min(total, COUNT_CAP)).encode(),
                )
            if len(rest) == 1 and rest[0].startswith("Microsoft.Dynamics.CRM.") and method == "POST":
                return self._action(entity, rest[0].removeprefix("Microsoft.Dynamics.CRM."), body, ctx)
            if rest:
                raise errors.segment_not_found(rest[0])
            if method == "GET":
                return self._get_collection(entity, args, prefer, ctx)
            if method == "POST":
                return self._create(entity, args, prefer, body, ctx)
            raise _method_not_allowed(method, name)
        if len(rest) == 1:
            return self._single_property(method, entity, key, rest[0], body, ctx)
        if rest:
            raise errors.segment_not_found(rest[-1])
        if method == "GET":
            return self._get_one(entity, key, args, prefer, headers, ctx)
        if method in {"PATCH", "PUT"}:
            return self._upsert(entity, key, args, prefer, headers, body, ctx)
        if method == "DELETE":
            return self._delete(entity, key, headers)
        raise _method_not_allowed(method, name)

    # -- simple resources -------------------------------------------------------------------------------
    def _service_document(self, ctx: CallContext) -> ApiResponse:
        sets = [
            {"name": e.entity_set_name, "kind": "EntitySet", "url": e.entity_set_name}
            for e in self.registry.entities.values()
        ]
        sets += [
            {"name": "EntityDefinitions", "kind": "EntitySet", "url": "EntityDefinitions"},
            {"name": "GlobalOptionSetDefinitions", "kind": "EntitySet", "url": "GlobalOptionSetDefinitions"},
            {"name": "WhoAmI", "kind": "FunctionImport", "url": "WhoAmI"},
            {"name": "RetrieveTotalRecordCount", "kind": "FunctionImport", "url": "RetrieveTotalRecordCount"},
        ]
        return ApiResponse.json({"@odata.context": f"{ctx.api_url}/$metadata", "value": sets})

    def _whoami(self, method: str, ctx: CallContext) -> ApiResponse:
        if method != "GET":
            raise _method_not_allowed(method, "WhoAmI")
        body = {"@odata.context": f"{ctx.api_url}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse"}
        body.update(self.whoami(ctx.user_id))
        return ApiResponse.json(body)

    def _record_change_history(
        self, method: str, key: str | None, args: Mapping[str, str], ctx: CallContext
    ) -> ApiResponse:
        """`RetrieveRecordChangeHistory(Target=@t)?@t={'@odata.id':'contacts(<id>)'}`: one row's audited
        changes (old and new values, who, when)."""
        if method != "GET":
            raise _method_not_allowed(method, "RetrieveRecordChangeHistory")
        parameters = dict(part.split("=", 1) for part in (key or "").split(",") if "=" in part)
        target = parameters.get("Target", "").strip()
        if target.startswith("@"):
            target = _aliases(args).get(target, "")
        match = re.search(r"'@odata\.id'\s*:\s*'([A-Za-z_]\w*)\(([^)]*)\)'", target) or re.search(
            r'"@odata\.id"\s*:\s*"([A-Za-z_]\w*)\(([^)]*)\)"', target
        )
        if match is None:
            raise errors.bad_request(
                "RetrieveRecordChangeHistory needs Target, an entity reference {'@odata.id':'<set>(<id>)'}."
            )
        entity = self.registry.entity_for_set(match.group(1))
        if entity is None:
            raise errors.segment_not_found(match.group(1))
        record_id = match.group(2).strip().lower()
        with self.lock:
            if self.store.get(entity, record_id) is None:
                raise self._not_found(entity, record_id)
            body = change_history(self.store, entity, record_id, ctx.api_url)
        return ApiResponse.json(body)

    def _total_record_count(
        self, method: str, key: str | None, args: Mapping[str, str], ctx: CallContext
    ) -> ApiResponse:
        """`RetrieveTotalRecordCount(EntityNames=['contact','account'])` (or `EntityNames=@p` with
        `?@p=[...]`): each table's row count, as `EntityRecordCountCollection` Keys and Values. Dataverse
        answers a snapshot up to a day old; the emulator answers the live count."""
        if method != "GET":
            raise _method_not_allowed(method, "RetrieveTotalRecordCount")
        parameters = dict(part.split("=", 1) for part in [(key or "").strip()] if "=" in part)
        names = parameters.get("EntityNames", "").strip()
        if names.startswith("@"):
            names = _aliases(args).get(names, "")
        listed = re.fullmatch(r"\[\s*((?:'[^']*'|\"[^\"]*\")(?:\s*,\s*(?:'[^']*'|\"[^\"]*\"))*)?\s*\]", names)
        if listed is None:
            raise errors.bad_request(
                "RetrieveTotalRecordCount needs EntityNames, a collection of table logical names: ['contact']."
            )
        keys = [n[1:-1] for n in re.findall(r"'[^']*'|\"[^\"]*\"", listed.group(1) or "")]
        values = []
        with self.lock:
            for logical_name in keys:
                entity = self.registry.entity(logical_name)
                if entity is None:
                    raise errors.bad_request(
                        f"The entity with a name = '{logical_name}' with namemapping = 'Logical' was not found "
                        "in the MetadataCache.",
                        code=errors.OBJECT_DOES_NOT_EXIST,
                    )
                values.append(len(self.store.table(entity).rows))
        return ApiResponse.json(
            {
                "@odata.context": f"{ctx.api_url}/$metadata#Microsoft.Dynamics.CRM.RetrieveTotalRecordCountResponse",
                "EntityRecordCountCollection": {
                    "Count": len(keys),
                    "IsReadOnly": False,
                    "Keys": keys,
                    "Values": values,
                },
            }
        )

    # -- reading records ------------------------------------------------------------------------------------
    def _select(self, entity: EntityDef, args: Mapping[str, str]) -> list[str] | None:
        if "$select" not in args:
            return None
        props = parse_select(args["$select"])
        for prop in props:
            if prop not in entity.properties or not entity.properties[prop].valid_for_read:
                raise errors.property_not_found(prop, entity.logical_name)
        return props

    def _expand(self, entity: EntityDef, args: Mapping[str, str]) -> list[tuple[str, EntityDef, list[str] | None]]:
        """Single-valued navigation properties to expand, with their nested $select."""
        if "$expand" not in args:
            return []
        expansions: list[tuple[str, EntityDef, list[str] | None]] = []
        for navigation, options in parse_expand(args["$expand"]):
            info = entity.navigations.get(navigation)
            target = self.registry.entity(info[1]) if info else None
            if info is None or target is None:
                raise errors.property_not_found(navigation, entity.logical_name)
            unsupported = set(options) - {"$select"}
            if unsupported:
                raise errors.bad_request(
                    f"The query option(s) {sorted(unsupported)} are not supported inside $expand by the crmsync emulator."
                )
            select = self._select(target, options) if "$select" in options else None
            expansions.append((navigation, target, select))
        return expansions

    def _represent(
        self,
        representer: Representer,
        entity: EntityDef,
        row: Row,
        props: list[str],
        expansions: list[tuple[str, EntityDef, list[str] | None]],
    ) -> dict[str, Any]:
        item = representer.represent(entity, row, props)
        for navigation, target, select in expansions:
            attribute, target_logical = entity.navigations[navigation]
            related_id = row.get(attribute.property_name)
            related = None
            if related_id and row.get(attribute.property_name + LOOKUP_TYPE) == target_logical:
                related = self.store.get(target, related_id)
            item[navigation] = (
                None
                if related is None
                else representer.represent(target, related, select or target.readable_properties)
            )
        return item

    @staticmethod
    def _context(ctx: CallContext, entity: EntityDef, select: list[str] | None, suffix: str = "") -> str:
        columns = f"({','.join(select)})" if select else ""
        return f"{ctx.api_url}/$metadata#{entity.entity_set_name}{columns}{suffix}"

    def _page_size(self, prefer: Prefer) -> tuple[int, bool]:
        requested = prefer.max_page_size
        cap = min(self.config.max_page_size, PAGE_SIZE_CAP)
        if requested is None or requested > PAGE_SIZE_CAP:
            return cap, False
        return min(requested, cap), True

    def _get_collection(
        self, entity: EntityDef, args: Mapping[str, str], prefer: Prefer, ctx: CallContext
    ) -> ApiResponse:
        if "$skip" in args:
            raise errors.bad_request("Skip Clause is not supported in CRM")
        for option, description in _UNSUPPORTED_OPTIONS.items():
            if option in args:
                raise errors.bad_request(
                    f"The query option {description} is not supported by the crmsync emulator."
                )
        select = self._select(entity, args)
        cookie = paging.decode(args["$skiptoken"]) if "$skiptoken" in args else None
        if prefer.track_changes or "$deltatoken" in args or (cookie is not None and cookie.tracking):
            return self._tracked(entity, select, args, prefer, ctx)
        expansions = self._expand(entity, args)
        page_size, size_applied = self._page_size(prefer)
        limit = _int_option(args, "$top")
        filter_text = args.get("$filter")
        order = parse_orderby(args["$orderby"]) if args.get("$orderby") else []
        schema = EntitySchema(entity, self.clock)
        predicate = compile_filter(filter_text, schema, _aliases(args)) if filter_text else None
        for item in order:
            schema.resolve(item.path)
        with self.lock:
            result = self._query(entity, filter_text, _aliases(args), order, predicate)
        start = 0
        returned_before = 0
        if cookie is not None:
            start = bisect_right(result.keys, result.key_function(self._cookie_row(entity, cookie)))
            returned_before = cookie.page * page_size
        end = start + page_size
        if limit is not None:
            end = min(end, start + max(0, limit - returned_before))
        rows = result.rows[start:end]
        more = end < len(result.rows) and (limit is None or returned_before + len(rows) < limit)
        representer = Representer(
            self.store, annotation_matcher(prefer.annotations) if prefer.annotations else None
        )
        props = select or entity.readable_properties
        body: dict[str, Any] = {"@odata.context": self._context(ctx, entity, select)}
        body.update(_count_annotations(len(result.rows), args, prefer))
        body["value"] = [self._represent(representer, entity, row, props, expansions) for row in rows]
        if more and rows:
            next_cookie = self._cookie_after(entity, order, rows[-1], (cookie.page if cookie else 0) + 1)
            body["@odata.nextLink"] = _link(ctx, entity, args, {"$skiptoken": paging.skiptoken_param(next_cookie)})
        applied = []
        if size_applied:
            applied.append(f"odata.maxpagesize={prefer.max_page_size}")
        if prefer.annotations:
            applied.append(f'odata.include-annotations="{prefer.annotations}"')
        headers = [("Preference-Applied", ",".join(applied))] if applied else []
        return ApiResponse.json(body, headers=headers, content_type=JSON_TYPE + "; odata.streaming=true")

    def _query(
        self,
        entity: EntityDef,
        filter_text: str | None,
        aliases: dict[str, str],
        order: list[Any],
        predicate: Callable[[Any], bool] | None,
    ) -> _QueryResult:
        """Filtered, sorted rows; the last few results are cached until the next write, so paging through a
        large result sorts it once."""
        cache_key = (
            entity.logical_name,
            filter_text,
            tuple(sorted(aliases.items())),
            tuple((o.path, o.descending) for o in order),
            self.store.generation,
        )
        cached = self._cache.get(cache_key)
        if cached is not None:
            self._cache.move_to_end(cache_key)
            return cached
        rows = self.store.rows(entity)
        if predicate is not None:
            rows = [row for row in rows if predicate(row)]
        columns: list[tuple[Getter, bool, bool]] = [
            (_getter(o.path), o.descending, entity.properties[o.path].edm_type == "Edm.String") for o in order
        ]
        columns.append((_getter(entity.primary_id), False, False))
        key_function = sort_key_function(columns)
        keys = [key_function(row) for row in rows]
        ordering = sorted(range(len(rows)), key=keys.__getitem__)
        result = _QueryResult([rows[i] for i in ordering], [keys[i] for i in ordering], key_function)
        self._cache[cache_key] = result
        while len(self._cache) > 16:
            self._cache.popitem(last=False)
        return result

    def _cookie_after(
        self, entity: EntityDef, order: list[Any], row: Row, page: int, **extra: str
    ) -> paging.PagingCookie:
        last = [(o.path, paging.to_text(row.get(o.path), entity.properties[o.path])) for o in order]
        last.append(
            (entity.primary_id, paging.to_text(row[entity.primary_id], entity.attributes[entity.primary_id]))
        )
        return paging.PagingCookie(page, last, dict(extra), tracking=bool(extra))

    @staticmethod
    def _cookie_row(entity: EntityDef, cookie: paging.PagingCookie) -> Row:
        row: Row = {}
        for prop, text in cookie.last:
            attribute = entity.properties.get(prop)
            if attribute is None:
                raise errors.bad_request("The $skiptoken query option value is not valid.")
            row[prop] = paging.from_text(text, attribute)
        return row

    def _get_one(
        self,
        entity: EntityDef,
        key: str,
        args: Mapping[str, str],
        prefer: Prefer,
        headers: Mapping[str, str],
        ctx: CallContext,
    ) -> ApiResponse:
        select = self._select(entity, args)
        expansions = self._expand(entity, args)
        with self.lock:
            row = self._find(entity, key)
        if row is None:
            raise self._not_found(entity, key)
        etag = f'W/"{row["versionnumber"]}"'
        if headers.get("if-none-match") == etag and not prefer.annotations and not expansions:
            return ApiResponse(304, [("Content-Type", JSON_TYPE), ("OData-Version", "4.0")])
        representer = Representer(
            self.store, annotation_matcher(prefer.annotations) if prefer.annotations else None
        )
        body: dict[str, Any] = {"@odata.context": self._context(ctx, entity, select, "/$entity")}
        body.update(self._represent(representer, entity, row, select or entity.readable_properties, expansions))
        extra = (
            [("Preference-Applied", f'odata.include-annotations="{prefer.annotations}"')]
            if prefer.annotations
            else []
        )
        return ApiResponse.json(body, headers=[("ETag", etag), *extra])

    def _single_property(
        self, method: str, entity: EntityDef, key: str, prop: str, body: bytes, ctx: CallContext
    ) -> ApiResponse:
        attribute = entity.properties.get(prop)
        if attribute is None:
            raise errors.segment_not_found(prop)
        with self.lock:
            row = self._find(entity, key)
            if row is None:
                raise self._not_found(entity, key)
            if method == "GET":
                value = row.get(prop)
                if value is None:
                    return ApiResponse.empty(204)
                context = f"{ctx.api_url}/$metadata#{entity.entity_set_name}({row[entity.primary_id]})/{prop}"
                return ApiResponse.json({"@odata.context": context, "value": value})
            if method == "PUT":
                document = _json_body(body, entity)
                if not isinstance(document, dict) or "value" not in document:
                    raise errors.payload_error(entity.entity_set_name, 'The request body must be {"value": …}.')
                values = self.reader.read(entity, {prop: document["value"]}, creating=False)
            elif method == "DELETE":
                values = self.reader.read(entity, {prop: None}, creating=False)
            else:
                raise _method_not_allowed(method, prop)
            self.writer.update(entity, row, values, caller_id=ctx.user_id, now_iso=utc_iso(self.clock.now()))
        return ApiResponse.empty(204)

    # -- writing records --------------------------------------------------------------------------------
    def _entity_url(self, ctx: CallContext, entity: EntityDef, record_id: str) -> str:
        return f"{ctx.api_url}/{entity.entity_set_name}({record_id})"

    def _write_response(
        self, entity: EntityDef, row: Row, created: bool, args: Mapping[str, str], prefer: Prefer, ctx: CallContext
    ) -> ApiResponse:
        url = self._entity_url(ctx, entity, row[entity.primary_id])
        headers = [("OData-EntityId", url)]
        if ctx.in_batch:
            headers.insert(0, ("Location", url))
        if prefer.representation:
            select = self._select(entity, args)
            representer = Representer(
                self.store, annotation_matcher(prefer.annotations) if prefer.annotations else None
            )
            body: dict[str, Any] = {"@odata.context": self._context(ctx, entity, select, "/$entity")}
            body.update(representer.represent(entity, row, select or entity.readable_properties))
            return ApiResponse.json(
                body, 201 if created else 200, [("Preference-Applied", "return=representation"), *headers]
            )
        return ApiResponse.empty(204, headers)

    def _create(
        self, entity: EntityDef, args: Mapping[str, str], prefer: Prefer, body: bytes, ctx: CallContext
    ) -> ApiResponse:
        document = _json_body(body, entity)
        with self.lock:
            values = self.reader.read(entity, document, creating=True)
            row = self.writer.create(entity, values, caller_id=ctx.user_id, now_iso=utc_iso(self.clock.now()))
        return self._write_response(entity, row, True, args, prefer, ctx)

    def _upsert(
        self,
        entity: EntityDef,
        key: str,
        args: Mapping[str, str],
        prefer: Prefer,
        headers: Mapping[str, str],
        body: bytes,
        ctx: CallContext,
    ) -> ApiResponse:
        """PATCH: update, or create when missing (upsert) — unless `If-Match` forbids creating or
        `If-None-Match: *` forbids updating ("Perform conditional operations using the Web API")."""
        document = _json_body(body, entity)
        if_match = headers.get("if-match")
        if_none_match = headers.get("if-none-match")
        with self.lock:
            parsed = parse_key_segment(key)
            row = self._find(entity, key)
            if if_match is not None:
                if row is None:
                    raise self._not_found(entity, key)
                if if_match != "*" and if_match != f'W/"{row["versionnumber"]}"':
                    raise errors.version_mismatch()
            if if_none_match == "*" and row is not None:
                raise errors.duplicate_record()
            now_iso = utc_iso(self.clock.now())
            if row is not None:
                values = self.reader.read(entity, document, creating=False)
                row = self.writer.update(entity, row, values, caller_id=ctx.user_id, now_iso=now_iso)
                created = False
            else:
                values = self.reader.read(entity, document, creating=True)
                if isinstance(parsed, str):
                    row = self.writer.create(
                        entity, values, caller_id=ctx.user_id, now_iso=now_iso, record_id=parsed
                    )
                else:
                    values = {**key_values_as_row(entity, parsed), **values}
                    row = self.writer.create(entity, values, caller_id=ctx.user_id, now_iso=now_iso)
                created = True
        return self._write_response(entity, row, created, args, prefer, ctx)

    def _delete(self, entity: EntityDef, key: str, headers: Mapping[str, str]) -> ApiResponse:
        with self.lock:
            row = self._find(entity, key)
            if row is None:
                raise self._not_found(entity, key)
            if_match = headers.get("if-match")
            if if_match not in {None, "*"} and if_match != f'W/"{row["versionnumber"]}"':
                raise errors.version_mismatch()
            self.writer.delete(entity, row[entity.primary_id], self.clock.timestamp())
        return ApiResponse.empty(204)

    def _action(self, entity: EntityDef, action: str, body: bytes, ctx: CallContext) -> ApiResponse:
        """CreateMultiple / UpdateMultiple / UpsertMultiple: one transaction over `Targets`."""
        document = _json_body(body, entity)
        targets = document.get("Targets") if isinstance(document, dict) else None
        if action not in {"CreateMultiple", "UpdateMultiple", "UpsertMultiple"}:
            raise errors.segment_not_found(f"Microsoft.Dynamics.CRM.{action}")
        if not isinstance(targets, list) or not all(isinstance(t, dict) for t in targets):
            raise errors.bad_request(f"{action} needs a 'Targets' collection of {entity.logical_name} records.")
        ids: list[str] = []
        results: list[dict[str, Any]] = []
        with self.lock, self.store.transaction():
            now_iso = utc_iso(self.clock.now())
            for target in targets:
                reference = target.get("@odata.id")
                record_id = target.get(entity.primary_id)
                row = None
                if isinstance(reference, str):
                    key_text = reference.rsplit("(", 1)[-1].rstrip(")")
                    row = self._find(entity, key_text)
                    parsed = parse_key_segment(key_text)
                elif isinstance(record_id, str):
                    row = self.store.get(entity, record_id)
                    parsed = record_id.lower()
                else:
                    parsed = None
                if action == "UpdateMultiple" and row is None:
                    raise self._not_found(entity, str(record_id or reference))
                if row is not None and action != "CreateMultiple":
                    values = self.reader.read(entity, target, creating=False)
                    row = self.writer.update(entity, row, values, caller_id=ctx.user_id, now_iso=now_iso)
                    results.append({"RecordCreated": False, "Target": _target_ref(entity, row)})
                else:
                    values = self.reader.read(entity, target, creating=True)
                    if isinstance(parsed, dict):
                        values = {**key_values_as_row(entity, parsed), **values}
                    row = self.writer.create(entity, values, caller_id=ctx.user_id, now_iso=now_iso)
                    results.append({"RecordCreated": True, "Target": _target_ref(entity, row)})
                ids.append(row[entity.primary_id])
        if action == "CreateMultiple":
            return ApiResponse.json(
                {
                    "@odata.context": f"{ctx.api_url}/$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse",
                    "Ids": ids,
                }
            )
        if action == "UpsertMultiple":
            return ApiResponse.json(
                {
                    "@odata.context": f"{ctx.api_url}/$metadata#Microsoft.Dynamics.CRM.UpsertMultipleResponse",
                    "Results": results,
                }
            )
        return ApiResponse.empty(204)

    def _find(self, entity: EntityDef, key: str) -> Row | None:
        parsed = parse_key_segment(key)
        if isinstance(parsed, str):
            return self.store.get(entity, parsed)
        return find_by_alternate_key(self.store, entity, parsed)

    @staticmethod
    def _not_found(entity: EntityDef, key: str) -> errors.DataverseError:
        parsed = parse_key_segment(key)
        if isinstance(parsed, str):
            return errors.record_not_found(entity.logical_name, parsed)
        return errors.key_not_found(entity.logical_name)

    # -- change tracking ------------------------------------------------------------------------------
    def _tracked(
        self,
        entity: EntityDef,
        select: list[str] | None,
        args: Mapping[str, str],
        prefer: Prefer,
        ctx: CallContext,
    ) -> ApiResponse:
        self.tracker.require_enabled(entity)
        for option in ("$filter", "$orderby", "$expand", "$top"):
            if option in args:
                raise errors.change_tracking_option_unsupported(option.lstrip("$"))
        page_size, size_applied = self._page_size(prefer)
        props = select or entity.readable_properties
        representer = Representer(
            self.store, annotation_matcher(prefer.annotations) if prefer.annotations else None
        )
        cookie = paging.decode(args["$skiptoken"]) if "$skiptoken" in args else None
        now = self.clock.now()
        applied = ["odata.track-changes"] if prefer.track_changes else []
        if size_applied:
            applied.append(f"odata.maxpagesize={prefer.max_page_size}")
        if prefer.annotations:
            applied.append(f'odata.include-annotations="{prefer.annotations}"')
        headers = [("Preference-Applied", ",".join(applied))] if applied else []
        if "$deltatoken" in args:
            page = self._delta_page(entity, select, props, args, representer, cookie, page_size, now, ctx)
            page.headers.extend(headers)
            return page
        with self.lock:
            if cookie is None:
                token = self.tracker.issue(now)
            else:
                token = DeltaToken.decode(cookie.extra.get("deltatoken", ""))
            result = self._query(entity, None, {}, [], None)
            start = (
                0
                if cookie is None
                else bisect_right(result.keys, result.key_function(self._cookie_row(entity, cookie)))
            )
            rows = result.rows[start : start + page_size]
        body: dict[str, Any] = {"@odata.context": self._context(ctx, entity, select)}
        body["value"] = [representer.represent(entity, row, props) for row in rows]
        if start + page_size < len(result.rows):
            next_cookie = self._cookie_after(
                entity, [], rows[-1], (cookie.page if cookie else 0) + 1, deltatoken=token.encode()
            )
            body["@odata.nextLink"] = _link(ctx, entity, args, {"$skiptoken": paging.skiptoken_param(next_cookie)})
        else:
            body["@odata.deltaLink"] = _link(
                ctx, entity, args, {"$deltatoken": quote(token.encode(), safe="")}, drop={"$skiptoken"}
            )
        return ApiResponse.json(body, headers=headers)

    def _delta_page(
        self,
        entity: EntityDef,
        select: list[str] | None,
        props: list[str],
        args: Mapping[str, str],
        representer: Representer,
        cookie: paging.PagingCookie | None,
        page_size: int,
        now: datetime,
        ctx: CallContext,
    ) -> ApiResponse:
        since = DeltaToken.decode(args["$deltatoken"])
        with self.lock:
            self.tracker.check(since, now)
            if cookie is None:
                until, offset = self.tracker.issue(now), 0
            else:
                until, offset = (
                    DeltaToken.decode(cookie.extra.get("deltatoken", "")),
                    int(cookie.extra.get("offset", "0")),
                )
            changes = self.tracker.changes(entity, since.version, until.version)
        page = changes[offset : offset + page_size]
        deleted_context = f"{ctx.api_url}/$metadata#{entity.entity_set_name}/$deletedEntity"
        value = [
            representer.represent(entity, change.row, props)
            if change.row is not None
            else {"@odata.context": deleted_context, "id": change.record_id, "reason": "deleted"}
            for change in page
        ]
        body: dict[str, Any] = {"@odata.context": self._context(ctx, entity, select, "/$delta"), "value": value}
        if offset + page_size < len(changes):
            next_cookie = paging.PagingCookie(
                (cookie.page if cookie else 0) + 1,
                [],
                {"deltatoken": until.encode(), "offset": str(offset + page_size)},
                tracking=True,
            )
            body["@odata.nextLink"] = _link(ctx, entity, args, {"$skiptoken": paging.skiptoken_param(next_cookie)})
        else:
            body["@odata.deltaLink"] = _link(
                ctx, entity, args, {"$deltatoken": quote(until.encode(), safe="")}, drop={"$skiptoken"}
            )
        return ApiResponse.json(body)

    # -- EntityDefinitions --------------------------------------------------------------------------------
    def _entity_definitions(
        self, method: str, key: str | None, rest: list[str], args: Mapping[str, str], ctx: CallContext
    ) -> ApiResponse:
        if method != "GET":
            raise errors.DataverseError(
                405,
                errors.ODATA_ERROR,
                f"The crmsync emulator does not change table definitions with {method}; define tables through "
                "POST /__emulator/entities.",
            )
        base = f"{ctx.api_url}/$metadata#EntityDefinitions"
        if key is None:
            if rest:
                raise errors.segment_not_found(rest[0])
            items = [self._entity_item(e, args) for e in self.registry.entities.values()]
            items = [_select_entity(item, args) for item in _filter_items(items, args, self.clock)]
            return ApiResponse.json({"@odata.context": base + _columns(args), "value": items})
        entity = self._entity_by_key(key)
        if not rest:
            body = {"@odata.context": base + _columns(args) + "/$entity"}
            body.update(_select_entity(self._entity_item(entity, args), args))
            return ApiResponse.json(body)
        context = f"{base}('{entity.logical_name}')/{'/'.join(rest)}"
        first = _SEGMENT_RE.match(rest[0])
        if first is None:
            raise errors.segment_not_found(rest[0])
        name, inner_key = first.group("name"), first.group("key")
        if name == "Keys":
            keys = [metadata.key_json(entity, k) for k in entity.keys]
            if inner_key is None:
                return ApiResponse.json({"@odata.context": context, "value": _select_items(keys, args)})
            wanted = _metadata_key_value(inner_key)
            found = [k for k in keys if wanted in {k["LogicalName"], k["MetadataId"]}]
            if not found:
                raise errors.DataverseError(404, errors.OBJECT_DOES_NOT_EXIST, f"Could not find key '{wanted}'.")
            return ApiResponse.json({"@odata.context": context + "/$entity", **_select_items(found, args)[0]})
        if name != "Attributes":
            raise errors.segment_not_found(name)
        cast = rest[1].removeprefix("Microsoft.Dynamics.CRM.") if len(rest) > 1 else None
        attributes = list(entity.attributes.values())
        if cast is not None:
            attributes = [a for a in attributes if metadata.ATTRIBUTE_TYPES[a.attribute_type][0] == cast]
        expand = {item for item, _ in parse_expand(args["$expand"])} if "$expand" in args else set()
        option_selects = dict(parse_expand(args["$expand"])) if "$expand" in args else {}
        items = [self._attribute_item(a, expand, option_selects) for a in attributes]
        if inner_key is None:
            items = _select_items(_filter_items(items, args, self.clock), args)
            return ApiResponse.json({"@odata.context": context, "value": items})
        wanted = _metadata_key_value(inner_key)
        found = [i for i in items if wanted in {i["LogicalName"], i["MetadataId"]}]
        if not found:
            raise errors.DataverseError(
                404,
                errors.OBJECT_DOES_NOT_EXIST,
                f"Could not find attribute '{wanted}' on entity '{entity.logical_name}'.",
            )
        return ApiResponse.json({"@odata.context": context + "/$entity", **_select_items(found, args)[0]})

    def _entity_by_key(self, key: str) -> EntityDef:
        wanted = _metadata_key_value(key)
        for entity in self.registry.entities.values():
            if wanted in {entity.logical_name, entity.metadata_id}:
                return entity
        raise errors.DataverseError(
            404, errors.OBJECT_DOES_NOT_EXIST, f"Could not find entity with name '{wanted}'."
        )

    def _entity_item(self, entity: EntityDef, args: Mapping[str, str]) -> dict[str, Any]:
        item = metadata.entity_json(entity)
        for name, options in parse_expand(args["$expand"]) if "$expand" in args else []:
            if name == "Attributes":
                expand = {i for i, _ in parse_expand(options["$expand"])} if "$expand" in options else set()
                attributes = [self._attribute_item(a, expand, {}) for a in entity.attributes.values()]
                item["Attributes"] = _select_items(_filter_items(attributes, options, self.clock), options)
            elif name == "Keys":
                item["Keys"] = _select_items([metadata.key_json(entity, k) for k in entity.keys], options)
            else:
                raise errors.property_not_found(name, "EntityMetadata")
        return item

    @staticmethod
    def _attribute_item(
        attribute: metadata.AttributeDef, expand: set[str], options: dict[str, dict[str, str]]
    ) -> dict[str, Any]:
        item = metadata.attribute_json_with_options(attribute, expand)
        for name in ("OptionSet", "GlobalOptionSet"):
            chosen = options.get(name, {}).get("$select")
            if chosen and isinstance(item.get(name), dict):
                keep = set(parse_select(chosen)) | {"MetadataId"}
                item[name] = {k: v for k, v in item[name].items() if k in keep}
        return item

    def _global_option_sets(
        self, method: str, key: str | None, args: Mapping[str, str], ctx: CallContext
    ) -> ApiResponse:
        if method != "GET":
            raise _method_not_allowed(method, "GlobalOptionSetDefinitions")
        context = f"{ctx.api_url}/$metadata#GlobalOptionSetDefinitions"
        sets: list[dict[str, Any]] = []
        for name, option_set in self.registry.global_option_sets().items():
            owner = next(
                a
                for e in self.registry.entities.values()
                for a in e.attributes.values()
                if a.option_set is option_set
            )
            item = metadata.option_set_json(owner) or {}
            item["@odata.type"] = "#Microsoft.Dynamics.CRM.OptionSetMetadata"
            item["Name"] = name
            sets.append(item)
        if key is None:
            return ApiResponse.json({"@odata.context": context, "value": _select_items(sets, args)})
        wanted = _metadata_key_value(key)
        found = [s for s in sets if wanted in {s["Name"], s["MetadataId"]}]
        if not found:
            raise errors.DataverseError(
                404, errors.OBJECT_DOES_NOT_EXIST, f"Could not find option set '{wanted}'."
            )
        return ApiResponse.json({"@odata.context": context + "/$entity", **_select_items(found, args)[0]})


# -- helpers -------------------------------------------------------------------------------------------------
def _getter(prop: str) -> Getter:
    return lambda row: row.get(prop)


def _count_annotations(total: int, args: Mapping[str, str], prefer: Prefer) -> dict[str, Any]:
    """`@odata.count` for `$count=true` and the total-record-count annotations ("Count rows using OData"),
    all capped at 5,000."""
    counted = args.get("$count") == "true"
    out: dict[str, Any] = {}
    if counted:
        out["@odata.count"] = min(total, COUNT_CAP)
    if prefer.annotations:
        wants = annotation_matcher(prefer.annotations)
        if wants("Microsoft.Dynamics.CRM.totalrecordcount"):
            out["@Microsoft.Dynamics.CRM.totalrecordcount"] = min(total, COUNT_CAP) if counted else -1
        if wants("Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"):
            out["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = total > COUNT_CAP
    return out


def _prefer(headers: Mapping[str, str]) -> dict[str, str]:
    raw = headers.get("prefer")
    return parse_prefer([raw]) if raw else {}


def _split_path(path: str) -> list[str]:
    """Split on `/` outside parentheses and quotes (alternate keys may hold slashes)."""
    segments: list[str] = []
    depth = 0
    quoted = False
    current: list[str] = []
    for char in path:
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        if char == "/" and depth == 0 and not quoted:
            segments.append("".join(current))
            current = []
            continue
        current.append(char)
    segments.append("".join(current))
    return [s for s in segments if s]


def _int_option(args: Mapping[str, str], name: str) -> int | None:
    if name not in args:
        return None
    raw = args[name]
    if not raw.isdigit():
        raise errors.bad_request(
            f"Invalid value '{raw}' for {name} query option found. The {name} query option requires a non-negative integer value."
        )
    return int(raw)


def _aliases(args: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in args.items() if k.startswith("@")}


def _json_body(body: bytes, entity: EntityDef) -> Any:
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except ValueError as exc:
        raise errors.payload_error(entity.entity_set_name, f"Invalid JSON. {exc}") from exc


def _method_not_allowed(method: str, resource: str) -> errors.DataverseError:
    return errors.DataverseError(
        405, errors.ODATA_ERROR, f"The request method '{method}' is not allowed on the resource '{resource}'."
    )


_LINK_SAFE = "(),'=*:$@/"


def _link(
    ctx: CallContext,
    entity: EntityDef,
    args: Mapping[str, str],
    extra: dict[str, str],
    drop: set[str] | None = None,
) -> str:
    """The request's URL with `extra` (already encoded) replacing the options of the same name, less `drop`."""
    skip = set(extra) | (drop or set())
    parts = [f"{k}={quote(v, safe=_LINK_SAFE)}" for k, v in args.items() if k not in skip]
    parts += [f"{k}={v}" for k, v in extra.items()]
    return f"{ctx.api_url}/{entity.entity_set_name}?{'&'.join(parts)}"


def _target_ref(entity: EntityDef, row: Row) -> dict[str, Any]:
    return {
        "@odata.type": f"#Microsoft.Dynamics.CRM.{entity.logical_name}",
        entity.primary_id: row[entity.primary_id],
    }


def _metadata_key_value(key: str) -> str:
    parsed = parse_key_segment(key)
    if isinstance(parsed, str):
        return parsed
    literal: Literal = next(iter(parsed.values()))
    return str(literal.value)


def _columns(args: Mapping[str, str]) -> str:
    return f"({args['$select']})" if "$select" in args else ""


def _filter_items(
    items: list[dict[str, Any]], args: Mapping[str, str], clock: EmulatorClock
) -> list[dict[str, Any]]:
    if not args.get("$filter"):
        return items
    predicate = compile_filter(args["$filter"], DictSchema(clock.now), _aliases(args))
    return [item for item in items if predicate(item)]


def _select_entity(item: dict[str, Any], args: Mapping[str, str]) -> dict[str, Any]:
    """`$select` on EntityMetadata (after `$filter`, which may test columns that are not selected)."""
    if "$select" not in args:
        return item
    selected = parse_select(args["$select"])
    for name in selected:
        if name not in item:
            raise errors.property_not_found(name, "EntityMetadata")
    keep = set(selected) | {"MetadataId", "Attributes", "Keys"}
    return {k: v for k, v in item.items() if k in keep}


def _select_items(items: list[dict[str, Any]], args: Mapping[str, str]) -> list[dict[str, Any]]:
    if "$select" not in args:
        return items
    selected = set(parse_select(args["$select"]))
    known = set().union(*(item.keys() for item in items)) if items else set()
    for name in selected:
        if name not in known and items:
            raise errors.property_not_found(name, "AttributeMetadata")
    keep = selected | {"MetadataId", "@odata.type", "OptionSet", "GlobalOptionSet"}
    return [{k: v for k, v in item.items() if k in keep} for item in items]
