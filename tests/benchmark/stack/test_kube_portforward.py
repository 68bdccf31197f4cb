"""The benchmark's own port-forward, through the real kubernetes client's websocket
port-forward against the fake API, and the endpoint flags."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from benchmark.commands.flags import parse_endpoints
from benchmark.engine.probes import health_rtt, wait_healthy
from benchmark.errors import BenchmarkError
from benchmark.sim.kube_api import FakeDeployment, FakeKubeApi
from benchmark.stack.kube import Kube
from benchmark.stack.portforward import PortForward

NS = "llm-testing"
BODY = b"".join(b'data:{"token":{"id":%d,"text":"t%d"}}\n\n' % (i, i) for i in range(2000))  # ~80 kB


async def _backend() -> tuple[web.AppRunner, str]:
    async def health(request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def stream(request: web.Request) -> web.StreamResponse:
        payload = await request.read()
        resp = web.StreamResponse(headers={"X-Echo-Length": str(len(payload))})
        await resp.prepare(request)
        for i in range(0, len(BODY), 4096):
            await resp.write(BODY[i : i + 4096])
        return resp

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/generate_stream", stream)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def test_port_forward_carries_requests_and_streams_to_the_pod() -> None:
    async def main() -> None:
        runner, backend = await _backend()
        async with FakeKubeApi(NS, [FakeDeployment(name="phi", replicas=1, backend=backend)]) as api:
            kube = Kube(api.kubeconfig(), NS)
            pod = (await kube.state("phi")).ready_pods[0]
            async with PortForward(kube, pod, 8080) as url, aiohttp.ClientSession() as session:
                assert url.startswith("http://127.0.0.1:") and url != backend
                posted = b"x" * 100_000
                async with session.post(url + "/generate_stream", data=posted) as r:
                    assert r.headers["X-Echo-Length"] == str(len(posted))  # the whole upload arrived
                    assert await r.read() == BODY  # the whole stream came back intact
                assert await health_rtt(session, url, samples=5) > 0
            # the bytes went through the API server's port-forward endpoint, for that pod
            assert ("GET", f"/api/v1/namespaces/{NS}/pods/{pod}/portforward") in api.calls
            kube.close()
        await runner.cleanup()

    asyncio.run(main())


def test_port_forward_refused_by_the_api_fails_the_request_not_the_process() -> None:
    async def main() -> None:
        runner, backend = await _backend()
        async with FakeKubeApi(NS, [FakeDeployment(name="phi", replicas=1, backend=backend)]) as api:
            api.errors["portforward"] = 403
            kube = Kube(api.kubeconfig(), NS)
            async with PortForward(kube, "phi-pod", 8080) as url, aiohttp.ClientSession() as session:
                with pytest.raises(aiohttp.ClientError):
                    await session.get(url + "/health")
                with pytest.raises(BenchmarkError, match=r"timed out after 0.2 s waiting for model 'phi'.*/health"):
                    await wait_healthy(session, "phi", url, timeout=0.2, poll=0.05)
            kube.close()
        await runner.cleanup()

    asyncio.run(main())


def test_unreachable_api_is_one_line() -> None:
    kube = Kube(FakeKubeApi(NS, []).kubeconfig() | {"clusters": [{"name": "fake", "cluster": {"server": "http://127.0.0.1:9"}}]}, NS)
    with pytest.raises(BenchmarkError, match=r"Kubernetes API at http://127.0.0.1:9: reading the scale of deployment 'a'"):
        asyncio.run(kube.replicas("a"))


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("phi", "expected KEY=URL"),
        ("phi=localhost:8080", "expected KEY=URL"),
        ("=http://127.0.0.1:1", "expected KEY=URL"),
        ("nope=http://127.0.0.1:1", "model 'nope' is not in the stack's catalog; known models: phi, r1"),
    ],
)
def test_bad_endpoint_flags(flag: str, expected: str) -> None:
    with pytest.raises(BenchmarkError, match=expected) as err:
        parse_endpoints([flag], ["phi", "r1"])
    assert f"--endpoint {flag!r}" in str(err.value)


def test_endpoint_flags_parse() -> None:
    assert parse_endpoints(["phi=http://127.0.0.1:8080/", "r1 = http://h:1"], ["phi", "r1"]) == {
        "phi": "http://127.0.0.1:8080",
        "r1": "http://h:1",
    }
