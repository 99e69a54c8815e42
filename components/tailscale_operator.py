"""TailscaleOperator: the Tailscale Kubernetes operator in the new cluster, as a Helm release.

Two dynamic resources: the namespace, labelled `pod-security.kubernetes.io/enforce=privileged`
(its proxy pods need it, domain.md lesson 4), through the Kubernetes API (the `kubernetes` client);
and the release, through the `helm` CLI. The cluster's service-account kubeconfig is a secret input
(Pulumi keeps it encrypted in the state); the OAuth client id and secret come from the stack config
and reach helm only in a values file of mode 0600 in a private temporary directory, never argv.
The state keeps a digest of them (a Pulumi secret), so a rotated secret shows as a change.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Optional

import pulumi
import requests  # noqa: F401 - see below
import urllib3  # noqa: F401
import yaml
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, UpdateResult
from pulumi.runtime import rpc

from .console import progress
from .helm import HelmError, helm_binary, merge_values, run_helm
from .providers import StackConfiguredProvider, adopted, is_unknown, whole_numbers
from .settings import NAMESPACE, TAILSCALE_OAUTH_CREDENTIALS, lookup_in, require
from .spec import TailscaleOperatorSpec

POD_SECURITY = {"pod-security.kubernetes.io/enforce": "privileged"}
# Kubernetes adds this label to every namespace itself: not ours, never drift.
AUTOMATIC_LABELS = ("kubernetes.io/metadata.name",)
RELEASE = "tailscale-operator"
CHART = "tailscale-operator"


def release_id(namespace: str, release: str) -> str:
    """The id the Helm release is read by (and adopted by)."""
    return f"{namespace}/{release}"


def oauth_digest(client_id: str, client_secret: str) -> str:
    return hashlib.sha256(json.dumps([client_id, client_secret]).encode()).hexdigest()


def release_values(spec: TailscaleOperatorSpec) -> dict:
    """The chart values the spec asks for (no secrets): the user's, with the operator's hostname set."""
    values = copy.deepcopy(spec.values)
    values.setdefault("operatorConfig", {})["hostname"] = spec.hostname
    return values


# --------------------------------------------------------------------------------- namespace

def _core_api(kubeconfig: str):
    # Imported late: only stacks with the operator pay for it. The provider process runs reads in parallel
    # threads, so another thread may be importing requests (which imports urllib3) while this one imports
    # kubernetes (which imports urllib3, then requests): both are imported above, with this module, so
    # the two imports never wait on each other (a "partially initialized module" error otherwise).
    from kubernetes import client, config
    return client.CoreV1Api(config.new_client_from_config_dict(yaml.safe_load(kubeconfig)))


def _api_errors():
    from kubernetes.client.exceptions import ApiException
    return ApiException


class NamespaceProvider(StackConfiguredProvider):
    """Reads and writes one namespace's labels; the kubeconfig is a (secret) input."""

    def diff(self, _id: str, olds: dict, news: dict) -> DiffResult:
        changed = [k for k in ("name", "labels") if olds.get(k) != news.get(k)] + _kubeconfig_renewed(olds, news)
        return DiffResult(changes=bool(changed), replaces=[k for k in changed if k == "name"], stables=[],
                          delete_before_replace=True)

    def create(self, props: dict) -> CreateResult:
        adoption = adopted(self, props["name"], props)
        if adoption:
            return adoption
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": props["name"], "labels": props["labels"]}}
        _core_api(props["kubeconfig"]).create_namespace(body)
        return CreateResult(props["name"], dict(props))

    def update(self, _id: str, olds: dict, news: dict) -> UpdateResult:
        if _only_the_kubeconfig_changed(olds, news, ("name", "labels")):
            return UpdateResult({**olds, "kubeconfig": news["kubeconfig"]})
        labels = {**{k: None for k in olds.get("labels", {}) if k not in news["labels"]}, **news["labels"]}
        _core_api(news["kubeconfig"]).patch_namespace(news["name"], {"metadata": {"labels": labels}})
        return UpdateResult(dict(news))

    def read(self, id_: str, props: dict) -> ReadResult:
        try:
            live = _core_api(props["kubeconfig"]).read_namespace(id_)
        except _api_errors() as exc:
            if exc.status == 404:
                return ReadResult(None, {})
            raise
        labels = {k: v for k, v in (live.metadata.labels or {}).items() if k not in AUTOMATIC_LABELS}
        return ReadResult(id_, {**props, "name": id_, "labels": labels})

    def delete(self, id_: str, props: dict) -> None:
        try:
            _core_api(props["kubeconfig"]).delete_namespace(id_)
        except _api_errors() as exc:
            if exc.status != 404:
                raise


# ------------------------------------------------------------------------------------ release

class HelmReleaseProvider(StackConfiguredProvider):
    """`helm upgrade --install` / `status` / `uninstall`, with the kubeconfig and the OAuth values in
    0600 files of a private temporary directory that is removed when helm is done."""

    def _helm(self, props: dict, *args: str, values: Optional[dict] = None) -> str:
        return run_helm(helm_binary(lookup_in(self._raw_config)("helmPath")), *args, kubeconfig=props["kubeconfig"],
                        values=values)

    def _secret_values(self) -> dict:
        get = lookup_in(self._raw_config)
        require(get, TAILSCALE_OAUTH_CREDENTIALS, "Pulumi.<stack>.yaml")
        return {"oauth": {"clientId": str(get("tailscaleOAuthClientId")),
                          "clientSecret": str(get("tailscaleOAuthClientSecret"))}}

    def diff(self, _id: str, olds: dict, news: dict) -> DiffResult:
        olds, news = whole_numbers(olds), whole_numbers(news)
        changed = [k for k in _RELEASE_KEYS if olds.get(k) != news.get(k)] + _kubeconfig_renewed(olds, news)
        return DiffResult(changes=bool(changed), replaces=[k for k in changed if k in ("release", "namespace")],
                          stables=[], delete_before_replace=True)

    def _install(self, props: dict) -> dict:
        values = merge_values(props["values"], self._secret_values())
        progress(f"helm upgrade --install {props['release']} ({props['chart']} {props['version']}) "
                  f"in namespace {props['namespace']}")
        self._helm(props, "upgrade", "--install", props["release"], props["chart"], "--repo", props["repository"],
                   "--version", props["version"], "--namespace", props["namespace"], "--history-max", "3",
                   values=values)
        live = self._live(props)
        if live is None:
            raise HelmError(f"helm reported success but release {props['release']} is not there")
        return live

    def _live(self, props: dict) -> Optional[dict]:
        where = (props["release"], "--namespace", props["namespace"], "--output", "json")
        try:
            metadata = json.loads(self._helm(props, "get", "metadata", *where))
        except HelmError as exc:
            if "not found" in str(exc):
                return None
            raise
        values = json.loads(self._helm(props, "get", "values", *where)) or {}  # user-supplied, OAuth pair included
        oauth = values.pop("oauth", {}) or {}
        return {**props, "chart": metadata["chart"], "version": metadata["version"], "values": values,
                "oauth_digest": oauth_digest(str(oauth.get("clientId", "")), str(oauth.get("clientSecret", ""))),
                "status": metadata["status"], "revision": metadata.get("revision")}

    def create(self, props: dict) -> CreateResult:
        id_ = release_id(props["namespace"], props["release"])
        return adopted(self, id_, props) or CreateResult(id_, self._install(props))

    def update(self, _id: str, olds: dict, news: dict) -> UpdateResult:
        if _only_the_kubeconfig_changed(whole_numbers(olds), whole_numbers(news), _RELEASE_KEYS):
            return UpdateResult({**olds, "kubeconfig": news["kubeconfig"]})
        return UpdateResult(self._install(news))

    def read(self, id_: str, props: dict) -> ReadResult:
        live = self._live(props)
        return ReadResult(id_ if live else None, live or {})

    def delete(self, _id: str, props: dict) -> None:
        if self._live(props) is not None:
            self._helm(props, "uninstall", props["release"], "--namespace", props["namespace"])


_RELEASE_KEYS = ("release", "namespace", "chart", "repository", "version", "values", "oauth_digest", "status")


def _kubeconfig_renewed(olds: dict, news: dict) -> list[str]:
    """["kubeconfig"] when the cluster's kubeconfig is a new one. While the cluster itself is being changed, its
    kubeconfig is not known yet (preview): that is no change in itself, and a renewal shows on the cluster."""
    new, old = (rpc.unwrap_rpc_secret(props.get("kubeconfig")) for props in (news, olds))  # secrets arrive wrapped
    return ["kubeconfig"] if not is_unknown(new) and new != old else []


def _only_the_kubeconfig_changed(olds: dict, news: dict, keys: tuple) -> bool:
    """The cluster's kubeconfig was renewed and nothing else changed: the state takes the new one (refresh and
    the next change use it, and the old one may expire), and the cluster is not touched."""
    return all(olds.get(k) == news.get(k) for k in keys)


class _Namespace(Resource):
    def __init__(self, name: str, props: dict, opts: pulumi.ResourceOptions):
        super().__init__(NamespaceProvider(), name, props, opts)


class _HelmRelease(Resource):
    status: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: pulumi.ResourceOptions):
        super().__init__(HelmReleaseProvider(), name, {**props, "revision": None}, opts)


# ---------------------------------------------------------------------------- the component

class TailscaleOperator(pulumi.ComponentResource):
    """The operator's namespace and Helm release, in the cluster the spec names, once it is ready."""

    def __init__(self, name: str, spec: TailscaleOperatorSpec, kubeconfig: pulumi.Output, *, protect: bool,
                 depends_on: list, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("omni-scale:k8s:TailscaleOperator", name, None, opts)
        config = pulumi.Config(NAMESPACE)
        secret_kubeconfig = pulumi.Output.secret(kubeconfig)
        self.namespace = _Namespace(f"{name}-namespace", {
            "name": spec.namespace, "labels": dict(POD_SECURITY), "kubeconfig": secret_kubeconfig,
        }, pulumi.ResourceOptions(parent=self, protect=protect, depends_on=depends_on))
        digest = pulumi.Output.all(*(config.require_secret(k) for k in TAILSCALE_OAUTH_CREDENTIALS)).apply(
            lambda pair: oauth_digest(*pair))
        self.release = _HelmRelease(name, {
            "release": RELEASE, "namespace": spec.namespace, "chart": CHART,
            # A mirror (or the lab's own repository) can stand in for the spec's without changing the spec.
            "repository": config.get("tailscaleChartRepository") or spec.chart_repository,
            "version": spec.chart_version, "values": release_values(spec), "status": "deployed",
            "oauth_digest": pulumi.Output.secret(digest), "kubeconfig": secret_kubeconfig,
        }, pulumi.ResourceOptions(parent=self, protect=protect, depends_on=[self.namespace],
                                  additional_secret_outputs=["oauth_digest", "kubeconfig"]))
        self.status = self.release.status
        self.register_outputs({"status": self.status})
