"""The fake Kubernetes API answers the scale calls the way the API server does, for every
form the kubernetes client can send them in, and checks the bearer token."""

from __future__ import annotations

import asyncio

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from benchmark.sim.kube_api import FakeDeployment, FakeKubeApi
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
