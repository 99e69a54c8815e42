"""Renderers are pure and byte-stable; the seed estate renders to the checked-in golden files."""

import dataclasses
import subprocess
import sys

from components.core.spec_file import load_spec
from components.omni.render import canonical_template, render_cluster_template, render_machine_class
from tests.conftest import PROJECT_ROOT, lab_secrets

GOLDEN = PROJECT_ROOT / "tests" / "golden"


def test_machine_class_matches_golden_file():
    spec = load_spec(PROJECT_ROOT / "specs" / "omni.yaml")
    cls = spec.machine_classes["matrix-control-plane"]
    rendered = render_machine_class("matrix-control-plane", cls.provider_id, cls.provider_data.as_document())
    assert rendered == (GOLDEN / "matrix-control-plane.yaml").read_text()


def test_providerdata_key_order_does_not_change_the_bytes():
    a = {"cores": 4, "memory": 8192, "disk_size": 40, "storage_selector": "x"}
    b = dict(reversed(list(a.items())))
    assert render_machine_class("c", "proxmox", a) == render_machine_class("c", "proxmox", b)


EXPORTED = """kind: Cluster
name: c1
kubernetes:
  version: v1.34.3
talos:
  version: v1.11.6
patches:
  - idOverride: 200-cluster-c1-cilium
    annotations:
      name: cilium
    inline: |
      cluster:
          proxy:
              disabled: true
---
kind: Workers
systemExtensions:
  - siderolabs/iscsi-tools
machineClass:
  name: w
  size: 2
patches:
  - idOverride: 400-c1-workers-sysctl
    annotations:
      name: sysctl
    inline: |
      machine: {sysctls: {a: "1"}}
---
kind: ControlPlane
machineClass:
  name: cp
  size: 3
"""

WRITTEN = """kind: Cluster
name: c1
talos: {version: v1.11.6}
kubernetes: {version: v1.34.3}
patches:
- name: cilium
  inline: {cluster: {proxy: {disabled: true}}}
---
kind: ControlPlane
machineClass: {size: 3, name: cp}
---
kind: Workers
name: workers
machineClass: {name: w, size: 2}
patches:
- inline: {machine: {sysctls: {a: "1"}}}
  name: sysctl
systemExtensions: [siderolabs/iscsi-tools]
"""


def test_exported_and_written_forms_of_one_cluster_are_canonically_equal():
    assert canonical_template(EXPORTED) == canonical_template(WRITTEN)


def test_real_differences_survive_canonicalisation():
    assert canonical_template(WRITTEN.replace("size: 2", "size: 3")) != canonical_template(EXPORTED)
    assert canonical_template(EXPORTED.replace("disabled: true", "disabled: false")) != canonical_template(WRITTEN)
    custom_id = EXPORTED.replace("idOverride: 400-c1-workers-sysctl", "idOverride: 999-custom")
    assert "idOverride: 999-custom" in canonical_template(custom_id)


def _exported_patches(prefix: str, base: int, names: list[str]) -> str:
    return "".join(
        f"  - idOverride: {base + i:03d}-{prefix}-{name}\n    annotations:\n      name: {name}\n"
        f'    inline: |\n      machine: {{sysctls: {{{name}: "1"}}}}\n'
        for i, name in enumerate(names)
    )


def _written_patches(names: list[str]) -> str:
    return "".join(f'- name: {name}\n  inline: {{machine: {{sysctls: {{{name}: "1"}}}}}}\n' for name in names)


def test_several_patches_per_list_get_omnis_positional_ids():
    # Omni numbers the i-th patch of a list base + i (200 cluster, 400 machine set): the second patch of
    # a list is 201-/401-..., and an export of it must still compare equal to what was written.
    exported = (
        "kind: Cluster\nname: c1\nkubernetes: {version: v1.34.3}\ntalos: {version: v1.11.6}\npatches:\n"
        + _exported_patches("cluster-c1", 200, ["a", "b", "c"])
        + "---\nkind: ControlPlane\nmachineClass: {name: cp, size: 3}\npatches:\n"
        + _exported_patches("c1-control-planes", 400, ["d", "e"])
        + "---\nkind: Workers\nname: gpu\nmachineClass: {name: w, size: 1}\npatches:\n"
        + _exported_patches("c1-gpu", 400, ["f", "g"])
    )
    written = (
        "kind: Cluster\nname: c1\nkubernetes: {version: v1.34.3}\ntalos: {version: v1.11.6}\npatches:\n"
        + _written_patches(["a", "b", "c"])
        + "---\nkind: ControlPlane\nmachineClass: {name: cp, size: 3}\npatches:\n"
        + _written_patches(["d", "e"])
        + "---\nkind: Workers\nname: gpu\nmachineClass: {name: w, size: 1}\npatches:\n"
        + _written_patches(["f", "g"])
    )
    assert canonical_template(exported) == canonical_template(written)
    assert "idOverride" not in canonical_template(exported)
    # An id that is not the one Omni would give at that position is a real difference, and stays.
    swapped = exported.replace("201-cluster-c1-b", "202-cluster-c1-b")
    assert "idOverride: 202-cluster-c1-b" in canonical_template(swapped)


def test_seed_cluster_template_matches_golden_file():
    spec = load_spec(PROJECT_ROOT / "specs" / "omni.yaml")
    rendered = render_cluster_template("talos-prod-01", spec.clusters["talos-prod-01"])
    assert rendered == (GOLDEN / "talos-prod-01.yaml").read_text()
    assert canonical_template(rendered) == rendered  # what we render is already canonical


def test_every_rendered_template_passes_the_real_omnictl_validate(tmp_path):
    spec = load_spec(PROJECT_ROOT / "specs" / "omni.yaml")
    omnictl = PROJECT_ROOT / ".tools" / "bin" / "omnictl"
    for name, cluster in spec.clusters.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(render_cluster_template(name, cluster))
        proc = subprocess.run(
            [str(omnictl), "cluster", "template", "validate", "-f", str(path)],
            capture_output=True,
            text=True,
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        )
        assert proc.returncode == 0, proc.stderr


def test_grown_estate_renders_every_cluster_to_a_template_the_real_omnictl_accepts(tmp_path):
    spec = load_spec(PROJECT_ROOT / "tests" / "fixtures" / "grown-estate.yaml")
    omnictl = PROJECT_ROOT / ".tools" / "bin" / "omnictl"
    assert sorted(spec.clusters) == ["talos-lab-02", "talos-prod-01"]
    prod = spec.cluster_totals("talos-prod-01")
    # 3 x cp(4c, 8 GiB, 40 GB) + 4 x worker(8c, 16 GiB, 100+200 GB) + 1 x gpu(2x4c, 32 GiB, 100 GB)
    assert (prod.machines, prod.cores, prod.memory_mb, prod.disk_gb) == (8, 52, 122880, 1420)
    assert spec.totals.machines == 10
    for name, cluster in spec.clusters.items():
        text = render_cluster_template(name, cluster)
        assert canonical_template(text) == text
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        proc = subprocess.run(
            [str(omnictl), "cluster", "template", "validate", "-f", str(path)],
            capture_output=True,
            text=True,
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        )
        assert proc.returncode == 0, (name, proc.stderr)
    assert "time.cloudflare.com" in render_cluster_template("talos-prod-01", spec.clusters["talos-prod-01"])


def test_provider_stack_secrets_live_only_in_the_0600_files():
    from components.core.spec_file import load_spec
    from components.proxmox.compose import render_provider_stack

    spec = load_spec(PROJECT_ROOT / "specs" / "omni.yaml")
    secrets = lab_secrets()
    files = {f.name: f for f in render_provider_stack(spec.provider_lxc.compose, "proxmox", secrets)}
    assert [f.name for f in files.values()] == ["config.yaml", ".env", "compose.yml"]  # secrets before compose
    for name, f in files.items():
        holds = [s for s in ("OMNIKEY", "TSKEY", "PVESECRET") if s in f.content]
        assert (f.mode == "600") == bool(holds), name
    assert render_provider_stack(spec.provider_lxc.compose, "proxmox", secrets)[2].sha256 == files["compose.yml"].sha256


def test_a_secret_that_env_cannot_hold_is_refused_not_mangled():
    import pytest

    from components.core.spec_file import load_spec
    from components.proxmox.compose import render_provider_stack

    spec = load_spec(PROJECT_ROOT / "specs" / "omni.yaml")
    bad = dataclasses.replace(lab_secrets(), omni_service_account_key="it's")
    with pytest.raises(ValueError, match="OMNI_SERVICE_ACCOUNT_KEY"):
        render_provider_stack(spec.provider_lxc.compose, "proxmox", bad)


def test_the_seed_stack_renders_the_files_earlier_code_deployed():
    """The names a stack may now choose default to those it always had: a running estate is not redeployed."""
    from components.proxmox.compose import render_provider_stack

    spec = load_spec(PROJECT_ROOT / "specs" / "omni.yaml")
    files = {
        f.name: f.content for f in render_provider_stack(spec.provider_lxc.compose, "matrix-cluster", lab_secrets())
    }
    assert files["compose.yml"] == (GOLDEN / "compose.yml").read_text()
    assert files[".env"] == (GOLDEN / "provider.env").read_text()


def test_a_stack_of_another_shape_renders_with_its_names_and_passes_compose_validation(tmp_path):
    """A stack written by hand: its project and service names, its env names, Tailscale state beside the files."""
    import os

    import yaml

    from components.core.spec import ComposeStackSpec
    from components.proxmox.compose import render_provider_stack

    spec = load_spec(PROJECT_ROOT / "specs" / "omni.yaml")
    stack = ComposeStackSpec(
        **{
            **spec.provider_lxc.compose.model_dump(),
            "project": "omni-infra",
            "provider_service": "omni-infra-provider-proxmox",
            "tailscale_service": "ts",
            "tailscale_state": "./tailscale",
            "omni_key_env": "OMNI_KEY",
        }
    )
    for f in render_provider_stack(stack, "matrix-cluster", lab_secrets()):
        (tmp_path / f.name).write_text(f.content)
    (tmp_path / "tailscale").mkdir()  # as the deployment makes it, before compose runs
    compose = yaml.safe_load((tmp_path / "compose.yml").read_text())
    assert compose["name"] == "omni-infra" and "volumes" not in compose  # a bind mount, no named volume
    assert set(compose["services"]) == {"ts", "omni-infra-provider-proxmox"}
    provider = compose["services"]["omni-infra-provider-proxmox"]
    assert (
        provider["network_mode"] == "service:ts"
        and provider["environment"]["OMNI_KEY"] == "${OMNI_KEY:?set it in .env}"
    )
    assert compose["services"]["ts"]["volumes"] == ["./tailscale:/var/lib/tailscale"]
    assert "OMNI_KEY=OMNIKEY" in (tmp_path / ".env").read_text()
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "OMNI_SCALE_COMPOSE_SCHEMA": str(PROJECT_ROOT / ".tools" / "compose-spec.json"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "lab.docker_standin", "compose", "config", "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
