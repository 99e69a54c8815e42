"""omni-scale's program, in the layers its type tokens name:

core/        the spec, the stack settings, the program's inputs, retries, console, the dynamic-provider bases
omni/        omnictl, the documents Omni receives, the infra provider, MachineClass and TalosCluster
proxmox/     the Proxmox client, the storage preflight, the placement report, the LXC and its compose stack, SSH
kubernetes/  the Cilium render and the Tailscale operator's Helm release
cli/         drift detection and adoption, around `pulumi preview/up`
"""

import importlib
import importlib.abc
import importlib.util
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Where each module of the flat layout (commit eabef8d and earlier) went. States made by that code hold their dynamic
# providers pickled by these paths (dill pickles a class by its module path), and a refresh or destroy before the
# next `up` unpickles them: each old path stays importable as the module that now holds its classes.
MOVED = {
    "components.providers": "components.core.dynamic",
    "components.spec": "components.core.spec",
    "components.settings": "components.core.settings",
    "components.omnictl": "components.omni.omnictl",
    "components.render": "components.omni.render",
    "components.machine_class": "components.omni.machine_class",
    "components.talos_cluster": "components.omni.talos_cluster",
    "components.storage_preflight": "components.proxmox.storage_preflight",
    "components.placement": "components.proxmox.placement",
    "components.provider_lxc": "components.proxmox.lxc",
    "components.provider_stack": "components.proxmox.compose",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        pass  # the module it stands for is already executed


sys.meta_path.append(_MovedModules())
