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


class CountingOmni:
    """Omni's two provider resources, as a fake client that counts the reads (check_provider's only calls)."""

    endpoint = "https://omni.invalid"

    def __init__(self, heartbeat_age: float = 5, error: str = ""):
        self.reads: list[str] = []
        self.heartbeat_age, self.error = heartbeat_age, error

    def get_or_none(self, resource_type: str, resource_id: str, namespace: str):
        self.reads.append(resource_type)
        if resource_type.startswith("InfraProviderStatuses"):
            return {"spec": {"schema": SCHEMA}}
        stamp = {"seconds": int(1_000_000 - self.heartbeat_age)}
        return {"spec": {"lastheartbeattimestamp": stamp, "error": self.error}}


def check(client, class_id="c1", now=1_000_000):
    from components.omni.infra_provider import check_provider

    data = load_spec(PROJECT_ROOT / "specs/omni.yaml").machine_classes["matrix-worker"].provider_data.as_document()
    check_provider(client, "matrix-cluster", data, class_id, 600, now=now)


@pytest.fixture
def no_held_reading():
    from components.omni.infra_provider import forget_provider_readings

    forget_provider_readings()
    yield
    forget_provider_readings()


def test_classes_checked_together_share_one_reading_of_the_provider(no_held_reading):
    omni = CountingOmni()
    for class_id in ("c1", "c2", "c3"):
        check(omni, class_id)
    # Two reads for three classes, where each class used to read both again (6).
    assert len(omni.reads) == 2


def test_a_reading_that_finds_the_provider_not_ready_is_read_again_next_time(no_held_reading):
    from components.omni.infra_provider import ProviderNotReady

    omni = CountingOmni(error="failed to authenticate: key expired")
    with pytest.raises(ProviderNotReady, match="reports an error"):
        check(omni)
    omni.error = ""
    check(omni)  # the fixed provider is seen at once: the bad reading was not kept
    assert len(omni.reads) == 4


def test_a_held_reading_is_not_used_after_its_reuse_time(no_held_reading, monkeypatch):
    from components.omni import infra_provider

    omni = CountingOmni()
    check(omni)
    clock = infra_provider.time.monotonic() + infra_provider.READING_REUSE_SECONDS + 1
    monkeypatch.setattr(infra_provider.time, "monotonic", lambda: clock)
    check(omni)
    assert len(omni.reads) == 4
