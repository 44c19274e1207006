"""Realistic object generators for tests, the demo and benchmarks.

`make_pod` builds a pod shaped like one a Deployment creates (labels, owner reference,
containers, status conditions, managedFields), padded to roughly `size` bytes of JSON.
Deterministic for a given index, so runs are comparable.
"""

from __future__ import annotations

from typing import Any

import orjson


def make_namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}}


def make_deployment(name: str, namespace: str, replicas: int = 3) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "app", "image": f"registry.example/{name}:1.0"}]}}},
    }


def make_pod(index: int, namespace: str = "default", *, size: int = 3000, app: str | None = None,
             phase: str = "Running") -> dict[str, Any]:
    app = app or f"app-{index % 20}"
    name = f"{app}-{index:08d}"
    pod: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": namespace,
            "labels": {"app": app, "pod-template-hash": "7d9c8f6b5", "tier": "backend" if index % 3 else "web"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-01T00:00:00Z"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{app}-7d9c8f6b5",
                                 "uid": f"00000000-0000-4000-8000-{index % 20:012d}", "controller": True,
                                 "blockOwnerDeletion": True}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                               "time": "2026-11-01T00:00:00Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}},
                                                           "f:ownerReferences": {".": {}}},
                                            "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}}}}}}],
        },
        "spec": {
            "nodeName": f"node-{index % 50}", "restartPolicy": "Always", "schedulerName": "default-scheduler",
            "serviceAccountName": "default", "terminationGracePeriodSeconds": 30,
            "containers": [{
                "name": "app", "image": f"registry.example/{app}:1.0", "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                "env": [{"name": "POD_INDEX", "value": str(index)}],
            }],
        },
        "status": {
            "phase": phase, "podIP": f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}",
            "hostIP": f"192.168.0.{index % 50}", "qosClass": "Burstable",
            "conditions": [{"type": t, "status": "True", "lastTransitionTime": "2026-11-01T00:00:00Z"}
                           for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
            "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0, "started": True,
                                   "image": f"registry.example/{app}:1.0",
                                   "imageID": f"registry.example/{app}@sha256:{index % 20:064d}",
                                   "containerID": f"containerd://{index:064d}",
                                   "state": {"running": {"startedAt": "2026-11-01T00:00:00Z"}}}],
        },
    }
    current = len(orjson.dumps(pod))
    if size > current:
        pod["metadata"]["annotations"]["example.com/padding"] = "x" * (size - current - 40)
    return pod


def make_configmap(name: str, namespace: str = "default", **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": dict(data)}
