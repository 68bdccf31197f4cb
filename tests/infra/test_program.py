"""What `pulumi preview` of the program would declare, checked the way a reviewer would:
network, cluster, node groups, GPU Operator release and sharing config, exports."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest
import yaml

from config.charts import GPU_OPERATOR_CHARTS
from config.instances import ACCELERATOR_LABEL
from config.settings import load_settings
from config.validation import ConfigError
from tests.pulumi_mocks import ACCOUNT, LOCAL_ZONE, ZONES, Recorded, RecordedResource, dev_config, run_program

SUBNET = "aws:ec2/subnet:Subnet"
NODE_GROUP = "eks:index:ManagedNodeGroup"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
RELEASE = "kubernetes:helm.sh/v3:Release"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
# Every object validates against 1.33 (the oldest version we support) and the default version.
SCHEMA_VERSIONS = ("1.33", load_settings({}).kubernetes_version)


def _with(key: str, **changes: Any) -> dict[str, Any]:
    config = dev_config()
    full = f"gpu-sharing:{key}"
    config[full] = json.dumps({**json.loads(config[full]), **changes})
    return config


@pytest.fixture(scope="module")
def dev() -> Recorded:
    return run_program(dev_config())


def _launch_template(rec: Recorded, node_group: str) -> dict[str, Any]:
    """The inputs of the launch template a managed node group uses (its latest version)."""
    ref = rec.one(NODE_GROUP, node_group).inputs["launchTemplate"]
    (template,) = [t for t in rec.of_type(LAUNCH_TEMPLATE) if t.outputs["id"] == ref["id"]]
    assert ref["version"] == str(template.outputs["latestVersion"])
    return template.inputs


def _root_volume(rec: Recorded, node_group: str) -> dict[str, Any]:
    (mapping,) = _launch_template(rec, node_group)["blockDeviceMappings"]
    assert mapping["deviceName"] == "/dev/xvda"  # the AL2023 root device (config/facts.py EKS_AMIS)
    return mapping["ebs"]


def _sharing_config(rec: Recorded) -> tuple[str, dict[str, Any]]:
    """(ConfigMap name, the device plugin config the chart's default points at)."""
    cm = rec.one(CONFIG_MAP, "gpu-operator-device-plugin-config")
    default = rec.one(RELEASE, "gpu-operator-release").inputs["values"]["devicePlugin"]["config"]["default"]
    return cm.inputs["metadata"]["name"], yaml.safe_load(cm.inputs["data"][default])


# --- network -------------------------------------------------------------------------


def test_subnets_public_and_private_in_each_of_two_zones(dev: Recorded) -> None:
    subnets = dev.of_type(SUBNET)
    public = [s for s in subnets if s.inputs["mapPublicIpOnLaunch"]]
    private = [s for s in subnets if not s.inputs["mapPublicIpOnLaunch"]]
    assert sorted(s.inputs["availabilityZone"] for s in public) == list(ZONES[:2])
    assert sorted(s.inputs["availabilityZone"] for s in private) == list(ZONES[:2])
    assert all(s.inputs["tags"]["kubernetes.io/role/elb"] == "1" for s in public)
    assert all(s.inputs["tags"]["kubernetes.io/role/internal-elb"] == "1" for s in private)
    assert all(s.inputs["tags"]["kubernetes.io/cluster/gpusharing-demo"] == "shared" for s in subnets)
    cidrs = [s.inputs["cidrBlock"] for s in subnets]
    assert len(set(cidrs)) == len(cidrs)
    vpc = dev.one("aws:ec2/vpc:Vpc")
    assert vpc.inputs["cidrBlock"] == "10.0.0.0/16"
    assert vpc.inputs["enableDnsHostnames"] and vpc.inputs["enableDnsSupport"]


def test_routes_public_via_internet_gateway_private_via_nat(dev: Recorded) -> None:
    igw = dev.one("aws:ec2/internetGateway:InternetGateway")
    nat = dev.one("aws:ec2/natGateway:NatGateway")
    public_subnet_ids = {s.outputs["id"] for s in dev.of_type(SUBNET) if s.inputs["mapPublicIpOnLaunch"]}
    assert nat.inputs["subnetId"] in public_subnet_ids
    tables = {rt.outputs["id"]: rt.inputs["routes"] for rt in dev.of_type("aws:ec2/routeTable:RouteTable")}
    for assoc in dev.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation"):
        (route,) = tables[assoc.inputs["routeTableId"]]
        assert route["cidrBlock"] == "0.0.0.0/0"
        if assoc.inputs["subnetId"] in public_subnet_ids:
            assert route["gatewayId"] == igw.outputs["id"]
        else:
            assert route["natGatewayId"] == nat.outputs["id"]
    assert len(dev.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")) == 4


def test_nat_per_az_and_more_zones() -> None:
    rec = run_program({**dev_config(), "gpu-sharing:natGateways": "perAz", "gpu-sharing:availabilityZoneCount": "3"})
    nats = rec.of_type("aws:ec2/natGateway:NatGateway")
    assert len(nats) == 3
    zone_of = {s.outputs["id"]: s.inputs["availabilityZone"] for s in rec.of_type(SUBNET)}
    assert sorted(zone_of[n.inputs["subnetId"]] for n in nats) == list(ZONES[:3])
    private_routes = [
        rt.inputs["routes"][0]["natGatewayId"]
        for rt in rec.of_type("aws:ec2/routeTable:RouteTable")
        if "natGatewayId" in rt.inputs["routes"][0]
    ]
    assert sorted(private_routes) == sorted(n.outputs["id"] for n in nats)


def test_gpu_nodes_only_in_zones_offering_the_gpu_type() -> None:
    # g6e is offered in some zones of a region only: those zones are used first, and the
    # GPU node group gets subnets only there.
    rec = run_program(dev_config(), gpu_zones=("us-west-2c",))
    zone_of = {s.outputs["id"]: s.inputs["availabilityZone"] for s in rec.of_type(SUBNET)}
    assert sorted(set(zone_of.values())) == ["us-west-2a", "us-west-2c"]
    gpu = rec.one(NODE_GROUP, "cluster-gpu").inputs
    assert [zone_of[i] for i in gpu["subnetIds"]] == ["us-west-2c"]
    cpu = rec.one(NODE_GROUP, "cluster-cpu").inputs
    assert sorted(zone_of[i] for i in cpu["subnetIds"]) == ["us-west-2a", "us-west-2c"]
    (offerings,) = [c for c in rec.calls if c.token.endswith("getInstanceTypeOfferings")]
    assert offerings.args["filters"] == [{"name": "instance-type", "values": ["g6e.2xlarge"]}]


def test_gpu_type_offered_nowhere_in_the_region_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError) as caught:
        run_program(dev_config(), gpu_zones=())
    assert caught.value.key == "gpu-sharing:gpuNodes.instanceType"
    assert "'g6e.2xlarge'" in str(caught.value)


def test_every_aws_resource_uses_the_stack_region_provider() -> None:
    rec = run_program({**dev_config(), "aws:region": "eu-west-1"})
    (provider,) = rec.of_type("pulumi:providers:aws")
    assert provider.inputs["region"] == "eu-west-1"
    aws = [r for r in rec.resources if r.type.startswith("aws:")]
    assert aws and all(r.provider.split("::")[-2] == provider.name for r in aws), [
        (r.name, r.provider) for r in aws if r.provider.split("::")[-2] != provider.name
    ]
    for component in rec.of_type("eks:index:Cluster") + rec.of_type(NODE_GROUP):
        assert component.providers["aws"].split("::")[-2] == provider.name, component.name
    assert all(c.provider.split("::")[-2] == provider.name for c in rec.calls), rec.calls
    assert rec.outputs["region"] == "eu-west-1"


# --- cluster and node groups ---------------------------------------------------------


def test_cluster_api_auth_oidc_no_default_nodes_pinned_version(dev: Recorded) -> None:
    c = dev.one("eks:index:Cluster").inputs
    assert c["name"] == "gpusharing-demo"
    assert c["version"] == load_settings(dev_config()).kubernetes_version == "1.35"
    assert c["authenticationMode"] == "API"
    assert c["createOidcProvider"] is True
    assert c["skipDefaultNodeGroup"] is True
    assert c["endpointPublicAccess"] is True and c["publicAccessCidrs"] == ["0.0.0.0/0"]
    role = dev.one("aws:iam/role:Role", "cluster-node-role")
    (entry,) = c["accessEntries"].values()
    assert entry == {"principalArn": role.outputs["arn"], "type": "EC2_LINUX"}
    attached = {a.inputs["policyArn"] for a in dev.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy" in attached
    assert "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy" in attached


def test_public_access_cidrs_from_config() -> None:
    rec = run_program({**dev_config(), "gpu-sharing:publicAccessCidrs": json.dumps(["203.0.113.0/24", "198.51.100.7/32"])})
    assert rec.one("eks:index:Cluster").inputs["publicAccessCidrs"] == ["203.0.113.0/24", "198.51.100.7/32"]


def test_node_groups_in_private_subnets_with_reference_sizes(dev: Recorded) -> None:
    private = sorted(s.outputs["id"] for s in dev.of_type(SUBNET) if not s.inputs["mapPublicIpOnLaunch"])
    cluster = dev.one("eks:index:Cluster").inputs
    assert sorted(cluster["privateSubnetIds"]) == private
    cpu = dev.one(NODE_GROUP, "cluster-cpu").inputs
    gpu = dev.one(NODE_GROUP, "cluster-gpu").inputs
    for ng in (cpu, gpu):
        assert sorted(ng["subnetIds"]) == private
        assert ng["cluster"].endswith("::cluster-eks")
        assert ng["nodeRole"] == dev.one("aws:iam/role:Role", "cluster-node-role").outputs["id"]
    assert cpu["instanceTypes"] == ["t3.large"]
    assert cpu["scalingConfig"] == {"desiredSize": 2, "minSize": 2, "maxSize": 4}
    assert cpu["amiType"] == "AL2023_x86_64_STANDARD"
    assert not cpu.get("taints")
    assert gpu["instanceTypes"] == ["g6e.2xlarge"]
    assert gpu["scalingConfig"] == {"desiredSize": 1, "minSize": 1, "maxSize": 1}
    assert gpu["amiType"] == "AL2023_x86_64_NVIDIA"
    # Besides the configured labels, the one the Cluster Autoscaler knows a GPU node by.
    assert gpu["labels"] == {"eks-node": "gpu", ACCELERATOR_LABEL: "nvidia-l40s"}
    assert gpu["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    # The disk size lives in the launch template: EKS refuses diskSize together with one.
    assert "diskSize" not in gpu and "diskSize" not in cpu
    assert _root_volume(dev, "cluster-gpu")["volumeSize"] == 200
    assert _root_volume(dev, "cluster-cpu")["volumeSize"] == 20


def test_gpu_node_group_taint_labels_disk_from_config() -> None:
    rec = run_program(_with("gpuNodes", taint=False, labels={"pool": "l40s"}, diskSizeGib=500, maxSize=2))
    gpu = rec.one(NODE_GROUP, "cluster-gpu").inputs
    assert not gpu.get("taints")
    assert gpu["labels"] == {"pool": "l40s", ACCELERATOR_LABEL: "nvidia-l40s"}
    assert _root_volume(rec, "cluster-gpu")["volumeSize"] == 500
    assert gpu["scalingConfig"]["maxSize"] == 2


# --- hardened defaults ----------------------------------------------------------------


def test_hardened_defaults_are_on_in_the_dev_stack(dev: Recorded) -> None:
    cluster = dev.one("eks:index:Cluster").inputs
    key = dev.one("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    assert cluster["encryptionConfigKeyArn"] == key.outputs["arn"]
    assert cluster["enabledClusterLogTypes"] == ["api", "audit", "authenticator"]
    assert cluster["vpcCniOptions"]["enableNetworkPolicy"] is True
    for ng in ("cluster-cpu", "cluster-gpu"):
        # IMDSv2 required, hop limit 2 so pods that need IMDS reach it: what pulumi-eks's own
        # launch template would set (pulumi-eks refuses enableIMDSv2 with a launch template).
        assert _launch_template(dev, ng)["metadataOptions"] == {
            "httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 2,
        }  # fmt: skip
        assert "enableIMDSv2" not in dev.one(NODE_GROUP, ng).inputs
        # Root volumes: gp3, encrypted with the stack's key (the model cache lives there).
        volume = _root_volume(dev, ng)
        assert (volume["volumeType"], volume["encrypted"], volume["kmsKeyId"]) == ("gp3", "true", key.outputs["arn"])
    # EC2 may use the key for volumes of this account's instances (Auto Scaling launches them).
    policy = json.loads(key.inputs["policy"])
    (ebs,) = [st for st in policy["Statement"] if st["Principal"] == {"AWS": "*"}]
    assert ebs["Condition"]["StringEquals"] == {"kms:CallerAccount": ACCOUNT, "kms:ViaService": "ec2.us-west-2.amazonaws.com"}
    assert {"Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*"}.items() <= policy["Statement"][0].items()
    # The control plane's own role may use that key, and only that key.
    role = dev.one("aws:iam/role:Role", "cluster-service-role")
    assert cluster["serviceRole"] == role.outputs["id"]
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {"Service": "eks.amazonaws.com"}
    (statement,) = json.loads(dev.one("aws:iam/rolePolicy:RolePolicy", "cluster-service-kms").inputs["policy"])["Statement"]
    assert statement["Resource"] == key.outputs["arn"] and all(a.startswith("kms:") for a in statement["Action"])
    # Control-plane logs expire instead of accumulating.
    logs = dev.one("aws:cloudwatch/logGroup:LogGroup").inputs
    assert logs["name"] == "/aws/eks/gpusharing-demo/cluster" and logs["retentionInDays"] == 30


def test_each_hardened_default_can_be_turned_off() -> None:
    off = {
        "secretsEncryption": False, "controlPlaneLogging": False, "imdsv2": False, "networkPolicy": False,
        "nodeVolumeEncryption": False,
    }  # fmt: skip
    rec = run_program(_with("hardening", **off))
    cluster = rec.one("eks:index:Cluster").inputs
    assert not rec.of_type("aws:kms/key:Key")
    assert "cluster-service-kms" not in [r.name for r in rec.of_type("aws:iam/rolePolicy:RolePolicy")]
    assert not rec.of_type("aws:cloudwatch/logGroup:LogGroup")
    for key in ("encryptionConfigKeyArn", "enabledClusterLogTypes", "vpcCniOptions"):
        assert cluster.get(key) is None, key
    for ng in ("cluster-cpu", "cluster-gpu"):
        # false is explicit: the launch template then allows IMDSv1 (httpTokens "optional").
        assert _launch_template(rec, ng)["metadataOptions"]["httpTokens"] == "optional"
        volume = _root_volume(rec, ng)
        assert volume["volumeType"] == "gp3" and "encrypted" not in volume and "kmsKeyId" not in volume
    # One off, the others stay on.
    only_logs_off = run_program(_with("hardening", controlPlaneLogging=False)).one("eks:index:Cluster").inputs
    assert only_logs_off.get("enabledClusterLogTypes") is None
    assert only_logs_off["vpcCniOptions"]["enableNetworkPolicy"] is True
    # The stack's key serves whichever of Secrets and root volumes is on.
    volumes_only = run_program(_with("hardening", secretsEncryption=False))
    key = volumes_only.one("aws:kms/key:Key")
    assert volumes_only.one("eks:index:Cluster").inputs.get("encryptionConfigKeyArn") is None
    assert _root_volume(volumes_only, "cluster-gpu")["kmsKeyId"] == key.outputs["arn"]
    secrets_only = run_program(_with("hardening", nodeVolumeEncryption=False))
    key = secrets_only.one("aws:kms/key:Key")
    assert secrets_only.one("eks:index:Cluster").inputs["encryptionConfigKeyArn"] == key.outputs["arn"]
    assert "encrypted" not in _root_volume(secrets_only, "cluster-gpu")
    assert [st["Sid"] for st in json.loads(key.inputs["policy"])["Statement"]] == ["EnableIAMPolicies"]


def test_public_endpoint_cidrs_must_be_explicit_outside_dev() -> None:
    config = {k: v for k, v in dev_config().items() if k != "gpu-sharing:publicAccessCidrs"}
    assert load_settings(config).public_access_cidrs == ("0.0.0.0/0",)  # dev: the default
    with pytest.raises(ConfigError) as caught:
        load_settings(config, stack="prod")
    assert caught.value.key == "gpu-sharing:publicAccessCidrs"
    assert "'prod'" in str(caught.value) and "required outside the 'dev' stack" in str(caught.value)
    explicit = load_settings({**config, "gpu-sharing:publicAccessCidrs": '["203.0.113.0/24"]'}, stack="prod")
    assert explicit.public_access_cidrs == ("203.0.113.0/24",)


# --- GPU Operator ----------------------------------------------------------------------


def test_gpu_operator_release_chart_and_values(dev: Recorded) -> None:
    release = dev.one(RELEASE, "gpu-operator-release").inputs
    assert release["chart"] == "gpu-operator"
    assert release["repositoryOpts"]["repo"] == "https://helm.ngc.nvidia.com/nvidia"
    # The newest release whose support matrix lists the cluster's Kubernetes version.
    assert release["version"] == "v26.7.0"
    assert GPU_OPERATOR_CHARTS["v26.7.0"].supports(dev.one("eks:index:Cluster").inputs["version"])
    namespace = dev.one("kubernetes:core/v1:Namespace", "gpu-operator-ns").inputs["metadata"]["name"]
    assert release["namespace"] == namespace == "gpu-operator"
    values = release["values"]
    assert values["driver"]["enabled"] is False
    assert values["toolkit"]["enabled"] is False
    cm = dev.one(CONFIG_MAP, "gpu-operator-device-plugin-config").inputs
    assert values["devicePlugin"]["config"]["name"] == cm["metadata"]["name"]
    assert values["devicePlugin"]["config"]["default"] in cm["data"]
    assert cm["metadata"]["namespace"] == "gpu-operator"


def test_time_slicing_config_map_content(dev: Recorded) -> None:
    _, config = _sharing_config(dev)
    assert config == {
        "version": "v1",
        "flags": {"migStrategy": "none"},
        "sharing": {
            "timeSlicing": {
                "renameByDefault": False,
                "failRequestsGreaterThanOne": False,
                "resources": [{"name": "nvidia.com/gpu", "replicas": 10}],
            }
        },
    }


def test_mps_and_none_config_map_content() -> None:
    _, mps = _sharing_config(run_program(_with("gpuSharing", strategy="mps", replicas=4, failRequestsGreaterThanOne=True)))
    assert set(mps["sharing"]) == {"mps"}
    assert mps["sharing"]["mps"]["resources"] == [{"name": "nvidia.com/gpu", "replicas": 4}]
    # Without sharing the GPU holds one model: the catalog must fit (workloads check it).
    one_model = json.dumps({"phi35-mini": {"modelId": "microsoft/Phi-3.5-mini-instruct"}})
    _, none = _sharing_config(
        run_program({**_with("gpuSharing", strategy="none", replicas=1), "gpu-sharing:models": one_model})
    )
    assert none == {"version": "v1", "flags": {"migStrategy": "none"}}


def test_sharing_change_renames_the_config_map_so_the_device_plugin_rolls(dev: Recorded) -> None:
    name, _ = _sharing_config(dev)
    again, _ = _sharing_config(run_program(dev_config()))
    assert again == name  # same config, same name: no needless roll
    changed = run_program(_with("gpuSharing", replicas=4))
    new_name, config = _sharing_config(changed)
    assert new_name != name
    assert config["sharing"]["timeSlicing"]["resources"][0]["replicas"] == 4
    assert changed.one(RELEASE, "gpu-operator-release").inputs["values"]["devicePlugin"]["config"]["name"] == new_name
    renamed, _ = _sharing_config(run_program(_with("gpuSharing", renameByDefault=True)))
    assert renamed not in (name, new_name)


def test_kubernetes_objects_go_through_the_clusters_provider_and_validate(dev: Recorded) -> None:
    (provider,) = dev.of_type("pulumi:providers:kubernetes")
    assert json.loads(provider.inputs["kubeconfig"])["kind"] == "Config"
    objects = [r for r in dev.resources if r.type.startswith("kubernetes:")]
    assert objects and all(r.provider.split("::")[-2] == provider.name for r in objects)
    for r in (dev.one("kubernetes:core/v1:Namespace", "gpu-operator-ns"), dev.one(CONFIG_MAP, "gpu-operator-device-plugin-config")):
        for version in SCHEMA_VERSIONS:
            kubernetes_validate.validate(_manifest(r), version, strict=True)


def _manifest(r: RecordedResource) -> dict[str, Any]:
    return {k: v for k, v in r.inputs.items() if v is not None}


# --- exports -------------------------------------------------------------------------


def test_exports(dev: Recorded) -> None:
    out = dev.outputs
    assert out["clusterName"] == "gpusharing-demo"
    assert out["region"] == "us-west-2"
    assert out["gpu"] == {
        "instance_type": "g6e.2xlarge",
        "gpu_model": "NVIDIA L40S",
        "memory_gib": pytest.approx(44.99, abs=0.01),
        "sharing": {"strategy": "time-slicing", "replicas": 10},
        "nodes": {"min": 1, "max": 1},
    }
    assert json.loads(out["kubeconfig"])["kind"] == "Config"
    assert "kubeconfig" in dev.secret_outputs
    assert "gpu" not in dev.secret_outputs


def test_component_type_tokens_and_child_names(dev: Recorded) -> None:
    assert {"gpu-sharing:infra:Network", "gpu-sharing:infra:Cluster", "gpu-sharing:infra:GpuOperator"} <= dev.types()
    aws_and_eks = [r for r in dev.resources if r.type.startswith(("aws:", "eks:"))]
    assert all(r.name.startswith(("network-", "cluster-")) for r in aws_and_eks), [r.name for r in aws_and_eks]
    operator = {(r.type, r.name) for r in dev.resources if r.name.startswith("gpu-operator-")}
    assert {t for t, _ in operator} == {"kubernetes:core/v1:Namespace", CONFIG_MAP, RELEASE}


# --- issue 10: zones, CoreDNS, access, names per stack ------------------------------------


def test_only_availability_zones_are_used_never_an_opted_in_local_zone(dev: Recorded) -> None:
    # us-west-2-lax-1a sorts before us-west-2a; EKS refuses it. The mock answers it unless the
    # call asks EC2 for zone-type availability-zone, as the program must.
    (zones_call,) = [c for c in dev.calls if c.token.endswith("getAvailabilityZones")]
    assert {"name": "zone-type", "values": ["availability-zone"]} in zones_call.args["filters"]
    used = {s.inputs["availabilityZone"] for s in dev.of_type(SUBNET)}
    assert LOCAL_ZONE not in used and used <= set(ZONES)


def test_coredns_is_a_managed_add_on_declared_once_nodes_exist(dev: Recorded) -> None:
    addon = dev.one("aws:eks/addon:Addon", "cluster-coredns")
    assert (addon.inputs["addonName"], addon.inputs["clusterName"]) == ("coredns", "gpusharing-demo")
    assert addon.inputs["resolveConflictsOnCreate"] == "OVERWRITE"  # takes over the bootstrapped CoreDNS
    # After the node groups: created with the cluster, its pods could not schedule and the
    # add-on would wait out 20 minutes as DEGRADED (pulumi/pulumi-eks#1819).
    node_groups = {f"{NODE_GROUP}::cluster-cpu", f"{NODE_GROUP}::cluster-gpu"}
    assert node_groups <= {urn.split("$")[-1] for urn in addon.dependencies}, addon.dependencies
    assert dev.one("eks:index:Cluster").inputs["corednsAddonOptions"]["enabled"] is False


ADMIN = "arn:aws:iam::123456789012:role/platform-admins"
RUNNER = "arn:aws:iam::123456789012:user/bench-runner"
RUNNER_ROLE = "arn:aws:iam::123456789012:role/ci/benchmark"


def test_extra_admins_and_benchmark_users_get_access_entries() -> None:
    rec = run_program(
        {
            **dev_config(),
            "gpu-sharing:clusterAdmins": json.dumps([ADMIN]),
            "gpu-sharing:benchmarkUsers": json.dumps([RUNNER, RUNNER_ROLE]),
        }
    )
    entries = rec.one("eks:index:Cluster").inputs["accessEntries"]
    by_principal = {e["principalArn"]: e for e in entries.values()}
    admin = by_principal[ADMIN]
    (policy,) = admin["accessPolicies"].values()
    assert policy == {
        "policyArn": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
        "accessScope": {"type": "cluster"},
    }
    rbac = "kubernetes:rbac.authorization.k8s.io/v1:"
    roles = {r.inputs["metadata"]["namespace"]: r.inputs for r in rec.of_type(rbac + "Role")}
    bindings = {r.inputs["metadata"]["namespace"]: r.inputs for r in rec.of_type(rbac + "RoleBinding")}
    (cluster_role,) = [r.inputs for r in rec.of_type(rbac + "ClusterRole")]
    (cluster_binding,) = [r.inputs for r in rec.of_type(rbac + "ClusterRoleBinding")]
    assert roles.keys() == bindings.keys() == {"llm-testing", "gpu-operator"}  # the models', the GPU Operator's
    for arn in (RUNNER, RUNNER_ROLE):
        entry = by_principal[arn]
        assert "accessPolicies" not in entry  # nothing cluster-wide: only what the Roles grant
        for binding in (*bindings.values(), cluster_binding):
            (subject,) = binding["subjects"]
            assert entry["kubernetesGroups"] == [subject["name"]] and subject["kind"] == "Group"

    def granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
        return {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}

    # In the models' namespace exactly the benchmark's calls (README, "Benchmark"), plus get on
    # pods/portforward for the WebSocket upgrade, patch on deployments for the replicas annotation, and doctor's reads of logs and events; in the
    # GPU Operator's namespace and over the cluster's nodes only doctor's `list`.
    assert granted(roles["llm-testing"]) == {
        ("apps", "deployments", "get"), ("apps", "deployments", "patch"), ("apps", "deployments/status", "get"),
        ("apps", "deployments/scale", "get"), ("apps", "deployments/scale", "patch"),
        ("", "pods", "list"), ("", "pods/portforward", "create"), ("", "pods/portforward", "get"),
        ("", "pods/log", "get"), ("", "events", "list"),
    }  # fmt: skip
    assert granted(roles["gpu-operator"]) == {("", "pods", "list")}
    assert granted(cluster_role) == {("", "nodes", "list")}
    for ns, binding in bindings.items():
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": roles[ns]["metadata"]["name"]}
    assert cluster_binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                          "name": cluster_role["metadata"]["name"]}  # fmt: skip
    # patch on deployments is for the benchmark's annotation only: an admission policy refuses this
    # group any update of a Deployment that changes its spec, in the models' namespace
    guard = rec.one("kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy").inputs
    guard_binding = rec.one("kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding").inputs
    spec = guard["spec"]
    assert spec["failurePolicy"] == "Fail"
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert (rule["apiGroups"], rule["resources"], rule["operations"]) == (["apps"], ["deployments"], ["UPDATE"])
    (condition,) = spec["matchConditions"]
    assert condition["expression"] == f"request.userInfo.groups.exists(g, g == '{cluster_binding['subjects'][0]['name']}')"
    assert [v["expression"] for v in spec["validations"]] == ["object.spec == oldObject.spec"]
    assert guard_binding["spec"]["policyName"] == guard["metadata"]["name"]
    assert guard_binding["spec"]["validationActions"] == ["Deny"]
    assert guard_binding["spec"]["matchResources"]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "llm-testing"}}
    for version in SCHEMA_VERSIONS:
        for obj in (*roles.values(), *bindings.values(), cluster_role, cluster_binding, guard, guard_binding):
            kubernetes_validate.validate({k: v for k, v in obj.items() if v is not None}, version, strict=True)


def test_without_extra_principals_only_the_nodes_have_an_access_entry(dev: Recorded) -> None:
    (entry,) = dev.one("eks:index:Cluster").inputs["accessEntries"].values()
    assert entry["type"] == "EC2_LINUX"


def _named_aws_resources(rec: Recorded) -> dict[str, str]:
    """type -> explicit `name` input, for the AWS/EKS resources that set one (Pulumi auto-names
    the others with a random suffix, so they cannot collide)."""
    return {f"{r.type}::{r.name}": r.inputs["name"] for r in rec.resources if r.type.startswith(("aws:", "eks:")) and "name" in r.inputs}


def test_a_second_stack_in_the_same_account_collides_with_nothing(dev: Recorded) -> None:
    prod_config = {k: v for k, v in dev_config().items() if k != "gpu-sharing:clusterName"}
    prod_config["gpu-sharing:publicAccessCidrs"] = json.dumps(["203.0.113.0/24"])
    prod = run_program(prod_config, stack="prod")
    assert prod.one("eks:index:Cluster").inputs["name"] == "gpusharing-prod"
    assert prod.one("aws:cloudwatch/logGroup:LogGroup").inputs["name"] == "/aws/eks/gpusharing-prod/cluster"
    assert prod.one("aws:eks/addon:Addon").inputs["clusterName"] == "gpusharing-prod"
    dev_names, prod_names = _named_aws_resources(dev), _named_aws_resources(prod)
    assert dev_names.keys() == prod_names.keys()
    assert not set(dev_names.values()) & set(prod_names.values()), (dev_names, prod_names)
    assert all("gpusharing-prod" in name for name in prod_names.values()), prod_names
    # Subnet tags name the cluster too (the load balancer controllers read them).
    assert all("kubernetes.io/cluster/gpusharing-prod" in s.inputs["tags"] for s in prod.of_type(SUBNET))
