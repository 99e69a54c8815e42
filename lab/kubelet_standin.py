"""The lab's stand-in for a node's kubelet (and the scheduler): what lets a Deployment in the lab become ready.

    python -m lab.kubelet_standin ACCESS_JSON

It registers one Node, `lab-node`, Ready; binds every pod the scheduler would place to it; and reports each bound
pod Running and Ready, with its containers ready, as a kubelet does once the containers start. A pod being deleted
is removed at once (a kubelet confirms the deletion after its containers stop; without one the pod, and so its
namespace, would never go). Nothing runs: no image is pulled and no container starts, so a pod is Ready as soon as
it exists. What this makes true in the lab is the part of a real cluster the program depends on: a Helm release
whose objects become ready, which pulumi-kubernetes waits for.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
from pathlib import Path

NODE = "lab-node"


def _api(access: dict):
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = access["server"]
    configuration.api_key = {"authorization": f"Bearer {access['token']}"}
    configuration.ssl_ca_cert = access["ca_file"]
    return client.CoreV1Api(client.ApiClient(configuration))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def register_node(api) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        api.create_node(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"}},
            }
        )
    except ApiException as exc:
        if exc.status != 409:
            raise
    api.patch_node_status(
        NODE,
        {
            "status": {
                "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "lastHeartbeatTime": _now(),
                        "lastTransitionTime": _now(),
                        "message": "lab kubelet stand-in",
                    }
                ],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            }
        },
    )


def running_status(pod) -> dict:
    now = _now()
    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": now}
        for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    containers = [
        {
            "name": c.name,
            "image": c.image,
            "imageID": "",
            "ready": True,
            "started": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": now}},
        }
        for c in pod.spec.containers
    ]
    return {
        "status": {
            "phase": "Running",
            "conditions": conditions,
            "containerStatuses": containers,
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "startTime": now,
        }
    }


def tend(api, pod) -> None:
    """Moves one pod along as the scheduler and a kubelet would; a pod already where it should be is left alone."""
    from kubernetes.client.exceptions import ApiException

    name, namespace = pod.metadata.name, pod.metadata.namespace
    try:
        if pod.metadata.deletion_timestamp is not None:
            api.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        elif not pod.spec.node_name:
            api.create_namespaced_binding(
                namespace,
                {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
                },
                _preload_content=False,
            )
        elif pod.spec.node_name == NODE and pod.status.phase != "Running":
            api.patch_namespaced_pod_status(name, namespace, running_status(pod))
    except ApiException as exc:
        if exc.status not in (404, 409):  # gone meanwhile, or already bound by an earlier event
            raise


def serve(access: dict) -> None:
    from kubernetes import watch

    api = _api(access)
    register_node(api)
    print(f"kubelet stand-in: node {NODE} Ready", flush=True)
    while True:
        pods = api.list_pod_for_all_namespaces()
        for pod in pods.items:
            tend(api, pod)
        # Events from the list's version on; a watch the server ends (or that expires) starts over from a list.
        try:
            for event in watch.Watch().stream(
                api.list_pod_for_all_namespaces, timeout_seconds=300, resource_version=pods.metadata.resource_version
            ):
                if event["type"] in ("ADDED", "MODIFIED"):
                    tend(api, event["object"])
        except Exception as exc:  # noqa: BLE001 - an expired watch or a dropped connection: list again
            print(f"kubelet stand-in: watch ended ({exc}); listing again", flush=True)
            time.sleep(1)


def main(argv: list[str]) -> int:
    serve(json.loads(Path(argv[0]).read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
