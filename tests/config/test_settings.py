"""Reading the stack config into settings: defaults, the config's wire forms, secrecy, immutability."""

from __future__ import annotations

import dataclasses
import json

import pytest

from config.settings import load_settings
from config.validation import ConfigError, SecretText
from tests.pulumi_mocks import dev_config


def test_empty_config_is_the_reference_deployment() -> None:
    s = load_settings({})
    assert (s.region, s.cluster_name) == ("us-west-2", "gpusharing-dev")
    cpu, gpu = s.cpu_nodes, s.gpu_nodes
    assert (cpu.instance_type, cpu.desired_size, cpu.min_size, cpu.max_size) == ("t3.large", 2, 2, 4)
    assert (gpu.instance_type, gpu.desired_size, gpu.min_size, gpu.max_size) == ("g6e.2xlarge", 1, 1, 1)
    assert dict(gpu.labels) == {"eks-node": "gpu"} and gpu.taint
    assert not cpu.taint
    assert (s.gpu_sharing.strategy, s.gpu_sharing.replicas) == ("time-slicing", 10)
    assert s.gpu.gpu_model == "NVIDIA L40S"
    assert s.gpu_slots == 10


def test_dev_stack_file_spells_out_the_defaults() -> None:
    # Pulumi.dev.yaml carries every infra setting explicitly; it must not drift from the defaults,
    # except its cluster name: the dev stack keeps the name its cluster was created with.
    dev = load_settings(dev_config())
    assert dev.cluster_name == "gpusharing-demo"
    assert dataclasses.replace(dev, cluster_name=load_settings({}).cluster_name) == load_settings({})


def test_objects_arrive_as_json_text_or_data_and_numbers_as_text() -> None:
    as_text = load_settings(
        {"gpu-sharing:gpuSharing": json.dumps({"replicas": "4"}), "gpu-sharing:availabilityZoneCount": "3"}
    )
    as_data = load_settings({"gpu-sharing:gpuSharing": {"replicas": 4}, "gpu-sharing:availabilityZoneCount": 3})
    assert as_text == as_data
    assert as_text.gpu_sharing.replicas == 4 and as_text.availability_zone_count == 3


def test_gpu_slots_follow_replicas_and_node_group_max() -> None:
    s = load_settings(
        {
            "gpu-sharing:gpuSharing": {"replicas": 4},
            "gpu-sharing:gpuNodes": {"minSize": 1, "desiredSize": 1, "maxSize": 3},
        }
    )
    assert s.gpu_slots == 12


def test_strategy_none_means_one_pod_per_gpu() -> None:
    one_model = {"phi35-mini": {"modelId": "microsoft/Phi-3.5-mini-instruct"}}
    s = load_settings({"gpu-sharing:gpuSharing": {"strategy": "none"}, "gpu-sharing:models": one_model})
    assert s.gpu_sharing.replicas == 1 and s.gpu_slots == 1


def test_other_namespaces_are_ignored() -> None:
    # Pulumi and providers keep their own keys in the same mapping.
    s = load_settings({"kubernetes:context": "x", "aws:profile": "dev", "pulumi:tags": "{}"})
    assert s == load_settings({})


def test_secret_values_never_appear_in_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"gpu-sharing:clusterName": SecretText("hf_topsecret token")})
    assert "hf_topsecret" not in str(caught.value)
    assert caught.value.key == "gpu-sharing:clusterName"


def test_settings_are_immutable() -> None:
    s = load_settings({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.cluster_name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.gpu_nodes.labels["eks-node"] = "cpu"  # type: ignore[index]


def test_pods_ask_for_the_renamed_resource_under_rename_by_default() -> None:
    assert load_settings({}).gpu_sharing.resource_name == "nvidia.com/gpu"
    renamed = load_settings({"gpu-sharing:gpuSharing": {"renameByDefault": True}})
    assert renamed.gpu_sharing.resource_name == "nvidia.com/gpu.shared"
