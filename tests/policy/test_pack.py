"""The policy pack as the Pulumi engine runs it: `policy/__main__.py` serves the analyzer
gRPC protocol; ask it for its policies and have it analyze resources of the mocked program."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from policy.rules import RULES
from tests.pulumi_mocks import ROOT, Recorded, dev_config, run_program


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    pack = subprocess.Popen(
        [sys.executable, str(ROOT / "policy" / "__main__.py")], stdout=subprocess.PIPE, text=True, cwd=ROOT / "policy"
    )
    try:
        assert pack.stdout is not None
        port = int(pack.stdout.readline())  # the plugin protocol: the first line is the port
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        pack.terminate()
        pack.wait(timeout=10)


@pytest.fixture(scope="module")
def dev() -> Recorded:
    return run_program(dev_config())


def _struct(props: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    json_format.ParseDict(props, s)
    return s


def _diagnostics(response: Any) -> dict[str, str]:
    levels = {analyzer_pb2.ADVISORY: "advisory", analyzer_pb2.MANDATORY: "mandatory"}
    return {d.policyName: levels.get(d.enforcementLevel, str(d.enforcementLevel)) for d in response.diagnostics}


def test_the_pack_offers_every_rule_at_its_level(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    levels = {analyzer_pb2.ADVISORY: "advisory", analyzer_pb2.MANDATORY: "mandatory"}
    assert {p.name: levels[p.enforcementLevel] for p in info.policies} == {r.name: r.enforcement for r in RULES}


def test_the_pack_blocks_a_deployment_without_limits(analyzer: analyzer_pb2_grpc.AnalyzerStub, dev: Recorded) -> None:
    (d,) = [r for r in dev.of_type("kubernetes:apps/v1:Deployment") if r.inputs["metadata"]["name"] == "phi35-mini"]
    request = dict(type=d.type, urn=f"urn:pulumi:dev::gpu-sharing::{d.type}::{d.name}", name=d.name)
    ok = analyzer.Analyze(analyzer_pb2.AnalyzeRequest(properties=_struct(d.inputs), **request))
    assert _diagnostics(ok) == {}
    props = copy.deepcopy(d.inputs)
    props["spec"]["template"]["spec"]["containers"][0]["resources"].pop("limits")
    bad = analyzer.Analyze(analyzer_pb2.AnalyzeRequest(properties=_struct(props), **request))
    assert _diagnostics(bad) == {"container-resources": "mandatory"}


def test_the_dev_stack_gets_only_the_public_endpoint_advice(analyzer: analyzer_pb2_grpc.AnalyzerStub, dev: Recorded) -> None:
    resources = [
        analyzer_pb2.AnalyzerResource(
            type=r.type, name=r.name, urn=f"urn:pulumi:dev::gpu-sharing::{r.type}::{r.name}", properties=_struct(r.outputs)
        )
        for r in dev.resources
    ]
    stack = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=resources))
    assert _diagnostics(stack) == {}
    # A stack rule fires through the pack too: ten more replicas than the GPU's shares allow.
    (i,) = [i for i, r in enumerate(dev.resources) if r.type.endswith("Deployment") and r.inputs["metadata"]["name"] == "phi35-mini"]
    crowded = copy.deepcopy(dev.resources[i].outputs)
    crowded["spec"]["replicas"] = 10
    resources[i].properties.CopyFrom(_struct(crowded))
    over = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=resources))
    assert _diagnostics(over) == {"gpu-pods-within-sharing-replicas": "mandatory"}
    resources[i].properties.CopyFrom(_struct(dev.resources[i].outputs))
    for r in resources:  # resource rules, one resource at a time as the engine calls them
        response = analyzer.Analyze(
            analyzer_pb2.AnalyzeRequest(type=r.type, name=r.name, urn=r.urn, properties=r.properties)
        )
        expected = {"eks-public-endpoint-open": "advisory"} if r.type == "eks:index:Cluster" else {}
        assert _diagnostics(response) == expected, r.name


def test_a_stack_of_several_gpu_nodes_passes_the_pack(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    from tests.workloads.test_several_gpus import several_gpus

    rec = run_program(several_gpus())
    resources = [
        analyzer_pb2.AnalyzerResource(
            type=r.type, name=r.name, urn=f"urn:pulumi:dev::gpu-sharing::{r.type}::{r.name}", properties=_struct(r.outputs)
        )
        for r in rec.resources
    ]
    assert _diagnostics(analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=resources))) == {}
    for r in resources:
        response = analyzer.Analyze(analyzer_pb2.AnalyzeRequest(type=r.type, name=r.name, urn=r.urn, properties=r.properties))
        assert set(_diagnostics(response).values()) <= {"advisory"}, r.name
