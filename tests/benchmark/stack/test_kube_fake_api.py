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
