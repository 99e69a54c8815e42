"""A fresh lab Omni (the omnictl stand-in) per test, with the Proxmox provider registered."""

import pytest

from lab import omni_standin, provider_standin
from lab.ctl import LAB_OMNI_ENDPOINT


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNI_SCALE_LAB_DIR", str(tmp_path))
    omni_dir = str(tmp_path / "omni")
    key = omni_standin.init_server(omni_dir, LAB_OMNI_ENDPOINT)
    provider_standin.register(omni_dir, "Proxmox")
    return {"dir": tmp_path, "omni": omni_dir, "key": key}


def stack_config(key: str, **extra) -> dict:
    return {"omni-scale:omniEndpoint": LAB_OMNI_ENDPOINT, "omni-scale:omniServiceAccountKey": key,
            "omni-scale:omnictlPath": "lab/bin/omnictl",
            # Transient failures are retried; a test that provokes one should not wait seconds for it.
            "omni-scale:retryFirstDelaySeconds": "0.01", **{f"omni-scale:{k}": v for k, v in extra.items()}}


def configured(provider_class, config: dict):
    provider = provider_class()
    provider._raw_config = config
    return provider
