"""The provider's own Proxmox identity, made by the program on the lab's fakepve (which keeps users, roles, ACL
entries and tokens as PVE does: lab/fakepve_access.py): made on an empty lab, run on by the provider stand-in,
put back when changed by hand, rotated (new token, deployed, provider restarted, old token deleted), renewed when
its life runs short, and never shown."""

import json
from pathlib import Path

import pytest
import yaml

from components.cli import drift
from components.core.spec import PROVIDER_PRIVILEGES
from components.omni.infra_provider import last_heartbeat
from components.proxmox.client import ProxmoxClient, ProxmoxError, ProxmoxNotFound, ProxmoxSettings
from tests.engine.estate import ENGINE_RPC_LOG, PROVIDER_ID, SPEC_IDENTITY, log_message, plain, running_estate

USER, ROLE = SPEC_IDENTITY["user"], SPEC_IDENTITY["role"]
ACCESS, TOKEN = "omni-provider-proxmox-identity-access", "omni-provider-proxmox-identity-token"


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    with running_estate(tmp_path_factory, "proxmox-identity") as estate:
        yield estate


@pytest.fixture(scope="module")
def first_up(estate) -> dict:
    before = {}
    try:
        estate.pve().get(f"access/users/{USER}")
        before["user"] = True
    except ProxmoxNotFound:
        before["user"] = False
    estate.pulumi("up", "--yes", "--skip-preview")
    return before


pytestmark = [pytest.mark.engine, pytest.mark.usefixtures("first_up")]


def token(estate) -> dict:
    outputs = estate.state_resource(TOKEN, "pulumi-python:dynamic/proxmox:ProviderToken")["outputs"]
    return {"id": outputs["token_id"], "secret": plain(outputs["token_secret"])}


def deployed_token(estate) -> dict:
    proxmox = yaml.safe_load((estate.stack_dir / "config.yaml").read_text())["proxmox"]
    return {"id": proxmox["tokenID"], "secret": proxmox["tokenSecret"]}


def as_token(estate, held: dict) -> ProxmoxClient:
    return ProxmoxClient(
        ProxmoxSettings(
            estate.info["proxmox"]["api_url"], held["id"], held["secret"], verify_tls=estate.info["proxmox"]["cafile"]
        )
    )


def provider_starts(estate) -> int:
    projects = json.loads((Path(estate.info["lxc"]["home"]) / ".docker-standin" / "state.json").read_text())
    return projects["projects"]["omni-provider"]["services"]["provider"]["starts"]


def test_an_empty_lab_gets_the_user_role_acl_and_a_privsep_token_and_the_provider_runs_on_it(estate, first_up):
    assert first_up["user"] is False  # nothing of the provider's in Proxmox before the first up
    pve = estate.pve()
    assert sorted(pve.get(f"access/roles/{ROLE}")) == sorted(PROVIDER_PRIVILEGES)
    held = token(estate)
    assert held["id"] == f"{USER}!omni-scale-1" and deployed_token(estate) == held
    [info] = pve.get(f"access/users/{USER}/token")
    assert (info["tokenid"], info["privsep"]) == ("omni-scale-1", 1) and info["expire"] > 0
    entries = {(e["type"], e["ugid"], e["roleid"], e["path"]) for e in pve.get("access/acl")}
    assert {("user", USER, ROLE, "/"), ("token", held["id"], ROLE, "/")} <= entries
    # A privsep token holds its own entries' privileges, which its user holds too: exactly the role.
    assert pve.get("access/permissions", userid=held["id"]) == {"/": dict.fromkeys(sorted(PROVIDER_PRIVILEGES), 1)}
    # The provider stand-in made every VM with it (fakepve checks each call against those privileges).
    assert len(estate.provider_vms()) == 5
    as_token(estate, held).get("version")


def test_a_privilege_taken_away_by_hand_is_drift_and_up_gives_it_back(estate):
    pve = estate.pve()
    fewer = sorted(set(PROVIDER_PRIVILEGES) - {"VM.PowerMgmt"})
    pve.call("PUT", f"access/roles/{ROLE}", privs=",".join(fewer))
    report = drift.detect(estate.stack.argv(*drift.PREVIEW_ARGS), estate.stack.project_dir, estate.stack.env())
    assert report["exit_code"] == drift.DRIFT and [r["name"] for r in report["resources"]] == [ACCESS], report
    estate.pulumi("up", "--yes", "--skip-preview", "--refresh")
    assert sorted(pve.get(f"access/roles/{ROLE}")) == sorted(PROVIDER_PRIVILEGES)


def test_a_rotation_deploys_a_new_token_restarts_the_provider_then_deletes_the_old_one(estate, tmp_path):
    old = token(estate)
    starts, heartbeat = provider_starts(estate), last_heartbeat(estate.omni, PROVIDER_ID)
    estate.set_config("omni-scale:providerTokenRotation", "engine-test")
    run = estate.stack.run("up", "--yes", "--skip-preview", "--logtostderr", "-v=9")
    new = token(estate)
    assert new["id"] == f"{USER}!omni-scale-2" and deployed_token(estate) == new
    # config.yaml is bind-mounted: the provider was restarted to read it, and registered again.
    assert provider_starts(estate) == starts + 1 and last_heartbeat(estate.omni, PROVIDER_ID) > heartbeat
    tokens = [t["tokenid"] for t in estate.pve().get(f"access/users/{USER}/token")]
    assert tokens == ["omni-scale-2"]
    with pytest.raises(ProxmoxError, match="refused"):
        as_token(estate, old).get("version")
    as_token(estate, new).get("version")
    # The secrets: in the state only encrypted, in no output, in no command run in the container, and in the
    # engine's -v=9 log only on its RPC marshalling lines.
    state, outputs = estate.state_text(), json.dumps(estate.stack_outputs())
    commands = (estate.lab_dir / "lxc" / "commands.log").read_text()
    secrets = (old["secret"], new["secret"])
    assert not any(s in text for s in secrets for text in (state, outputs, commands))
    leaking = {log_message(line) for line in (run.stdout + run.stderr).splitlines() if any(s in line for s in secrets)}
    assert leaking <= ENGINE_RPC_LOG, leaking
    estate.refresh_preview_and_drift_see_no_difference()


def test_a_token_in_the_last_third_of_its_asked_life_is_replaced(estate):
    # A token of a quarter hour (made by a rotation), then the spec's year again: it is then in the last third of
    # its asked life, and `up` makes the next one.
    estate.edit_spec(lambda d: d["infra_provider"]["proxmox_identity"].update(token_ttl_days=0.01))
    estate.set_config("omni-scale:providerTokenRotation", "short")
    estate.pulumi("up", "--yes", "--skip-preview")
    assert token(estate)["id"].endswith("!omni-scale-3")
    estate.edit_spec(lambda d: d["infra_provider"]["proxmox_identity"].update(token_ttl_days=365))
    preview = estate.preview_json()
    changing = {s["urn"].split("::")[-1]: s["op"] for s in preview["steps"] if s["op"] != "same"}
    assert changing.get(TOKEN) == "update" and ACCESS not in changing, changing
    estate.pulumi("up", "--yes", "--skip-preview")
    assert token(estate)["id"].endswith("!omni-scale-4") and deployed_token(estate) == token(estate)
    assert [t["tokenid"] for t in estate.pve().get(f"access/users/{USER}/token")] == ["omni-scale-4"]
    estate.refresh_preview_and_drift_see_no_difference()
