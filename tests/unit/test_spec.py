"""specs/omni.yaml and its model: the seed estate loads; each bad spec is one clear message."""

import copy

import pytest
import yaml

from components.spec import SpecError, load_spec, parse_spec
from tests.conftest import PROJECT_ROOT

SEED = PROJECT_ROOT / "specs" / "omni.yaml"


def seed() -> dict:
    return yaml.safe_load(SEED.read_text())


def test_seed_spec_describes_the_control_plane_class():
    spec = load_spec(SEED)
    cls = spec.machine_classes["matrix-control-plane"]
    assert cls.provider_id == spec.infra_provider.id == "Proxmox"
    assert cls.provider_data.as_document() == {
        "cores": 4, "sockets": 1, "memory": 8192, "disk_size": 40,
        "network_bridge": "vmbr0", "storage_selector": 'name == "vm_ssd"',
    }
    assert spec.proxmox.nodes == ["foxtrot", "golf", "hotel"]


def _set(data: dict, dotted: str, value):
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        node = node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()
PD = "machine_classes.matrix-control-plane.provider_data"

BAD_SPECS = [
    # (what to change, value, dotted path in the message, words of the expectation)
    (f"{PD}.memory", 1024, f"{PD}.memory", "greater than or equal to 2048"),
    (f"{PD}.memory", "lots", f"{PD}.memory", "valid integer"),
    (f"{PD}.cores", 0, f"{PD}.cores", "greater than or equal to 1"),
    (f"{PD}.disk_size", 2, f"{PD}.disk_size", "greater than or equal to 5"),
    (f"{PD}.sockets", 0, f"{PD}.sockets", "greater than or equal to 1"),
    (f"{PD}.disk_cache", "fast", f"{PD}.disk_cache", "'none', 'writethrough'"),
    (f"{PD}.disk_aio", "posix", f"{PD}.disk_aio", "'native', 'threads' or 'io_uring'"),
    (f"{PD}.machine_type", "pc", f"{PD}.machine_type", "'q35' or 'i440fx'"),
    (f"{PD}.hugepages", "4MB", f"{PD}.hugepages", "'2MB' or '1GB'"),
    (f"{PD}.vlan", -1, f"{PD}.vlan", "greater than or equal to 0"),
    (f"{PD}.memroy", 8192, f"{PD}.memroy", "no such field"),
    (f"{PD}.storage_selector", _DELETE, f"{PD}.storage_selector", "required"),
    (f"{PD}.storage_selector", 'type == "rbd"', PD, "use `storageType`"),
    (f"{PD}.node", "india", f"{PD}.node", "one of the Proxmox nodes"),
    ("machine_classes.matrix-control-plane.provider_id", "proxmox",
     "machine_classes.matrix-control-plane.provider_id", "the infra provider id 'Proxmox'"),
    ("machine_classes", {}, "machine_classes", "at least 1 item"),
    ("proxmox.nodes", [], "proxmox.nodes", "at least 1 item"),
    ("infra_provider", _DELETE, "infra_provider", "required"),
    ("clusterz", {}, "clusterz", "no such field"),
]


@pytest.mark.parametrize("field,value,path,expected", BAD_SPECS, ids=[f"{c[0]}={c[1]!r}"[-60:] for c in BAD_SPECS])
def test_bad_spec_names_file_path_and_expectation(field, value, path, expected):
    data = copy.deepcopy(seed())
    _set(data, field, value)
    with pytest.raises(SpecError) as info:
        parse_spec(data, "specs/omni.yaml")
    err = info.value
    assert (err.file, err.path) == ("specs/omni.yaml", path)
    assert expected in err.expected
    assert str(err).startswith(f"specs/omni.yaml: {path}: ")
    assert "\n" not in str(err)


def test_bad_class_name_is_reported_at_the_key():
    data = seed()
    data["machine_classes"]["Matrix_CP"] = data["machine_classes"].pop("matrix-control-plane")
    with pytest.raises(SpecError) as info:
        parse_spec(data, "s.yaml")
    assert info.value.path.startswith("machine_classes.Matrix_CP")


def test_yaml_syntax_error_names_line(tmp_path):
    bad = tmp_path / "omni.yaml"
    bad.write_text("proxmox:\n  nodes: [foxtrot\n")
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    assert info.value.file == str(bad) and "line" in info.value.path
    assert "valid YAML" in info.value.expected


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(SpecError, match="a readable spec file"):
        load_spec(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="a YAML mapping at the top level"):
        load_spec(tmp_path / "list.yaml")
