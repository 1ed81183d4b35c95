"""deploy/k8s: every manifest validates (strictly: unknown fields are errors) against the Kubernetes OpenAPI
schemas that kubernetes-validate ships (offline), for the oldest and the newest version it supports here,
and the manifests keep the deployment's promises: probes, one beat, a web autoscaler, a migration job,
a GPU for TGI, settings that match the app's."""

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML (dev extra) is needed to read the manifests")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (dev extra) is needed to validate the manifests"
)

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
# The oldest Kubernetes these manifests target (CronJob timeZone, autoscaling/v2 are GA there) and the newest
# whose schemas the installed kubernetes-validate ships.
VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]


def manifest_files() -> list[Path]:
    return sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")


def load_all() -> list[tuple[Path, dict]]:
    documents = []
    for path in manifest_files():
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append((path, document))
    return documents


def find(kind: str, name: str) -> dict:
    matches = [doc for _, doc in load_all() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def containers(workload: dict) -> list[dict]:
    spec = workload["spec"]
    pod = spec["jobTemplate"]["spec"]["template"] if workload["kind"] == "CronJob" else spec["template"]
    return pod["spec"]["containers"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_each_manifest_validates_strictly(path, version):
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert documents, f"{path.name} is empty"
    for document in documents:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            location = ".".join(str(part) for part in error.path)
            pytest.fail(f"{path.name}: {document['kind']}/{document['metadata']['name']}: {location}: {error.message}")


def test_the_validator_catches_mistakes():
    """Strict validation is not vacuous: an unknown field and a wrong type are both rejected."""
    beat = find("Deployment", "oversight-beat")
    typo = {**beat, "spec": {**beat["spec"], "replicaz": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, VERSIONS[-1], strict=True)
    wrong = {**beat, "spec": {**beat["spec"], "replicas": "one"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest_but_the_migration_job():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {path.name for path in manifest_files()} - {"migrate-job.yaml"}
    assert all((K8S / name).exists() for name in listed)


def test_everything_is_in_the_oversight_namespace():
    for path, document in load_all():
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "oversight", f"{path.name}: {document['kind']}"


def test_web_is_probed_scaled_and_not_sticky():
    web = find("Deployment", "oversight-web")
    (container,) = containers(web)
    assert container["args"] == ["web"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    config = find("ConfigMap", "oversight-config")["data"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        headers = {h["name"]: h["value"] for h in container[probe]["httpGet"]["httpHeaders"]}
        # DEBUG=0 answers 400 to an unknown Host and 301 to plain HTTP: the probes look like proxied requests.
        assert headers["Host"] in config["ALLOWED_HOSTS"].split(",")
        assert headers["X-Forwarded-Proto"] == "https"
    assert web["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    hpa = find("HorizontalPodAutoscaler", "oversight-web")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "oversight-web"}
    assert hpa["spec"]["minReplicas"] >= 2

    service = find("Service", "oversight-web")
    assert service["spec"].get("sessionAffinity", "None") == "None"
    assert service["spec"]["selector"] == web["spec"]["selector"]["matchLabels"]


def test_exactly_one_beat_never_two_during_a_rollout():
    beat = find("Deployment", "oversight-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    assert containers(beat)[0]["args"] == ["beat"]
    targets = [
        doc["spec"]["scaleTargetRef"]["name"] for _, doc in load_all() if doc["kind"] == "HorizontalPodAutoscaler"
    ]
    assert "oversight-beat" not in targets


def test_worker_and_migration_job():
    worker = find("Deployment", "oversight-worker")
    assert containers(worker)[0]["args"] == ["worker"]
    job = find("Job", "oversight-migrate")
    (container,) = containers(job)
    assert container["args"] == ["migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_all_oversight_pods_share_image_settings_and_run_unprivileged():
    workloads = [find("Deployment", name) for name in ("oversight-web", "oversight-worker", "oversight-beat")]
    workloads.append(find("Job", "oversight-migrate"))
    images = set()
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        for container in pod["containers"]:
            images.add(container["image"])
            refs = [next(iter(source.values()))["name"] for source in container["envFrom"]]
            assert refs == ["oversight-config", "oversight-secrets"]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert len(images) == 1, images
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["images"][0]["name"] == next(iter(images)).split(":")[0]


def test_tgi_gets_a_gpu():
    tgi = find("Deployment", "tgi")
    (container,) = containers(tgi)
    assert container["image"].startswith("ghcr.io/huggingface/text-generation-inference:")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {item["name"]: item for item in container["env"]}
    assert {"MODEL_ID", "NUM_SHARD"} <= set(env)
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert find("Service", "tgi")["spec"]["ports"][0]["port"] == 80
    assert find("ConfigMap", "oversight-config")["data"]["TGI_URL"].startswith("http://tgi.")


def test_the_ingress_routes_websockets_with_long_timeouts_and_big_uploads():
    plain = find("Ingress", "oversight")
    sockets = find("Ingress", "oversight-websockets")
    assert plain["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "200m"
    annotations = sockets["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    paths = [p["path"] for rule in sockets["spec"]["rules"] for p in rule["http"]["paths"]]
    assert paths == ["/ws/"]
    for ingress in (plain, sockets):
        assert not any("affinity" in key for key in ingress["metadata"].get("annotations", {}))
        assert ingress["spec"]["tls"]


def test_the_backup_cronjob_dumps_the_database():
    cron = find("CronJob", "oversight-pg-dump")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = containers(cron)
    assert "pg_dump" in " ".join(container["command"])


def test_configured_settings_are_ones_the_app_reads():
    """A misspelt key in the ConfigMap or the Secret would be silently ignored by the app."""
    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (REPO / "deploy" / ".env.example").read_text(), flags=re.MULTILINE)
    )
    config = find("ConfigMap", "oversight-config")["data"]
    secret = find("Secret", "oversight-secrets")["stringData"]
    unknown = sorted((set(config) | set(secret)) - documented)
    assert not unknown, f"not oversight settings: {unknown}"
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "METRICS_TOKEN"} <= set(secret)
    assert config["DEBUG"] == "0"
