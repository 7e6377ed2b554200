"""The deployment recipes (deploy/): the Kubernetes base renders and validates against Kubernetes'
schemas, the KServe runtimes' containers validate as pod containers, the Dockerfile passes
hadolint, and the image's install script installs a working server into a fresh venv."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from conformance.target import free_port, wait_ready

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSION = "1.30.0"
DOCKERFILE = (DEPLOY / "docker" / "Dockerfile").read_text()


def rendered() -> dict[str, dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the kustomize base (make install-test installs it)"
    out = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "kubernetes")], capture_output=True, text=True, check=True
    )
    return {doc["kind"]: doc for doc in yaml.safe_load_all(out.stdout)}


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def dockerfile_env(name: str) -> str:
    found = re.search(rf"\b{name}=(\S+)", DOCKERFILE)
    assert found, name
    return found.group(1)


def test_the_kustomize_base_renders_and_every_object_is_valid_kubernetes():
    objects = rendered()
    assert set(objects) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for kind, obj in objects.items():
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)  # raises on any error
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "scorer", kind


def test_the_deployment_wires_probes_security_resources_and_the_grace_period():
    objects = rendered()
    pod = objects["Deployment"]["spec"]["template"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    assert set(container["resources"]) == {"requests", "limits"}
    env = env_of(container)
    grace = float(env["SCORER_SHUTDOWN_GRACE"])
    assert grace == float(dockerfile_env("SCORER_SHUTDOWN_GRACE"))
    pre_stop = float(
        re.search(r"sleep\((\d+)\)", " ".join(container["lifecycle"]["preStop"]["exec"]["command"])).group(1)
    )
    # Kubernetes counts the preStop hook inside the grace period; the server exits within its
    # grace plus 5 s (cli._exit_after), so nothing is killed mid-drain.
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + grace + 5
    assert env["MODEL_PATH"] == dockerfile_env("MODEL_PATH")
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == str(container["ports"][0]["containerPort"]) == "8080"
    labels = pod["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        selector = objects[kind]["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert selector and selector.items() <= labels.items(), kind
    assert objects["Service"]["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    assert (
        objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"]
        == objects["Deployment"]["metadata"]["name"]
    )


#: KServe's protocolVersions values this runtime speaks: the Open Inference Protocol over REST.
#: ("v1" is KServe's own V1 protocol, which we do not speak; H2O's contract has no KServe name.)
SPOKEN_PROTOCOLS = {"v2"}


def test_the_kserve_runtimes_and_inference_services_fit_together():
    runtimes = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all((DEPLOY / "kserve" / "cluster-serving-runtime.yaml").read_text())
    }
    services = list(yaml.safe_load_all((DEPLOY / "kserve" / "inference-service.yaml").read_text()))
    assert runtimes and services
    for name, runtime in runtimes.items():
        assert (runtime["apiVersion"], runtime["kind"]) == (
            "serving.kserve.io/v1alpha1",
            "ClusterServingRuntime",
        )
        (container,) = runtime["spec"]["containers"]
        assert container["name"] == "kserve-container"
        assert env_of(container)["MODEL_PATH"].startswith("/mnt/models"), name
        assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"containers": [container]},
        }
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    for service in services:
        assert (service["apiVersion"], service["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
        model = service["spec"]["predictor"]["model"]
        runtime = runtimes[model["runtime"]]
        assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
        # The protocol KServe routes with must be one the runtime declares, and one we speak.
        protocol = model.get("protocolVersion", "v1")
        assert protocol in runtime["spec"]["protocolVersions"], (service["metadata"]["name"], protocol)
    for name, runtime in runtimes.items():
        assert set(runtime["spec"]["protocolVersions"]) <= SPOKEN_PROTOCOLS, name
    v2 = [s for s in services if s["spec"]["predictor"]["model"].get("protocolVersion") == "v2"]
    assert v2, "an example InferenceService uses protocolVersion: v2"
    for service in v2:
        names = env_of(service["spec"]["predictor"]["model"])
        assert names.get("MODEL_NAME") == service["metadata"]["name"], "/v2/models/<name> is the isvc's name"


@pytest.mark.slow
def test_the_kserve_resources_fit_kserves_own_api_types(tmp_path):
    """Every field of the runtimes and services is one KServe's API defines, of the right kind;
    a misspelt field (protocolVersion on a runtime) would be dropped by the API server, silently."""
    from tests.kserve_schemas import problems_of

    kinds = {"ClusterServingRuntime": "V1alpha1ClusterServingRuntime", "InferenceService": "V1beta1InferenceService"}
    documents = [
        (kinds[d["kind"]], d)
        for name in ("cluster-serving-runtime.yaml", "inference-service.yaml")
        for d in yaml.safe_load_all((DEPLOY / "kserve" / name).read_text())
    ]
    assert len(documents) == 4
    assert problems_of(documents, tmp_path) == []
    broken = json.loads(json.dumps(documents[0][1]))
    broken["spec"]["protocolVersion"] = ["v2"]
    broken["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    assert sorted(problems_of([(documents[0][0], broken)], tmp_path)) == [
        "scorer-core-mlflow.spec.containers[0].ports[0].containerPort: '8080' is not int",
        "scorer-core-mlflow.spec: V1alpha1ServingRuntimeSpec has no field 'protocolVersion'",
    ]


def test_the_dockerfile_passes_hadolint_and_runs_the_tested_install_script():
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [
            str(hadolint),
            "--config",
            str(DEPLOY / "docker" / "hadolint.yaml"),
            str(DEPLOY / "docker" / "Dockerfile"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'RUN /src/deploy/docker/install.sh /src "${RUNTIME}"' in DOCKERFILE
    assert re.search(r"^USER 10001:10001$", DOCKERFILE, re.MULTILINE)
    assert 'ENTRYPOINT ["scorer", "serve"]' in DOCKERFILE
    # A Java runtime only where H2O-3 needs it, and no compiler in the final stage.
    final = DOCKERFILE.split("\nFROM ${PYTHON_IMAGE}\n", 1)[1]
    assert 'if [ "${RUNTIME}" = "h2o3" ]' in final and "openjdk-17-jre-headless" in final
    assert "gcc" not in final


def test_the_image_installs_with_the_uv_the_makefile_pins_and_copies_what_the_script_runs():
    makefile = (ROOT / "Makefile").read_text()
    pinned = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    script = (DEPLOY / "docker" / "install.sh").read_text()
    assert pinned and f"uv_version={pinned.group(1)}\n" in script
    assert "COPY tools/uv_install.py /src/tools/uv_install.py" in DOCKERFILE
    assert '"$src/tools/uv_install.py"' in script


def test_the_install_script_refuses_an_unknown_runtime(tmp_path):
    result = subprocess.run(
        ["bash", str(DEPLOY / "docker" / "install.sh"), str(ROOT), "tensorflow"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "unknown runtime 'tensorflow'" in result.stderr


@pytest.mark.slow
def test_the_install_script_builds_a_working_server_in_a_fresh_venv(tmp_path):
    """What the image runs, from the repository's files only, into a venv with nothing in it."""
    source = tmp_path / "src"
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        path = ROOT / name.decode()
        if path.is_file():
            (source / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, source / name.decode())
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    # The image's build byte-compiles every module it installs (all of MLflow, SciPy, scikit-learn,
    # pandas): more than half of the install's time here, for a check that imports a few of them.
    # Without it they compile as they are first imported, once, into the venv (so not under an
    # inherited PYTHONDONTWRITEBYTECODE).
    env["UV_COMPILE_BYTECODE"] = "0"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    installed = subprocess.run(
        ["bash", str(source / "deploy" / "docker" / "install.sh"), str(source), "mlflow"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    plugins = json.loads(
        subprocess.run(
            [str(venv / "bin" / "scorer"), "plugins"], env=env, capture_output=True, text=True, check=True
        ).stdout
    )
    assert [p["name"] for p in plugins] == ["mlflow"]
    # The image's entrypoint, serving the bundled demo model from that venv.
    port = free_port()
    server = subprocess.Popen(
        [str(venv / "bin" / "scorer"), "serve", "--port", str(port)],
        env={**env, "SCORER_DEMO_DIR": str(tmp_path / "demo")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, 120, process=server)
        with urllib.request.urlopen(base + "/model/sample_request", timeout=10) as reply:
            sample = reply.read()
        request = urllib.request.Request(base + "/model/score", sample, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert len(json.loads(reply.read())["score"]) == 1
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_the_model_volume_overlay_mounts_a_claim_where_model_path_points():
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the kustomize base (make install-test installs it)"
    out = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "overlays" / "model-volume")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    objects = {doc["kind"]: doc for doc in yaml.safe_load_all(out.stdout)}
    assert set(objects) == {
        "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "PersistentVolumeClaim"
    }  # fmt: skip
    for obj in objects.values():
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    spec = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["tmp"]["mountPath"] == "/tmp", "the overlay keeps the base's mounts"
    model_path = Path(env_of(container)["MODEL_PATH"])
    assert model_path.parent == Path(mounts["models"]["mountPath"]) and mounts["models"]["readOnly"]
    (claim,) = [v for v in spec["volumes"] if v["name"] == "models"]
    assert claim["persistentVolumeClaim"]["claimName"] == objects["PersistentVolumeClaim"]["metadata"]["name"]
    assert container["image"] != "ghcr.io/example/scorer-mlflow:0.1.0", "the overlay sets its own image"
