"""specs/omni.yaml and its model: the seed estate loads; each bad spec is one clear message."""

import copy

import pytest
import yaml

from components.core.spec import SpecError
from components.core.spec_file import load_spec, parse_spec
from tests.conftest import PROJECT_ROOT, SEED_CONTROL_PLANE_DATA

SEED = PROJECT_ROOT / "specs" / "omni.yaml"


def seed() -> dict:
    return yaml.safe_load(SEED.read_text())


def test_seed_totals_are_computed_from_the_classes():
    spec = load_spec(SEED)
    totals = spec.cluster_totals("talos-prod-01")
    # 3 x (4 cores, 8192 MB, 40 GB) + 2 x (8 cores, 16384 MB, 100 GB)
    assert (totals.machines, totals.cores, totals.memory_mb, totals.disk_gb) == (5, 28, 57344, 320)
    assert spec.totals == totals


def test_an_image_pinned_by_digest_is_accepted_with_or_without_its_tag():
    digest = "sha256:" + "9f" * 32
    for image in (f"tailscale/tailscale:v1.90.9@{digest}", f"tailscale/tailscale@{digest}", "nginx:1"):
        data = seed()
        data["provider_lxc"]["compose"]["tailscale_image"] = image
        assert parse_spec(data, "s.yaml").provider_lxc.compose.tailscale_image == image


def test_extra_disks_count():
    data = seed()
    data["machine_classes"]["matrix-worker"]["provider_data"]["additional_disks"] = [
        {"disk_size": 50, "storage_selector": 'name == "vm_ssd"'}
    ]
    totals = parse_spec(data, "s.yaml").cluster_totals("talos-prod-01")
    assert (totals.machines, totals.disk_gb) == (5, 3 * 40 + 2 * 150)


def test_file_patches_are_read_and_checked_at_load(tmp_path):
    data = seed()
    data["clusters"]["talos-prod-01"]["patches"].append({"name": "ntp", "file": "patches/ntp.yaml"})
    (tmp_path / "patches").mkdir()
    (tmp_path / "patches" / "ntp.yaml").write_text("machine:\n  time:\n    servers: [time.cloudflare.com]\n")
    (tmp_path / "omni.yaml").write_text(yaml.safe_dump(data))
    spec = load_spec(tmp_path / "omni.yaml", "specs/omni.yaml")
    assert spec.clusters["talos-prod-01"].patches[1].inline == {
        "machine": {"time": {"servers": ["time.cloudflare.com"]}}
    }
    (tmp_path / "patches" / "ntp.yaml").write_text("- not a mapping\n")
    with pytest.raises(
        SpecError, match=r"clusters.talos-prod-01.patches\[1\].file: a patch file holding a YAML mapping"
    ):
        load_spec(tmp_path / "omni.yaml", "specs/omni.yaml")
    (tmp_path / "patches" / "ntp.yaml").unlink()
    with pytest.raises(SpecError, match="a readable patch file"):
        load_spec(tmp_path / "omni.yaml", "specs/omni.yaml")


def test_seed_spec_describes_the_control_plane_class():
    spec = load_spec(SEED)
    cls = spec.machine_classes["matrix-control-plane"]
    assert cls.provider_id == spec.infra_provider.id == "matrix-cluster"
    assert cls.provider_data.as_document() == SEED_CONTROL_PLANE_DATA
    assert spec.proxmox.nodes == ["foxtrot", "golf", "hotel"]


def _set(data: dict, dotted: str, value):
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


class _Deleted:
    """The field removed, not set; named in test ids (an object()'s address differs between xdist workers)."""

    def __repr__(self) -> str:
        return "<deleted>"


_DELETE = _Deleted()
PD = "machine_classes.matrix-control-plane.provider_data"
CL = "clusters.talos-prod-01"

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
    (f"{PD}.storage_selector", 'type == "rbd"', f"{PD}.storage_selector", "the storage's type is storageType"),
    (f"{PD}.storage_selector", "name == ", f"{PD}.storage_selector", "a CEL expression"),
    (f"{PD}.storage_selector", 'pool == "vm_ssd"', f"{PD}.storage_selector", "undeclared reference to 'pool'"),
    # What the provider's cel-go refuses and cel-python let through: a result that is no bool, uint against int.
    (f"{PD}.storage_selector", "name", f"{PD}.storage_selector", "expression output type is string, expected bool"),
    (
        f"{PD}.storage_selector",
        "availableSpace > 1099511627776",
        f"{PD}.storage_selector",
        "applied to '(uint, int)'; availableSpace is unsigned",
    ),
    (
        f"{PD}.additional_disks",
        [{"disk_size": 0, "storage_selector": "true"}],
        f"{PD}.additional_disks[0].disk_size",
        "greater than or equal to 1",
    ),
    (f"{PD}.placement_strategy", "random", f"{PD}.placement_strategy", "'spread', 'fewer-vms', 'round-robin' or"),
    (f"{PD}.bios", "uefi", f"{PD}.bios", "'seabios' or 'ovmf'"),
    (f"{PD}.ha", {"state": "on"}, f"{PD}.ha.state", "'started', 'stopped', 'disabled' or 'ignored'"),
    (f"{PD}.ha", {"rules": ["-x"]}, f"{PD}.ha.rules[0]", "a Proxmox HA rule id"),
    (f"{PD}.tags", [""], f"{PD}.tags[0]", "at least 1 character"),
    (f"{PD}.usb_devices", [{"usb3": True}], f"{PD}.usb_devices[0].mapping", "required"),
    (
        "machine_classes.matrix-control-plane.meta_values",
        [{"key": 256, "value": "x"}],
        "machine_classes.matrix-control-plane.meta_values[0].key",
        "less than or equal to 255",
    ),
    (
        "machine_classes.matrix-control-plane.grpc_tunnel",
        "on",
        "machine_classes.matrix-control-plane.grpc_tunnel",
        "'enabled' or 'disabled'",
    ),
    (
        "machine_classes.matrix-control-plane.kernel_args",
        [""],
        "machine_classes.matrix-control-plane.kernel_args[0]",
        "at least 1 character",
    ),
    (f"{PD}.additional_nics", [{"vlan": 3}], f"{PD}.additional_nics[0].bridge", "required"),
    (f"{PD}.pci_devices", [{"mapping": "gpu", "rombar": "maybe"}], f"{PD}.pci_devices[0].rombar", "valid boolean"),
    (f"{PD}.node", "india", f"{PD}.node", "one of the Proxmox nodes"),
    (
        "machine_classes.matrix-control-plane.provider_id",
        "Proxmox",
        "machine_classes.matrix-control-plane.provider_id",
        "the infra provider id 'matrix-cluster'",
    ),
    # Omni v1.7 refuses the provider's service account for such an id: it could never register.
    ("infra_provider.id", "Proxmox", "infra_provider.id", "a lowercase infra provider id"),
    ("machine_classes", {}, "machine_classes", "at least 1 item"),
    ("proxmox.nodes", [], "proxmox.nodes", "at least 1 item"),
    ("infra_provider", _DELETE, "infra_provider", "required"),
    ("clusterz", {}, "clusterz", "no such field"),
    (f"{CL}.control_plane.size", 2, f"{CL}.control_plane.size", "an odd number of control planes"),
    (f"{CL}.control_plane.size", 0, f"{CL}.control_plane.size", "greater than or equal to 1"),
    (
        f"{CL}.control_plane.machine_class",
        "matrix-cp",
        f"{CL}.control_plane.machine_class",
        "one of the machine classes ['matrix-control-plane', 'matrix-worker']",
    ),
    (
        f"{CL}.workers",
        [{"name": "gpu", "machine_class": "matrix-gpu", "size": 1}],
        f"{CL}.workers[0].machine_class",
        "one of the machine classes",
    ),
    (
        f"{CL}.workers",
        [{"name": "w", "machine_class": "matrix-worker", "size": -1}],
        f"{CL}.workers[0].size",
        "greater than or equal to 0",
    ),
    (
        f"{CL}.workers",
        [{"name": "w", "machine_class": "matrix-worker", "size": "lots"}],
        f"{CL}.workers[0].size",
        "'unlimited'",
    ),
    (
        f"{CL}.workers",
        [{"name": "w", "machine_class": "matrix-worker", "size": "unlimited"}],
        f"{CL}.workers[0].size",
        "is using autoprovision, so unlimited machine set allocation is not supported",
    ),
    (
        f"{CL}.workers",
        [{"name": "w", "machine_class": "matrix-worker", "size": 1}] * 2,
        f"{CL}.workers[1].name",
        "unique in the cluster",
    ),
    (f"{CL}.workers", [{"machine_class": "matrix-worker", "size": 1}], f"{CL}.workers[0].name", "required"),
    (
        "machine_classes.bare-metal",
        {"match_labels": ["rack = a", "a b"]},
        "machine_classes.bare-metal.match_labels[1]",
        "found 'b', expected: ==, =, !=",
    ),
    (
        "machine_classes.bare-metal",
        {"match_labels": ["omni.sidero.dev/no-manual-allocation"]},
        "machine_classes.bare-metal.match_labels[0]",
        "which Omni does not allow in a class",
    ),
    (
        "machine_classes.bare-metal",
        {"match_labels": [" "]},
        "machine_classes.bare-metal.match_labels[0]",
        "at least one term",
    ),
    (
        "machine_classes.bare-metal",
        {"match_labels": ["rack = a"], "kernel_args": ["console=ttyS0"]},
        "machine_classes.bare-metal.kernel_args",
        "can't set both auto provision and match labels",
    ),
    (
        "machine_classes.bare-metal",
        {"kernel_args": ["console=ttyS0"]},
        "machine_classes.bare-metal.provider_id",
        "or match_labels instead",
    ),
    (
        f"{CL}.kubernetes_version",
        "1.34.3",
        f"{CL}.kubernetes_version",
        "a version with its v, e.g. v1.34.3 (got '1.34.3')",
    ),
    (f"{CL}.talos_version", "v1.11", f"{CL}.talos_version", "a version with its v, e.g. v1.34.3"),
    (f"{CL}.patches", [{"name": "p"}], f"{CL}.patches[0]", "exactly one of `inline`"),
    (f"{CL}.patches", [{"name": "p", "inline": {}, "file": "p.yaml"}], f"{CL}.patches[0]", "exactly one of"),
    (
        f"{CL}.patches",
        [{"name": "p", "inline": {"a": 1}}, {"name": "p", "inline": {"b": 2}}],
        f"{CL}.patches[1].name",
        "unique in its list",
    ),
    (f"{CL}.patches", [{"name": "p", "inline": "cluster: {}"}], f"{CL}.patches[0].inline", "valid dictionary"),
    (
        f"{CL}.control_plane.system_extensions",
        ["qemu-guest-agent"],
        f"{CL}.control_plane.system_extensions[0]",
        "vendor/name, e.g. siderolabs/iscsi-tools",
    ),
    ("clusters.Talos_Prod", {}, "clusters.Talos_Prod", "a lowercase name of letters, digits and '-'"),
    ("tailscale_operator.cluster", "talos-prod-02", "tailscale_operator.cluster", "one of the clusters"),
    ("tailscale_operator.chart_version", "latest", "tailscale_operator.chart_version", "e.g. 1.102.3 (got 'latest')"),
    ("tailscale_operator.hostname", _DELETE, "tailscale_operator.hostname", "required"),
    # The OAuth client's credentials are stack secrets, never in the committed spec.
    (
        "tailscale_operator.values",
        {"oauth": {"clientSecret": "tskey-client-x"}},
        "tailscale_operator.values.oauth",
        "stack secrets",
    ),
    ("tailscale_operator.oauth.audience", "", "tailscale_operator.oauth.audience", "at least 1 character"),
    ("tailscale_operator.oauth.client_secret", "x", "tailscale_operator.oauth.client_secret", "no such field"),
    ("provider_lxc.node", "india", "provider_lxc.node", "one of the Proxmox nodes"),
    ("provider_lxc.vmid", 99, "provider_lxc.vmid", "greater than or equal to 100"),
    ("provider_lxc.memory", 128, "provider_lxc.memory", "greater than or equal to 256"),
    ("provider_lxc.os_template", "debian-12.tar.zst", "provider_lxc.os_template", "e.g. local:vztmpl/debian-12"),
    ("provider_lxc.root_disk.size_gb", 0, "provider_lxc.root_disk.size_gb", "greater than or equal to 1"),
    # ipaddress would read a bare address as a /32 that no gateway is on: refused as the user meant it.
    ("provider_lxc.network.address", "192.168.3.10", "provider_lxc.network.address", "with its prefix length"),
    ("provider_lxc.network.gateway", "192.168.3.10", "provider_lxc.network.gateway", "not the container's own"),
    ("provider_lxc.network.address", "192.168.3.0/24", "provider_lxc.network.address", "not its network address"),
    ("provider_lxc.network.address", "192.168.3.255/24", "provider_lxc.network.address", "not its broadcast address"),
    ("provider_lxc.network.address", "300.1.1.1/24", "provider_lxc.network.address", "valid IPv4 interface"),
    ("provider_lxc.network.gateway", "10.0.0.1", "provider_lxc.network.gateway", "an address inside 192.168.3.0/24"),
    (
        "provider_lxc.compose.provider_image",
        "ghcr.io/siderolabs/omni-infra-provider-proxmox:latest",
        "provider_lxc.compose.provider_image",
        "pinned by a release tag or a digest",
    ),
    (
        "provider_lxc.compose.tailscale_image",
        "tailscale/tailscale",
        "provider_lxc.compose.tailscale_image",
        "no tag or digest",
    ),
    (
        "provider_lxc.compose.tailscale_image",
        "tailscale/tailscale:v1.90.9@sha256:abc",
        "provider_lxc.compose.tailscale_image",
        "not an image reference",
    ),
    ("provider_lxc.compose.directory", "/tmp/omni", "provider_lxc.compose.directory", "outlives a restart"),
    ("provider_lxc.compose.directory", "/", "provider_lxc.compose.directory", "not / or under /proc"),
    ("provider_lxc.compose.directory", "/opt/../etc", "provider_lxc.compose.directory", "such as /opt/omni-provider"),
    ("provider_lxc.compose.directory", "a/../../etc", "provider_lxc.compose.directory", "without '..'"),
    (
        "provider_lxc.compose.tailscale_healthcheck",
        {"interval": "10 seconds"},
        "provider_lxc.compose.tailscale_healthcheck.interval",
        "a duration as compose writes it",
    ),
    (
        "provider_lxc.compose.tailscale_healthcheck",
        {"retries": 0},
        "provider_lxc.compose.tailscale_healthcheck.retries",
        "greater than or equal to 1",
    ),
    ("provider_lxc.tun", "passthrough", "provider_lxc.tun", "'device' or 'lxc'"),
    ("provider_lxc.cpus", 1, "provider_lxc.cpus", "no such field"),
]


@pytest.mark.parametrize("field,value,path,expected", BAD_SPECS, ids=[f"{c[0]}={c[1]!r}"[-60:] for c in BAD_SPECS])
def test_bad_spec_names_file_path_and_expectation(field, value, path, expected):
    data = copy.deepcopy(seed())
    _set(data, field, value)
    with pytest.raises(SpecError) as info:
        parse_spec(data, "specs/omni.yaml")
    err = info.value
    assert err.file == "specs/omni.yaml"
    assert [p.path for p in err.problems][0] == path
    assert expected in err.problems[0].expected
    # One line per mistake, each in words: never a regular expression.
    lines = str(err).splitlines()
    assert lines[0].startswith(f"specs/omni.yaml: {path}: ") and len(lines) == len(err.problems)
    assert not any(marker in str(err) for marker in ("pattern", "^", "$", "\\d", "[a-z"))


def test_a_class_that_matches_labels_may_have_an_unlimited_pool_and_asks_nothing_of_proxmox():
    data = copy.deepcopy(seed())
    data["machine_classes"]["bare-metal"] = {"match_labels": ["omni.sidero.dev/arch = amd64, rack in (a, b)"]}
    data["clusters"]["talos-prod-01"]["workers"].append(
        {"name": "metal", "machine_class": "bare-metal", "size": "unlimited"}
    )
    spec = parse_spec(data, "specs/omni.yaml")
    assert not spec.machine_classes["bare-metal"].autoprovisions
    assert spec.cluster_totals("talos-prod-01") == load_spec(SEED).cluster_totals("talos-prod-01")


def test_an_absolute_app_directory_a_sidecar_healthcheck_and_raw_tun_lines_are_accepted():
    data = copy.deepcopy(seed())
    data["provider_lxc"]["compose"].update(directory="/opt/omni-provider", tailscale_healthcheck={"interval": "1m30s"})
    data["provider_lxc"]["tun"] = "lxc"
    lxc = parse_spec(data, "specs/omni.yaml").provider_lxc
    assert lxc.compose.directory == "/opt/omni-provider" and lxc.tun == "lxc"
    assert lxc.compose.tailscale_healthcheck.model_dump() == {
        "port": 9002,
        "interval": "1m30s",
        "timeout": "5s",
        "retries": 3,
        "start_period": "30s",
    }


def test_bad_class_name_is_reported_at_the_key():
    data = seed()
    data["machine_classes"]["Matrix_CP"] = data["machine_classes"].pop("matrix-control-plane")
    with pytest.raises(SpecError) as info:
        parse_spec(data, "s.yaml")
    assert [p.path for p in info.value.problems] == [
        "clusters.talos-prod-01.control_plane.machine_class",  # names the class by its old name: also reported
        "machine_classes.Matrix_CP",
    ]


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


# ------------------------------------------------------------------ a cluster that can never be Ready


def _load(tmp_path, data) -> None:
    (tmp_path / "omni.yaml").write_text(yaml.safe_dump(data))
    load_spec(tmp_path / "omni.yaml", "specs/omni.yaml")


def test_the_default_cni_switched_off_and_none_installed_is_refused(tmp_path):
    data = seed()
    del data["clusters"]["talos-prod-01"]["cni"]
    with pytest.raises(SpecError) as raised:
        _load(tmp_path, data)
    assert str(raised.value) == (
        "specs/omni.yaml: clusters.talos-prod-01.cni: a CNI: patch patches[0] (cilium-prep) sets "
        "cluster.network.cni.name: none and nothing installs one, so the nodes never become Ready and `up` would "
        "wait and fail; add `cni: {cilium: {chart_repository, chart_version}}`"
    )


def test_a_patch_file_that_switches_the_cni_off_counts_too(tmp_path):
    data = seed()
    del data["clusters"]["talos-prod-01"]["cni"]
    data["clusters"]["talos-prod-01"]["patches"] = [{"name": "no-cni", "file": "no-cni.yaml"}]
    (tmp_path / "no-cni.yaml").write_text("cluster:\n  network:\n    cni:\n      name: none\n")
    with pytest.raises(SpecError, match=r"clusters.talos-prod-01.cni: a CNI: patch patches\[0\] \(no-cni\)"):
        _load(tmp_path, data)


def test_cilium_with_the_default_cni_left_on_is_refused(tmp_path):
    data = seed()
    data["clusters"]["talos-prod-01"]["patches"] = []
    with pytest.raises(SpecError, match="clusters.talos-prod-01.cni: the default CNI switched off"):
        _load(tmp_path, data)


def test_kube_proxy_off_needs_ciliums_replacement(tmp_path):
    data = seed()
    data["clusters"]["talos-prod-01"]["cni"]["cilium"]["values"] = {"kubeProxyReplacement": False}
    with pytest.raises(
        SpecError,
        match=r"clusters.talos-prod-01.cni.cilium.values.kubeProxyReplacement: true: "
        r"patch patches\[0\] \(cilium-prep\) disables kube-proxy",
    ):
        _load(tmp_path, data)


def test_a_chart_value_of_the_wrong_type_names_its_field(tmp_path):
    data = seed()
    data["clusters"]["talos-prod-01"]["cni"]["cilium"]["values"] = {"MTU": "large", "hubble": {"ui": {"enabled": True}}}
    with pytest.raises(SpecError) as raised:
        _load(tmp_path, data)
    assert str(raised.value) == (
        "specs/omni.yaml: clusters.talos-prod-01.cni.cilium.values.MTU: Input should be a "
        "valid integer, unable to parse string as an integer"
    )


# ------------------------------------------------------------------ every mistake at once


def test_every_mistake_is_reported_at_once_one_line_each_in_file_order(tmp_path):
    data = seed()
    pd = data["machine_classes"]["matrix-control-plane"]["provider_data"]
    pd["memroy"] = pd.pop("memory")  # a misspelt required field: one line, not "memory is missing"
    pd["sockts"] = 1
    data["clusters"]["talos-prod-01"]["talos_version"] = "1.11"
    data["clusters"]["talos-prod-01"]["control_plane"]["size"] = 2
    data["tailscale_operator"]["cluster"] = "talos-prod-02"
    data["provider_lxc"]["network"]["gatway"] = data["provider_lxc"]["network"].pop("gateway")
    text = yaml.safe_dump(data, sort_keys=False)
    (tmp_path / "omni.yaml").write_text(text)
    with pytest.raises(SpecError) as raised:
        load_spec(tmp_path / "omni.yaml", "specs/omni.yaml")
    lines = str(raised.value).splitlines()
    pd_at = "specs/omni.yaml: machine_classes.matrix-control-plane.provider_data"
    assert lines == [
        f"{pd_at}.memroy: no such field (did you mean `memory`?)",
        f"{pd_at}.sockts: no such field (did you mean `sockets`?)",
        "specs/omni.yaml: clusters.talos-prod-01.talos_version: a version with its v, e.g. v1.34.3 (got '1.11')",
        "specs/omni.yaml: clusters.talos-prod-01.control_plane.size: an odd number of control planes, so etcd keeps "
        "quorum (got 2)",
        "specs/omni.yaml: tailscale_operator.cluster: one of the clusters ['talos-prod-01'] (got 'talos-prod-02')",
        "specs/omni.yaml: provider_lxc.network.gatway: no such field (did you mean `gateway`?)",
    ]
    # File order, read from the file: each problem's line is where its key is.
    assert [p.line for p in raised.value.problems] == sorted(p.line for p in raised.value.problems)
    assert text.splitlines()[raised.value.problems[0].line - 1].strip().startswith("memroy:")


def test_an_unknown_field_with_no_near_name_lists_the_fields_it_could_be():
    data = seed()
    data["provider_lxc"]["network"]["mtu"] = 1500
    with pytest.raises(SpecError) as raised:
        parse_spec(data, "specs/omni.yaml")
    assert str(raised.value) == (
        "specs/omni.yaml: provider_lxc.network.mtu: no such field; the fields here are bridge, address, gateway"
    )


def test_a_reference_into_a_wrong_part_is_not_judged_twice():
    data = seed()
    data["infra_provider"]["id"] = "Proxmox"  # wrong itself: the classes naming `proxmox` are not also wrong
    with pytest.raises(SpecError) as raised:
        parse_spec(data, "specs/omni.yaml")
    assert [p.path for p in raised.value.problems] == ["infra_provider.id"]


def test_every_patch_file_and_readiness_problem_is_reported_together(tmp_path):
    data = seed()
    cluster = data["clusters"]["talos-prod-01"]
    cluster["control_plane"]["patches"] = [{"name": "a", "file": "missing-a.yaml"}]
    cluster["workers"][0]["patches"] = [{"name": "b", "file": "missing-b.yaml"}]
    cluster["cni"]["cilium"]["values"] = {"kubeProxyReplacement": False}
    cluster["patches"].append({"name": "no-proxy", "inline": {"cluster": {"proxy": {"disabled": True}}}})
    with pytest.raises(SpecError) as raised:
        _load(tmp_path, data)
    assert [p.path for p in raised.value.problems] == [
        "clusters.talos-prod-01.cni.cilium.values.kubeProxyReplacement",
        "clusters.talos-prod-01.control_plane.patches[0].file",
        "clusters.talos-prod-01.workers[0].patches[0].file",
    ]
