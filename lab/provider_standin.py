"""The Omni Proxmox infra provider in the lab, from Omni's side and from the LXC's.

- create(): `omnictl infraprovider create ID` as the lab's admin, the operator's own step before the provider
  can run: Omni makes the provider's service account (`infra-provider:ID`, role InfraProvider) and prints its
  key once; the lab hands that key to the stack (providerOmniServiceAccountKey).
- The provider itself runs in the lab stack's LXC: when `docker compose up -d` starts the provider's container,
  the lab's docker stand-in starts lab/provider-standin (Go, on Omni's own infra-provider library) with the
  files the program deployed, as containers() describes: it registers a few seconds later, heartbeats, and
  makes a VM in fakepve for every MachineRequest. report_error() sets what its heartbeat reports.
- For provider-level tests that need Omni to hold a given provider status without a provider running,
  register() and set_heartbeat() write what the provider writes, as its key: its InfraProviderStatus with
  the providerdata schema, and an InfraProviderHealthStatus heartbeat (an error, or an old timestamp).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from components.omni.infra_provider import HEALTH_NAMESPACE, HEALTH_TYPE, STATUS_NAMESPACE, STATUS_TYPE
from lab import omni_lab
from lab.processes import wait_until, write_file_atomically, write_private_json

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCHEMA = Path(__file__).with_name("proxmox-providerdata.schema.json")
PROVIDER_IMAGE = "ghcr.io/siderolabs/omni-infra-provider-proxmox"
# The lab's heartbeat interval: the library's default is 30 s; a shorter one lets a test see a report sooner.
HEARTBEAT_INTERVAL = "10s"
# How long the provider's container takes to start (image pulled, process up) before the provider runs.
CONTAINER_START_SECONDS = 2


def create(omni: dict, provider_id: str) -> str:
    """`omnictl infraprovider create ID`; returns the key it printed."""
    return omni_lab.printed_key(omni_lab.lab_omnictl(omni).run("infraprovider", "create", provider_id))


def containers(lxc_dir: Path, omni: dict, proxmox_cafile: str) -> Path:
    """What the docker stand-in runs for the provider's image: the stand-in binary with the lab's extras (the
    schema it publishes, where its boot ISOs would come from, the health knob), trusting the lab's Omni and
    fakepve certificates. Written to LXC_DIR/containers.json; returns its path."""
    bundle = lxc_dir / "ca-bundle.pem"
    write_file_atomically(bundle, Path(omni["ca_file"]).read_text() + Path(proxmox_cafile).read_text(), 0o644)
    path = lxc_dir / "containers.json"
    write_private_json(
        path,
        {
            PROVIDER_IMAGE: {
                "argv": [
                    str(PROJECT_ROOT / ".tools" / "bin" / "omni-infra-provider-standin"),
                    "--schema-file",
                    str(SCHEMA),
                    "--health-file",
                    str(lxc_dir / "provider-health"),
                    "--health-check-interval",
                    HEARTBEAT_INTERVAL,
                    "--image-factory-url",
                    f"http://{omni_lab.HOST}:{omni_lab.FACTORY_PORT}",
                ],
                "env": {"SSL_CERT_FILE": str(bundle)},
                "start_delay_seconds": CONTAINER_START_SECONDS,
            }
        },
    )
    return path


def log_file(lab_dir: Path) -> Path:
    """The provider container's output (what `docker compose logs provider` shows) in a lab's LXC."""
    return lab_dir / "lxc" / "root" / ".docker-standin" / "omni-provider-provider.log"


def report_error(lab_dir: Path, omni: dict, provider_id: str, error: str = "") -> None:
    """From the next heartbeat on, the running provider reports this error (or none); returns once Omni shows it."""
    write_file_atomically(lab_dir / "lxc" / "provider-health", error)
    admin = omni_lab.lab_omnictl(omni)

    def shown() -> bool:
        health = admin.get_or_none(HEALTH_TYPE, provider_id, HEALTH_NAMESPACE) or {}
        return ((health.get("spec") or {}).get("error") or "") == error

    wait_until(shown, None, "the provider's heartbeat report", log_file(lab_dir), 60)


def register(state_dir: Path, omni: dict, provider_id: str) -> str:
    """For provider-level tests: creates the provider and writes its status and one heartbeat, as its key
    would; returns the key (kept in DIR/provider.json, 0600)."""
    key = create(omni, provider_id)
    write_private_json(state_dir / "provider.json", {"omni": omni, "provider_id": provider_id, "key": key})
    omni_lab.lab_omnictl(omni, key).apply(
        {
            "metadata": {"namespace": STATUS_NAMESPACE, "type": STATUS_TYPE, "id": provider_id},
            "spec": {
                "name": "Proxmox",
                "description": "Proxmox infrastructure provider (lab)",
                "schema": SCHEMA.read_text(),
            },
        }
    )
    set_heartbeat(state_dir)
    return key


def set_heartbeat(state_dir: Path, *, error: str = "", age_seconds: float = 0) -> None:
    """For provider-level tests: one heartbeat written as the provider's key, age_seconds old, with error."""
    registration = json.loads((state_dir / "provider.json").read_text())
    omni_lab.lab_omnictl(registration["omni"], registration["key"]).apply(
        {
            "metadata": {"namespace": HEALTH_NAMESPACE, "type": HEALTH_TYPE, "id": registration["provider_id"]},
            "spec": {"lastheartbeattimestamp": {"seconds": int(time.time() - age_seconds)}, "error": error},
        }
    )
