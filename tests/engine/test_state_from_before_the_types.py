"""An existing state keeps working when each kind of dynamic resource gets a type of its own: a lab estate built by
the code as it was when that change began (every dynamic resource `pulumi-python:dynamic:Resource`, taken from
git), then the current code. A refresh runs the providers that state pickled; preview shows every resource the
same (the aliases carry the old URNs over: nothing created, replaced or deleted); `up` records the new types and
touches nothing live; after it, preview and refresh are clean."""

import json

import pytest

from tests.engine.estate import (
    CLASS,
    CLASS_TYPE,
    CLUSTER,
    CLUSTER_TYPE,
    PROVIDER_ID,
    UNTYPED,
    program_at,
    running_estate,
    swap_program,
)

pytestmark = pytest.mark.engine
BEFORE_THE_TYPES = "3843c14e079f82e22b7f54ccb270b69ec3f6eec3"


def _resources(estate) -> dict:
    """name -> (type, id) of every resource of the program's own and of pulumi-kubernetes."""
    deployment = json.loads(estate.pulumi("stack", "export").stdout)["deployment"]
    return {
        r["urn"].rsplit("::", 1)[1]: (r["type"], r.get("id"))
        for r in deployment["resources"]
        if r["type"].startswith(("pulumi-python:", "kubernetes:"))
    }


# What the program registers that the code before it did not: the Omni identities (components/omni/service_accounts.py)
# and the provider's Proxmox identity (components/proxmox/identity.py: a component around its access, its token and
# the resource that retires replaced tokens).
NEW_IDENTITIES = {
    f"infra-provider-{PROVIDER_ID}": "create",
    "service-account-drift": "create",
    "omni-provider-proxmox-identity": "create",
    "omni-provider-proxmox-identity-access": "create",
    "omni-provider-proxmox-identity-token": "create",
    "omni-provider-proxmox-identity-retired-tokens": "create",
}


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    with running_estate(tmp_path_factory, "untyped") as estate:
        estate.provider_made_by_hand()  # that code ran the provider on the key the operator made
        swap_program(estate.project, program_at(BEFORE_THE_TYPES))
        estate.pulumi("up", "--yes", "--skip-preview")
        estate.before = _resources(estate)
        estate.live_before = {
            "class": estate.live_class(),
            "container": estate.ct_config(),
            "release": estate.release()["version"],
            "workers": estate.live_workers(),
        }
        swap_program(estate.project, None)
        # The seed's etcd backups came later, as a change of the estate (a new store, the cluster's interval): left
        # out, so what the code's move alone does shows.
        estate.edit_spec(_without_backups)
        yield estate


def _without_backups(data: dict) -> None:
    data.pop("backups", None)
    for cluster in data["clusters"].values():
        cluster.get("features", {}).pop("backup_interval", None)


def test_the_old_state_holds_every_dynamic_resource_untyped(estate):
    dynamic = {name: type_ for name, (type_, _id) in estate.before.items() if type_.startswith("pulumi-python:")}
    assert set(dynamic.values()) == {UNTYPED} and len(dynamic) == 7, dynamic


def test_a_refresh_before_any_up_runs_the_providers_the_state_pickled(estate):
    refreshed = estate.pulumi("refresh", "--yes", "--skip-preview", "--expect-no-changes", check=False)
    assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr
    assert _resources(estate) == estate.before


def test_preview_shows_every_resource_the_same(estate):
    steps = json.loads(estate.pulumi("preview", "--json", "--show-sames").stdout)["steps"]
    changed = {s["urn"].rsplit("::", 1)[1]: s["op"] for s in steps if s["op"] != "same"}
    # Only the identities the program has managed since: the provider's Omni account and its Proxmox token are taken
    # over with the key and the token the stack config holds (the ones its files have), so the compose stack stays
    # the same.
    assert changed == NEW_IDENTITIES, changed
    # The preview already speaks of them by their new types.
    types = {s["urn"].rsplit("::", 1)[1]: s["newState"]["type"] for s in steps}
    assert (types[CLASS], types[CLUSTER]) == (CLASS_TYPE, CLUSTER_TYPE)


def test_up_records_the_new_types_and_touches_nothing_live(estate):
    estate.pulumi("up", "--yes", "--skip-preview")
    [last] = json.loads(estate.pulumi("stack", "history", "--output", "json", "--page-size", "1").stdout)
    assert set(last["resourceChanges"]) == {"same", "create"}, last["resourceChanges"]
    assert last["resourceChanges"]["create"] == len(NEW_IDENTITIES)
    after = _resources(estate)
    assert after.keys() - estate.before.keys() == NEW_IDENTITIES.keys() - {"omni-provider-proxmox-identity"}
    after = {name: after[name] for name in estate.before}
    for name, (type_, id_) in after.items():
        old_type, old_id = estate.before[name]
        assert id_ == old_id, name  # the same thing, never a new one
        assert (
            type_ == old_type
            if not old_type.startswith("pulumi-python:")
            else type_.startswith("pulumi-python:dynamic/")
        ), (name, type_)
    assert {
        "class": estate.live_class(),
        "container": estate.ct_config(),
        "release": estate.release()["version"],
        "workers": estate.live_workers(),
    } == estate.live_before
    clean = estate.pulumi("preview", "--expect-no-changes", check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    refreshed = estate.pulumi("refresh", "--yes", "--skip-preview", "--expect-no-changes", check=False)
    assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr
