"""The stack's outputs, as the benchmark reads them: the versioned ``contract`` plus the
``kubeconfig`` secret.

Two sources, one shape: ``pulumi stack output --json --show-secrets [--stack NAME]``
prints ``{"contract": {...}, "kubeconfig": ..., "clusterName": ..., ...}``, and the same
JSON saved to a file is what ``--outputs FILE`` reads (for machines without the Pulumi
CLI). Extra fields anywhere are ignored; a contract version this reader does not know is
refused, since a silent misreading would benchmark the wrong thing.

The kubeconfig stays in memory: ``StackOutputs``'s repr hides it and nothing here writes it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmark.errors import BenchmarkError
from workloads.contract import Contract, ContractError, ModelContract

__all__ = ["StackOutputs", "load_outputs", "parse_outputs", "read_pulumi_outputs"]


@dataclass(frozen=True, kw_only=True)
class StackOutputs:
    """The contract, read and checked (``workloads.contract``), with where it came from and the
    kubeconfig; ``raw`` keeps the contract's JSON for run.json and the report."""

    source: str  # where it came from, for messages and the report
    contract: Contract
    raw: Mapping[str, Any]
    kubeconfig: Mapping[str, Any] | None = field(default=None, repr=False)

    @property
    def models(self) -> Mapping[str, ModelContract]:
        return self.contract.models

    @property
    def namespace(self) -> str:
        return self.contract.namespace

    @property
    def cluster_name(self) -> str:
        return self.contract.cluster_name

    @property
    def gpu(self) -> Mapping[str, Any]:
        return self.contract.gpu

    def active_models(self) -> list[ModelContract]:
        """The enabled models with replicas, in the stack's start order."""
        return self.contract.active_models()

    def select(self, keys: list[str] | None) -> list[ModelContract]:
        """The models to benchmark: ``keys`` (checked against the catalog) or the active ones."""
        if keys:
            unknown = [k for k in keys if k not in self.models]
            if unknown:
                raise BenchmarkError(
                    f"--models: {', '.join(map(repr, unknown))} not in the stack's catalog; "
                    f"known models: {', '.join(sorted(self.models))}"
                )
            chosen = [self.models[k] for k in dict.fromkeys(keys)]
            return sorted(chosen, key=lambda m: (m.start_order, m.key))
        active = self.active_models()
        if not active:
            raise BenchmarkError(
                f"no active models in {self.source}: every model of the catalog "
                f"({', '.join(sorted(self.models)) or 'none'}) is disabled or has 0 replicas; "
                "enable one with `pulumi config set` and `pulumi up`"
            )
        return active


def _kubeconfig(raw: Any, source: str) -> Mapping[str, Any] | None:
    """pulumi-eks exports the kubeconfig as an object; a JSON or YAML string is accepted too."""
    if raw is None or raw == "[secret]":  # absent, or printed without --show-secrets
        return None
    if isinstance(raw, str):
        try:
            raw = yaml.safe_load(raw)  # JSON is YAML
        except yaml.YAMLError:
            raise BenchmarkError(f"stack outputs: kubeconfig in {source} is neither JSON nor YAML") from None
    if not isinstance(raw, Mapping) or "clusters" not in raw:
        raise BenchmarkError(f"stack outputs: kubeconfig in {source} is not a kubeconfig (no 'clusters')")
    return raw


def parse_outputs(outputs: Any, *, source: str) -> StackOutputs:
    """Check the outputs JSON (``{"contract": ..., "kubeconfig": ...}``) and read the contract."""
    if not isinstance(outputs, Mapping) or "contract" not in outputs:
        raise BenchmarkError(
            f"stack outputs: {source} has no 'contract' output; is it the output of "
            "`pulumi stack output --json --show-secrets` for a stack of this project, after `pulumi up`?"
        )
    contract = outputs["contract"]
    if isinstance(contract, str):  # a contract exported as JSON text
        try:
            contract = json.loads(contract)
        except json.JSONDecodeError:
            raise BenchmarkError(f"stack outputs: 'contract' in {source} is a string but not JSON") from None
    try:
        parsed = Contract.from_dict(contract)
    except ContractError as e:
        raise BenchmarkError(f"stack outputs: {source}: {e}") from None
    return StackOutputs(source=source, contract=parsed, raw=contract,
                        kubeconfig=_kubeconfig(outputs.get("kubeconfig"), source))


def read_pulumi_outputs(stack: str | None, *, cwd: Path | None = None) -> Any:
    """``pulumi stack output --json --show-secrets`` as parsed JSON, or a one-line error."""
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise BenchmarkError(
            "the Pulumi CLI was not found on PATH: install it (https://www.pulumi.com/docs/install/) "
            "or pass --outputs FILE with the saved output of `pulumi stack output --json --show-secrets`"
        )
    cmd = [pulumi, "stack", "output", "--json", "--show-secrets", "--non-interactive"]
    if stack:
        cmd += ["--stack", stack]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        reason = next((ln for ln in lines if ln.startswith("error:")), lines[-1] if lines else f"exit {proc.returncode}")
        where = f"stack {stack!r}" if stack else "the selected stack"
        raise BenchmarkError(
            f"`pulumi stack output` for {where} failed: {reason.removeprefix('error:').strip()} "
            "(select a stack with `pulumi stack select`, pass --stack NAME, or pass --outputs FILE)"
        )
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        raise BenchmarkError(f"`pulumi stack output --json` printed something that is not JSON: {e}") from None


def load_outputs(*, outputs_file: Path | None = None, stack: str | None = None) -> StackOutputs:
    """The stack's outputs from ``outputs_file`` if given, else from the Pulumi CLI."""
    if outputs_file is not None:
        try:
            text = Path(outputs_file).read_text(encoding="utf-8")
        except OSError as e:
            raise BenchmarkError(f"--outputs {str(outputs_file)!r}: cannot read it: {e.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise BenchmarkError(
                f"--outputs {str(outputs_file)!r}: not JSON ({e.msg} at line {e.lineno}); save it with "
                "`pulumi stack output --json --show-secrets > FILE`"
            ) from None
        return parse_outputs(data, source=f"--outputs {str(outputs_file)!r}")
    return parse_outputs(read_pulumi_outputs(stack), source=f"stack {stack!r}" if stack else "the selected stack")
