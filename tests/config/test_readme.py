"""The README documents every setting of the dev stack, with the default the code uses."""

from __future__ import annotations

import json
import re
from typing import Any

from config.settings import default_cluster_name, load_settings
from tests.pulumi_mocks import ROOT, dev_config


def _section(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- section: {name} -->(.*?)<!-- /section: {name} -->", text, re.S)
    assert match, f"README has no {name} section"
    return match.group(1)


def _leaf_keys(prefix: str, value: Any) -> list[str]:
    if isinstance(value, dict) and not prefix.endswith(".labels"):
        return [k for name, v in value.items() for k in _leaf_keys(f"{prefix}.{name}", v)]
    return [prefix]


def test_every_dev_stack_key_is_documented() -> None:
    table = _section("configuration")
    documented = set(re.findall(r"`([\w:-]+(?:\.\w+)?)`", table))
    # "`cpuNodes.desiredSize` / `minSize` / `maxSize`" rows: the bare names share the row's object.
    for row in table.splitlines():
        first = re.match(r"\| `([\w:-]+)\.\w+`", row)
        if first:
            documented.update(f"{first.group(1)}.{name}" for name in re.findall(r"/ `(\w+)`", row))
    models = _section("models")
    for key, raw in dev_config().items():
        value = json.loads(raw) if raw[:1] in "{[" else raw
        for leaf in _leaf_keys(key, value):
            bare = leaf.split(":", 1)[1].split(".")[0]
            in_models = re.search(rf"`(gpu-sharing:)?{re.escape(bare)}[`.]", models)
            assert leaf in documented or in_models, f"{leaf} is not in the README"


def test_documented_defaults_match_the_code() -> None:
    table = _section("configuration")
    s = load_settings({})

    def row(key: str) -> str:
        (line,) = [line for line in table.splitlines() if line.startswith(f"| `{key}`")]
        return line

    assert f"`{s.region}`" in row("aws:region")
    # The default name is per stack: the README's template, filled in, is the code's default.
    template = re.search(r"`(gpusharing-<stack>)`", row("gpu-sharing:clusterName"))
    assert template, row("gpu-sharing:clusterName")
    for stack in ("dev", "prod", "team-b"):
        assert template.group(1).replace("<stack>", stack) == default_cluster_name(stack)
    assert s.cluster_name == default_cluster_name("dev")
    assert f"`{load_settings(dev_config()).cluster_name}`" in row("gpu-sharing:clusterName")
    assert f'"{s.kubernetes_version}"' in row("gpu-sharing:kubernetesVersion")
    assert f"`{s.gpu_nodes.instance_type}`" in row("gpu-sharing:gpuNodes.instanceType")
    assert f"`{s.gpu_sharing.replicas}`" in row("gpu-sharing:gpuSharing.replicas")
    assert f"`{s.gpu_operator.chart_version}`" in row("gpu-sharing:gpuOperator.chartVersion")
    assert f"`{s.gpu_nodes.disk_size_gib}`" in row("gpu-sharing:gpuNodes.diskSizeGib")
    cpu = s.cpu_nodes
    assert f"`{cpu.desired_size}` / `{cpu.min_size}` / `{cpu.max_size}`" in row("gpu-sharing:cpuNodes.desiredSize")
    for key, field in (
        ("secretsEncryption", "secrets_encryption"),
        ("controlPlaneLogging", "control_plane_logging"),
        ("imdsv2", "imdsv2"),
        ("networkPolicy", "network_policy"),
        ("nodeVolumeEncryption", "node_volume_encryption"),
    ):
        assert f"`{str(getattr(s.hardening, field)).lower()}`" in row(f"gpu-sharing:hardening.{key}"), key
