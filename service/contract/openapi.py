"""The OpenAPI 3.1 document, assembled from the route table (operations.py) and the models' own
JSON schemas (JSON Schema 2020-12, which OpenAPI 3.1 uses as it is): nothing here describes a
field by hand."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema

from facefleet import __version__
from facefleet.contract.operations import OPERATIONS, PATH_PARAMETERS, Operation, Reply

REF = "#/components/schemas/{model}"
SECURITY: list[dict[str, list[str]]] = [{"ApiKeyHeader": []}, {"Bearer": []}]


class SecurityScheme(BaseModel):
    """An OpenAPI security scheme object (the two ways a key is sent, service/api/auth.py)."""

    type: str
    description: str
    name: str | None = None
    scheme: str | None = None
    where: str | None = None

    def document(self) -> dict[str, Any]:
        out = self.model_dump(exclude_none=True, exclude={"where"})
        return {**out, "in": self.where} if self.where else out


SECURITY_SCHEMES = {
    "ApiKeyHeader": SecurityScheme(type="apiKey", where="header", name="X-API-Key", description="X-API-Key: KEY"),
    "Bearer": SecurityScheme(type="http", scheme="bearer", description="Authorization: Bearer KEY, the same keys"),
}


class Schemas(GenerateJsonSchema):
    """pydantic's JSON schemas, except that a field which is left out of an answer when unset (a
    default of None on a type without null) shows no default: null is never sent for it."""

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        if schema.get("default", ...) is None and schema["schema"]["type"] != "nullable":
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _schema_of(kind: Any) -> dict[str, Any]:
    return TypeAdapter(kind).json_schema(ref_template=REF, schema_generator=Schemas) if kind is not None else {}


def _content(media: Iterable[str], schema: dict[str, Any]) -> dict[str, Any]:
    return {kind: {"schema": schema} for kind in media}


def _response(reply: Reply) -> dict[str, Any]:
    schema = _ref(reply.model) if reply.model is not None else _schema_of(reply.raw)
    out: dict[str, Any] = {"description": reply.description, "content": _content(reply.media, schema)}
    if reply.headers:
        out["headers"] = {
            name: {"description": text, "required": True, "schema": _schema_of(str)}
            for name, text in reply.headers.items()
        }
    return out


def _operation(op: Operation, auth: bool, open_paths: tuple[str, ...]) -> dict[str, Any]:
    protected = auth and op.path not in open_paths
    out: dict[str, Any] = {"summary": op.summary}
    parameters = re.findall(r"{(\w+)}", op.path)
    described = [
        {"name": name, "in": "path", "required": True, "schema": _schema_of(PATH_PARAMETERS[name])}
        for name in parameters
    ]
    if op.query is not None:
        described += _query_parameters(op.query)
    if described:
        out["parameters"] = described
    if op.request is not None or op.raw_request is not None:
        schema = _ref(op.request) if op.request is not None else _schema_of(op.raw_request)
        out["requestBody"] = {"required": True, "content": _content(op.media, schema)}
    out["responses"] = {str(status): _response(reply) for status, reply in op.responses(protected).items()}
    if auth and not protected:
        out["security"] = []  # answered without a key
    return out


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """One query parameter per field of `model`. A query string has no null: an optional field's null branch
    is left out (absent means its default), its description and default kept."""
    schema = model.model_json_schema(ref_template=REF, schema_generator=Schemas)
    required = set(schema.get("required", ()))
    out = []
    for name, declared in schema["properties"].items():
        prop = dict(declared)
        branches = [b for b in prop.pop("anyOf", []) if b.get("type") != "null"]
        if len(branches) == 1:
            prop.update(branches[0])
        elif branches:
            prop["anyOf"] = branches
        if prop.get("default", ...) is None:
            del prop["default"]
        description = prop.pop("description", "")
        prop.pop("title", None)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        out.append({**parameter, "description": description} if description else parameter)
    return out


def models() -> list[type[BaseModel]]:
    """Every model the table names, requests and answers."""
    found: dict[str, type[BaseModel]] = {}
    for op in OPERATIONS:
        replies = list(op.responses(True).values())
        for model in [op.request, *(r.model for r in replies)]:
            if model is not None:
                found[model.__name__] = model
    return list(found.values())


def schemas() -> dict[str, Any]:
    """The components: each model's JSON schema and those of the models it holds."""
    _, top = models_json_schema(
        [(model, "validation") for model in models()], ref_template=REF, schema_generator=Schemas
    )
    return dict(sorted(top.get("$defs", {}).items()))


def document(auth: bool = True, open_paths: tuple[str, ...] = ()) -> dict[str, Any]:
    """The OpenAPI document of a service with authentication on or off; `open_paths` are answered
    without a key (FACEFLEET_AUTH_OPEN_PATHS and /livez), and only a service with keys declares them."""
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, auth, open_paths)
    components: dict[str, Any] = {"schemas": schemas()}
    out: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "facefleet",
            "version": __version__,
            "description": "Face detection and recognition, compatible with InsightFace-REST v0.9.",
        },
    }
    if auth:
        out["security"] = SECURITY
        components["securitySchemes"] = {name: s.document() for name, s in SECURITY_SCHEMES.items()}
    return {**out, "paths": paths, "components": components}
