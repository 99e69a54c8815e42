"""The README's spec reference names every field of the spec model."""

import typing

from pydantic import BaseModel

from components.core.spec import Spec
from tests.conftest import PROJECT_ROOT


def _models(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _fields(model: type[BaseModel], seen: set) -> set[str]:
    """Every field name of the model and the models in it (chart values, free-form, are not the spec's)."""
    if model in seen or model.model_config.get("extra") == "allow":
        return set()
    seen.add(model)
    names = set(model.model_fields)
    for field in model.model_fields.values():
        for inner in _models(field.annotation):
            names |= _fields(inner, seen)
    return names


def test_every_field_of_the_spec_is_in_the_readme_reference():
    readme = (PROJECT_ROOT / "README.md").read_text()
    reference = readme.split("### The spec: every field of `specs/omni.yaml`")[1].split("\n## ")[0].split("\n### ")[0]
    written = ("`{}`", "`{}[]`", "`{}.<name>`")
    missing = sorted(name for name in _fields(Spec, set()) if not any(w.format(name) in reference for w in written))
    assert missing == []
