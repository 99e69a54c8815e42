"""The lab's stand-in for the Omni Proxmox infra provider: what the real one does towards Omni when it
runs, and nothing else (it builds no VMs), against the lab's real Omni with the real omnictl:

1. `omnictl infraprovider create ID`, as the lab's admin: Omni makes the provider's service account
   (`infra-provider:ID`, role InfraProvider) and prints its key once;
2. as that key, its InfraProviderStatus (namespace infra-provider) with the provider's real providerdata
   JSON schema (lab/proxmox-providerdata.schema.json), which Omni validates every MachineClass against;
3. as that key, an InfraProviderHealthStatus (namespace infra-provider-ephemeral) heartbeat every few
   seconds; Omni counts a provider as disconnected 30 s after the last one.

Tests change what the heartbeat says (an error, an old timestamp) with set_heartbeat().

    python lab/provider_standin.py --state-dir DIR [--interval 10]
    (the Omni endpoint, CA file, provider id and key are read from DIR/provider.json, written by register())
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script by lab.ctl
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.infra_provider import HEALTH_NAMESPACE, HEALTH_TYPE, STATUS_NAMESPACE, STATUS_TYPE  # noqa: E402
from lab import omni_lab  # noqa: E402
from lab.processes import request_and_await, write_private_json  # noqa: E402

SCHEMA = Path(__file__).with_name("proxmox-providerdata.schema.json")
CONTROL = "provider-heartbeat.json"  # what the next heartbeats say; written by set_heartbeat()
ACK = "provider-heartbeat.done"


def register(state_dir: Path, omni: dict, provider_id: str) -> str:
    """Registers the provider with Omni; returns its service-account key (kept in DIR/provider.json, 0600)."""
    admin = omni_lab.lab_omnictl(omni)
    key = omni_lab.printed_key(admin.run("infraprovider", "create", provider_id))
    write_private_json(state_dir / "provider.json", {"omni": omni, "provider_id": provider_id, "key": key})
    as_provider = omni_lab.lab_omnictl(omni, key)
    as_provider.apply({"metadata": {"namespace": STATUS_NAMESPACE, "type": STATUS_TYPE, "id": provider_id},
                       "spec": {"name": "Proxmox", "description": "Proxmox infrastructure provider (lab stand-in)",
                                "schema": SCHEMA.read_text()}})
    heartbeat(state_dir)
    return key


def heartbeat(state_dir: Path) -> int:
    """One heartbeat, as the control file says; returns the control's sequence number."""
    registration = json.loads((state_dir / "provider.json").read_text())
    try:
        control = json.loads((state_dir / CONTROL).read_text())
    except FileNotFoundError:
        control = {"seq": 0, "error": "", "age_seconds": 0}
    at = int(time.time() - control["age_seconds"])
    omni_lab.lab_omnictl(registration["omni"], registration["key"]).apply(
        {"metadata": {"namespace": HEALTH_NAMESPACE, "type": HEALTH_TYPE, "id": registration["provider_id"]},
         "spec": {"lastheartbeattimestamp": {"seconds": at}, "error": control["error"]}})
    return control["seq"]


def set_heartbeat(state_dir: Path, pid: int | None, *, error: str = "", age_seconds: float = 0) -> None:
    """From now on the provider reports this (an error, a heartbeat age_seconds old); returns once it has.
    With no heartbeat process (pid None) the report is made here, once."""
    report = {"error": error, "age_seconds": age_seconds}
    if pid is None:
        write_private_json(state_dir / CONTROL, {"seq": 0, **report})
        heartbeat(state_dir)
        return
    request_and_await(pid, state_dir / CONTROL, state_dir / ACK, report, "the provider stand-in's report",
                      state_dir / "provider.log")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--interval", type=float, default=10.0)
    args = parser.parse_args(argv)
    stop, wake = threading.Event(), threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: (stop.set(), wake.set()))
    signal.signal(signal.SIGUSR1, lambda *_: wake.set())
    while not stop.is_set():
        wake.clear()
        try:
            seq = heartbeat(args.state_dir)
            write_private_json(args.state_dir / ACK, {"seq": seq})
        except Exception as exc:  # noqa: BLE001 - Omni down for a test: report it and keep beating
            print(f"provider stand-in: heartbeat failed: {exc}", file=sys.stderr, flush=True)
        wake.wait(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
