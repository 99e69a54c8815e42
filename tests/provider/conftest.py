"""A real Omni (lab/omni_lab.py) with the Proxmox infra provider registered in it: one per module for tests
that leave it as they found it (`lab`), a fresh one per test for tests that stop it or provision (`fresh_lab`)."""

import contextlib
from pathlib import Path

import pytest
import yaml

from components.core.spec_file import load_spec
from components.omni.render import MACHINE_CLASS_TYPE
from lab import omni_lab, provider_standin
from tests.conftest import PROJECT_ROOT, configure

SPEC = load_spec(PROJECT_ROOT / "specs" / "omni.yaml")
PROVIDER_ID = SPEC.infra_provider.id


@contextlib.contextmanager
def running_omni(directory: Path):
    omni = omni_lab.start(directory / "omni", SPEC)
    try:
        provider_standin.register(directory, omni, PROVIDER_ID)
        yield {"dir": directory, "omni": omni, "key": omni["service_account_key"]}
    finally:
        omni_lab.stop(omni)


@pytest.fixture(autouse=True)
def no_held_provider_reading():
    """Each test starts as a `pulumi` run does, holding no reading of the provider: these tests change its heartbeat
    between checks (components/omni/infra_provider.py: READING_REUSE_SECONDS)."""
    from components.omni.infra_provider import forget_provider_readings

    forget_provider_readings()


@pytest.fixture(scope="module")
def module_omni(tmp_path_factory):
    with running_omni(tmp_path_factory.mktemp("omni")) as lab:
        yield lab


@pytest.fixture
def lab(module_omni, monkeypatch):
    """The module's Omni, put back after the test: no MachineClass, a fresh heartbeat with no error. A test
    that stops Omni or makes a cluster takes `fresh_lab` instead."""
    monkeypatch.setenv("OMNI_SCALE_LAB_DIR", str(module_omni["dir"]))
    yield module_omni
    admin = omni_lab.lab_omnictl(module_omni["omni"])
    for found in yaml.safe_load_all(admin.run("get", MACHINE_CLASS_TYPE, "-n", "default", "-o", "yaml")):
        if found:
            admin.delete(MACHINE_CLASS_TYPE, found["metadata"]["id"], "default")
    provider_standin.set_heartbeat(module_omni["dir"])


@pytest.fixture
def fresh_lab(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNI_SCALE_LAB_DIR", str(tmp_path))
    with running_omni(tmp_path) as lab:
        yield lab


def stack_config(omni: dict, key: str | None = None, **extra) -> dict:
    return {
        "omni-scale:omniEndpoint": omni["endpoint"],
        "omni-scale:omniServiceAccountKey": key or omni["service_account_key"],
        "omni-scale:omniCaFile": omni["ca_file"],
        "omni-scale:omnictlPath": "lab/bin/omnictl",
        # Transient failures are retried; a test that provokes one should not wait seconds for it.
        "omni-scale:retryFirstDelaySeconds": "0.01",
        **{f"omni-scale:{k}": v for k, v in extra.items()},
    }


def configured(provider_class, config: dict):
    return configure(provider_class(), config)


@pytest.fixture
def provisioning_lab(fresh_lab):
    """The fresh_lab fixture, plus fakepve and the provider stand-in running against both (as the lab's LXC runs it):
    a cluster's machines get VMs, so the lab's Omni model (lab/omni_readiness.py) can call it Ready."""
    import json
    import sys

    from lab.processes import spawn, terminate, wait_until, write_private_json

    lab = fresh_lab
    directory = lab["dir"]
    pve_dir = directory / "fakepve"
    pve_dir.mkdir()
    pve_proc = spawn(
        directory,
        "fakepve",
        [sys.executable, "-m", "lab.fakepve_lab", "--state-dir", str(pve_dir)],
    )
    standin = None
    try:
        pve = wait_until(
            lambda: (pve_dir / "fakepve.json").exists() and json.loads((pve_dir / "fakepve.json").read_text()),
            pve_proc,
            "fakepve",
            directory / "fakepve.log",
        )
        # The stand-in registers and heartbeats itself: the provider made by `lab` gets a new key for it.
        key = json.loads((directory / "provider.json").read_text())["key"]
        config = directory / "provider-config.yaml"
        write_private_json(
            config,
            {
                "proxmox": {
                    "url": pve["api_url"],
                    "tokenID": pve["provider_token_id"],
                    "tokenSecret": pve["provider_token_secret"],
                }
            },
        )
        bundle = directory / "ca-bundle.pem"
        bundle.write_text(open(lab["omni"]["ca_file"]).read() + open(pve["cafile"]).read())
        standin = spawn(
            directory,
            "provider",
            [
                str(PROJECT_ROOT / ".tools" / "bin" / "omni-infra-provider-standin"),
                "--id",
                PROVIDER_ID,
                "--config-file",
                str(config),
                "--schema-file",
                str(provider_standin.SCHEMA),
                "--image-factory-url",
                f"http://{omni_lab.HOST}:{omni_lab.FACTORY_PORT}",
            ],
            env={
                "PATH": "/usr/bin:/bin",
                "SSL_CERT_FILE": str(bundle),
                "OMNI_ENDPOINT": lab["omni"]["endpoint"],
                "OMNI_SERVICE_ACCOUNT_KEY": key,
            },
        )
        # What lab/omni_readiness.py reads: fakepve's address, and a token to read it with.
        write_private_json(
            directory / "lab.json",
            {
                "proxmox": pve,
                "provider_stack": {
                    "proxmox_token_id": pve["provider_token_id"],
                    "proxmox_token_secret": pve["provider_token_secret"],
                },
            },
        )
        yield {**lab, "proxmox": pve, "provider_pid": standin.pid}
    finally:
        for proc in (standin, pve_proc):
            if proc is not None:
                terminate(proc.pid)
