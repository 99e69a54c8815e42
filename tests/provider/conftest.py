"""A fresh real Omni (lab/omni_lab.py) per test, with the Proxmox infra provider registered in it."""

import pytest

from components.spec import load_spec
from lab import omni_lab, provider_standin
from tests.conftest import PROJECT_ROOT

SPEC = load_spec(PROJECT_ROOT / "specs" / "omni.yaml")
PROVIDER_ID = SPEC.infra_provider.id


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNI_SCALE_LAB_DIR", str(tmp_path))
    omni = omni_lab.start(tmp_path / "omni", SPEC)
    try:
        provider_standin.register(tmp_path, omni, PROVIDER_ID)
        yield {"dir": tmp_path, "omni": omni, "key": omni["service_account_key"]}
    finally:
        omni_lab.stop(omni)


def stack_config(omni: dict, key: str | None = None, **extra) -> dict:
    return {"omni-scale:omniEndpoint": omni["endpoint"],
            "omni-scale:omniServiceAccountKey": key or omni["service_account_key"],
            "omni-scale:omniCaFile": omni["ca_file"], "omni-scale:omnictlPath": "lab/bin/omnictl",
            # Transient failures are retried; a test that provokes one should not wait seconds for it.
            "omni-scale:retryFirstDelaySeconds": "0.01", **{f"omni-scale:{k}": v for k, v in extra.items()}}


def configured(provider_class, config: dict):
    provider = provider_class()
    provider._raw_config = config
    return provider
