"""The files of the docker compose stack inside the provider LXC, rendered from the spec and the
stack's secrets: compose.yml (no secrets), config.yaml (the provider's Proxmox token) and .env
(the Tailscale auth key and the provider's Omni key).

One renderer serves the program (which keeps only digests, as Pulumi secrets, so a rotated key
shows as a change) and the dynamic provider (which writes the files over SSH).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from components.core.spec import ComposeStackSpec
from components.omni.render import dump_yaml

COMPOSE_FILE, CONFIG_FILE, ENV_FILE = "compose.yml", "config.yaml", ".env"
# The order files are written in: secrets first, so compose.yml never names a file not yet there.
FILE_ORDER = (CONFIG_FILE, ENV_FILE, COMPOSE_FILE)
SECRET_MODE, PLAIN_MODE = "600", "644"
# The tailnet identity lives in the sidecar's state (a named volume by default, or a directory beside the files).
# `docker compose down -v` would delete a volume and the node would come back as a new machine with a clashing
# hostname (domain.md, lesson 3): nothing here ever passes -v.
TAILSCALE_STATE_DIR = "/var/lib/tailscale"


@dataclass(frozen=True)
class ProviderSecrets:
    """What the provider container and its sidecar need that must never be stored in plain text."""

    omni_endpoint: str
    omni_service_account_key: str = field(repr=False)
    tailscale_auth_key: str = field(repr=False)
    proxmox_api_url: str
    proxmox_token_id: str
    proxmox_token_secret: str = field(repr=False)
    proxmox_insecure_skip_verify: bool = False


@dataclass(frozen=True)
class RenderedFile:
    name: str
    content: str = field(repr=False)
    mode: str  # octal, as `stat -c %a` prints it

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()


def compose_document(stack: ComposeStackSpec, provider_id: str) -> dict:
    """compose.yml: secrets come in by interpolation from .env, each only into the container that needs it."""
    endpoint, key = stack.omni_endpoint_env, stack.omni_key_env
    document: dict = {
        "name": stack.project,
        "services": {
            stack.tailscale_service: {
                "image": stack.tailscale_image,
                "hostname": stack.tailscale_hostname,
                "restart": "unless-stopped",
                "environment": {
                    "TS_AUTHKEY": "${TS_AUTHKEY:?set it in .env}",
                    "TS_HOSTNAME": stack.tailscale_hostname,
                    "TS_STATE_DIR": TAILSCALE_STATE_DIR,
                    # Kernel mode: the provider shares this network namespace and must reach the LAN
                    # and the tailnet alike (domain.md, lesson 3).
                    "TS_USERSPACE": "false",
                },
                "cap_add": ["NET_ADMIN"],
                "devices": ["/dev/net/tun:/dev/net/tun"],
                "volumes": [f"{stack.tailscale_state}:{TAILSCALE_STATE_DIR}"],
            },
            stack.provider_service: {
                "image": stack.provider_image,
                "restart": "unless-stopped",
                "network_mode": f"service:{stack.tailscale_service}",
                "depends_on": [stack.tailscale_service],  # made conditional below when the sidecar is checked
                "environment": {
                    endpoint: f"${{{endpoint}:?set it in .env}}",
                    key: f"${{{key}:?set it in .env}}",
                },
                "command": ["--id", provider_id, "--config-file", "/config.yaml"],
                "volumes": [f"./{CONFIG_FILE}:/config.yaml:ro"],
            },
        },
    }
    check = stack.tailscale_healthcheck
    if check is not None:
        sidecar = document["services"][stack.tailscale_service]
        # On loopback only: the provider shares this network namespace, the LAN and the tailnet need not see it.
        sidecar["environment"].update(
            {"TS_ENABLE_HEALTH_CHECK": "true", "TS_LOCAL_ADDR_PORT": f"127.0.0.1:{check.port}"}
        )
        sidecar["healthcheck"] = {
            # busybox wget: the tailscale image is Alpine, without curl.
            "test": ["CMD", "wget", "-q", "--spider", f"http://127.0.0.1:{check.port}/healthz"],
            "interval": check.interval,
            "timeout": check.timeout,
            "retries": check.retries,
            "start_period": check.start_period,
        }
        document["services"][stack.provider_service]["depends_on"] = {
            stack.tailscale_service: {"condition": "service_healthy"}
        }
    if stack.state_directory is None:
        document["volumes"] = {stack.tailscale_state: {}}
    return document


def _env_value(key: str, value: str) -> str:
    """compose reads single-quoted .env values literally; a quote or newline inside could not be written."""
    if any(c in value for c in "\n\r'"):
        raise ValueError(f".env: the value for {key} must be one line without single quotes")
    return f"'{value}'" if any(c in value for c in ' #"$\\') else value


def render_provider_stack(stack: ComposeStackSpec, provider_id: str, secrets: ProviderSecrets) -> list[RenderedFile]:
    header = "# Written by omni-scale from specs/omni.yaml; a change made here is drift and is undone by `pulumi up`.\n"
    config = {
        "proxmox": {
            "url": secrets.proxmox_api_url,
            "tokenID": secrets.proxmox_token_id,
            "tokenSecret": secrets.proxmox_token_secret,
            "insecureSkipVerify": secrets.proxmox_insecure_skip_verify,
        }
    }
    env = {
        "TS_AUTHKEY": secrets.tailscale_auth_key,
        stack.omni_endpoint_env: secrets.omni_endpoint,
        stack.omni_key_env: secrets.omni_service_account_key,
    }
    files = {
        CONFIG_FILE: RenderedFile(CONFIG_FILE, header + dump_yaml(config), SECRET_MODE),
        ENV_FILE: RenderedFile(
            ENV_FILE, header + "".join(f"{k}={_env_value(k, v)}\n" for k, v in env.items()), SECRET_MODE
        ),
        COMPOSE_FILE: RenderedFile(COMPOSE_FILE, header + dump_yaml(compose_document(stack, provider_id)), PLAIN_MODE),
    }
    return [files[name] for name in FILE_ORDER]


def redact(text: str, secrets: ProviderSecrets) -> str:
    """Text from the container (its logs) with every secret the stack holds taken out, before anyone sees it."""
    for value in (
        secrets.omni_endpoint,
        secrets.omni_service_account_key,
        secrets.tailscale_auth_key,
        secrets.proxmox_token_secret,
    ):
        if value:
            text = text.replace(value, "[secret]")
    return text


def file_states(files: list[RenderedFile]) -> dict[str, dict[str, str]]:
    """What the state keeps of each file, and what `read` finds on the host: its digest and mode."""
    return {f.name: {"sha256": f.sha256, "mode": f.mode} for f in files}
