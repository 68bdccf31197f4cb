"""What `pulumi preview` declares for the models: every Kubernetes object validated against
the 1.33 schemas and those of the default Kubernetes version, the TGI Deployments as the catalog and the planner say, toggles, start
order, the Hugging Face token, and the `contract` export the benchmark reads."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from config.facts import TGI_IMAGES
from config.settings import load_settings
from tests.pulumi_mocks import Recorded, RecordedResource, dev_config, run_program

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SECRET = "kubernetes:core/v1:Secret"
KEYS = ["phi35-mini", "deepseek-r1-8b"]
TOKEN = "hf_test_token_value_not_real"


def _models_with(**changes: dict[str, Any]) -> dict[str, Any]:
    config = dev_config()
    models = json.loads(config["gpu-sharing:models"])
    for key, fields in changes.items():
        models[key.replace("_", "-")].update(fields)
    return {**config, "gpu-sharing:models": json.dumps(models)}


@pytest.fixture(scope="module")
def dev() -> Recorded:
    return run_program({**dev_config(), "gpu-sharing:hfToken": TOKEN, "gpu-sharing:modelAccessCidrs": '["10.20.0.0/16"]'})


def _deployment(rec: Recorded, key: str) -> dict[str, Any]:
    (d,) = [r for r in rec.of_type(DEPLOYMENT) if r.inputs["metadata"]["name"] == key]
    return d.inputs


def _tgi(rec: Recorded, key: str) -> dict[str, Any]:
    (c,) = _deployment(rec, key)["spec"]["template"]["spec"]["containers"]
    return c


def _flag(container: dict[str, Any], flag: str) -> str:
    args = container["args"]
    return args[args.index(flag) + 1]


def _manifest(r: RecordedResource) -> dict[str, Any]:
    return {k: v for k, v in r.inputs.items() if v is not None}


def test_every_model_object_validates_strictly_against_kubernetes_1_33_and_the_default(dev: Recorded) -> None:
    ns = dev.one("kubernetes:core/v1:Namespace", "models-namespace")
    labels = ns.inputs["metadata"]["labels"]
    # hostPath is outside "baseline": say "privileged" explicitly, audit against baseline.
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["pod-security.kubernetes.io/audit"] == "baseline"
    objects = [r for r in dev.resources if r.type.startswith("kubernetes:") and r.name.startswith("models-")]
    kinds = {r.type for r in objects}
    cluster_wide = {"kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy",
                    "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding"}
    assert kinds == {
        ns.type, DEPLOYMENT, SERVICE, CONFIG_MAP, SECRET, "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "kubernetes:rbac.authorization.k8s.io/v1:Role", "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
        "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole", "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
        *cluster_wide,
    }  # fmt: skip
    for r in objects:
        for version in ("1.33", load_settings({}).kubernetes_version):
            kubernetes_validate.validate(_manifest(r), version, strict=True)
        if r is ns or r.type in cluster_wide or r.type.endswith(("ClusterRole", "ClusterRoleBinding")):
            assert "namespace" not in r.inputs["metadata"], r.name  # cluster-scoped
        elif r.name.startswith("models-benchmark-operator-"):  # doctor reads the GPU Operator's pods
            assert r.inputs["metadata"]["namespace"] == "gpu-operator", r.name
        else:
            assert r.inputs["metadata"]["namespace"] == "llm-testing", r.name


def test_one_deployment_and_service_per_model_named_after_its_key(dev: Recorded) -> None:
    assert sorted(d.inputs["metadata"]["name"] for d in dev.of_type(DEPLOYMENT)) == sorted(KEYS)
    for key in KEYS:
        (svc,) = [s.inputs for s in dev.of_type(SERVICE) if s.inputs["metadata"]["name"] == key]
        d = _deployment(dev, key)
        assert svc["spec"]["type"] == "ClusterIP"
        assert svc["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]
        assert set(svc["spec"]["selector"].items()) <= set(d["spec"]["template"]["metadata"]["labels"].items())
        (port,) = svc["spec"]["ports"]
        (container_port,) = _tgi(dev, key)["ports"]
        assert (port["port"], port["targetPort"]) == (8080, container_port["name"])
        assert container_port["containerPort"] == 8080 == int(_flag(_tgi(dev, key), "--port"))
        labels = d["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == key
        assert labels["app.kubernetes.io/name"] == "text-generation-inference"
        assert labels["app.kubernetes.io/version"] == "3.3.6"


def test_tgi_arguments_come_from_the_catalog_and_the_plan(dev: Recorded) -> None:
    contract = dev.outputs["contract"]["models"]
    for key in KEYS:
        tgi = _tgi(dev, key)
        assert tgi["image"] == "ghcr.io/huggingface/text-generation-inference:3.3.6"
        assert _flag(tgi, "--model-id") == contract[key]["model_id"]
        assert _flag(tgi, "--max-input-tokens") == "256"
        assert _flag(tgi, "--max-total-tokens") == "512"
        assert _flag(tgi, "--max-batch-prefill-tokens") == "4096"
        assert _flag(tgi, "--max-batch-total-tokens") == "8192"
        assert _flag(tgi, "--max-concurrent-requests") == "16"
        assert _flag(tgi, "--max-waiting-tokens") == "5"
        assert float(_flag(tgi, "--cuda-memory-fraction")) == contract[key]["cuda_memory_fraction"]
        assert _flag(tgi, "--hostname") == "0.0.0.0"
        assert "--quantize" not in tgi["args"] and "--dtype" not in tgi["args"]
    # 'auto' chose cumulative fractions: the first model's is the smaller.
    assert contract["phi35-mini"]["cuda_memory_fraction"] < contract["deepseek-r1-8b"]["cuda_memory_fraction"] <= 1


def test_the_contract_says_what_doctor_checks_the_gpu_nodes_and_the_operator_against(dev: Recorded) -> None:
    contract = dev.outputs["contract"]
    nodes = contract["gpu_nodes"]
    group = dev.one("eks:index:ManagedNodeGroup", "cluster-gpu").inputs
    # the labels the models select on; the group adds the autoscaler's k8s.amazonaws.com/accelerator
    assert nodes["labels"] == {"eks-node": "gpu"} and nodes["labels"].items() <= group["labels"].items()
    (taint,) = group["taints"]  # EKS spells the effect NO_SCHEDULE, the node NoSchedule
    assert nodes["taint"] == {"key": taint["key"], "value": taint["value"], "effect": "NoSchedule"}
    assert nodes["gpus_per_node"] == 1  # g6e.2xlarge: one L40S
    for key in KEYS:
        pod = _deployment(dev, key)["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == nodes["labels"]
        assert {"key": taint["key"], "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        assert _tgi(dev, key)["resources"]["limits"][nodes["resource"]] == "1"
        planned = contract["models"][key]
        assert planned["planned_kv_tokens_first_start"] >= planned["planned_kv_tokens"] > 0
    operator_ns = dev.one("kubernetes:core/v1:Namespace", "gpu-operator-ns").inputs["metadata"]["name"]
    assert contract["gpu_operator"] == {"namespace": operator_ns}
    (cluster,) = dev.of_type("eks:index:Cluster")
    groups = {g for e in cluster.inputs["accessEntries"].values() for g in e.get("kubernetesGroups") or []}
    assert contract["access"]["benchmark_group"] == "gpu-sharing-benchmark"
    assert groups <= {contract["access"]["benchmark_group"]}  # the dev stack lists no benchmark user


def test_pods_ask_for_the_renamed_shared_resource_under_rename_by_default() -> None:
    config = dev_config()
    sharing = {**json.loads(config["gpu-sharing:gpuSharing"]), "renameByDefault": True}
    rec = run_program({**config, "gpu-sharing:gpuSharing": json.dumps(sharing)})
    for key in KEYS:
        assert _tgi(rec, key)["resources"]["limits"]["nvidia.com/gpu.shared"] == "1"
        assert "nvidia.com/gpu" not in _tgi(rec, key)["resources"]["limits"]


def test_quantize_and_dtype_reach_the_launcher() -> None:
    rec = run_program(
        _models_with(phi35_mini={"dtype": "float16", "revision": "main"}, deepseek_r1_8b={"quantize": "eetq"})
    )
    assert _flag(_tgi(rec, "phi35-mini"), "--dtype") == "float16"
    assert _flag(_tgi(rec, "phi35-mini"), "--revision") == "main"
    assert _flag(_tgi(rec, "deepseek-r1-8b"), "--quantize") == "eetq"


def test_pod_runs_on_the_gpu_node_with_one_shared_gpu_and_a_tight_security_context(dev: Recorded) -> None:
    for key in KEYS:
        d = _deployment(dev, key)
        pod = d["spec"]["template"]["spec"]
        assert d["spec"]["replicas"] == 1
        assert d["spec"]["strategy"] == {"type": "Recreate"}
        assert pod["nodeSelector"] == {"eks-node": "gpu"}
        assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        tgi = _tgi(dev, key)
        res = tgi["resources"]
        assert res["limits"]["nvidia.com/gpu"] == "1" and res["requests"]["nvidia.com/gpu"] == "1"
        assert res["requests"]["memory"] == res["limits"]["memory"] == "24Gi"
        assert (res["requests"]["cpu"], res["limits"]["cpu"]) == ("2", "4")
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for c in [tgi, *pod["initContainers"]]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]


def test_the_stock_tgi_image_runs_as_root_as_it_is_built_to(dev: Recorded) -> None:
    """The stock image works only as root: since TGI 3.1 its Python lives under /root
    (huggingface/text-generation-inference#3082), so a non-root uid crash-loops on
    libpython3.11.so.1.0. No uid is forced, no root-only helper is needed."""
    for key in KEYS:
        pod = _deployment(dev, key)["spec"]["template"]["spec"]
        for field in ("runAsUser", "runAsGroup", "fsGroup", "runAsNonRoot"):
            assert field not in pod["securityContext"], field
        assert all(field not in _tgi(dev, key)["securityContext"] for field in ("runAsUser", "runAsNonRoot"))
        # root owns the hostPath cache already: no chown step.
        assert "cache-owner" not in [c["name"] for c in pod["initContainers"]]
        # The security scan's non-root checks are skipped on the Deployment, naming the issue.
        skips = _deployment(dev, key)["metadata"]["annotations"].values()
        for check in ("CKV_K8S_23", "CKV_K8S_40"):
            (reason,) = [v for v in skips if v.startswith(f"{check}=")]
            assert "huggingface/text-generation-inference#3082" in reason


def test_a_derived_non_root_image_runs_as_its_uid_with_the_cache_handed_over() -> None:
    derived = "registry.example.com/ml/tgi-nonroot:3.3.6-1"
    rec = run_program(_models_with(phi35_mini={"image": derived, "runAsUser": 1000}))
    pod = _deployment(rec, "phi35-mini")["spec"]["template"]["spec"]
    security = dict(pod["securityContext"])
    assert security.pop("seccompProfile") == {"type": "RuntimeDefault"}
    assert security == {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000}
    (owner,) = [c for c in pod["initContainers"] if c["name"] == "cache-owner"]
    assert owner["command"] == ["chown", "1000:1000", "/data"] and owner["image"] == derived
    # The only root step may change file owners and nothing else.
    assert owner["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert owner["securityContext"]["runAsUser"] == 0
    assert {"name": "cache", "mountPath": "/data"} in owner["volumeMounts"]
    # The other model still runs the stock image as root.
    assert "runAsUser" not in _deployment(rec, "deepseek-r1-8b")["spec"]["template"]["spec"]["securityContext"]


def test_volumes_shm_in_memory_and_a_cache_that_survives_restarts(dev: Recorded) -> None:
    for key in KEYS:
        pod = _deployment(dev, key)["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in _tgi(dev, key)["volumeMounts"]}
        assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
        cache = volumes[mounts["/data"]]
        assert "emptyDir" not in cache
        assert cache["hostPath"] == {"path": f"/var/lib/gpu-sharing/hf-cache/{key}", "type": "DirectoryOrCreate"}


def test_probes_give_download_and_warmup_time_and_a_lenient_liveness(dev: Recorded) -> None:
    tgi = _tgi(dev, "deepseek-r1-8b")
    startup, ready, live = tgi["startupProbe"], tgi["readinessProbe"], tgi["livenessProbe"]
    for probe in (startup, ready, live):
        assert probe["httpGet"] == {"path": "/health", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] == 30 * 60
    assert live["periodSeconds"] * live["failureThreshold"] >= 3 * 60
    rec = run_program(_models_with(deepseek_r1_8b={"startupMinutes": 45}))
    s = _tgi(rec, "deepseek-r1-8b")["startupProbe"]
    assert s["periodSeconds"] * s["failureThreshold"] == 45 * 60


def test_a_model_waits_for_the_enabled_models_planned_before_it(dev: Recorded) -> None:
    first = _deployment(dev, "phi35-mini")["spec"]["template"]["spec"]["initContainers"]
    second = _deployment(dev, "deepseek-r1-8b")["spec"]["template"]["spec"]["initContainers"]
    assert first == []
    wait = next(c for c in second if c["name"] == "wait-for-earlier-models")
    # bash and curl of the same image, not its python3 (a link into /root: #3082).
    assert wait["image"] == _tgi(dev, "deepseek-r1-8b")["image"]
    assert wait["command"][:2] == ["bash", "-c"] and "curl" in wait["command"][2] and "python" not in wait["command"][2]
    assert all({"bash", "curl", "grep"} <= set(t.tools) for t in TGI_IMAGES.values())  # what the image has
    # The enabled list it reads, the Service URL it polls, then the keys it waits for, in order.
    assert wait["command"][4:] == ["/etc/start-order/enabled", "http://{key}:8080/health", "10", "phi35-mini"]
    assert {"name": "start-order", "mountPath": "/etc/start-order", "readOnly": True} in wait["volumeMounts"]
    order = dev.one(CONFIG_MAP, "models-start-order").inputs
    assert order["metadata"]["name"] == "model-start-order"
    assert order["data"]["enabled"].split() == KEYS
    # Reversing the start order reverses who waits for whom.
    rec = run_program(_models_with(phi35_mini={"startOrder": 3}))
    assert _deployment(rec, "deepseek-r1-8b")["spec"]["template"]["spec"]["initContainers"] == []
    assert _deployment(rec, "phi35-mini")["spec"]["template"]["spec"]["initContainers"][-1]["command"][-1] == "deepseek-r1-8b"


def test_toggling_a_model_off_changes_its_replicas_and_the_start_list_only() -> None:
    on = run_program(dev_config())
    off = run_program(_models_with(phi35_mini={"enabled": False}))
    before = {(r.type, r.name): r.inputs for r in on.resources}
    after = {(r.type, r.name): r.inputs for r in off.resources}
    assert before.keys() == after.keys()  # the Service, cache and everything else stay
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {(DEPLOYMENT, "models-phi35-mini-deployment"), (CONFIG_MAP, "models-start-order")}
    assert after[(DEPLOYMENT, "models-phi35-mini-deployment")]["spec"]["replicas"] == 0
    assert {**after[(DEPLOYMENT, "models-phi35-mini-deployment")]["spec"], "replicas": 1} == before[
        (DEPLOYMENT, "models-phi35-mini-deployment")
    ]["spec"]
    assert after[(CONFIG_MAP, "models-start-order")]["data"]["enabled"].split() == ["deepseek-r1-8b"]
    phi = off.outputs["contract"]["models"]["phi35-mini"]
    assert (phi["enabled"], phi["replicas"]) == (False, 0)


def test_hf_token_becomes_a_secret_referenced_by_the_pods_and_nowhere_else(dev: Recorded) -> None:
    secret = dev.one(SECRET, "models-hf-token").inputs
    assert secret["stringData"] == {"token": TOKEN}
    for key in KEYS:
        (env,) = [e for e in _tgi(dev, key)["env"] if e["name"] == "HF_TOKEN"]
        assert env["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": "token"}
    others = [r for r in dev.resources if r.type != SECRET]
    assert TOKEN not in json.dumps([r.inputs for r in others]) + json.dumps(dev.outputs)
    plain = run_program(dev_config())
    assert not plain.of_type(SECRET)
    assert all(e["name"] != "HF_TOKEN" for e in _tgi(plain, "phi35-mini")["env"])


def test_network_policy_admits_the_namespace_and_configured_cidrs_on_8080(dev: Recorded) -> None:
    policy = dev.one("kubernetes:networking.k8s.io/v1:NetworkPolicy").inputs["spec"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert rule["from"] == [{"podSelector": {}}, {"ipBlock": {"cidr": "10.20.0.0/16"}}]
    labels = _deployment(dev, "phi35-mini")["spec"]["template"]["metadata"]["labels"]
    assert set(policy["podSelector"]["matchLabels"].items()) <= set(labels.items())
    assert policy["policyTypes"] == ["Ingress"]


def test_contract_export_has_the_agreed_shape(dev: Recorded) -> None:
    c = dev.outputs["contract"]
    assert c["version"] == 1
    assert c["cluster"] == {"name": "gpusharing-demo", "region": "us-west-2"}
    assert c["namespace"] == "llm-testing"
    assert c["gpu"] == dev.outputs["gpu"]
    assert list(c["models"]) == KEYS
    types = {
        "model_id": str, "deployment": str, "service": str, "port": int, "enabled": bool, "replicas": int,
        "start_order": int, "api": str, "max_input_tokens": int, "max_total_tokens": int,
        "max_batch_total_tokens": int, "cuda_memory_fraction": float, "planned_kv_tokens": int,
    }  # fmt: skip
    for i, key in enumerate(KEYS, start=1):
        m = c["models"][key]
        for field, kind in types.items():
            assert isinstance(m[field], kind) or (kind is float and isinstance(m[field], int)), (key, field)
        assert (m["deployment"], m["service"], m["port"], m["api"]) == (key, key, 8080, "tgi")
        assert (m["enabled"], m["replicas"], m["start_order"]) == (True, 1, i)
        assert m["planned_kv_tokens"] >= m["max_batch_total_tokens"]
    assert "contract" not in dev.secret_outputs


def test_component_type_and_child_names(dev: Recorded) -> None:
    assert {"gpu-sharing:workloads:ModelWorkloads", "gpu-sharing:workloads:InferenceModel"} <= dev.types()
    for key in KEYS:
        dev.one("gpu-sharing:workloads:InferenceModel", f"models-{key}")
        dev.one(DEPLOYMENT, f"models-{key}-deployment")
        dev.one(SERVICE, f"models-{key}-service")


def test_the_benchmarks_reader_accepts_the_exported_outputs(dev: Recorded) -> None:
    from benchmark.stack.outputs import parse_outputs

    stack = parse_outputs(json.loads(json.dumps(dev.outputs)), source="mock preview")
    assert [m.key for m in stack.active_models()] == KEYS
    for m in stack.active_models():
        d = _deployment(dev, m.deployment)
        assert d["metadata"]["namespace"] == stack.namespace
        assert float(_flag(_tgi(dev, m.key), "--cuda-memory-fraction")) == m.cuda_memory_fraction


def test_preview_warns_with_numbers_when_the_guides_fractions_starve_the_8b_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import pulumi

    seen: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *a, **kw: seen.append(msg))
    run_program(_models_with(phi35_mini={"cudaMemoryFraction": 0.4}, deepseek_r1_8b={"cudaMemoryFraction": 0.4}))
    (warning,) = [w for w in seen if "KV cache" in w]
    assert warning.startswith("deepseek-r1-8b: TGI will size its KV cache to 8176 tokens, fewer than its maxBatchTotalTokens 8192")
    assert "fraction 0.4 makes it leave 28.79 GiB free" in warning


def test_the_wait_script_blocks_until_each_enabled_earlier_model_is_healthy(tmp_path) -> None:
    """Run the init container's command (bash and curl, as in the TGI image) against a local
    server: it waits while 'first' answers 503, skips 'off' (not in the enabled list), and
    exits once 'first' answers 200."""
    import http.server
    import shutil
    import subprocess
    import threading

    from workloads.pod import WAIT_COMMAND

    if not (shutil.which("bash") and shutil.which("curl")):
        pytest.fail("the wait command needs bash and curl on PATH, as the TGI image has them")

    calls: list[str] = []

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            calls.append(self.path)
            self.send_response(200 if len(calls) >= 3 else 503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    listing = tmp_path / "enabled"
    listing.write_text("first\nme\n")
    try:
        done = subprocess.run(
            [*WAIT_COMMAND, str(listing), f"http://127.0.0.1:{server.server_port}/{{key}}/health",
             "0.05", "off", "first"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    assert calls == ["/first/health"] * 3  # never asked the disabled model
    assert done.stdout.count("waiting for first") == 2 and "first is healthy" in done.stdout
