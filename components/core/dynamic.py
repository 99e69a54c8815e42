"""The bases of this project's dynamic providers."""

from __future__ import annotations

import os
from collections.abc import Callable

import pulumi
from pulumi.dynamic import ConfigureRequest, Resource, ResourceProvider
from pulumi.dynamic.config import Config
from pulumi.output import Unknown
from pulumi.runtime import rpc

from components.core.console import progress
from components.core.settings import NAMESPACE, Lookup, OmniSettings, lookup_in, omnictl_from_config, truthy
from components.omni.omnictl import Omnictl


class StackConfiguredProvider(ResourceProvider):
    """Gets the stack config (with its secrets) in `configure`, never through resource inputs.

    The Python SDK pickles the provider object into the stack state: it must hold no
    secret, so the config arrives in `configure`, which runs in the provider process
    only, and nothing of the instance is pickled.
    """

    _stack_config: Config = Config({}, NAMESPACE)

    def __getstate__(self):
        return {}

    def configure(self, req: ConfigureRequest) -> None:
        # Kept, not read: each key is read when needed, so `check` works without credentials.
        self._stack_config = req.config

    @property
    def _config(self) -> Lookup:
        return lookup_in(self._stack_config)


class OmniProvider(StackConfiguredProvider):
    """Holds the omnictl client, built from the stack config."""

    _client: Omnictl | None = None
    _settings: OmniSettings | None = None

    def _build(self, offline: bool) -> tuple[Omnictl, OmniSettings]:
        return omnictl_from_config(self._config, offline=offline)

    @property
    def client(self) -> Omnictl:
        if self._client is None:
            self._client, self._settings = self._build(offline=False)
        return self._client

    @property
    def offline_client(self) -> Omnictl:
        """For omnictl's offline verbs (template validate/render): no endpoint or key needed."""
        return self._build(offline=True)[0]

    @property
    def settings(self) -> OmniSettings:
        if self._settings is None:
            self._settings = self._build(offline=True)[1]
        return self._settings


def whole_numbers(value):
    """Props as this program wrote them: the dynamic provider protocol carries every number as a
    float (200 arrives as 200.0), which Proxmox's type checks and our diffs must not see."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    return value


def is_unknown(value) -> bool:
    """A value preview cannot know yet (an output of a resource being changed), in each form the SDK hands a
    dynamic provider: the sentinel string, an Unknown, or None inside a secret."""
    value = rpc.unwrap_rpc_secret(value)
    return value is None or value == rpc.UNKNOWN or isinstance(value, Unknown)


# `make adopt` sets this for one `pulumi up`: create() then takes over a thing that already exists
# instead of writing it (see adopted()).
ADOPT_ENV = "OMNI_SCALE_ADOPT"


def adopted(provider: ResourceProvider, id_: str, props: dict, extra: Callable[[dict], dict] | None = None):
    """In adoption mode, the CreateResult recording what already exists, as it is, or None.

    Pulumi cannot import a Python dynamic resource (the engine's Read for an import carries no
    `__provider`), so adoption happens here: the state records the live thing as its outputs and the
    program's wishes as its inputs, and the next `preview` shows exactly where they differ. Nothing is
    written. What does not exist yet is created as usual."""
    from pulumi.dynamic import CreateResult

    if not truthy(os.environ.get(ADOPT_ENV, "")):
        return None
    found = provider.read(id_, props)
    if found.id is None:
        progress(f"adopt: {id_} does not exist yet; creating it")
        return None
    progress(f"adopt: {id_} taken over as it is (nothing written)")
    outs = dict(found.outs or {})
    return CreateResult(found.id, extra(outs) if extra else outs)


# The type every dynamic resource had before each kind got its own: what states made until then record.
UNTYPED = "pulumi-python:dynamic:Resource"
TYPED = "pulumi-python:dynamic/"  # what each kind's own type starts with


def is_dynamic_type(type_: str) -> bool:
    """One of this program's dynamic resources, by its type in a state or an engine event, old or new."""
    return type_ == UNTYPED or type_.startswith(TYPED)


class TypedResource(Resource):
    """A dynamic resource whose type says its kind, `pulumi-python:dynamic/<module>:<name>` (TYPE), so a URN tells a
    class from a cluster. States made before hold them as UNTYPED: the alias carries each over with no replace."""

    TYPE = UNTYPED

    def __init_subclass__(cls, module: str = "", name: str = "Resource", **kwargs):
        super().__init_subclass__(module=module, name=name, **kwargs)
        cls.TYPE = f"{TYPED}{module}:{name}"

    def __init__(self, provider: ResourceProvider, name: str, props: dict, opts: pulumi.ResourceOptions):
        typed = pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=UNTYPED)])
        super().__init__(provider, name, props, pulumi.ResourceOptions.merge(opts, typed))
