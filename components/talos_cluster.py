"""The Talos cluster: an Omni cluster template, synced with omnictl and waited on until ready."""

from __future__ import annotations

from typing import Optional, Sequence

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, Resource, UpdateResult

from .console import progress
from .providers import OmniProvider, adopted
from .omnictl import NotFound, OmnictlError
from .render import canonical_template, render_cluster_template
from .spec import ClusterSpec

# The service-account user the kubeconfig is made for (Omni names the SA after it).
KUBECONFIG_USER = "omni-scale"


class TalosClusterProvider(OmniProvider):
    """check validates offline; create/update sync then wait; read exports the live cluster."""

    def check(self, _olds: dict, news: dict) -> CheckResult:
        inputs = dict(news)
        try:
            self.offline_client.template("validate", news["template"])
        except OmnictlError as exc:
            return CheckResult(inputs, [CheckFailure("template", exc.message)])
        inputs["template"] = canonical_template(news["template"])
        return CheckResult(inputs, [])

    def diff(self, _id: str, olds: dict, news: dict) -> DiffResult:
        changed = [k for k in ("cluster_name", "template") if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[k for k in changed if k == "cluster_name"],
                          stables=["cluster_name"], delete_before_replace=True)

    def _sync_and_wait(self, props: dict) -> dict:
        name, template = props["cluster_name"], props["template"]
        progress(f"syncing cluster template {name}")
        self.client.template("sync", template)
        timeout = self.settings.cluster_ready_timeout_seconds
        progress(f"waiting up to {timeout:.0f}s for cluster {name} to be ready")
        # omnictl enforces --wait itself; our own timeout only catches a hung omnictl.
        self.client.template("status", template, "--wait", f"{timeout:.0f}s",
                             timeout_seconds=timeout + self.settings.timeout_seconds)
        progress(f"cluster {name} is ready")
        return {
            "cluster_name": name,
            "template": canonical_template(self.client.export_template(name)),
            "kubeconfig": self._kubeconfig(name),
        }

    def create(self, props: dict) -> CreateResult:
        name = props["cluster_name"]
        with_kubeconfig = lambda outs: {**outs, "kubeconfig": self._kubeconfig(name)}  # noqa: E731
        return adopted(self, name, props, with_kubeconfig) or CreateResult(name, self._sync_and_wait(props))

    def _kubeconfig(self, name: str) -> str:
        return self.client.service_account_kubeconfig(name, KUBECONFIG_USER)

    def update(self, _id: str, _olds: dict, news: dict) -> UpdateResult:
        return UpdateResult(self._sync_and_wait(news))

    def read(self, id_: str, props: dict) -> ReadResult:
        try:
            live = canonical_template(self.client.export_template(id_))
        except NotFound:
            return ReadResult(None, {})
        outs = {**props, "cluster_name": id_, "template": live}
        return ReadResult(id_, outs, {"cluster_name": id_, "template": live})

    def delete(self, id_: str, props: dict) -> None:
        progress(f"deleting cluster {id_}")
        try:
            self.client.template("delete", props["template"])
        except NotFound:
            pass  # already gone


class _TalosClusterResource(Resource):
    kubeconfig: pulumi.Output[str]
    template: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: pulumi.ResourceOptions):
        super().__init__(TalosClusterProvider(), name, {**props, "kubeconfig": None}, opts)


class TalosCluster(pulumi.ComponentResource):
    """One Talos cluster in Omni, from its spec. Protected when the spec marks it production."""

    def __init__(self, name: str, spec: ClusterSpec, *, protect: bool,
                 machine_classes: Sequence[pulumi.Resource] = (),
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("omni-scale:omni:TalosCluster", name, None, opts)
        template = render_cluster_template(name, spec)
        self.resource = _TalosClusterResource(
            name, {"cluster_name": name, "template": template},
            pulumi.ResourceOptions(parent=self, protect=protect, depends_on=list(machine_classes),
                                   additional_secret_outputs=["kubeconfig"]))
        self.template = self.resource.template
        self.kubeconfig = pulumi.Output.secret(self.resource.kubeconfig)
        # Not registered as a component output: verbose SDK logs print those in plain text, secrets too.
        self.register_outputs({"template": self.template})
