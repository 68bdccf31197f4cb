"""The EC2 instance types (config/instances.py): kubelet's reservations as nodeadm computes
them, and what a GPU node leaves to the models."""

from __future__ import annotations

from config import instances


def test_kubelet_reservations_match_nodeadms_own_expectations() -> None:
    # nodeadm's e2e case kubelet-config-dir expects maxPods 58 -> kubeReserved memory 893Mi and,
    # on its 2-vCPU test host, cpu 70m (test/e2e/cases/kubelet-config-dir/expected-kubelet-config.json);
    # custom-max-pods-expression expects maxPods 44 -> 739Mi.
    assert instances.kube_reserved_memory_mib(58) == 893
    assert instances.kube_reserved_memory_mib(44) == 739
    assert instances.kube_reserved_cpu_millis(2) == 70
    g6e = instances.INSTANCE_TYPES["g6e.2xlarge"]
    assert g6e.max_pods == 58  # 4 ENIs x (15 - 1) + 2
    assert g6e.allocatable_cpu_millis == 8000 - 90
    assert 0.85 * 64 * 1024 < g6e.allocatable_memory_mib < 64 * 1024


def test_the_gpu_node_holds_the_reference_pair_but_not_a_third_model_at_24gi() -> None:
    allocatable_gib = instances.INSTANCE_TYPES["g6e.2xlarge"].allocatable_memory_mib / 1024
    assert 2 * 24 < allocatable_gib < 3 * 24


def test_every_gpu_node_type_has_its_gpu_and_no_cpu_type_has_one() -> None:
    assert instances.GPU_NODE_TYPES and instances.CPU_NODE_TYPES
    for name, t in instances.GPU_NODE_TYPES.items():
        assert instances.gpu_for_instance_type(name) is t.gpu is not None, name
    for name in instances.CPU_NODE_TYPES:
        assert instances.gpu_for_instance_type(name) is None, name
    assert instances.gpu_for_instance_type("p4d.24xlarge") is None
