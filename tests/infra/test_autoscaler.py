"""The Cluster Autoscaler as `pulumi preview` would declare it (issue 15): its pinned chart with the
autoscaler of the cluster's Kubernetes minor, its IAM role (IRSA, limited to this cluster's node
groups), the node-template tags on the node groups' Auto Scaling groups, and node groups whose size
the autoscaler owns. The last test is the issue's "done when", through the real entry point."""

from __future__ import annotations

import json
from typing import Any

import pytest

from config.charts import CLUSTER_AUTOSCALER_CHART
from config.instances import ACCELERATOR_LABEL
from tests.pulumi_mocks import ACCOUNT, Recorded, asg_name, dev_config, run_program
from tests.workloads.test_several_gpus import several_gpus
from workloads.pod import GPU_GROUP_LABEL

RELEASE = "kubernetes:helm.sh/v3:Release"
NODE_GROUP = "eks:index:ManagedNodeGroup"
TAG = "aws:autoscaling/tag:Tag"
TEMPLATE = "k8s.io/cluster-autoscaler/node-template"


@pytest.fixture(scope="module")
def dev() -> Recorded:
    return run_program(dev_config())


def _values(rec: Recorded) -> dict[str, Any]:
    return rec.one(RELEASE, "cluster-autoscaler-release").inputs["values"]


def _asg_tags(rec: Recorded, node_group: str) -> dict[str, str]:
    """The tags declared on a node group's Auto Scaling group: key -> value."""
    tags = [t.inputs for t in rec.of_type(TAG) if t.inputs["autoscalingGroupName"] == asg_name(node_group)]
    assert all(t["tag"]["propagateAtLaunch"] is False for t in tags)  # for the autoscaler, not the instances
    return {t["tag"]["key"]: t["tag"]["value"] for t in tags}


def test_the_chart_is_pinned_and_runs_the_autoscaler_of_the_clusters_minor(dev: Recorded) -> None:
    release = dev.one(RELEASE, "cluster-autoscaler-release").inputs
    assert (release["chart"], release["version"]) == ("cluster-autoscaler", CLUSTER_AUTOSCALER_CHART.version)
    assert release["repositoryOpts"]["repo"] == "https://kubernetes.github.io/autoscaler"
    assert release["namespace"] == "kube-system"
    values = _values(dev)
    assert values["image"] == {"tag": "v1.35.2"}  # Kubernetes 1.35
    assert (values["cloudProvider"], values["awsRegion"]) == ("aws", "us-west-2")
    # Auto-discovery by the chart's default tags (enabled + this cluster), which EKS puts on the groups.
    assert values["autoDiscovery"] == {"clusterName": "gpusharing-demo"}
    older = run_program({**dev_config(), "gpu-sharing:kubernetesVersion": "1.33"})
    assert _values(older)["image"] == {"tag": "v1.33.6"}


def test_the_autoscaler_never_drains_a_model_and_stays_off_the_gpu_nodes(dev: Recorded) -> None:
    values = _values(dev)
    assert values["extraArgs"] == {"skip-nodes-with-local-storage": True}
    (term,) = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term == {"matchExpressions": [{"key": ACCELERATOR_LABEL, "operator": "DoesNotExist"}]}
    assert ACCELERATOR_LABEL in dev.one(NODE_GROUP, "cluster-gpu").inputs["labels"]
    assert ACCELERATOR_LABEL not in (dev.one(NODE_GROUP, "cluster-cpu").inputs.get("labels") or {})
    assert values["securityContext"]["runAsNonRoot"] is True
    assert values["containerSecurityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip
    assert set(values["resources"]["requests"]) == set(values["resources"]["limits"]) == {"cpu", "memory"}


def test_its_role_is_assumable_by_its_service_account_only(dev: Recorded) -> None:
    role = dev.one("aws:iam/role:Role", "cluster-autoscaler-role")
    cluster = dev.one("eks:index:Cluster").outputs
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Federated": cluster["oidcProviderArn"]}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    issuer = cluster["oidcIssuer"]
    assert statement["Condition"] == {
        "StringEquals": {f"{issuer}:sub": "system:serviceaccount:kube-system:cluster-autoscaler", f"{issuer}:aud": "sts.amazonaws.com"}
    }
    values = _values(dev)
    assert values["rbac"]["serviceAccount"] == {
        "name": "cluster-autoscaler", "annotations": {"eks.amazonaws.com/role-arn": role.outputs["arn"]},
    }  # fmt: skip


def test_its_policy_changes_only_this_clusters_node_groups(dev: Recorded) -> None:
    policy = dev.one("aws:iam/rolePolicy:RolePolicy", "cluster-autoscaler-policy")
    assert policy.inputs["role"] == dev.one("aws:iam/role:Role", "cluster-autoscaler-role").outputs["id"]
    statements = {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}
    scale = statements["ScaleThisClustersGroups"]
    assert set(scale["Action"]) == {"autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"}
    assert scale["Condition"] == {
        "StringEquals": {
            "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled": "true",
            "aws:ResourceTag/k8s.io/cluster-autoscaler/gpusharing-demo": "owned",
        }
    }
    nodegroups = statements["ThisClustersNodeGroups"]
    assert nodegroups["Resource"] == f"arn:aws:eks:us-west-2:{ACCOUNT}:nodegroup/gpusharing-demo/*/*"
    # Everything else only reads, and nothing else may write.
    assert all(a.split(":")[1].startswith(("Describe", "Get")) for a in statements["Describe"]["Action"])
    assert set(statements) == {"Describe", "ThisClustersNodeGroups", "ScaleThisClustersGroups"}


def test_the_release_comes_after_its_policy_and_the_node_groups(dev: Recorded) -> None:
    release = dev.one(RELEASE, "cluster-autoscaler-release")
    after = {urn.split("::")[-1] for urn in release.dependencies}
    assert {"cluster-autoscaler-policy", "cluster-cpu", "cluster-gpu"} <= after, after
    (k8s,) = dev.of_type("pulumi:providers:kubernetes")
    assert release.provider.split("::")[-2] == k8s.name
    assert "gpu-sharing:infra:ClusterAutoscaler" in dev.types()


def test_the_autoscaler_owns_the_node_groups_sizes(dev: Recorded) -> None:
    # pulumi-eks then ignores scalingConfig.desiredSize after creation: `pulumi up` does not undo a scale.
    for name in ("cluster-cpu", "cluster-gpu"):
        assert dev.one(NODE_GROUP, name).inputs["ignoreScalingChanges"] is True


def test_the_gpu_groups_auto_scaling_group_says_what_a_new_node_offers(dev: Recorded) -> None:
    assert _asg_tags(dev, "cluster-gpu") == {
        f"{TEMPLATE}/label/eks-node": "gpu",
        f"{TEMPLATE}/label/{ACCELERATOR_LABEL}": "nvidia-l40s",
        f"{TEMPLATE}/taint/nvidia.com/gpu": "true:NoSchedule",
        # The time-sliced replicas, not the instance type's one physical GPU.
        f"{TEMPLATE}/resources/nvidia.com/gpu": "10",
    }
    assert _asg_tags(dev, "cluster-cpu") == {}  # no labels, no taint, no extended resource
    config = dev_config()
    sharing = {**json.loads(config["gpu-sharing:gpuSharing"]), "replicas": 4, "renameByDefault": True}
    cpu = {**json.loads(config["gpu-sharing:cpuNodes"]), "labels": {"pool": "system"}}
    untainted = {**json.loads(config["gpu-sharing:gpuNodes"]), "taint": False}
    rec = run_program(
        {**config, "gpu-sharing:gpuSharing": json.dumps(sharing), "gpu-sharing:cpuNodes": json.dumps(cpu), "gpu-sharing:gpuNodes": json.dumps(untainted)}
    )
    gpu = _asg_tags(rec, "cluster-gpu")
    assert gpu[f"{TEMPLATE}/resources/nvidia.com/gpu.shared"] == "4" and f"{TEMPLATE}/resources/nvidia.com/gpu" not in gpu
    assert not [k for k in gpu if "/taint/" in k]
    assert _asg_tags(rec, "cluster-cpu") == {f"{TEMPLATE}/label/pool": "system"}


def test_done_when_a_dev_like_stack_of_zero_to_three_gpu_nodes_and_three_models_declares_it_all() -> None:
    """Issue 15: gpuNodes {minSize: 0, maxSize: 3} and three models that do not fit one GPU declare
    the autoscaler, its role, the node-template tags, and per-GPU plans with the affinities."""
    rec = run_program(several_gpus())
    gpu_group = rec.one(NODE_GROUP, "cluster-gpu").inputs
    assert gpu_group["scalingConfig"] == {"minSize": 0, "desiredSize": 0, "maxSize": 3}
    assert gpu_group["ignoreScalingChanges"] is True
    assert rec.one(RELEASE, "cluster-autoscaler-release").inputs["values"]["autoDiscovery"]["clusterName"] == "gpusharing-demo"
    assert rec.one("aws:iam/role:Role", "cluster-autoscaler-role") and rec.one("aws:iam/rolePolicy:RolePolicy", "cluster-autoscaler-policy")
    assert _asg_tags(rec, "cluster-gpu")[f"{TEMPLATE}/resources/nvidia.com/gpu"] == "10"
    groups = {k: m["gpu_group"] for k, m in rec.outputs["contract"]["models"].items()}
    assert sorted(set(groups.values())) == [1, 2]
    for d in rec.of_type("kubernetes:apps/v1:Deployment"):
        key = d.inputs["metadata"]["name"]
        template = d.inputs["spec"]["template"]
        assert template["metadata"]["labels"][GPU_GROUP_LABEL] == str(groups[key])
        assert set(template["spec"]["affinity"]) == {"podAffinity", "podAntiAffinity"}
    assert rec.outputs["gpu"]["nodes"] == {"min": 0, "max": 3}
