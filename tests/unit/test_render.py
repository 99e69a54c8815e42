"""Renderers are pure and byte-stable; the seed estate renders to the checked-in golden files."""

from components.render import render_machine_class
from components.spec import load_spec
from tests.conftest import PROJECT_ROOT

GOLDEN = PROJECT_ROOT / "tests" / "golden"


def test_machine_class_matches_golden_file():
    spec = load_spec(PROJECT_ROOT / "specs" / "omni.yaml")
    cls = spec.machine_classes["matrix-control-plane"]
    rendered = render_machine_class("matrix-control-plane", cls.provider_id, cls.provider_data.as_document())
    assert rendered == (GOLDEN / "matrix-control-plane.yaml").read_text()


def test_providerdata_key_order_does_not_change_the_bytes():
    a = {"cores": 4, "memory": 8192, "disk_size": 40, "storage_selector": "x"}
    b = dict(reversed(list(a.items())))
    assert render_machine_class("c", "Proxmox", a) == render_machine_class("c", "Proxmox", b)
