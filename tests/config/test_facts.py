"""The facts about external artifacts (config/facts.py): every version the stack pins has an
entry, so a version bump forces a look at its facts; every fact names its source."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from config import charts, facts, instances
from config.settings import load_settings
from tests.pulumi_mocks import ROOT, dev_config
from workloads.settings import DEFAULT_IMAGE


def _stack_files() -> list[tuple[str, dict[str, Any]]]:
    files = sorted(ROOT.glob("Pulumi.*.yaml"))
    assert files, "no stack files"
    return [(f.name, (yaml.safe_load(f.read_text()) or {}).get("config") or {}) for f in files]


def _pins(config: dict[str, Any]) -> dict[str, list[str]]:
    """The versions a stack file pins: Kubernetes, GPU Operator chart, TGI image tags."""
    operator = config.get("gpu-sharing:gpuOperator") or {}
    models = config.get("gpu-sharing:models") or {}
    return {
        "kubernetes": [str(config["gpu-sharing:kubernetesVersion"])] if "gpu-sharing:kubernetesVersion" in config else [],
        "chart": [operator["chartVersion"]] if "chartVersion" in operator else [],
        "image": [m["image"] for m in models.values() if "image" in m],
    }


@pytest.mark.parametrize(("name", "config"), _stack_files(), ids=[n for n, _ in _stack_files()])
def test_every_version_a_stack_pins_has_facts(name: str, config: dict[str, Any]) -> None:
    pins = _pins(config)
    for version in pins["kubernetes"]:
        assert version in facts.EKS_KUBERNETES_VERSIONS, f"{name}: Kubernetes {version} has no entry in config/facts.py"
    for version in pins["chart"]:
        assert version in charts.GPU_OPERATOR_CHARTS, f"{name}: GPU Operator {version} has no entry in config/charts.py"
    for image in pins["image"]:
        stock, tgi = facts.tgi_image_of(image)
        assert not stock or tgi is not None, f"{name}: {image} has no entry in config/facts.py TGI_IMAGES"


def test_every_version_the_code_defaults_to_has_facts() -> None:
    s = load_settings({})
    assert s.kubernetes_version == facts.DEFAULT_KUBERNETES_VERSION in facts.EKS_KUBERNETES_VERSIONS
    assert s.gpu_operator.chart_version in charts.GPU_OPERATOR_CHARTS
    stock, tgi = facts.tgi_image_of(DEFAULT_IMAGE)
    assert stock and tgi is not None and tgi.version == facts.DEFAULT_TGI_VERSION
    assert all(m.image == DEFAULT_IMAGE for m in s.workloads.models.values())


def test_the_pinned_chart_is_the_newest_release_that_supports_the_stacks_kubernetes() -> None:
    dev = load_settings(dev_config())
    chart = charts.GPU_OPERATOR_CHARTS[dev.gpu_operator.chart_version]
    assert chart.supports(dev.kubernetes_version)
    newer = [c for c in charts.GPU_OPERATOR_CHARTS.values() if c.released > chart.released]
    assert not newer, f"{[c.version for c in newer]} are newer than the pinned {chart.version}"
    assert charts.newest_chart_for(dev.kubernetes_version) == chart


def test_every_fact_names_its_source() -> None:
    entries: list[Any] = [
        *facts.TGI_IMAGES.values(),
        *charts.GPU_OPERATOR_CHARTS.values(),
        *facts.EKS_AMIS.values(),
    ]
    for entry in entries:
        assert entry.sources and all(len(s) > 20 for s in entry.sources), entry
    assert all(v.source for v in facts.EKS_KUBERNETES_VERSIONS.values())
    # An unverified number says so rather than pass for a fact.
    assert all(not t.disk_gib_verified for t in facts.TGI_IMAGES.values())


def test_the_ami_types_in_use_bring_what_the_operator_values_assume() -> None:
    # driver.enabled=false and toolkit.enabled=false: the GPU AMI must bring both.
    gpu, cpu = facts.EKS_AMIS[facts.GPU_AMI_TYPE], facts.EKS_AMIS[facts.CPU_AMI_TYPE]
    assert gpu.nvidia_driver and gpu.nvidia_container_toolkit
    # Both AMIs are x86_64: every instance type the settings accept is too.
    assert {gpu.architecture, cpu.architecture} == {t.architecture for t in instances.INSTANCE_TYPES.values()} == {"x86_64"}


def test_regions_are_the_aws_providers_own_list() -> None:
    regions = facts.aws_regions()
    assert {"us-west-2", "eu-west-1", "us-gov-west-1", "cn-north-1"} <= set(regions)
    assert "us-west-9" not in regions
    assert (facts.partition_of("cn-north-1"), facts.partition_of("us-gov-west-1"), facts.partition_of("us-west-2")) == (
        "aws-cn", "aws-us-gov", "aws",
    )  # fmt: skip


def test_an_image_is_pinned_by_a_digest_or_a_tag_other_than_latest() -> None:
    digest = "@sha256:" + "0" * 64
    for pinned in (facts.TGI_REPOSITORY + ":3.3.6", "registry.example.com:5000/team/tgi:1.0", "tgi" + digest, "tgi:latest" + digest):
        assert facts.image_pinned(pinned), pinned
    for unpinned in (facts.TGI_REPOSITORY, facts.TGI_REPOSITORY + ":latest", "registry.example.com:5000/team/tgi", "tgi:"):
        assert not facts.image_pinned(unpinned), unpinned


def test_every_kubernetes_version_eks_offers_gets_the_cluster_autoscaler_of_its_minor() -> None:
    # The autoscaler's minor must be the cluster's (cluster-autoscaler/README.md, "Releases").
    chart = charts.CLUSTER_AUTOSCALER_CHART
    for version in facts.EKS_KUBERNETES_VERSIONS:
        release = charts.autoscaler_for(version)
        assert release is not None, f"Kubernetes {version} has no Cluster Autoscaler release in config/charts.py"
        assert charts.minor(release.version) == charts.minor(version), (version, release.version)
        assert len(release.source) > 20 and release.released <= facts.CHECKED
    assert charts.autoscaler_for("1.31") is None
    assert chart.kubernetes == ("1.32", "1.35")
    assert charts.minor(chart.app_version) == charts.minor(chart.kubernetes[1])  # the chart's default is its newest
    assert chart.sources and all(len(s) > 20 for s in chart.sources)
    assert chart.released <= facts.CHECKED
    assert load_settings({}).autoscaler == charts.autoscaler_for(facts.DEFAULT_KUBERNETES_VERSION)
