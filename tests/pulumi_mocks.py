"""The one Pulumi mock fixture every Pulumi test uses: run the real program offline.

Usage::

    from tests.pulumi_mocks import dev_config, run_program

    rec = run_program(dev_config())                    # the dev stack, as `pulumi up` would see it
    rec = run_program({**dev_config(), "gpu-sharing:gpuSharing": '{"strategy": "mps"}'})
    ng = rec.one("eks:index:ManagedNodeGroup", "cluster-gpu")
    assert ng.inputs["scalingConfig"]["maxSize"] == 1     # wire (camelCase) names, ints restored
    assert rec.outputs["gpu"]["sharing"]["replicas"] == 10
    assert "kubeconfig" in rec.secret_outputs

``config`` is the flat mapping Pulumi hands a program (``{"gpu-sharing:key": "text"}``;
objects and lists as JSON text): ``dev_config()`` builds it from ``Pulumi.dev.yaml``, so
tests start from the real dev stack and override keys. ``run_program`` runs
``build(load_settings(config))`` (``infra.program.build`` unless ``build=`` is given) under
``pulumi.runtime.test`` with mocks that record every resource (type token, name, inputs,
outputs, provider reference) and every data-source call. A program that raises (a bad
config's ``ConfigError``) raises out of ``run_program``; pass ``into=Recorded()`` to look
at what was declared before it did.

What the mocks answer (each as Pulumi's mock runtime needs it to run this program offline):
- ``eks:index:Cluster`` (a remote component: its children are never seen) with camelCase
  outputs including ``kubeconfig``/``kubeconfigJson``; resource-valued outputs are None.
- ``eks:index:ManagedNodeGroup`` with ``nodeGroup`` a reference to the ``aws:eks/nodeGroup:NodeGroup``
  pulumi-eks makes (the one resource-valued output the program reads, for the node group's Auto
  Scaling group): the monitor answers it from a registration of its own, with
  ``resources[0].autoscalingGroups[0].name`` = ``asg_name(<node group name>)``; it is not one of
  the recorded resources (the program never declares it).
- ``aws:index/getAvailabilityZones:getAvailabilityZones`` with four us-west-2 zones, plus an
  opted-in Local Zone (``us-west-2-lax-1a``, which sorts first) unless the call filters on
  ``zone-type: availability-zone``, as EC2 does; and
  ``aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings`` with ``gpu_zones`` (all
  four unless ``run_program(..., gpu_zones=...)`` says otherwise).
- ``aws:index/getCallerIdentity:getCallerIdentity`` with account ``ACCOUNT``.
- ``aws:ec2/launchTemplate:LaunchTemplate`` with ``latestVersion`` 1.
- every other resource echoes its inputs plus ``id``/``arn``/``name``.
- ``RecordedResource.dependencies``: the URNs a resource was registered to depend on.
- Resource references are switched off in the monitor (pulumi/pulumi#6561): resources
  passed as inputs arrive as URN strings.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.proto import resource_pb2

__all__ = [
    "ACCOUNT", "Call", "Recorded", "RecordedResource", "asg_name", "dev_config", "run_program", "LOCAL_ZONE", "ZONES",
]  # fmt: skip

ROOT = Path(__file__).resolve().parent.parent
ZONES = ("us-west-2a", "us-west-2b", "us-west-2c", "us-west-2d")
LOCAL_ZONE = "us-west-2-lax-1a"  # an opted-in Local Zone: "available", but not an Availability Zone
ACCOUNT = "123456789012"
KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "mock", "cluster": {"server": "https://mock.eks.invalid"}}],
    "contexts": [{"name": "mock", "context": {"cluster": "mock", "user": "mock"}}],
    "current-context": "mock",
    "users": [{"name": "mock", "user": {"token": "mock"}}],
}


@dataclass(frozen=True)
class RecordedResource:
    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    provider: str  # "<provider urn>::<id>", or "" for the default provider
    providers: dict[str, str]  # package -> provider reference, as sent for components
    dependencies: list[str] = field(default_factory=list)  # URNs it depends on (depends_on and inputs)


@dataclass(frozen=True)
class Call:
    token: str
    args: dict[str, Any]
    provider: str


@dataclass
class Recorded:
    """What one program run declared."""

    resources: list[RecordedResource] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)  # the program's outputs, resolved
    secret_outputs: set[str] = field(default_factory=set)  # names of outputs that are secret
    _providers: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict, repr=False)
    _dependencies: dict[tuple[str, str], list[str]] = field(default_factory=dict, repr=False)

    def of_type(self, type_: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> RecordedResource:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            names = [r.name for r in self.of_type(type_)]
            raise AssertionError(f"expected one {type_} named {name!r}, found {len(found)} among {names}")
        return found[0]

    def types(self) -> set[str]:
        return {r.type for r in self.resources}


_SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's wire marker of a secret value


def _ints(value: Any) -> Any:
    """Numbers cross the mock wire as floats: give integral ones back as ints; and unwrap
    secret values (tests look at ``secret_outputs`` for secrecy)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        if _SECRET_SIG in value:
            return _ints(value.get("value"))
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def asg_name(node_group: str) -> str:
    """The Auto Scaling group name the mocks give a managed node group (EKS: ``eks-<name>-<uuid>``)."""
    return f"eks-{node_group}-asg"


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self, into: Recorded, gpu_zones: tuple[str, ...]) -> None:
        self.rec = into
        self.gpu_zones = gpu_zones
        self.monitor: pulumi_mocks.MockMonitor | None = None  # set by the monitor

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = _ints(dict(args.inputs))
        outputs: dict[str, Any]
        resource_id: str | None = f"{args.name}-id"
        if args.typ == "eks:index:Cluster":
            resource_id = None  # a component
            name = inputs.get("name", args.name)
            outputs = {
                **inputs,
                "kubeconfig": KUBECONFIG,
                "kubeconfigJson": json.dumps(KUBECONFIG),
                "clusterSecurityGroupId": "sg-cluster",
                "nodeSecurityGroupId": "sg-nodes",
                "oidcProviderArn": f"arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/{name}",
                "oidcProviderUrl": f"oidc.eks.us-west-2.amazonaws.com/id/{name}",
                "oidcIssuer": f"oidc.eks.us-west-2.amazonaws.com/id/{name}",
                "eksCluster": None,
                "core": None,
            }
        elif args.typ == "eks:index:ManagedNodeGroup":
            resource_id = None
            outputs = {**inputs, "nodeGroup": self._node_group(args.name)}
        elif args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            outputs = {**inputs, "id": resource_id, "arn": f"arn:aws:mock:::{args.name}", "latestVersion": 1}
        else:
            outputs = {
                **inputs,
                "id": resource_id,
                "arn": f"arn:aws:mock:::{args.name}",
                "name": inputs.get("name", args.name),
            }
        self.rec.resources.append(
            RecordedResource(
                args.typ,
                args.name,
                inputs,
                _ints(outputs),
                args.provider or "",
                self.rec._providers.get((args.typ, args.name), {}),
                self.rec._dependencies.get((args.typ, args.name), []),
            )
        )
        return resource_id, outputs

    def _node_group(self, name: str) -> dict[str, Any]:
        """A reference to the aws.eks.NodeGroup of a ManagedNodeGroup, registered with the monitor
        so that the SDK can read it back (``pulumi:pulumi:getResource``)."""
        assert self.monitor is not None
        typ = "aws:eks/nodeGroup:NodeGroup"
        urn = f"urn:pulumi:{pulumi.get_stack()}::{pulumi.get_project()}::eks:index:ManagedNodeGroup${typ}::{name}"
        state = {"nodeGroupName": name, "resources": [{"autoscalingGroups": [{"name": asg_name(name)}]}]}
        self.monitor.resources[urn] = pulumi_mocks.MockMonitor.ResourceRegistration(urn, f"{name}-id", state)
        return {rpc._special_sig_key: rpc._special_resource_sig, "urn": urn, "id": f"{name}-id"}

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        self.rec.calls.append(Call(args.token, _ints(dict(args.args)), args.provider or ""))
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            zone_types = [f["values"] for f in args.args.get("filters") or [] if f.get("name") == "zone-type"]
            names = list(ZONES) + ([] if zone_types == [["availability-zone"]] else [LOCAL_ZONE])
            return {"names": names, "zoneIds": [f"usw2-az{i + 1}" for i in range(len(names))], "id": "us-west-2"}, []
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/deployer/session"
            return {"accountId": ACCOUNT, "arn": arn, "userId": "AROAMOCK:session", "id": ACCOUNT}, []
        if args.token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
            return {"locations": list(self.gpu_zones), "locationTypes": ["availability-zone"] * len(self.gpu_zones)}, []
        return {}, []


class _NoResourceReferencesMonitor(pulumi_mocks.MockMonitor):
    """The stock mock monitor with resource references off (pulumi/pulumi#6561), which
    also keeps the per-package providers map sent with each registration."""

    def __init__(self, mocks: _Mocks) -> None:
        super().__init__(mocks)
        self.rec = mocks.rec
        mocks.monitor = self

    def RegisterResource(self, request: Any) -> Any:
        self.rec._providers[(request.type, request.name)] = dict(request.providers)
        self.rec._dependencies[(request.type, request.name)] = list(request.dependencies)
        return super().RegisterResource(request)

    def GetDeploymentInfo(self, request: Any) -> Any:
        info = super().GetDeploymentInfo(request)
        features = [
            f for f in info.supportedFeatures if f != resource_pb2.RESOURCE_MONITOR_FEATURE_RESOURCE_REFERENCES
        ]
        return resource_pb2.DeploymentInfo(supportedFeatures=features)

    def SupportsFeature(self, request: Any) -> Any:
        has_support = request.id not in ("outputValues", "resourceReferences")
        return type("SupportsFeatureResponse", (object,), {"hasSupport": has_support})


def dev_config(path: Path = ROOT / "Pulumi.dev.yaml") -> dict[str, Any]:
    """A stack file's config as Pulumi hands it to the program: scalars as text, objects as JSON."""
    data = yaml.safe_load(path.read_text()) or {}
    flat: dict[str, Any] = {}
    for key, value in (data.get("config") or {}).items():
        if isinstance(value, (dict, list)):
            flat[key] = json.dumps(value)
        elif isinstance(value, bool):
            flat[key] = "true" if value else "false"
        else:
            flat[key] = str(value)
    return flat


def run_program(
    config: Mapping[str, Any],
    *,
    build: Callable[[Any], Mapping[str, Any]] | None = None,
    into: Recorded | None = None,
    gpu_zones: tuple[str, ...] = ZONES,
    stack: str = "dev",
) -> Recorded:
    """Run ``build(load_settings(config, stack=stack))`` under mocks as stack ``stack``; see the
    module docstring."""
    from config.settings import load_settings

    if build is None:
        from infra.program import build
    rec = into if into is not None else Recorded()
    mocks = _Mocks(rec, gpu_zones)
    pulumi.runtime.set_mocks(
        mocks, project="gpu-sharing", stack=stack, preview=False, monitor=_NoResourceReferencesMonitor(mocks)
    )
    pulumi.runtime.set_all_config(dict(config))
    program = build  # bound here: pyright narrows `build` to non-None only outside the closure

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        outputs = dict(program(load_settings(config, stack=stack)))
        resolved = []
        for key, value in outputs.items():
            out = pulumi.Output.from_input(value)

            def keep(v: Any, key: str = key) -> None:
                rec.outputs[key] = _ints(v)

            async def mark_secret(out: pulumi.Output[Any] = out, key: str = key) -> None:
                if await out.is_secret():
                    rec.secret_outputs.add(key)

            resolved.append(out.apply(keep))
            resolved.append(pulumi.Output.from_input(mark_secret()))
        return pulumi.Output.all(*resolved)

    run()
    return rec
