"""The fake Kubernetes API answers the scale calls the way the API server does, for every
form the kubernetes client can send them in, checks the bearer token, and serves what doctor
reads in the shapes of the API's own objects."""

from __future__ import annotations

import asyncio

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from benchmark.sim.kube_api import FakeDeployment, FakeKubeApi
from benchmark.sim.kube_objects import (
    cpu_node,
    crash_loop,
    gpu_node,
    gpu_operator_pods,
    not_configurable,
    unpullable,
    unschedulable,
)
from benchmark.stack.kube import Kube

NS = "llm-testing"


def test_scale_by_put_json_patch_and_merge_patch_and_refusals() -> None:
    async def main() -> None:
        scaled: list[int] = []
        async with FakeKubeApi(NS, [FakeDeployment(name="a", replicas=1, on_scale=scaled.append)]) as api:
            kube = Kube(api.kubeconfig(), NS)
            apps = kube.apps

            def calls() -> None:
                scale = apps.read_namespaced_deployment_scale("a", NS)
                assert scale.spec is not None and scale.spec.replicas == 1
                scale.spec.replicas = 3
                apps.replace_namespaced_deployment_scale("a", NS, scale)  # PUT
                apps.patch_namespaced_deployment_scale("a", NS, [{"op": "replace", "path": "/spec/replicas", "value": 2}])
                apps.patch_namespaced_deployment_scale("a", NS, {"spec": {"replicas": 0}})  # strategic merge
                with pytest.raises(ApiException) as bad:
                    apps.patch_namespaced_deployment_scale("a", NS, {"spec": {"replicas": -1}})
                assert bad.value.status == 422
                with pytest.raises(ApiException) as missing:
                    apps.read_namespaced_deployment_scale("nope", NS)
                assert missing.value.status == 404
                cfg = client.Configuration(host=api.url)
                cfg.api_key = {"BearerToken": "wrong"}
                cfg.api_key_prefix = {"BearerToken": "Bearer"}
                with pytest.raises(ApiException) as unauthorized:
                    client.AppsV1Api(client.ApiClient(cfg)).read_namespaced_deployment_scale("a", NS)
                assert unauthorized.value.status == 401

            await asyncio.to_thread(calls)
            assert scaled == [3, 2, 0] and api.replicas() == {"a": 0}
            await asyncio.sleep(api.terminate_s)
            assert (await kube.state("a")).pods == 0  # terminating pods went away
            kube.close()

    asyncio.run(main())


def test_what_doctor_reads_has_the_shape_of_the_api_servers_objects() -> None:
    """Nodes, pods in each staged state, their logs and events, the operator's pods and who we are,
    read through the client's typed models (which refuse an object missing a required field)."""

    async def main() -> None:
        taint = {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
        nodes = [gpu_node("gpu-1", labels={"eks-node": "gpu"}, taint=taint), cpu_node("cpu-1")]
        troubles = [unschedulable("0/2 nodes are available: 2 Insufficient nvidia.com/gpu."),
                    crash_loop("RuntimeError: Not enough memory to handle 4096 prefill tokens.\n"),
                    unpullable('Back-off pulling image "tgi:nope"'), not_configurable('secret "hf-token" not found')]  # fmt: skip
        deployments = [FakeDeployment(name=f"m{i}", replicas=1, trouble=t) for i, t in enumerate(troubles)]
        gated = FakeDeployment(name="gated", replicas=1, after=["m1"])
        gated.pods[0].initialized = False
        async with FakeKubeApi(NS, [*deployments, gated], nodes=nodes, operator_pods=gpu_operator_pods(nodes[:1])) as api:
            kube = Kube(api.kubeconfig(), NS)

            def calls() -> None:
                (node,) = kube.core.list_node(label_selector="eks-node=gpu").items
                assert node.status is not None and node.status.capacity is not None
                assert node.status.capacity["nvidia.com/gpu"] == "10"
                pods = {p.metadata.name.rsplit("-", 2)[0]: p for p in kube.core.list_namespaced_pod(NS).items
                        if p.metadata is not None and p.metadata.name}  # fmt: skip
                assert {name: p.status.phase for name, p in pods.items() if p.status} == {
                    "m0": "Pending", "m1": "Running", "m2": "Pending", "m3": "Pending", "gated": "Pending"}
                name = pods["m1"].metadata.name  # type: ignore[union-attr]
                assert "prefill tokens" in kube.core.read_namespaced_pod_log(name, NS, container="tgi", previous=True)
                events = kube.core.list_namespaced_event(NS, field_selector=f"involvedObject.name={name}").items
                assert [e.reason for e in events] == ["BackOff"]
                operator = kube.core.list_namespaced_pod("gpu-operator").items
                assert {(p.metadata.labels or {})["app"] for p in operator if p.metadata} >= {"nvidia-device-plugin-daemonset"}
                review = kube.authn.create_self_subject_review(client.V1SelfSubjectReview())
                assert review.status is not None and review.status.user_info is not None
                assert "gpu-sharing-benchmark" in (review.status.user_info.groups or [])

            await asyncio.to_thread(calls)
            kube.close()

    asyncio.run(main())


def test_annotations_are_written_and_removed_by_merge_patch_and_json_patch() -> None:
    async def main() -> None:
        async with FakeKubeApi(NS, [FakeDeployment(name="a", replicas=1, annotations={"keep": "me"})]) as api:
            kube = Kube(api.kubeconfig(), NS)
            assert await kube.annotation("a", "x/y") is None
            await kube.annotate("a", "x/y", "2")  # the kubernetes client sends a strategic merge patch
            assert await kube.annotation("a", "x/y") == "2" and api.deployments["a"].annotations == {"keep": "me", "x/y": "2"}
            await kube.annotate("a", "x/y", None)  # null removes it
            assert api.deployments["a"].annotations == {"keep": "me"}

            def json_patch_and_refusals() -> None:
                kube.apps.patch_namespaced_deployment("a", NS, [{"op": "add", "path": "/metadata/annotations/x~1y", "value": "3"}])
                assert api.deployments["a"].annotations["x/y"] == "3"
                with pytest.raises(ApiException) as spec:  # only annotations: never the pod template
                    kube.apps.patch_namespaced_deployment("a", NS, {"spec": {"template": {"spec": {}}}})
                assert spec.value.status == 422

            await asyncio.to_thread(json_patch_and_refusals)
            assert api.replicas() == {"a": 1}
            kube.close()

    asyncio.run(main())
