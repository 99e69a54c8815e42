"""Pure renderers: from the spec model to the exact documents Omni receives.

Byte-stable (sorted keys where order does not matter) so that diffs stay quiet.
"""

from __future__ import annotations

import yaml

MACHINE_CLASS_TYPE = "MachineClasses.omni.sidero.dev"
DEFAULT_NAMESPACE = "default"


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks (`|`), the way operators write providerdata by hand."""


def _str_representer(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)


def dump_yaml(document: dict) -> str:
    return yaml.dump(document, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False)


def providerdata_yaml(provider_data: dict) -> str:
    """providerdata travels to Omni as a YAML string inside the class spec."""
    return yaml.safe_dump(provider_data, sort_keys=True, default_flow_style=False)


def machine_class_document(class_id: str, provider_id: str, provider_data: dict) -> dict:
    return {
        "metadata": {"namespace": DEFAULT_NAMESPACE, "type": MACHINE_CLASS_TYPE, "id": class_id},
        "spec": {
            "autoprovision": {
                "providerid": provider_id,
                "providerdata": providerdata_yaml(provider_data),
            }
        },
    }


def render_machine_class(class_id: str, provider_id: str, provider_data: dict) -> str:
    return dump_yaml(machine_class_document(class_id, provider_id, provider_data))
