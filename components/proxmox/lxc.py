"""ProviderLxc: the container that runs the Omni Proxmox provider and its Tailscale sidecar, and the
docker compose stack inside it.

Two dynamic resources under one component:
- the container, through the Proxmox API (root@pam login: keyctl and /dev/net/tun are root-only);
- the compose deployment, over SSH: files written through stdin, `docker compose up -d` only when a
  file changed, never `down -v`.
Both `read` the live thing back in the same canonical form their inputs have, so refresh and
`preview` show real drift (a memory change made in Proxmox, a file edited in the container).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import uuid

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, UpdateResult

from components.core.console import progress
from components.core.dynamic import (
    OmniProvider,
    StackConfiguredProvider,
    TypedResource,
    adopted,
    is_unknown,
    whole_numbers,
)
from components.core.settings import Lookup, provider_secrets_from_lookup, proxmox_admin_from_config, ssh_from_lookup
from components.core.spec import ComposeStackSpec, ProviderLxcSpec
from components.omni.infra_provider import ProviderNotRegistered, last_heartbeat, wait_for_registration
from components.proxmox.client import ProxmoxClient, ProxmoxNotFound
from components.proxmox.compose import (
    COMPOSE_FILE,
    CONFIG_FILE,
    FILE_ORDER,
    ProviderSecrets,
    RenderedFile,
    file_states,
    redact,
    render_provider_stack,
)
from components.proxmox.ssh import RemoteHost

TUN_DEVICE = "/dev/net/tun"
# The TUN given by raw lxc.* lines in the CT's config file instead of a device passthrough: a pseudo-device in the
# canonical form (never an API parameter), so either way reads back as what the spec asked for.
TUN_BY_LXC_LINES = "lxc:" + TUN_DEVICE
TUN_LXC_LINES = (
    ("lxc.cgroup2.devices.allow", "c 10:200 rwm"),
    ("lxc.mount.entry", "/dev/net/tun dev/net/tun none bind,create=file"),
)
# Docker inside an unprivileged container needs nesting; keyctl lets its runc use session keyrings.
FEATURES = {"keyctl": 1, "nesting": 1}
TASK_TIMEOUT_SECONDS = 600.0
# Changing these means a new container (Proxmox cannot change them in place).
REPLACE_KEYS = ("node", "vmid", "ostemplate", "unprivileged", "rootfs_storage")
# Inputs the container's diff leaves alone: its creation identity is an output, and the SSH key is the compose
# deployment's to rotate.
# __provider: the pickled provider, which changes with its code or module path (never a change to the container).
_NOT_COMPARED = ("ssh_public_key", "creation_id", "__provider")


# ------------------------------------------------------------------------------ the container


def container_id(node: str, vmid: int) -> str:
    """The id the container is read by (and adopted by)."""
    return f"{node}/{vmid}"


def compose_id(address: str, directory: str) -> str:
    """The id the compose deployment is known by: the container's address and the stack's directory."""
    return f"{address}:{directory}"


def container_inputs(spec: ProviderLxcSpec, protect: bool) -> dict:
    """The container as this program wants it, in the canonical form `read` returns."""
    net = spec.network
    return {
        "node": spec.node,
        "vmid": spec.vmid,
        "ostemplate": spec.os_template,
        "unprivileged": True,
        "hostname": spec.hostname,
        "cores": spec.cores,
        "memory": spec.memory,
        "swap": spec.swap,
        "rootfs_storage": spec.root_disk.storage,
        "rootfs_size_gb": spec.root_disk.size_gb,
        "net0": {"name": "eth0", "bridge": net.bridge, "ip": str(net.address), "gw": str(net.gateway)},
        "features": dict(FEATURES),
        "devices": [TUN_DEVICE] if spec.tun == "device" else [TUN_BY_LXC_LINES],
        "onboot": spec.start_on_boot,
        "running": True,
        # Proxmox's own protection flag too: nothing outside this program deletes it by accident either.
        "protection": protect,
    }


def _props(text: str) -> tuple[str | None, dict[str, str]]:
    """PVE's property strings: 'local-lvm:vm-200-disk-0,size=4G' -> ('local-lvm:vm-200-disk-0', {'size': '4G'})."""
    first, out = None, {}
    for i, part in enumerate(p for p in str(text or "").split(",") if p):
        key, eq, value = part.partition("=")
        if eq:
            out[key] = value
        elif i == 0:
            first = part
    return first, out


def _size_gb(size: str) -> int:
    units = {"K": 1 / 1024**2, "M": 1 / 1024, "G": 1, "T": 1024}
    size = size.strip().upper()
    factor = units.get(size[-1:], None)
    return int(float(size[:-1]) * factor) if factor else int(int(size) / 1024**3)


def canonical_container(config: dict, status: str, known: dict) -> dict:
    """What GET .../config and status/current say, in the form of container_inputs (create-only
    parameters that the config does not keep, such as the template, are taken from `known`)."""
    volume, rootfs = _props(config.get("rootfs", ""))
    _, net0 = _props(config.get("net0", ""))
    _, features = _props(config.get("features", ""))
    devices = []
    for key in sorted((k for k in config if k.startswith("dev") and k[3:].isdigit()), key=lambda k: int(k[3:])):
        path, opts = _props(config[key])
        devices.append(opts.get("path") or path)
    # Raw lines are someone's hand edit of the config file: they count only where the spec says the TUN is given
    # that way (otherwise they are not this program's to judge, and it could not remove them anyway).
    if TUN_BY_LXC_LINES in known.get("devices", ()) and _grants_tun(config.get("lxc")):
        devices.append(TUN_BY_LXC_LINES)
    return {
        "node": known["node"],
        "vmid": known["vmid"],
        "ostemplate": known.get("ostemplate"),
        "unprivileged": bool(int(config.get("unprivileged", 0))),
        "hostname": config.get("hostname"),
        "cores": int(config.get("cores", 0) or 0),
        "memory": int(config.get("memory", 512)),
        "swap": int(config.get("swap", 512)),
        "rootfs_storage": (volume or "").split(":")[0],
        "rootfs_size_gb": _size_gb(rootfs.get("size", "0G")),
        "net0": {k: net0.get(k) for k in ("name", "bridge", "ip", "gw")},
        "features": {k: int(v) for k, v in sorted(features.items())},
        "devices": devices,
        "onboot": bool(int(config.get("onboot", 0))),
        "running": status == "running",
        "protection": bool(int(config.get("protection", 0))),
    }


def _grants_tun(raw_lines) -> bool:
    """PVE lists a config file's lxc.* lines as [key, value] pairs, in file order."""
    have = {(str(k).strip(), " ".join(str(v).split())) for k, v in (raw_lines or [])}
    return all(line in have for line in TUN_LXC_LINES)


def _tun_lines_missing(props: dict) -> str:
    lines = "; ".join(f"{k}: {v}" for k, v in TUN_LXC_LINES)
    return (
        f"provider_lxc.tun is lxc, but CT {props['vmid']} on {props['node']} has no raw lines giving it "
        f"/dev/net/tun, and the Proxmox API cannot write lxc.* keys: add them to /etc/pve/lxc/{props['vmid']}.conf "
        f"on {props['node']} as root ({lines}), or set provider_lxc.tun: device"
    )


def config_params(props: dict) -> dict:
    """container_inputs as the parameters of PVE's create and config calls."""
    net = props["net0"]
    params = {
        "hostname": props["hostname"],
        "cores": props["cores"],
        "memory": props["memory"],
        "swap": props["swap"],
        "net0": f"name={net['name']},bridge={net['bridge']},ip={net['ip']},gw={net['gw']}",
        "features": ",".join(f"{k}={v}" for k, v in sorted(props["features"].items())),
        "onboot": int(props["onboot"]),
        "protection": int(props["protection"]),
    }
    for i, device in enumerate(d for d in props["devices"] if d != TUN_BY_LXC_LINES):
        params[f"dev{i}"] = device
    return params


class LxcError(Exception):
    pass


class AsRootProvider(StackConfiguredProvider):
    """Talks to Proxmox as root@pam, whose password comes from the stack config (see StackConfiguredProvider): the
    container and the provider's Proxmox identity."""

    def _api(self) -> ProxmoxClient:
        return ProxmoxClient(proxmox_admin_from_config(self._config))


class LxcContainerProvider(AsRootProvider):
    def _base(self, props: dict) -> str:
        return f"nodes/{props['node']}/lxc/{props['vmid']}"

    def _live(self, api: ProxmoxClient, props: dict) -> dict | None:
        try:
            config = api.get(f"{self._base(props)}/config")
            status = api.get(f"{self._base(props)}/status/current").get("status", "")
        except ProxmoxNotFound:
            return None
        return canonical_container(config, status, props)

    def diff(self, _id: str, olds: dict, news: dict) -> DiffResult:
        olds, news = whole_numbers(olds), whole_numbers(news)
        # The SSH key is the compose deployment's to rotate (a container is created with it, never changed).
        changed = sorted(k for k in news if k not in _NOT_COMPARED and olds.get(k) != news.get(k))
        replaces = [k for k in changed if k in REPLACE_KEYS]
        # A smaller disk cannot be had in place, and a new container loses the tailnet identity: say so.
        if "rootfs_size_gb" in changed and (news.get("rootfs_size_gb") or 0) < (olds.get("rootfs_size_gb") or 0):
            replaces.append("rootfs_size_gb")
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=True)

    def create(self, props: dict) -> CreateResult:
        props = whole_numbers(props)
        node, vmid = props["node"], props["vmid"]
        adoption = adopted(self, container_id(node, vmid), props)
        if adoption:
            return adoption
        if TUN_BY_LXC_LINES in props["devices"]:
            # A new container would come up without its TUN: nothing is created.
            raise LxcError(_tun_lines_missing(props))
        api = self._api()
        params = {
            "vmid": vmid,
            "ostemplate": props["ostemplate"],
            "unprivileged": int(props["unprivileged"]),
            "rootfs": f"{props['rootfs_storage']}:{props['rootfs_size_gb']}",
            "ssh-public-keys": props["ssh_public_key"],
            "start": int(props["running"]),
            **config_params(props),
        }
        progress(f"creating CT {vmid} {props['hostname']!r} on {node}")
        api.wait_task(node, api.call("POST", f"nodes/{node}/lxc", **params), TASK_TIMEOUT_SECONDS)
        # Which container this is: a replacement keeps node/vmid but is a new, empty machine with a new host key.
        return CreateResult(container_id(node, vmid), {**props, "creation_id": uuid.uuid4().hex})

    def update(self, _id: str, olds: dict, news: dict) -> UpdateResult:
        olds, news = whole_numbers(olds), whole_numbers(news)
        api = self._api()
        live = self._live(api, news) or olds
        if TUN_BY_LXC_LINES in news["devices"] and TUN_BY_LXC_LINES not in live["devices"]:
            raise LxcError(_tun_lines_missing(news))  # before any change: nothing half-applied
        node, base = news["node"], self._base(news)
        wanted, have = config_params(news), config_params(live)
        changes = {k: v for k, v in wanted.items() if have.get(k) != v}
        removed = [k for k in have if k not in wanted]
        if changes or removed:
            api.call("PUT", f"{base}/config", **changes, **({"delete": ",".join(removed)} if removed else {}))
        if news["rootfs_size_gb"] > live["rootfs_size_gb"]:
            api.wait_task(
                node,
                api.call("PUT", f"{base}/resize", disk="rootfs", size=f"{news['rootfs_size_gb']}G"),
                TASK_TIMEOUT_SECONDS,
            )
        if news["running"] and not live["running"]:
            api.wait_task(node, api.call("POST", f"{base}/status/start"), TASK_TIMEOUT_SECONDS)
        return UpdateResult({**news, "creation_id": olds.get("creation_id")})

    def read(self, id_: str, props: dict) -> ReadResult:
        if not props:  # `pulumi import`: the id says where it is
            node, _, vmid = id_.partition("/")
            props = {"node": node, "vmid": int(vmid)}
        props = whole_numbers(props)
        live = self._live(self._api(), props)
        if live is None:
            return ReadResult(None, {})  # gone: refresh drops it, the next `up` creates it again
        live["ssh_public_key"] = props.get("ssh_public_key", "")
        live["creation_id"] = props.get("creation_id")  # the API cannot tell it: carried from the state
        return ReadResult(id_, live)

    def delete(self, _id: str, props: dict) -> None:
        props = whole_numbers(props)
        api = self._api()
        node, base = props["node"], self._base(props)
        live = self._live(api, props)
        if live is None:
            return
        if live["protection"]:
            # Reached only when the stack itself said protect: false and `up` ran before destroy.
            api.call("PUT", f"{base}/config", protection=0)
        if live["running"]:
            api.wait_task(node, api.call("POST", f"{base}/status/stop"), TASK_TIMEOUT_SECONDS)
        progress(f"destroying CT {props['vmid']} on {node}")
        api.wait_task(node, api.call("DELETE", base, purge=1), TASK_TIMEOUT_SECONDS)


class _LxcContainer(TypedResource, module="proxmox", name="LxcContainer"):
    node: pulumi.Output[str]
    vmid: pulumi.Output[int]
    creation_id: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: pulumi.ResourceOptions):
        super().__init__(LxcContainerProvider(), name, {**props, "creation_id": None}, opts)


# ------------------------------------------------------------------------- the compose stack


def _stack_secrets(get: Lookup, props: dict) -> ProviderSecrets:
    """The stack's secrets, with the provider's Omni key the program holds (a state made before it had none: the
    config's)."""
    return provider_secrets_from_lookup(
        get, "Pulumi.<stack>.yaml", props.get("provider_key") or None, props.get("provider_proxmox_token") or None
    )


def _stack_files(get: Lookup, props: dict) -> list[RenderedFile]:
    return render_provider_stack(ComposeStackSpec(**props["stack"]), props["provider_id"], _stack_secrets(get, props))


def _has_unknown(value) -> bool:
    return isinstance(value, dict) and any(is_unknown(v) for v in value.values())


def _shown(directory: str) -> str:
    """The directory as a person would type it in the container: relative ones are under the SSH user's home."""
    return directory if directory.startswith("/") else f"~/{directory}"


def _write_commands(
    directory: str, files: list[RenderedFile], state_dir: str | None = None
) -> list[tuple[str, str | None]]:
    """Each file through stdin into a temporary name with its final mode, then renamed over the old one,
    so a reader never sees half a file or a secret with loose permissions. state_dir: the Tailscale state's
    directory beside the files, when it is one (made here, kept: it holds the tailnet identity)."""
    d = shlex.quote(directory)
    commands: list[tuple[str, str | None]] = [(f"mkdir -p {d} && chmod 700 {d}", None)]
    if state_dir:
        commands.append((f"cd {d} && mkdir -p {shlex.quote(state_dir)}", None))
    for f in files:
        tmp = shlex.quote(f".{f.name}.omni-scale-new")
        commands.append(
            (
                f"cd {d} && umask 077 && cat > {tmp} && chmod {f.mode} {tmp} && mv -f {tmp} {shlex.quote(f.name)}",
                f.content,
            )
        )
    return commands


# stdin: the old public key, then the new. Other keys someone put there stay; the file is replaced atomically.
_ROTATE_KEY_SCRIPT = (
    "read -r old; read -r new; f=~/.ssh/authorized_keys; mkdir -p ~/.ssh && chmod 700 ~/.ssh && "
    '{ grep -vxF -- "$old" "$f" 2>/dev/null; printf "%s\\n" "$new"; } > "$f.omni-scale-new" && '
    'chmod 600 "$f.omni-scale-new" && mv -f "$f.omni-scale-new" "$f"'
)

# Prints "NAME MODE SHA256" per file ("NAME - -" if absent), then compose.yml itself, then the services.
_READ_SCRIPT = """cd {d} 2>/dev/null || exit 3
for f in {names}; do
  if [ -f "$f" ]; then printf '%s %s %s\\n' "$f" "$(stat -c %a "$f")" "$(sha256sum < "$f" | cut -d' ' -f1)";
  else printf '%s - -\\n' "$f"; fi
done"""


class ComposeDeploymentProvider(OmniProvider):
    """The SSH key and every secret the files hold come from the stack config, never from inputs. After a
    deployment it waits for the infra provider to register with Omni (omnictl, also from the stack config)."""

    def _host(self, props: dict, login_key: str | None = None) -> RemoteHost:
        """The container over SSH: the host key the state pinned (or the config's), logging in with login_key,
        else the key the state knows the container accepts, else the stack config's."""
        settings = ssh_from_lookup(
            self._config, props["address"], "Pulumi.<stack>.yaml", pinned_host_key=props.get("host_key") or ""
        )
        key = login_key or props.get("login_key")
        return RemoteHost(dataclasses.replace(settings, private_key=key) if key else settings)

    def check(self, _olds: dict, news: dict) -> CheckResult:
        # The digests the program computed and what this provider would write must agree: they differ
        # only if the stack config changed between the program's run and this one. In a preview the provider's key
        # may not be known yet (it is about to be made or renewed).
        made = [news[k] for k in ("provider_key", "provider_proxmox_token") if k in news]
        if is_unknown(news.get("files")) or any(is_unknown(v) or _has_unknown(v) for v in made):
            return CheckResult(news, [])
        try:
            rendered = file_states(_stack_files(self._config, news))
        except Exception as exc:  # a user mistake in the config: one message, no traceback
            return CheckResult(news, [CheckFailure("stack", str(exc))])
        if rendered != news.get("files"):
            return CheckResult(
                news, [CheckFailure("files", "the stack config changed while this run was going; run again")]
            )
        return CheckResult(news, [])

    def diff(self, _id: str, olds: dict, news: dict) -> DiffResult:
        # `container` (its id) is unknown in a preview exactly when the container is to be replaced: the stack
        # then shows as redeployed. container_creation tells a new container from the old one once it exists
        # (preview cannot know it yet while the container changes at all). A state older than these or the SSH
        # key records none of them, and shows no change for them.
        changed = [
            k for k in ("directory", "files", "compose_yml", "services", "container") if olds.get(k) != news.get(k)
        ]
        changed += [
            k
            for k in ("container_creation", "ssh_public_key")
            if k in olds and not is_unknown(news.get(k)) and olds[k] != news.get(k)
        ]
        return DiffResult(
            changes=bool(changed), replaces=[k for k in changed if k == "directory"], delete_before_replace=True
        )

    def _deploy(self, props: dict, changed_only: dict | None = None) -> dict:
        files = _stack_files(self._config, props)
        if changed_only is not None:
            files = [f for f in files if changed_only.get(f.name) != {"sha256": f.sha256, "mode": f.mode}]
        host = self._host(props)
        d = shlex.quote(props["directory"])
        progress(
            f"deploying {', '.join(f.name for f in files) or 'nothing new'} to "
            f"{host.settings.target}:{props['directory']}"
        )
        # The provider's last heartbeat before its container starts again: registered means a newer one.
        before = last_heartbeat(self.client, props["provider_id"])
        stack = ComposeStackSpec(**props["stack"])
        commands = _write_commands(props["directory"], files, stack.state_directory) + [
            # Validated where it runs, before anything is (re)started.
            (f"cd {d} && docker compose config --quiet", None),
            (f"cd {d} && docker compose up -d", None),
        ]
        if changed_only is not None and CONFIG_FILE in {f.name for f in files}:
            # config.yaml is bind-mounted: compose recreates no container for a change in it, and the provider
            # reads it only when it starts (a new Proxmox token, say).
            commands.append((f"cd {d} && docker compose restart {shlex.quote(stack.provider_service)}", None))
        host.run_all(commands)
        self._await_registration(host, props, before)
        # The state keeps the key the container accepts, so refresh still reads it while a new key waits in the
        # config for the next `up` (which puts it in the container, see _rotate_ssh_key).
        return {**props, "host_key": host.seen_host_key, "login_key": host.settings.private_key}

    def _rotate_ssh_key(self, olds: dict, news: dict) -> None:
        """The stack config holds a new SSH key: log in with the one the container accepts (the state's) and put
        the new public key in root's authorized_keys in place of the old."""
        host = self._host({**news, "host_key": olds.get("host_key", "")}, login_key=olds.get("login_key"))
        progress(f"putting the new SSH key in {host.settings.target}:~/.ssh/authorized_keys in place of the old")
        host.run_all([(_ROTATE_KEY_SCRIPT, f"{olds['ssh_public_key']}\n{news['ssh_public_key']}\n")])

    def _await_registration(self, host: RemoteHost, props: dict, before: float | None) -> None:
        """The provider registers only once its container runs, seconds after `compose up`; the classes that
        come next are checked against its registration, so wait for it here."""
        provider_id, timeout = props["provider_id"], self.settings.provider_registration_timeout_seconds
        progress(f"waiting up to {timeout:.0f}s for infra provider {provider_id!r} to register with Omni")
        try:
            wait_for_registration(self.client, provider_id, before, timeout)
        except ProviderNotRegistered as exc:
            d = shlex.quote(props["directory"])
            service = ComposeStackSpec(**props["stack"]).provider_service  # an older state's stack: the default
            [logs] = host.run_all([(f"cd {d} && docker compose logs --tail 10 {service} 2>&1 || true", None)])
            tail = redact(logs.stdout.strip(), _stack_secrets(self._config, props))
            where = _shown(props["directory"])
            raise ProviderNotRegistered(
                f"{exc}: look at its container's logs (`docker compose logs {service}` in {where} on "
                f"the provider LXC) and at its Omni key (the one the program made for it, or adopted from "
                f"providerOmniServiceAccountKey: not expired?)" + (f"; its last lines:\n{tail}" if tail else "")
            ) from None
        progress(f"infra provider {provider_id!r} registered with Omni")

    def create(self, props: dict) -> CreateResult:
        id_ = compose_id(props["address"], props["directory"])
        return adopted(self, id_, props) or CreateResult(id_, self._deploy(props))

    def update(self, _id: str, olds: dict, news: dict) -> UpdateResult:
        if "container_creation" in olds and olds["container_creation"] != news.get("container_creation"):
            # A new container: empty, with a new host key (learned now, as at first contact) and the config's
            # SSH key (it was created with it). Everything is deployed.
            progress(f"CT {news['container']} is a new container: deploying the whole stack")
            return UpdateResult(self._deploy({**news, "host_key": "", "login_key": None}))
        if "ssh_public_key" in olds and olds["ssh_public_key"] != news.get("ssh_public_key"):
            self._rotate_ssh_key(olds, news)
            olds = {**olds, "login_key": None}  # from now on the config's key is the one
        # Only what changed is rewritten; compose recreates only the services whose config changed.
        live_files = olds.get("files") if olds.get("directory") == news.get("directory") else None
        return UpdateResult(
            self._deploy({**news, "host_key": olds.get("host_key", ""), "login_key": olds.get("login_key")}, live_files)
        )

    def read(self, id_: str, props: dict) -> ReadResult:
        host = self._host(props)
        d = shlex.quote(props["directory"])
        names = " ".join(shlex.quote(n) for n in FILE_ORDER)
        listing, compose_yml, ps = host.run_all(
            [
                (_READ_SCRIPT.format(d=d, names=names), None),
                (f"cat {d}/{COMPOSE_FILE} 2>/dev/null || true", None),
                (f"cd {d} && docker compose ps --all --format json 2>/dev/null || true", None),
            ]
        )
        files = {}
        for line in listing.stdout.splitlines():
            name, mode, digest = line.split()
            if digest != "-":
                files[name] = {"sha256": digest, "mode": mode}
        if not files:
            return ReadResult(None, {})  # nothing deployed: refresh drops it, `up` deploys again
        live = {
            **props,
            "files": files,
            "compose_yml": compose_yml.stdout if COMPOSE_FILE in files else None,
            "services": _service_states(ps.stdout),
            "host_key": host.seen_host_key or props.get("host_key", ""),
        }
        return ReadResult(id_, live)

    def delete(self, _id: str, props: dict) -> None:
        d = shlex.quote(props["directory"])
        # Stops the containers and removes the secrets, keeping the tailscale state volume: no -v, ever.
        self._host(props).run_all(
            [
                (f"cd {d} 2>/dev/null || exit 0; docker compose down", None),
                (f"cd {d} 2>/dev/null || exit 0; rm -f " + " ".join(shlex.quote(n) for n in FILE_ORDER), None),
            ]
        )


def _service_states(ps_output: str) -> dict[str, str]:
    """`docker compose ps --format json` prints one JSON object per line (or one array, in older versions)."""
    text = ps_output.strip()
    if not text:
        return {}
    items = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line]
    # A healthcheck's verdict where there is one: an unhealthy sidecar is drift even while its container runs.
    return {
        item["Service"]: f"{item['State']} ({item['Health']})"
        if item.get("Health") not in (None, "", "healthy")
        else item["State"]
        for item in items
    }


class _ComposeDeployment(TypedResource, module="proxmox", name="ComposeDeployment"):
    files: pulumi.Output[dict]
    host_key: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: pulumi.ResourceOptions):
        super().__init__(ComposeDeploymentProvider(), name, {**props, "host_key": None, "login_key": None}, opts)


# ---------------------------------------------------------------------------- the component


class ProviderLxc(pulumi.ComponentResource):
    """CT `omni-provider` and the docker compose stack of the Omni Proxmox provider inside it."""

    def __init__(
        self,
        name: str,
        spec: ProviderLxcSpec,
        provider_id: str,
        secrets: pulumi.Output,
        ssh_public_key: pulumi.Output,
        protect: bool,
        provider_key: pulumi.Output | None = None,
        provider_proxmox_token: pulumi.Output | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("omni-scale:proxmox:ProviderLxc", name, None, opts)
        self.container = _LxcContainer(
            name,
            {**container_inputs(spec, protect), "ssh_public_key": ssh_public_key},
            pulumi.ResourceOptions(parent=self, protect=protect),
        )
        stack = spec.compose.model_dump()
        files = secrets.apply(lambda s: file_states(render_provider_stack(spec.compose, provider_id, s)))
        compose_yml = next(
            f.content for f in render_provider_stack(spec.compose, provider_id, _NO_SECRETS) if f.name == COMPOSE_FILE
        )
        self.deployment = _ComposeDeployment(
            f"{name}-compose",
            {
                "address": str(spec.network.address.ip),
                "directory": spec.compose.directory,
                "stack": stack,
                "provider_id": provider_id,
                "files": pulumi.Output.secret(files),
                "compose_yml": compose_yml,
                "services": {spec.compose.provider_service: "running", spec.compose.tailscale_service: "running"},
                "container": self.container.id,
                # Changes when the container is replaced: the new one is empty, and everything is deployed again.
                "container_creation": self.container.creation_id,
                "ssh_public_key": ssh_public_key,
                # The provider's Omni key, from its registration: a new one redeploys .env and restarts the provider.
                "provider_key": provider_key,
                # The Proxmox token the program made for the provider ({"id", "secret"}), when it makes one.
                "provider_proxmox_token": provider_proxmox_token,
            },
            pulumi.ResourceOptions(
                parent=self,
                protect=protect,
                additional_secret_outputs=["files", "login_key", "provider_key", "provider_proxmox_token"],
            ),
        )
        self.register_outputs({"container": self.container.id, "deployment": self.deployment.id})


# compose.yml carries no secret: rendering it needs none (its text is a plain input, shown in diffs).
_NO_SECRETS = ProviderSecrets(
    omni_endpoint="",
    omni_service_account_key="",
    tailscale_auth_key="",
    proxmox_api_url="",
    proxmox_token_id="",
    proxmox_token_secret="",
)
