"""The spec's providerdata model and the schema the lab's provider stand-in publishes (the provider's, restated)
agree field by field: names, required fields, types, enums and bounds, at every level. The model may check more
of a string than the provider's schema says (a selector is compiled, a node name is a DNS label), never less."""

import json

import jsonschema
import pytest
from pydantic import ValidationError

from components.core.spec import HaConfig, ProviderData
from lab.provider_standin import SCHEMA

PUBLISHED = json.loads(SCHEMA.read_text())
BOTH_WAYS = ("type", "enum", "minimum", "maximum", "maxLength")  # what the model says exactly as the provider
PROVIDERS = ("minLength",)  # where the provider's schema says it, the model says the same


def _resolve(node: dict, defs: dict) -> dict:
    """A pydantic schema node without its $ref and its `X | None` wrapping."""
    if "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in node:
        [node] = [n for n in node["anyOf"] if n.get("type") != "null"]
        return _resolve(node, defs)
    return node


def _shape(node: dict, defs: dict, published: dict) -> dict:
    """What both schemas must say about a value: its constraints, and its fields' or items' shapes."""
    node = _resolve(node, defs)
    shape = {k: node[k] for k in BOTH_WAYS if k in node} | {k: node[k] for k in PROVIDERS if k in published}
    if "enum" in node and "type" not in published:
        shape.pop("type", None)  # pydantic adds an enum's base type; the provider's schema leaves it out
    if node.get("type") == "array":
        shape["items"] = _shape(node["items"], defs, published.get("items", {}))
    if "properties" in node:
        shape["required"] = sorted(node.get("required", []))
        theirs = published.get("properties", {})
        shape["properties"] = {k: _shape(v, defs, theirs.get(k, {})) for k, v in node["properties"].items()}
    return shape


def _published_shape(node: dict) -> dict:
    shape = {k: node[k] for k in BOTH_WAYS + PROVIDERS if k in node}
    if node.get("type") == "array":
        shape["items"] = _published_shape(node["items"])
    if "properties" in node:
        shape["required"] = sorted(node.get("required", []))
        shape["properties"] = {k: _published_shape(v) for k, v in node["properties"].items()}
    return shape


def test_the_spec_model_and_the_published_schema_agree_field_by_field():
    model = ProviderData.model_json_schema()
    ours, theirs = _shape(model, model.get("$defs", {}), PUBLISHED), _published_shape(PUBLISHED)
    assert sorted(ours["properties"]) == sorted(theirs["properties"])
    for field in theirs["properties"]:
        assert ours["properties"][field] == theirs["properties"][field], field
    assert ours == theirs


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rules", "keep-apart"),
        ("rules", "r_1"),
        ("rules", "-x"),
        ("rules", "a" * 64),
        ("rules", "a" * 65),
        ("rules", "a b"),
        ("node_affinity_nodes", "hotel"),
        ("node_affinity_nodes", "node_1"),
        ("node_affinity_nodes", "a" * 63),
        ("node_affinity_nodes", "a" * 64),
    ],
)
def test_ha_names_follow_the_providers_patterns(field, value):
    """The provider's patterns, which the model states in words: the same names pass and fail."""
    schema = PUBLISHED["properties"]["ha"]["properties"][field]
    provider_accepts = jsonschema.Draft202012Validator(schema).is_valid([value])
    try:
        HaConfig(**{field: [value]})
        model_accepts = True
    except ValidationError:
        model_accepts = False
    assert model_accepts is provider_accepts
