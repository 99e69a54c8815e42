"""TailscaleOperator: the Tailscale Kubernetes operator in the new cluster, as a pulumi-kubernetes Helm release.

Three resources of the pulumi-kubernetes provider (the plugin tools/bootstrap.sh builds): a `kubernetes.Provider`
on the cluster's service-account kubeconfig (a secret input: Pulumi keeps it encrypted, in the provider's state
only); the namespace, labelled `pod-security.kubernetes.io/enforce=privileged` (its proxy pods need it,
domain.md lesson 4); and the `helm.v3.Release`. Pulumi diffs the release's values, refreshes them from the
cluster, waits for the chart's objects to be ready, and uninstalls on delete. The OAuth client's id and secret
come from the stack config as secrets (components/core/program.py reads them) and reach the plugin over gRPC
inside the (secret) values, never argv; helm's own release Secret in the cluster holds them, as helm always does
(README: Secrets).

States made before this module used pulumi-kubernetes hold two Python dynamic resources here instead; the
adoption command moves them over (components/cli/adoption.py: retired_entries) without reinstalling anything.
"""

from __future__ import annotations

import copy
import os

import pulumi
import pulumi_kubernetes as kubernetes

from components.core.dynamic import ADOPT_ENV
from components.core.settings import truthy
from components.core.spec import TailscaleOperatorSpec

POD_SECURITY = {"pod-security.kubernetes.io/enforce": "privileged"}
RELEASE = "tailscale-operator"
CHART = "tailscale-operator"
HISTORY_MAX = 3


def release_id(namespace: str, release: str) -> str:
    """The id pulumi-kubernetes reads (and imports) a Helm release by."""
    return f"{namespace}/{release}"


def release_values(spec: TailscaleOperatorSpec) -> dict:
    """The chart values the spec asks for (no secrets): the user's, with the operator's hostname set."""
    values = copy.deepcopy(spec.values)
    values.setdefault("operatorConfig", {})["hostname"] = spec.hostname
    if spec.oauth.audience is not None:
        values["oauth"] = {"audience": spec.oauth.audience}
    return values


def chart_values(spec: TailscaleOperatorSpec, oauth: pulumi.Output) -> pulumi.Output:
    """Every value the release gets. The whole map is a secret once the OAuth pair is in it; the engine's plan
    still names `values` when any of it changes."""
    plain = release_values(spec)
    return pulumi.Output.secret(oauth.apply(lambda pair: {**plain, "oauth": {**plain.get("oauth", {}), **pair}}))


class TailscaleOperator(pulumi.ComponentResource):
    """The operator's namespace and Helm release, in the cluster the spec names, once it is ready."""

    def __init__(
        self,
        name: str,
        spec: TailscaleOperatorSpec,
        kubeconfig: pulumi.Output,
        *,
        oauth: pulumi.Output,
        chart_repository: str,
        protect: bool,
        depends_on: list,
        opts: pulumi.ResourceOptions | None = None,
    ):
        """oauth: the chart's OAuth client (a secret Output); chart_repository: the spec's, or a mirror."""
        super().__init__("omni-scale:k8s:TailscaleOperator", name, None, opts)
        # Adoption (components/cli/adoption.py) records the namespace and the release that already run, as they are.
        adopting = truthy(os.environ.get(ADOPT_ENV, ""))
        # The cluster is known by its Omni name: while the cluster itself changes, its kubeconfig is unknown at
        # preview, which pulumi-kubernetes would otherwise take for another cluster (and replace all on it).
        self.provider = kubernetes.Provider(
            f"{name}-cluster",
            kubeconfig=pulumi.Output.secret(kubeconfig),
            cluster_identifier=f"omni:{spec.cluster}",
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )
        self.namespace = kubernetes.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": spec.namespace, "labels": dict(POD_SECURITY)},
            opts=pulumi.ResourceOptions(
                parent=self, provider=self.provider, protect=protect, import_=spec.namespace if adopting else None
            ),
        )
        self.release = kubernetes.helm.v3.Release(
            name,
            name=RELEASE,
            chart=CHART,
            version=spec.chart_version,
            namespace=self.namespace.metadata.name,
            repository_opts={"repo": chart_repository},
            # pulumi-kubernetes waits (up to 5 minutes) for the chart's objects to be ready after each install or
            # upgrade.
            values=chart_values(spec, oauth),
            max_history=HISTORY_MAX,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=self.provider,
                protect=protect,
                import_=release_id(spec.namespace, RELEASE) if adopting else None,
            ),
        )
        self.status = self.release.status.apply(lambda status: status.status if status else None)
        self.register_outputs({"status": self.status})
