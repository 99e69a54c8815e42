"""Unit tests run offline: the chart cache they use holds, in the real Cilium chart's place (its repository and
version in the seed spec), the lab's stand-in chart, so the program renders it without fetching anything."""

import os
import subprocess

import pytest

from components.core.spec_file import load_spec
from components.kubernetes import cni
from tests.conftest import PROJECT_ROOT


@pytest.fixture(scope="session", autouse=True)
def offline_chart_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("charts")
    previous = os.environ.get("OMNI_SCALE_CHART_CACHE")
    os.environ["OMNI_SCALE_CHART_CACHE"] = str(cache)
    try:
        cilium = load_spec(PROJECT_ROOT / "specs" / "omni.yaml").clusters["talos-prod-01"].cni.cilium
        slot = cni.cache_slot(cilium.chart_repository)
        slot.mkdir(parents=True)
        subprocess.run(
            [
                str(PROJECT_ROOT / ".tools" / "bin" / "helm"),
                "package",
                str(PROJECT_ROOT / "lab" / "charts" / "cilium"),
                "--destination",
                str(slot),
            ],
            check=True,
            capture_output=True,
        )
        yield cache
    finally:
        if previous is None:
            os.environ.pop("OMNI_SCALE_CHART_CACHE", None)
        else:
            os.environ["OMNI_SCALE_CHART_CACHE"] = previous
