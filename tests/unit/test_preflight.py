"""The preflight's decisions on facts built here, no Proxmox: the seed spec against a healthy Matrix, then one
fault at a time, each the one problem it must be (tests/provider/test_storage_preflight_provider.py runs the same
rules against fakepve through the provider)."""

import dataclasses

import yaml

from components.core.spec_file import load_spec, parse_spec
from components.proxmox.client import ClusterFacts, Guest, NodeFacts, PoolFacts
from components.proxmox.preflight import pools_to_fill, privileges_on, run_preflight
from tests.conftest import PROJECT_ROOT

SPEC = load_spec(PROJECT_ROOT / "specs" / "omni.yaml")
GiB = 1024**3
NODES = ("foxtrot", "golf", "hotel")


def storage(name: str, type_: str, content: str, shared: int, **extra) -> dict:
    return {
        "storage": name,
        "type": type_,
        "content": content,
        "shared": shared,
        "enabled": 1,
        "active": 1,
        "avail": 2048 * GiB,
        **extra,
    }


def node(name: str, **changes) -> NodeFacts:
    healthy = NodeFacts(
        name=name,
        online=True,
        maxcpu=32,
        maxmem=128 * GiB,
        mem=8 * GiB,
        storages=(
            storage("local", "dir", "vztmpl,iso,backup", 0),
            storage("local-lvm", "lvmthin", "images,rootdir", 0),
            storage("vm_ssd", "rbd", "images,rootdir", 1),
        ),
        bridges=frozenset({"vmbr0"}),
        resolvers=("127.0.0.53",),
    )
    return dataclasses.replace(healthy, **changes)


def matrix(**per_node) -> ClusterFacts:
    """Matrix, healthy unless a node's facts are changed: matrix(hotel={"online": False})."""
    return ClusterFacts(nodes={n: node(n, **per_node.get(n, {})) for n in NODES})


def test_the_seed_estate_on_a_healthy_matrix_has_no_problem_and_picks_vm_ssd_everywhere():
    report = run_preflight(SPEC, matrix())
    assert report.errors == [] and report.warnings == []
    assert report.storage_by_class == {c: {n: "vm_ssd" for n in NODES} for c in SPEC.machine_classes}


def test_an_offline_node_is_named_and_no_class_is_placed_on_it():
    report = run_preflight(SPEC, matrix(hotel={"online": False}))
    assert report.errors == ["node hotel: offline"]
    assert all("hotel" not in nodes for nodes in report.storage_by_class.values())


def test_a_storage_disabled_on_one_node_is_a_problem_of_each_class_there_only():
    hotel = node("hotel")
    disabled = tuple({**s, "enabled": 0} if s["storage"] == "vm_ssd" else s for s in hotel.storages)
    report = run_preflight(SPEC, matrix(hotel={"storages": disabled}))
    assert report.errors == [
        f"class {c} on node hotel: selector picks storage vm_ssd, which is disabled on this node "
        "(storage.cfg `disable`, or a `nodes` list without it)"
        for c in SPEC.machine_classes
    ]


def test_a_shared_storage_excluded_on_one_node_keeps_its_free_space_from_the_nodes_that_use_it():
    foxtrot = node("foxtrot")
    excluded = tuple(
        {**s, "enabled": 0, "active": 0, "avail": 0} if s["storage"] == "vm_ssd" else s for s in foxtrot.storages
    )
    report = run_preflight(SPEC, matrix(foxtrot={"storages": excluded}))
    assert not [e for e in report.errors if e.startswith("capacity")], report.errors  # no shortage read from foxtrot
    assert report.readings["storages"]["vm_ssd@shared"] == 2048
    assert all("on node foxtrot: selector picks storage vm_ssd, which is disabled" in e for e in report.errors)


def test_a_selector_matching_two_storages_on_a_node_is_a_warning_naming_them():
    hotel = node("hotel")
    twin = (*hotel.storages, storage("vm_ssd_b", "rbd", "images", 1))
    spec = SPEC.model_copy(deep=True)
    data = spec.machine_classes["matrix-worker"].provider_data
    object.__setattr__(data, "storage_selector", 'name.startsWith("vm_ssd")')
    report = run_preflight(spec, matrix(hotel={"storages": twin}))
    assert report.errors == []
    assert report.warnings == [
        "class matrix-worker on node hotel: selector 'name.startsWith(\"vm_ssd\")' matches 2 storages (vm_ssd, "
        "vm_ssd_b); Proxmox lists them in no fixed order, so the provider may pick any of them: make the selector "
        "match one"
    ]


def test_a_node_without_an_iso_storage_is_named():
    golf = node("golf")
    no_iso = tuple({**s, "content": "vztmpl,backup"} if s["storage"] == "local" else s for s in golf.storages)
    report = run_preflight(SPEC, matrix(golf={"storages": no_iso}))
    assert report.errors == [
        "node golf: no enabled storage with `iso` content (the provider puts the Talos image and each VM's "
        "cloud-init ISO there)"
    ]


def test_a_missing_bridge_and_a_public_resolver_are_named_on_their_node():
    report = run_preflight(SPEC, matrix(golf={"bridges": frozenset(), "resolvers": ("1.1.1.1",)}))
    assert [e.split(";")[0] for e in report.errors] == [
        "node golf: public DNS resolver 1.1.1.1",
        "class matrix-control-plane on node golf: bridge vmbr0 does not exist on golf",
        "class matrix-worker on node golf: bridge vmbr0 does not exist on golf",
    ]


def test_memory_already_in_use_counts_and_only_what_is_still_to_build_needs_room():
    # 3 control planes of 8 GiB and 2 workers of 16 GiB to build; 20 GiB free on each node holds a control plane
    # and not a worker as well.
    tight = {n: {"maxmem": 28 * GiB} for n in NODES}
    [error] = run_preflight(SPEC, matrix(**tight)).errors
    assert error.startswith("capacity: not enough memory for the VMs still to build: ") and "MB missing" in error
    # The workers exist already (the provider's tags): nothing of them is still to build, and the rest fits.
    built = tuple(
        Guest(
            vmid=200 + i,
            node=n,
            kind="qemu",
            running=True,
            vcpus=8,
            memory_mb=16384,
            tags=frozenset({"machine-request.talos-prod-01-workers"}),
        )
        for i, n in enumerate(("foxtrot", "golf"))
    )
    assert run_preflight(SPEC, dataclasses.replace(matrix(**tight), guests=built)).errors == []


def _with_worker_class(**changes):
    spec = SPEC.model_copy(deep=True)
    data = spec.machine_classes["matrix-worker"].provider_data
    for key, value in changes.items():
        object.__setattr__(data, key, value)
    return spec


def _vm(vmid: int, on: str, tag: str = "other") -> Guest:
    return Guest(vmid=vmid, node=on, kind="qemu", running=True, vcpus=1, memory_mb=1024, tags=frozenset({tag}))


def _worker_placement(spec, facts) -> dict:
    report = run_preflight(spec, facts)
    assert report.errors == []
    return report.readings["machine_sets"]["talos-prod-01-workers"]["placement"]


def test_the_placement_strategy_changes_where_the_workers_are_predicted():
    # Free memory: foxtrot 120 GiB, golf 100 GiB, hotel 60 GiB.
    facts = matrix(golf={"mem": 28 * GiB}, hotel={"mem": 68 * GiB})
    assert _worker_placement(_with_worker_class(), facts) == {"foxtrot": 1, "golf": 1}  # spread: most free memory
    assert _worker_placement(_with_worker_class(placement_strategy="binpack"), facts) == {"hotel": 2}
    assert _worker_placement(_with_worker_class(placement_strategy="round-robin"), facts) == {"foxtrot": 1, "golf": 1}
    crowded = dataclasses.replace(facts, guests=(_vm(300, "foxtrot"), _vm(301, "foxtrot"), _vm(302, "golf")))
    assert _worker_placement(_with_worker_class(placement_strategy="fewer-vms"), crowded) == {"hotel": 1, "golf": 1}
    # round-robin ignores memory: hotel, with the least, is still next by name after golf.
    three = _with_worker_class(placement_strategy="round-robin")
    object.__setattr__(three.clusters["talos-prod-01"].workers[0], "size", 3)
    assert _worker_placement(three, facts) == {"foxtrot": 1, "golf": 1, "hotel": 1}


def test_with_ha_the_existing_vms_of_the_set_are_not_counted_by_the_provider():
    from components.core.spec import HaConfig

    spec = _with_worker_class(ha=HaConfig(state="started"))
    object.__setattr__(spec.clusters["talos-prod-01"].workers[0], "size", 3)
    tag = "machine-request.talos-prod-01-workers"
    facts = dataclasses.replace(matrix(), guests=(_vm(300, "foxtrot", tag),))
    # Without ha the one on foxtrot counts, and the two still to build go elsewhere; with ha foxtrot is as good.
    without = _with_worker_class()
    object.__setattr__(without.clusters["talos-prod-01"].workers[0], "size", 3)
    assert _worker_placement(without, facts) == {"golf": 1, "hotel": 1}
    assert _worker_placement(spec, facts) == {"foxtrot": 1, "golf": 1}


# ------------------------------------------------------------------ pools
# The provider (v0.3, its syncVM and ensurePool) puts every VM in the class's `pool`, or, unset, in the pool named
# after the VM's machine request set; it finds pools by listing those its token may see (Pool.Audit), creates the
# set's own pool when it does not find it (Pool.Allocate), and fails on any other pool it does not find.

PROVIDER = "omni-provider@pve!provider"
SETS = ("talos-prod-01-control-planes", "talos-prod-01-workers")
EVERYTHING = {"/": {"Pool.Allocate": 1, "Pool.Audit": 1, "VM.Allocate": 1}}


def with_pools(existing=(), permissions=EVERYTHING, token=PROVIDER, unread_because="") -> ClusterFacts:
    return dataclasses.replace(
        matrix(), pools=PoolFacts(frozenset(existing), token, permissions, unread_because=unread_because)
    )


def pool_problems(spec, facts) -> tuple[list[str], list[str]]:
    report = run_preflight(spec, facts)
    return report.errors, report.warnings


def test_each_machine_set_still_to_build_fills_its_own_pool_unless_its_class_names_one():
    assert pools_to_fill(SPEC, ()) == {
        ("matrix-control-plane", SETS[0]): [SETS[0]],
        ("matrix-worker", SETS[1]): [SETS[1]],
    }
    assert pools_to_fill(_with_worker_class(pool="talos"), ())[("matrix-worker", "talos")] == [SETS[1]]
    # Nothing left to build: the provider makes no VM, so no pool is needed (and the preflight reads none).
    built = tuple(
        _vm(300 + i, NODES[i % 3], f"machine-request.{s}") for i, s in enumerate([SETS[0]] * 3 + [SETS[1]] * 2)
    )
    assert pools_to_fill(SPEC, built) == {}


def test_privileges_are_the_paths_own_or_what_the_nearest_listed_path_above_hands_down():
    answer = {"/": {"Sys.Audit": 1, "Pool.Audit": 0}, "/pool": {"Pool.Allocate": 1}, "/pool/a": {"VM.Allocate": 0}}
    assert privileges_on(answer, "/pool/a") == {"VM.Allocate"}  # listed: its own (PVE resolved it already)
    assert privileges_on(answer, "/pool/b") == {"Pool.Allocate"}  # a pool not made yet inherits from /pool
    assert privileges_on(answer, "/pool/a/b") == set()  # VM.Allocate on /pool/a does not propagate
    assert privileges_on({"/": {"Pool.Audit": 1, "Sys.Audit": 0}}, "/pool/x") == {"Pool.Audit"}
    assert privileges_on({}, "/pool/x") == set()


def test_the_sets_own_pools_missing_are_no_problem_when_the_provider_may_create_and_see_them():
    assert pool_problems(SPEC, with_pools()) == ([], [])
    may = {"/pool": {"Pool.Allocate": 1, "Pool.Audit": 1}}
    assert pool_problems(SPEC, with_pools(permissions=may)) == ([], [])


def test_a_sets_own_pool_missing_that_the_provider_may_not_create_is_one_error_per_class():
    errors, _ = pool_problems(SPEC, with_pools(permissions={"/": {"Pool.Audit": 1, "VM.Allocate": 1}}))
    assert errors == [
        f"machine_classes.{c}.provider_data.pool: pool {s!r} (`pool` unset: its machine request set's) does not "
        f"exist and the provider's token {PROVIDER} may not create it (needs Pool.Allocate on /pool/{s})"
        for c, s in zip(("matrix-control-plane", "matrix-worker"), SETS, strict=True)
    ]
    # It exists: nothing to create.
    assert pool_problems(SPEC, with_pools(SETS, {"/": {"Pool.Audit": 1}})) == ([], [])


def test_without_pool_audit_the_provider_does_not_find_a_pool_and_fails():
    only_allocate = {"/": {"Pool.Allocate": 1, "VM.Allocate": 1}}
    errors, _ = pool_problems(SPEC, with_pools([SETS[0]], only_allocate))
    assert errors == [
        f"machine_classes.matrix-control-plane.provider_data.pool: the provider's token {PROVIDER} may not see pool "
        f"{SETS[0]!r} (`pool` unset: its machine request set's) (needs Pool.Audit on /pool/{SETS[0]}): it finds the "
        'pool by listing pools, and fails with "already exists" when it tries to create it',
        f"machine_classes.matrix-worker.provider_data.pool: the provider's token {PROVIDER} may not see pool "
        f"{SETS[1]!r} (`pool` unset: its machine request set's) (needs Pool.Audit on /pool/{SETS[1]}): it finds the "
        'pool by listing pools, and fails with "already exists" when it tries to create it',
    ]
    errors, _ = pool_problems(SPEC, with_pools(permissions={"/": {"VM.Allocate": 1}}))
    assert errors[1].endswith(
        f"may not create it (needs Pool.Allocate and Pool.Audit on /pool/{SETS[1]}: to create the pool, then to find "
        "it when it lists pools)"
    )


def test_a_named_pool_must_exist_whatever_the_token_may_do():
    spec = _with_worker_class(pool="talos")
    assert pool_problems(spec, with_pools(["talos"])) == ([], [])
    # The provider creates only a set's own pool: Pool.Allocate does not help.
    assert pool_problems(spec, with_pools()) == (
        [
            "machine_classes.matrix-worker.provider_data.pool: pool 'talos' does not exist; the provider creates only "
            "the pool named after a machine request set, so create it in Proxmox (pveum pool add talos) or leave "
            "`pool` unset"
        ],
        [],
    )
    # Named after its own set, it is the set's pool: created when missing.
    assert pool_problems(_with_worker_class(pool=SETS[1]), with_pools()) == ([], [])
    hidden = {"/pool/talos-prod-01-control-planes": {"Pool.Audit": 1, "Pool.Allocate": 1}, "/pool/talos": {}}
    errors, _ = pool_problems(spec, with_pools(["talos"], hidden))
    assert errors == [
        f"machine_classes.matrix-worker.provider_data.pool: the provider's token {PROVIDER} may not see pool 'talos' "
        '(needs Pool.Audit on /pool/talos): it finds the pool by listing pools, and fails with "does not exist"'
    ]


def test_permissions_not_read_are_one_warning_not_an_error():
    refused = "GET /access/permissions: 403 Forbidden: Permission check failed (/access, Sys.Audit)"
    spec = _with_worker_class(pool="talos")
    errors, warnings = pool_problems(spec, with_pools(["talos"], None, unread_because=refused))
    assert errors == []
    assert warnings == [
        f"pools {SETS[0]!r}, 'talos': the provider's token is not checked: the preflight's token may not read its "
        f"permissions ({refused}; reading another token's needs Sys.Audit on /access, as PVEAuditor on / gives); the "
        "provider needs Pool.Audit on each pool to find it, and Pool.Allocate to create its machine request set's pool"
    ]
    # The existence of a named pool needs no permissions: still an error.
    errors, _ = pool_problems(spec, with_pools((), None, unread_because=refused))
    assert [e.split(";")[0] for e in errors] == [
        "machine_classes.matrix-worker.provider_data.pool: pool 'talos' does not exist"
    ]
    _, warnings = pool_problems(SPEC, with_pools((), None, token=None))
    assert warnings[0].startswith(
        f"pools {SETS[0]!r}, {SETS[1]!r}: the provider's token is not checked: "
        "omni-scale:providerProxmoxTokenId is not set; "
    )


def test_a_class_that_matches_labels_is_left_out_of_every_prediction():
    data = yaml.safe_load((PROJECT_ROOT / "specs" / "omni.yaml").read_text())
    data["machine_classes"]["bare-metal"] = {"match_labels": ["rack = a"]}
    data["clusters"]["talos-prod-01"]["workers"].append({"name": "metal", "machine_class": "bare-metal", "size": 9})
    spec = parse_spec(data, "specs/omni.yaml")
    # No memory anywhere to spare: nine machines of that class would not fit, but none is a VM to build.
    tight = {n: {"maxmem": 28 * GiB} for n in NODES}
    assert run_preflight(spec, matrix(**tight)).errors == run_preflight(SPEC, matrix(**tight)).errors
    report = run_preflight(spec, matrix())
    assert report.errors == [] and "bare-metal" not in report.storage_by_class
