"""The lab provider's published schema and the spec model agree: what the model accepts the
schema accepts (so the pre-apply check only fires on real provider differences), and both
reject the same out-of-range values."""

import json

import pytest

from components.core.spec_file import load_spec
from components.omni.infra_provider import schema_problems
from tests.conftest import PROJECT_ROOT

SCHEMA = (PROJECT_ROOT / "lab" / "proxmox-providerdata.schema.json").read_text()


@pytest.mark.parametrize("spec_file", ["specs/omni.yaml", "tests/fixtures/grown-estate.yaml"])
def test_every_class_the_model_accepts_satisfies_the_schema(spec_file):
    spec = load_spec(PROJECT_ROOT / spec_file)
    for class_id, cls in spec.machine_classes.items():
        assert schema_problems(SCHEMA, cls.provider_data.as_document()) == [], class_id


@pytest.mark.parametrize(
    "field,value,where,words",
    [
        ("memory", 1024, "memory", "less than the minimum of 2048"),
        ("disk_cache", "fast", "disk_cache", "is not one of"),
        ("colour", "blue", "(top level)", "'colour' was unexpected"),
    ],
)
def test_schema_rejects_what_the_model_rejects(field, value, where, words):
    data = {"cores": 4, "memory": 8192, "disk_size": 40, "storage_selector": "true", field: value}
    problems = schema_problems(SCHEMA, data)
    assert len(problems) == 1 and words in problems[0] and problems[0].startswith(f"{where}: ")


def test_schema_is_valid_json_schema():
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA))
