"""The lab's stand-in for the Omni Proxmox infra provider: what the real one does towards
Omni when it runs, and nothing else (it builds no VMs): register its InfraProviderStatus
with the providerdata JSON schema, then report a heartbeat every few seconds.

    python lab/provider_standin.py --omni-dir DIR --provider-id Proxmox [--interval 5]
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

if __package__ in (None, ""):  # run as a script by lab.ctl
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab import omni_standin  # noqa: E402

SCHEMA = Path(__file__).with_name("proxmox-providerdata.schema.json")


def register(omni_dir: str, provider_id: str) -> None:
    omni_standin.register_provider(omni_dir, provider_id, name="Proxmox",
                                   description="Proxmox infrastructure provider (lab stand-in)",
                                   schema=SCHEMA.read_text())
    omni_standin.heartbeat(omni_dir, provider_id)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--omni-dir", required=True)
    parser.add_argument("--provider-id", required=True)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    register(args.omni_dir, args.provider_id)
    print(f"provider stand-in {args.provider_id} registered", flush=True)
    while not stop.wait(args.interval):
        omni_standin.heartbeat(args.omni_dir, args.provider_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
