"""Start, stop and use the lab: everything the `lab` stack talks to, on loopback only.

    python -m lab.ctl start     fakepve (Matrix-shaped), the real Omni (lab/omni_lab.py), the provider LXC's
                                SSH server and a Kubernetes API server
    python -m lab.ctl stop
    python -m lab.ctl up        start, configure the lab stack, `pulumi up`, print the outputs
    python -m lab.ctl pulumi ARGS...   any pulumi command on the lab stack
    python -m lab.ctl drift [REPORT]   drift detection on the lab stack (exit 0 none, 1 drift, 2 unjudged)
    python -m lab.ctl survive          what losing each Proxmox node would leave, per cluster (exit 0 every
                                       cluster keeps quorum, 1 some loss breaks it, 2 unjudged)
    python -m lab.ctl adopt [--yes]    take over what already runs in the lab: the plan, then (confirmed) the
                                       adopting `up` (see components/cli/adoption.py)
    python -m lab.ctl fault NAME ARGS  a Proxmox fault on demand: node-offline NODE, node-online NODE, ceph-down,
                                       ceph-up, storage-full STORAGE, storage-free STORAGE GIB,
                                       flaky-network DROP_RATE, token-expired
    python -m lab.ctl backup CLUSTER [--timeout S]   an etcd backup of the cluster now, waited for
                                       (components/cli/backup.py; in the lab Omni's attempt fails: no Talos API)
    python -m lab.ctl service-account-key NAME [--out FILE]   the key of a service account the program made
                                       (components/cli/keys.py): printed to a terminal, or into a new 0600 file

The lab's secrets are made per start, kept in <lab>/lab.json (mode 0600) and handed
to the stack as Pulumi secrets through stdin, never argv.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from components.core.spec_file import load_spec

from . import kube_lab, omni_lab, provider_standin, s3_lab
from .docker_standin import running_service_pids
from .processes import pid_alive, request_and_await, spawn, terminate, wait_until, write_private_json

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STACK = "lab"
# Files a pulumi run creates (the engine's log files among them) are readable by their owner only.
PRIVATE = 0o077


def lab_dir() -> Path:
    return Path(os.environ.get("OMNI_SCALE_LAB_DIR") or PROJECT_ROOT / ".lab").resolve()


def _wait_for(path: Path, proc: subprocess.Popen, log: Path, what: str) -> dict:
    """The info file a server writes once it listens (written atomically: complete when it exists)."""
    return wait_until(lambda: path.exists() and json.loads(path.read_text()), proc, what, log)


def start(directory: Path | None = None) -> dict:
    """Starts the lab (or returns the running one) and returns lab.json's contents."""
    directory = directory or lab_dir()
    directory.mkdir(parents=True, exist_ok=True)
    info_file = directory / "lab.json"
    if info_file.exists():
        info = json.loads(info_file.read_text())
        if (
            "kubernetes" in info
            and all(pid_alive(info[part]["pid"]) for part in ("proxmox", "lxc") + (("s3",) if "s3" in info else ()))
            and all(pid_alive(pid) for pid in info["kubernetes"]["pids"] + info["omni"]["pids"])
        ):
            return info
        stop(directory)
    # fakepve keeps its guests in memory only, so a new lab starts empty everywhere: Omni's resources,
    # the container's files and the lab stack's state go too, or they would describe things that are gone.
    for stale in ("omni", "lxc", "kubernetes", "s3", "state", "project", "not-ready", "cni-by-hand"):
        shutil.rmtree(directory / stale, ignore_errors=True)

    pve_dir = directory / "fakepve"
    pve_dir.mkdir(exist_ok=True)
    (pve_dir / "fakepve.json").unlink(missing_ok=True)
    ssh_dir = directory / "lxc"
    proc = spawn(
        directory,
        "fakepve",
        [
            sys.executable,
            "-m",
            "lab.fakepve_lab",
            "--state-dir",
            str(pve_dir),
            "--container-hook",
            str(ssh_dir),
        ],
    )
    pve = _wait_for(pve_dir / "fakepve.json", proc, directory / "fakepve.log", "fakepve")

    # The provider LXC's SSH server, with the docker stand-in the compose deployment drives: it runs the
    # provider's container as lab/provider-standin (containers.json, written once Omni runs).
    # It plays the container fakepve holds as the spec's provider LXC: nothing listens until the CT is created.
    (ssh_dir / "ssh.json").unlink(missing_ok=True)
    lxc_vmid = load_spec(PROJECT_ROOT / "specs" / "omni.yaml").provider_lxc.vmid
    ssh_proc = spawn(
        directory,
        "ssh",
        [
            sys.executable,
            "-m",
            "lab.ssh_standin",
            "--state-dir",
            str(ssh_dir),
            "--container-file",
            str(ssh_dir / f"ct-{lxc_vmid}.json"),
        ],
        env={
            **os.environ,
            "OMNI_SCALE_COMPOSE_SCHEMA": str(PROJECT_ROOT / ".tools" / "compose-spec.json"),
            "OMNI_SCALE_LAB_CONTAINERS": str(ssh_dir / "containers.json"),
        },
    )
    ssh = _wait_for(ssh_dir / "ssh.json", ssh_proc, directory / "ssh.log", "the lab SSH server")

    # The new cluster's Kubernetes API (and a chart repository), for the Tailscale operator release.
    kube = kube_lab.start(directory / "kubernetes")

    # The real Omni, with no infra provider in it: the program makes the provider's identity and key. The provider
    # itself runs once the program's `docker compose up -d` starts its container, as on Matrix.
    spec = load_spec(PROJECT_ROOT / "specs" / "omni.yaml")
    omni = omni_lab.start(directory / "omni", spec)
    provider_id = spec.infra_provider.id
    provider_standin.containers(ssh_dir, omni, pve["cafile"])
    # The etcd backup store Omni checks the spec's backups.s3 against, with the spec's bucket in it.
    s3 = s3_lab.start(directory / "s3", omni["netns_pid"], spec.backups.s3.bucket) if spec.backups else None
    info = {
        "omni": omni,
        **({"s3": s3} if s3 else {}),
        "proxmox": {
            "api_url": pve["api_url"],
            "token_id": pve["token_id"],
            "token_secret": pve["token_secret"],
            "cafile": pve["cafile"],
            "pid": pve["pid"],
        },
        "infra_provider": {"id": provider_id},
        "lxc": {
            "root_password": pve["root_password"],
            "ssh_host": ssh["host"],
            "ssh_port": ssh["port"],
            "ssh_user": ssh["user"],
            "home": ssh["home"],
            "pid": ssh["pid"],
            "ssh_private_key": Path(ssh["private_key_file"]).read_text(),
        },
        "kubernetes": kube,
        "tailscale_oauth": {
            "client_id": f"lab-client-{secrets.token_hex(6)}",
            "client_secret": f"tskey-client-lab-{secrets.token_hex(16)}",
        },
        # What the provider's compose stack is handed from the stack config (nothing in the lab checks the auth key
        # but its secrecy), and the lab's own hand-made provider token (fakepve_lab.PROVIDER_TOKEN_ID): the lab
        # reads the provider's VMs with it; the stack's provider runs on the token the program makes.
        "provider_stack": {
            "tailscale_auth_key": f"tskey-auth-lab-{secrets.token_hex(16)}",
            "proxmox_token_id": pve["provider_token_id"],
            "proxmox_token_secret": pve["provider_token_secret"],
        },
    }
    write_private_json(info_file, info)
    return info


def stop(directory: Path | None = None) -> None:
    directory = directory or lab_dir()
    info_file = directory / "lab.json"
    if info_file.exists():
        info = json.loads(info_file.read_text())
        for pid in running_service_pids(Path(info.get("lxc", {}).get("home", "/nonexistent"))):
            terminate(pid, group=True)  # a container: its supervising shell and what it runs
        for pid in (
            info["proxmox"]["pid"],
            info.get("lxc", {}).get("pid"),
            *info.get("kubernetes", {}).get("pids", []),
        ):
            if pid:
                terminate(pid)
        if "s3" in info:
            s3_lab.stop(info["s3"])
        if "omni" in info:
            omni_lab.stop(info["omni"])
        info_file.unlink()


@dataclass(frozen=True)
class LabStack:
    """The pulumi CLI pointed at a project dir, a local file backend and a passphrase file."""

    project_dir: Path
    state_dir: Path
    stack: str = STACK
    lab_dir: Path | None = None  # where the lab keeps its stand-ins' state, when not the default

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        tools = [str(PROJECT_ROOT / ".tools" / "bin"), str(PROJECT_ROOT / ".venv" / "bin")]
        env["PATH"] = os.pathsep.join(tools + [env.get("PATH", "")])
        self.state_dir.mkdir(parents=True, exist_ok=True)
        passphrase = self.state_dir / "passphrase"
        if not passphrase.exists():
            fd = os.open(passphrase, os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, secrets.token_hex(16).encode())
            os.close(fd)
        # At -v=9 the engine writes every secret it hands a provider into its log files (README: Secrets), which
        # it creates in the temporary directory: the lab's is private (0700), and runs' files are 0600 (PRIVATE).
        logs = self.state_dir / "tmp"
        logs.mkdir(mode=0o700, exist_ok=True)
        logs.chmod(0o700)
        env.update(
            {
                "TMPDIR": str(logs),
                "PULUMI_BACKEND_URL": f"file://{self.state_dir}",
                "PULUMI_CONFIG_PASSPHRASE_FILE": str(passphrase),
                "PULUMI_HOME": str(self.state_dir / "home"),
                "PULUMI_SKIP_UPDATE_CHECK": "true",
                "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
                "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
            }
        )
        env.pop("PULUMI_CONFIG_PASSPHRASE", None)
        if self.lab_dir is not None:
            env["OMNI_SCALE_LAB_DIR"] = str(self.lab_dir)
        return env

    def argv(self, *args: str) -> list[str]:
        return ["pulumi", *args, "--stack", self.stack, "--non-interactive"]

    def clear_stale_locks(self) -> None:
        """The file backend's lock of a pulumi killed mid-run (SIGKILL, a crash) outlives it and refuses every
        later run until `pulumi cancel`. A lock whose process is gone from this host is stale: drop it."""
        for lock in (self.state_dir / ".pulumi" / "locks").glob(f"**/{self.stack}/*.json"):
            try:
                owner = json.loads(lock.read_text())
            except (OSError, ValueError):
                continue
            if owner.get("hostname") == socket.gethostname() and not pid_alive(int(owner.get("pid", 0))):
                print(f"lab: removing the stale lock of pulumi pid {owner['pid']} (killed mid-run)", file=sys.stderr)
                lock.unlink(missing_ok=True)
                lock.with_name(lock.name + ".attrs").unlink(missing_ok=True)

    def run(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        capture: bool = True,
        extra_env: dict | None = None,
    ) -> subprocess.CompletedProcess:
        self.clear_stale_locks()
        proc = subprocess.run(
            self.argv(*args),
            cwd=self.project_dir,
            env={**self.env(), **(extra_env or {})},
            input=input,
            text=True,
            capture_output=capture,
            umask=PRIVATE,
        )
        if check and proc.returncode != 0:
            raise SystemExit(
                f"lab: `pulumi {' '.join(args)}` failed ({proc.returncode}):\n{proc.stdout or ''}{proc.stderr or ''}"
            )
        return proc

    def run_counted(self, argv_log: Path, *args: str) -> dict:
        """Runs pulumi ARGS and counts what it caused at the source: every omnictl argv (the lab's omnictl
        appends them to argv_log) and every (method, path) fakepve answered; with the run's wall time."""
        before = len(proxmox_requests(self.lab_dir))
        start = time.monotonic()
        proc = self.run(*args, extra_env={"OMNI_SCALE_LAB_ARGV_LOG": str(argv_log)})
        seconds = time.monotonic() - start
        return {
            "seconds": seconds,
            "omnictl": logged_argvs(argv_log),
            "proxmox": proxmox_requests(self.lab_dir)[before:],
            "stdout": proc.stdout,
        }

    def ensure_stack(self) -> None:
        env = self.env()
        listed = subprocess.run(
            ["pulumi", "stack", "ls", "--json"],
            cwd=self.project_dir,
            env=env,
            text=True,
            capture_output=True,
            umask=PRIVATE,
        )
        names = {s["name"] for s in json.loads(listed.stdout or "[]")} if listed.returncode == 0 else set()
        if self.stack not in names:
            self.run_plain("stack", "init", self.stack, "--secrets-provider", "passphrase")

    def run_plain(self, *args: str) -> None:
        argv = ["pulumi", *args, "--non-interactive"]
        proc = subprocess.run(argv, cwd=self.project_dir, env=self.env(), text=True, capture_output=True, umask=PRIVATE)
        if proc.returncode != 0:
            raise SystemExit(f"lab: `pulumi {' '.join(args)}` failed:\n{proc.stdout}{proc.stderr}")

    def set_config(self, key: str, value: str, secret: bool = False) -> None:
        # The value goes through stdin: argv is visible to every process on the machine.
        self.run("config", "set", key, "--secret" if secret else "--plaintext", input=value)

    def configure_from_lab(self, info: dict) -> None:
        self.set_config("omni-scale:omniEndpoint", info["omni"]["endpoint"], secret=True)
        self.set_config("omni-scale:omniServiceAccountKey", info["omni"]["service_account_key"], secret=True)
        self.set_config("omni-scale:omniCaFile", info["omni"]["ca_file"])
        self.set_config("omni-scale:proxmoxApiUrl", info["proxmox"]["api_url"])
        self.set_config("omni-scale:proxmoxTokenId", info["proxmox"]["token_id"])
        self.set_config("omni-scale:proxmoxTokenSecret", info["proxmox"]["token_secret"], secret=True)
        self.set_config("omni-scale:proxmoxCaFile", info["proxmox"]["cafile"])
        lxc, stack = info["lxc"], info["provider_stack"]
        self.set_config("omni-scale:proxmoxLxcPassword", lxc["root_password"], secret=True)
        self.set_config("omni-scale:providerLxcSshHost", lxc["ssh_host"])
        self.set_config("omni-scale:providerLxcSshPort", str(lxc["ssh_port"]))
        # No providerLxcSshHostKey: a new container has a new host key, which the state keeps at first contact.
        self.set_config("omni-scale:providerLxcSshPrivateKey", lxc["ssh_private_key"], secret=True)
        self.set_config("omni-scale:tailscaleAuthKey", stack["tailscale_auth_key"], secret=True)
        self.set_config("omni-scale:tailscaleOAuthClientId", info["tailscale_oauth"]["client_id"], secret=True)
        self.set_config("omni-scale:tailscaleOAuthClientSecret", info["tailscale_oauth"]["client_secret"], secret=True)
        # The lab serves the charts itself (stand-ins under the real names and versions): pkgs.tailscale.com and
        # helm.cilium.io are not reachable from here.
        self.set_config("omni-scale:tailscaleChartRepository", info["kubernetes"]["chart_repository"])
        self.set_config("omni-scale:ciliumChartRepository", info["kubernetes"]["chart_repository"])
        if "s3" in info:
            # The lab's S3 in place of the spec's endpoint, with the keys its IAM made.
            self.set_config("omni-scale:backupS3Endpoint", info["s3"]["endpoint"])
            self.set_config("omni-scale:backupS3AccessKeyId", info["s3"]["access_key_id"], secret=True)
            self.set_config("omni-scale:backupS3SecretAccessKey", info["s3"]["secret_access_key"], secret=True)


# What the lab's pulumi project dir links to: the program, read live from the repo.
_PROJECT_LINKS = ("Pulumi.yaml", "__main__.py", "components", "specs", "lab", ".venv", ".tools")


def default_lab_stack() -> LabStack:
    """The lab stack runs from <lab>/project, which links to this project's files and holds its
    own Pulumi.lab.yaml: pulumi writes the encryption salt and the per-start secrets there, not
    into the committed file, so the working tree stays clean."""
    directory = lab_dir()
    project = directory / "project"
    project.mkdir(parents=True, exist_ok=True)
    for name in _PROJECT_LINKS:
        link = project / name
        if not link.is_symlink():
            link.symlink_to(PROJECT_ROOT / name)
    stack_file = project / f"Pulumi.{STACK}.yaml"
    committed = yaml.safe_load((PROJECT_ROOT / f"Pulumi.{STACK}.yaml").read_text()) or {}
    current = yaml.safe_load(stack_file.read_text()) if stack_file.exists() else {}
    current = current or {}
    # The committed settings win; the salt and what the lab set at start are kept.
    current.setdefault("config", {}).update(committed.get("config") or {})
    stack_file.write_text(yaml.safe_dump(current, sort_keys=False))
    return LabStack(project_dir=project, state_dir=directory / "state", lab_dir=directory)


def isolated_lab_stack(root: Path) -> tuple[Path, dict, LabStack]:
    """A copy of the project under root/project, with a lab (root/lab) and a lab stack (root/state) of its
    own, configured from that lab: what engine tests and benchmarks run, each apart from the others."""
    project = root / "project"
    shutil.copytree(
        PROJECT_ROOT,
        project,
        ignore=shutil.ignore_patterns(
            ".venv", ".tools", ".lab", ".git", "tests", "__pycache__", "Pulumi.*.yaml", ".pytest_cache"
        ),
    )
    for link in (".venv", ".tools"):
        (project / link).symlink_to(PROJECT_ROOT / link)
    (project / f"Pulumi.{STACK}.yaml").write_text(
        yaml.safe_dump({"config": {"omni-scale:omnictlPath": "lab/bin/omnictl", "omni-scale:protect": "false"}})
    )
    info = start(root / "lab")
    stack = LabStack(project_dir=project, state_dir=root / "state", lab_dir=root / "lab")
    stack.ensure_stack()
    stack.configure_from_lab(info)
    return project, info, stack


def up() -> int:
    info = start()
    stack = default_lab_stack()
    stack.ensure_stack()
    stack.configure_from_lab(info)
    result = stack.run("up", "--yes", "--skip-preview", capture=False, check=False)
    if result.returncode != 0:
        return result.returncode
    return stack.run("stack", "output", capture=False, check=False).returncode


def fault(name: str, *args: str, directory: Path | None = None) -> None:
    """Applies one of lab/fakepve_lab.py's FAULTS to the running lab's fakepve and waits until it has."""
    from . import fakepve_lab

    if name not in fakepve_lab.FAULTS and name != "dump-requests":
        raise SystemExit(f"lab: no fault {name!r}; known: {', '.join(fakepve_lab.FAULTS)}")
    directory = directory or lab_dir()
    info = json.loads((directory / "lab.json").read_text())
    pve_dir = directory / "fakepve"
    request_and_await(
        info["proxmox"]["pid"],
        pve_dir / "faults.json",
        pve_dir / "faults.done",
        {"faults": [[name, *args]]},
        f"fakepve applying fault {name}",
        directory / "fakepve.log",
    )


def proxmox_requests(directory: Path | None = None) -> list[list[str]]:
    """Every (method, path) the lab's fakepve has answered for the program since it started: the requests of the
    infra provider (which runs in the lab's LXC, with its own token) are not the program's."""
    from .fakepve_lab import is_providers

    directory = directory or lab_dir()
    fault("dump-requests", directory=directory)
    return [
        [method, path]
        for method, path, caller in json.loads((directory / "fakepve" / "requests.json").read_text())
        if not is_providers(caller)
    ]


OFFLINE_OMNICTL_VERBS = (["cluster", "template", "validate"], ["cluster", "template", "render"])


def logged_argvs(argv_log: Path) -> list[list[str]]:
    """The omnictl argvs (without the binary) the lab's omnictl appended to argv_log (OMNI_SCALE_LAB_ARGV_LOG)."""
    return [json.loads(line)[1:] for line in argv_log.read_text().splitlines()] if argv_log.exists() else []


def omni_calls(argvs: list[list[str]]) -> list[list[str]]:
    """The omnictl runs that reached Omni: all but `--version` and the offline template verbs."""
    return [a for a in argvs if a and a[0] != "--version" and a[:3] not in OFFLINE_OMNICTL_VERBS]


def set_pre_check_findings(name: str, findings: str | None, directory: Path | None = None) -> None:
    """What Kubernetes' upgrade pre-checks find in the cluster (a table as Omni prints it), or None for nothing:
    the lab's omnictl answers the pre-checks, which need a running cluster (lab/omnictl_standin.py)."""
    marker = (directory or lab_dir()) / "pre-check-findings" / name
    if findings is None:
        marker.unlink(missing_ok=True)
    else:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(findings)


def set_cluster_ready(name: str, ready: bool, directory: Path | None = None) -> None:
    """No Talos machine boots in the lab, so the lab's omnictl reports an existing cluster ready
    (lab/bin/omnictl); this makes it report one not ready, as a cluster stuck provisioning would be."""
    marker = (directory or lab_dir()) / "not-ready" / name
    if ready:
        marker.unlink(missing_ok=True)
    else:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


def drift(report_path: str | None = "drift-report.json") -> int:
    """components.cli.drift on the lab stack."""
    from components.cli import drift as drift_check

    stack = default_lab_stack()
    report = drift_check.detect(stack.argv(*drift_check.PREVIEW_ARGS), stack.project_dir, stack.env())
    return drift_check.report_and_exit_code(report, report_path, stack.stack)


def survive() -> int:
    """components.proxmox.placement's `make survive` on the lab stack."""
    from components.cli import drift as drift_check
    from components.proxmox.placement import survive_exit_code

    stack = default_lab_stack()
    return survive_exit_code(drift_check.detect(stack.argv(*drift_check.PREVIEW_ARGS), stack.project_dir, stack.env()))


def adopt(yes: bool = False) -> int:
    """components.cli.adoption on the lab stack: the list, the plan, and (confirmed) one `pulumi up` in adoption
    mode."""
    from components.cli.adoption import adopt as adopt_estate

    stack = default_lab_stack()
    stack.ensure_stack()
    stack.configure_from_lab(start())
    stack.clear_stale_locks()
    return adopt_estate(
        load_spec(PROJECT_ROOT / "specs" / "omni.yaml"),
        stack.argv,
        stack.project_dir,
        stack.env(),
        yes,
        input if sys.stdin.isatty() else None,
    )


def service_account_key(argv: list[str]) -> int:
    """components.cli.keys on the lab stack: NAME [--out FILE]."""
    from components.cli import keys

    if not argv or argv[0].startswith("-") or argv[1:2] not in ([], ["--out"]) or len(argv) not in (1, 3):
        print("usage: python -m lab.ctl service-account-key NAME [--out FILE]", file=sys.stderr)
        return 2
    stack = default_lab_stack()
    out = Path(argv[2]) if len(argv) == 3 else None
    return keys.hand_out(argv[0], out, stack.argv, stack.project_dir, stack.env(), sys.stdout.isatty())


def backup(argv: list[str]) -> int:
    """components.cli.backup on the lab stack: CLUSTER [--timeout SECONDS]. Omni's backup fails in the lab (no
    Talos API to take a snapshot through): the command reports Omni's error, as it would on the estate."""
    from components.cli.backup import DEFAULT_TIMEOUT_SECONDS, take_backup

    if len(argv) not in (1, 3) or argv[0].startswith("-") or argv[1:2] not in ([], ["--timeout"]):
        print("usage: python -m lab.ctl backup CLUSTER [--timeout SECONDS]", file=sys.stderr)
        return 2
    stack = default_lab_stack()
    timeout = float(argv[2]) if len(argv) == 3 else DEFAULT_TIMEOUT_SECONDS
    return take_backup(argv[0], stack.argv, stack.project_dir, stack.env(), timeout)


VERBS = ("start", "stop", "up", "pulumi", "drift", "survive", "adopt", "fault", "service-account-key", "backup")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in VERBS:
        print(__doc__, file=sys.stderr)
        return 2
    verb = argv[0]
    if verb == "start":
        info = start()
        print(f"lab: fakepve at {info['proxmox']['api_url']}; Omni at {info['omni']['endpoint']}")
    elif verb == "stop":
        stop()
        print("lab: stopped")
    elif verb == "up":
        return up()
    elif verb == "drift":
        return drift(argv[1] if len(argv) > 1 else "drift-report.json")
    elif verb == "survive":
        return survive()
    elif verb == "adopt":
        return adopt(yes="--yes" in argv[1:])
    elif verb == "service-account-key":
        return service_account_key(argv[1:])
    elif verb == "backup":
        return backup(argv[1:])
    elif verb == "fault":
        fault(*argv[1:])
        print(f"lab: fault {' '.join(argv[1:])} applied")
    else:
        stack = default_lab_stack()
        stack.ensure_stack()
        return stack.run(*argv[1:], capture=False, check=False).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
