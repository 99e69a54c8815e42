"""The lab's SSH server for tests, as its own process on 127.0.0.1 with a port and keys made for this run:
`with running_lxc_host(tmp_path) as host: ...` (host is ssh.json's contents plus `private_key`)."""

import contextlib
import json
import os
import secrets
import sys
from pathlib import Path

from components.proxmox.ssh import public_key_of
from lab import ctl, fakepve_lab
from lab.processes import spawn
from tests.conftest import PROJECT_ROOT

COMPOSE_SCHEMA = PROJECT_ROOT / ".tools" / "compose-spec.json"


VMID = 200


@contextlib.contextmanager
def running_lxc_host(
    tmp_path: Path, containers: Path | None = None, container_file: bool = False, created: bool = True
):
    """containers: what its docker stand-in runs as containers (lab/provider_standin.py: containers()).
    container_file: the server plays a container that is created (with the lab's client key; not yet, with
    created=False: host["create_container"]() does), and that host["replace_container"]() destroys and creates
    again, and host["destroy_container"]() destroys, as lab/fakepve_lab.py does when the CT is."""
    state = tmp_path / "lxc"
    extra = ["--container-file", str(state / f"ct-{VMID}.json")] if container_file else []
    proc = spawn(
        tmp_path,
        "ssh",
        [sys.executable, "-m", "lab.ssh_standin", "--state-dir", str(state), *extra],
        env={
            **os.environ,
            "OMNI_SCALE_COMPOSE_SCHEMA": str(COMPOSE_SCHEMA),
            "OMNI_SCALE_LAB_CONTAINERS": str(containers or ""),
        },
    )
    try:
        info = ctl._wait_for(state / "ssh.json", proc, tmp_path / "ssh.log", "the lab SSH server")
        info["private_key"] = Path(info["private_key_file"]).read_text()
        if container_file:

            def create():
                fakepve_lab.tell_ssh_server(
                    str(state),
                    VMID,
                    {
                        "generation": secrets.token_hex(8),
                        "node": "foxtrot",
                        "ssh_public_keys": public_key_of(info["private_key"]),
                    },
                )
                info.update(json.loads((state / "ssh.json").read_text()))

            def destroy():
                fakepve_lab.tell_ssh_server(str(state), VMID, None)
                info.update(json.loads((state / "ssh.json").read_text()))

            def replace():
                destroy()
                create()

            if created:
                create()
            info["create_container"], info["destroy_container"] = create, destroy
            info["replace_container"] = replace
            info["info"] = lambda: json.loads((state / "ssh.json").read_text())
        yield info
    finally:
        proc.terminate()  # it stops what its containers run, too
        proc.wait(30)


def docker_history(host: dict) -> list[list[str]]:
    log = Path(host["home"]) / ".docker-standin" / "history.log"
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()] if log.exists() else []
