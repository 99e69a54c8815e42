"""Taking over a provider stack an operator wrote by hand, of another shape than the program's own: another
compose project and service names, an absolute app directory, the Tailscale state in a directory beside the
files. With the spec set to those names, adoption shows exactly how the files differ, and the next `up` replaces
the stack in place: the same project and state directory, never a second provider, the tailnet identity kept."""

import json
from pathlib import Path

import pytest
import yaml

from components.cli import adoption, drift
from components.core.spec import ComposeStackSpec
from components.core.spec_file import load_spec
from components.omni.infra_provider import last_heartbeat, wait_for_registration
from components.proxmox.compose import COMPOSE_FILE, CONFIG_FILE, ENV_FILE
from components.proxmox.ssh import RemoteHost, SshSettings
from lab.docker_standin import running_service_pids
from tests.engine.estate import PROVIDER_ID, plain, running_estate

pytestmark = pytest.mark.engine

HAND_WRITTEN = {
    "directory": "/opt/matrix-provider",
    "project": "omni-infra",
    "provider_service": "omni-infra-provider-proxmox",
    "tailscale_service": "ts",
    "tailscale_state": "./tailscale",
}
IDENTITY = "tailnet node key the coordination server knows this node by\n"
DEPLOYMENT = "pulumi-python:dynamic/proxmox:ComposeDeployment"
# What the compose deployment's diff compares (ComposeDeploymentProvider.diff): where the stack is, its files,
# compose.yml's text, the services running, the container.
COMPARED = ("directory", "files", "compose_yml", "services", "container")


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    with running_estate(tmp_path_factory, "hand-written") as estate:
        yield estate


def container(estate) -> RemoteHost:
    lxc = estate.info["lxc"]
    return RemoteHost(SshSettings(lxc["ssh_host"], lxc["ssh_port"], lxc["ssh_user"], lxc["ssh_private_key"]))


def in_container(estate, command: str, stdin: str | None = None) -> str:
    [result] = container(estate).run_all([(command, stdin)])
    return result.stdout


def hand_written_files(estate) -> dict[str, str]:
    """What the operator wrote: the program's own files for those names, as a person keeps them (no header
    saying a program wrote them), with the provider restarted `always`."""
    ours = Path(estate.info["lxc"]["home"]) / "omni-provider"

    def bare(name: str) -> str:
        return "".join(line for line in (ours / name).read_text().splitlines(True) if not line.startswith("#"))

    compose = yaml.safe_load(bare(COMPOSE_FILE))
    compose["name"] = HAND_WRITTEN["project"]
    services = compose["services"]
    sidecar, provider = services.pop("tailscale"), services.pop("provider")
    sidecar["volumes"] = ["./tailscale:/var/lib/tailscale"]
    provider.update(restart="always", network_mode="service:ts", depends_on=["ts"])
    compose["services"] = {"ts": sidecar, "omni-infra-provider-proxmox": provider}
    del compose["volumes"]
    return {CONFIG_FILE: bare(CONFIG_FILE), ENV_FILE: bare(ENV_FILE), COMPOSE_FILE: yaml.safe_dump(compose)}


def docker_projects(estate) -> dict:
    state = Path(estate.info["lxc"]["home"]) / ".docker-standin" / "state.json"
    return json.loads(state.read_text())["projects"]


def test_a_hand_written_stack_of_another_shape_is_adopted_and_then_replaced_in_place(estate):
    estate.pulumi("up", "--yes", "--skip-preview")
    files = hand_written_files(estate)
    # The operator's estate: the stack was written by hand in /opt, its tailnet identity in ./tailscale, and no
    # Pulumi stack knows any of it.
    estate.forget_the_stack()
    in_container(estate, "cd ~/omni-provider && docker compose down && cd && rm -rf omni-provider")
    before = last_heartbeat(estate.omni, PROVIDER_ID)
    directory = HAND_WRITTEN["directory"]
    in_container(estate, f"mkdir -p {directory}/tailscale && chmod 700 {directory}")
    for name, content in files.items():
        in_container(estate, f"umask 077 && cat > {directory}/{name}", content)
    in_container(estate, f"cat > {directory}/tailscale/tailscaled.state", IDENTITY)
    in_container(estate, f"cd {directory} && docker compose up -d")
    wait_for_registration(estate.omni, PROVIDER_ID, before, 60)
    assert set(docker_projects(estate)) == {"omni-infra"}

    estate.edit_spec(lambda d: d["provider_lxc"]["compose"].update(HAND_WRITTEN))
    spec = load_spec(estate.project / "specs" / "omni.yaml")
    assert spec.provider_lxc.compose == ComposeStackSpec(**{**spec.provider_lxc.compose.model_dump(), **HAND_WRITTEN})
    adopt = dict(spec=spec, pulumi_argv=estate.stack.argv, cwd=estate.stack.project_dir, env=estate.stack.env())
    assert adoption.adopt(**adopt, yes=True) == 0
    compose_ups = [a for a in estate.docker_history() if a[:2] == ["compose", "up"]]

    # Exactly the difference: the files (all three lack the program's header; compose.yml's provider restarts
    # `always`), nothing else, and nothing replaced.
    preview = estate.preview_json()
    [update] = [s for s in preview["steps"] if s["op"] != "same"]
    assert update["op"] == "update" and update["urn"].split("::")[-2].endswith(DEPLOYMENT)
    # The files' digests are secrets, which a preview shows only as [secret]: compared in the state instead, where
    # adoption recorded the live stack as the outputs and the program's wishes as the inputs.
    state = json.loads(estate.pulumi("stack", "export", "--show-secrets").stdout)["deployment"]["resources"]
    [recorded] = [r for r in state if r["type"] == DEPLOYMENT]
    live, wanted = recorded["outputs"], recorded["inputs"]
    assert {k for k in COMPARED if live.get(k) != wanted.get(k)} == {"compose_yml", "files"}
    live_files, wanted_files = plain(live["files"]), plain(wanted["files"])
    assert {n for n in wanted_files if live_files[n] != wanted_files[n]} == {CONFIG_FILE, ENV_FILE, COMPOSE_FILE}
    # The drift job reads the same preview's events and names each differing field with both values: compose.yml's
    # text (the digests of the files that hold secrets are secrets themselves, so it cannot show those).
    report = drift.detect(estate.stack.argv(*drift.PREVIEW_ARGS), estate.stack.project_dir, estate.stack.env())
    assert report["exit_code"] == drift.DRIFT
    [resource] = report["resources"]
    [field] = resource["fields"]
    assert resource["name"] == "omni-provider-compose" and field["field"] == "compose_yml"
    assert "restart: always" in field["live"] and "restart: always" not in field["desired"]

    estate.pulumi("up", "--yes", "--skip-preview")
    # In place: the same project in the same directory, one provider, the tailnet identity where it was.
    assert set(docker_projects(estate)) == {"omni-infra"}
    assert set(docker_projects(estate)["omni-infra"]["services"]) == {"ts", "omni-infra-provider-proxmox"}
    assert len(running_service_pids(Path(estate.info["lxc"]["home"]))) == 1
    assert in_container(estate, f"cat {directory}/tailscale/tailscaled.state") == IDENTITY
    ups = [a for a in estate.docker_history() if a[:2] == ["compose", "up"]][len(compose_ups) :]
    assert ups == [["compose", "up", "-d"]]
    assert not [a for a in estate.docker_history() if "-v" in a or "--volumes" in a]
    assert yaml.safe_load(in_container(estate, f"cat {directory}/{COMPOSE_FILE}"))["services"][
        "omni-infra-provider-proxmox"
    ]["restart"] == ("unless-stopped")
    estate.refresh_preview_and_drift_see_no_difference()
