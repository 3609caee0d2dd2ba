"""The OpenAPI 3.1 document, generated from the declared routes and their msgspec types."""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import msgspec

from ._downloads import RANGE_EXAMPLES
from ._problems import PROBLEM_JSON, Problem
from ._routing import ApiRoute

SECURITY_SCHEME = "bearerAuth"
_REF = "#/components/schemas/{name}"


def _error_statuses(route: ApiRoute) -> list[int]:
    statuses = set(route.errors) | {500, 503}
    if route.auth is not None:
        statuses |= {401, 429}
        if route.auth != "user_or_frame":
            statuses.add(403)
    if route.body is not None:
        statuses |= {400, 413, 415, 422}
    if route.upload is not None:
        statuses |= {400, 413, 415}
    if route.query is not None:
        statuses.add(400)
    if route.path_parameters:
        statuses.add(404)
    if route.download:
        statuses.add(416)
    return sorted(statuses)


def _download_parameters() -> list[dict[str, Any]]:
    """The request headers a download answers (see ``file_response``)."""
    return [
        {
            "name": "Range",
            "in": "header",
            "required": False,
            "description": "one or more byte ranges (206); one past the end is a 416, one that "
            "cannot be used is ignored (the whole file, 200)",
            "schema": {"type": "string"},
            "examples": {
                f"example{index}": {"value": value} for index, value in enumerate(RANGE_EXAMPLES, 1)
            },
        },
        {
            "name": "If-Range",
            "in": "header",
            "required": False,
            "description": "the range only if the file's ETag is still this one",
            "schema": {"type": "string"},
        },
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": "304 without a body if the file's ETag is among these",
            "schema": {"type": "string"},
        },
    ]


def _upload_schema(route: ApiRoute) -> dict[str, Any]:
    form = route.upload
    assert form is not None
    properties: dict[str, Any] = {
        form.file_field: {
            "type": "string",
            "format": "binary",
            "contentMediaType": "application/octet-stream",
        }
    }
    for name in form.fields:
        properties[name] = {
            "type": "string",
            "description": f"text, at most {form.max_field_bytes} bytes of UTF-8",
        }
    return {
        "type": "object",
        "properties": properties,
        "required": [form.file_field, *form.required_fields],
        "additionalProperties": False,
    }


def openapi_document(
    routes: Sequence[ApiRoute], *, title: str, version: str, server_url: str | None = None
) -> dict[str, Any]:
    """The document for ``routes``: paths, parameters, bodies, replies, problems, security."""
    types: list[Any] = [Problem]
    for route in routes:
        types.extend(kind for kind in (route.body, route.query) if kind is not None)
        if route.response is not None:
            types.append(route.response)
    unique: list[Any] = []
    for kind in types:
        if not any(kind == seen for seen in unique):
            unique.append(kind)
    refs, components = msgspec.json.schema_components(unique, ref_template=_REF)
    schema_of = [(kind, ref) for kind, ref in zip(unique, refs, strict=True)]

    def schema(kind: Any) -> dict[str, Any]:
        return next(ref for seen, ref in schema_of if seen == kind)

    problem = {PROBLEM_JSON: {"schema": schema(Problem)}}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        parameters: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in route.path_parameters
        ]
        if route.query is not None:
            query_schema = components[schema(route.query)["$ref"].rsplit("/", 1)[1]]
            required = set(query_schema.get("required", []))
            parameters.extend(
                {"name": name, "in": "query", "required": name in required, "schema": field}
                for name, field in query_schema.get("properties", {}).items()
            )
        if route.download:
            parameters.extend(_download_parameters())
        success: dict[str, Any] = {"description": HTTPStatus(route.status).phrase}
        if route.response is not None:
            success["content"] = {"application/json": {"schema": schema(route.response)}}
        elif route.media_type is not None:
            success["content"] = {
                route.media_type: {"schema": {"type": "string", "format": "binary"}}
            }
        responses: dict[str, Any] = {str(route.status): success}
        for status in route.other_statuses:
            responses[str(status)] = {**success, "description": HTTPStatus(status).phrase}
        if route.download:
            binary = {"schema": {"type": "string", "format": "binary"}}
            responses["206"] = {
                "description": "the requested range, or ranges as multipart/byteranges",
                "content": {str(route.media_type): binary, "multipart/byteranges": binary},
            }
            responses["304"] = {"description": "not modified (If-None-Match)"}
        for status in _error_statuses(route):
            responses[str(status)] = {"description": HTTPStatus(status).phrase, "content": problem}
        operation: dict[str, Any] = {
            "operationId": route.operation_id,
            "summary": route.summary or route.operation_id.replace("_", " "),
            "security": [{SECURITY_SCHEME: []}] if route.auth is not None else [],
            "responses": responses,
        }
        if route.description:
            operation["description"] = route.description
        if route.tags:
            operation["tags"] = list(route.tags)
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema(route.body)}},
            }
        elif route.upload is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"multipart/form-data": {"schema": _upload_schema(route)}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API token from `run.py users add` or the API",
                }
            },
        },
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document
