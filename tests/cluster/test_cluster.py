"""The whole loop on a cluster of separate processes, through the HTTP API only.

gunicorn, a ``gpu`` and a ``cpu`` Celery worker (folders of their own each: they share no disk),
PostgreSQL (a fresh database), Redis and an S3 endpoint on loopback (moto's server). Real
camera-trap images (40 of the bundled sample, five sequences) are put into the bucket; then, as
an API client would: import from the s3:// prefix, wait for detection and embedding, open a
round, label the crops it serves, retrain, wait for the predictions, export to storage (COCO)
and download the export through its URL.

On the way the ``gpu`` worker is killed (SIGKILL) while its detection task is in flight: held
at a known point by a table lock of the test's own (it waits to create the embedding version),
so the kill never races the work. While it is down, the ``cpu`` worker imports the second batch;
restarted under its node name, the ``gpu`` worker queues again what it left unfinished and the
task completes. At the end the ``gpu`` worker is killed mid-task again and never comes back: a
replacement under a new node name runs its task once the dead one's heartbeat is old enough.

Run by ``make cluster-test`` only (tests/cluster/conftest.py); see README.md, "Production".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from annotator.demo import SAMPLE_DIR
from tests.cluster.cluster import Cluster

pytestmark = pytest.mark.cluster

# Five sequences, 40 images: three species, imported in two batches.
BATCHES = {
    "first": ("Red_Fox/SEQ75179", "Agouti/SEQ75520", "Ocelot/SEQ75294"),
    "second": ("Red_Fox/SEQ75183", "Agouti/SEQ75585"),
}
N_IMAGES = 40
# The sample's folder of each species, and the species' name in the project.
SPECIES = {"Red_Fox": "red fox", "Agouti": "agouti", "Ocelot": "ocelot"}
ROUND_SIZE = 20
# The third batch, imported at the end while the gpu worker is lost for good: every image of
# it has a box (the offline detector), so detection writes one at its first image.
THIRD_BATCH = ("Ocelot/SEQ76189",)
THIRD_IMAGES = 10
# The replacement gpu worker's lost time: a few of the cluster's 2-second heartbeats.
LOST_S = 10
DETECTION_TASK = "annotator.tasks.detection_job_task"


class Api:
    """A token client of the cluster's web server; every answer's status is checked."""

    def __init__(self, base: str, token: str, slug: str) -> None:
        self.base = f"{base}/api/v1"
        self.project = f"{self.base}/projects/{slug}"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, *, expect: int, **kwargs: Any) -> requests.Response:
        url = path if path.startswith("http") else f"{self.project}{path}"
        response = self.session.request(method, url, timeout=60, allow_redirects=False, **kwargs)
        assert response.status_code == expect, (
            f"{method} {url}: {response.status_code} (expected {expect}): {response.text[:2000]}"
        )
        return response

    def get(self, path: str = "", *, expect: int = 200, **kwargs: Any) -> Any:
        return self.call("GET", path, expect=expect, **kwargs).json()

    def post(self, path: str, body: Any = None, *, expect: int) -> Any:
        return self.call("POST", path, expect=expect, json=body).json()


def _truth(image_file: str) -> str:
    """The species of an image of the sample, from the folder it was uploaded from."""
    found = [name for folder, name in SPECIES.items() if f"{folder}/" in image_file]
    assert len(found) == 1, f"cannot tell the species of {image_file!r}"
    return found[0]


def _upload(cluster: Cluster) -> None:
    """The batches' images into the bucket under ``incoming/<batch>/<species>/<sequence>/``."""
    s3 = cluster.s3()
    for batch, sequences in BATCHES.items():
        for sequence in sequences:
            for path in sorted((SAMPLE_DIR / "images" / sequence).iterdir()):
                key = f"incoming/{batch}/{sequence}/{path.name}"
                s3.put_object(Bucket=cluster.bucket, Key=key, Body=path.read_bytes())
    assert len(cluster.keys("incoming/")) == N_IMAGES


def _import(cluster: Cluster, admin: Api, batch: str) -> int:
    """Import the batch's prefix; the import job's id."""
    answer = admin.post(
        "/imports", {"source": f"s3://{cluster.bucket}/incoming/{batch}/"}, expect=202
    )
    # The agreed contract says "job"; the import branch answers "job_id" (and a status_url).
    return int(answer["job"] if "job" in answer else answer["job_id"])


def _job(cluster: Cluster, admin: Api, job_id: int) -> dict[str, Any]:
    """The job as ``GET .../jobs/{id}`` describes it."""
    return dict(admin.get(f"/jobs/{job_id}"))


def _job_done(cluster: Cluster, admin: Api, job_id: int, *, what: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        job = _job(cluster, admin, job_id)
        assert job["status"] != "failed", f"{what} failed: {job['error']}"
        return job if job["status"] == "done" else None

    return cluster.deadline.wait(finished, what=what, timeout=240, alive=cluster.alive("web"))


def _detection_jobs(cluster: Cluster) -> list[tuple[int, str, str, int, int]]:
    """(id, status, worker, done, total) of every detection job, oldest first."""
    return [
        (int(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]))
        for r in cluster.sql(
            "SELECT id, status, worker, done, total FROM detector_detectionjob ORDER BY id"
        )
    ]


def _outbox(cluster: Cluster) -> list[tuple[str, Any, str, bool]]:
    """(task name, args, worker, started) of every task queued and not finished yet."""
    return [
        (str(r[0]), r[1], str(r[2]), r[3] is not None)
        for r in cluster.sql(
            "SELECT name, args, worker, started_at FROM annotator_queuedtask ORDER BY id"
        )
    ]


def _detection_held_then_killed(cluster: Cluster, admin: Api, *, batch: str, table: str) -> int:
    """Import ``batch`` with the gpu worker held inside its detection task (it waits to write
    ``table``, which the test locks) and kill it there, as a machine dies; the import's
    detection job, left running with its task started in the outbox."""
    import psycopg

    with psycopg.connect(cluster.database_url) as locker:
        locker.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
        imported = _job_done(cluster, admin, _import(cluster, admin, batch), what=f"{batch} import")
        assert imported["worker"] == cluster.node("cpu"), imported

        def held() -> list[int]:
            rows = cluster.sql(
                f"SELECT pid FROM pg_locks WHERE NOT granted AND relation = '{table}'::regclass"
            )
            return [int(r[0]) for r in rows]

        waiting = cluster.deadline.wait(
            held,
            what=f"the gpu worker to reach {table} in the {batch} batch",
            timeout=240,
            alive=cluster.alive("gpu", "cpu", "web"),
        )
        job = _detection_jobs(cluster)[-1]
        assert job[1:3] == ("running", cluster.node("gpu")), job
        assert (DETECTION_TASK, [job[0]], cluster.node("gpu"), True) in _outbox(cluster)

        cluster.processes["gpu"].kill()
        # PostgreSQL notices a dead client only when it next talks to it: end its sessions
        # as the machine's death would, before the lock goes.
        for pid in waiting:
            cluster.sql("SELECT pg_terminate_backend(%s)", pid)
        locker.rollback()

    # Killed mid-task: the job is unfinished and the outbox still holds the started task.
    assert _detection_jobs(cluster)[-1][1] == "running"
    assert (DETECTION_TASK, [job[0]], cluster.node("gpu"), True) in _outbox(cluster)
    return job[0]


def _kill_gpu_worker_mid_task(cluster: Cluster, admin: Api) -> int:
    """Import the first batch with the gpu worker held inside its detection task (at the
    embedding version it creates), kill it there, and import the second batch while it is
    down; the first import's detection job."""
    killed = _detection_held_then_killed(
        cluster, admin, batch="first", table="embeddings_embeddingversion"
    )
    # The cpu queue goes on without the gpu worker: the second batch is imported meanwhile.
    second = _job_done(cluster, admin, _import(cluster, admin, "second"), what="second import")
    assert second["worker"] == cluster.node("cpu"), second
    assert not cluster.processes["gpu"].running
    jobs = _detection_jobs(cluster)
    assert [j[1] for j in jobs] == ["running", "queued"], jobs
    return killed


def _gpu_worker_takes_over(
    cluster: Cluster, *, name: str, killed_job: int, env: dict[str, str] | None = None
) -> str:
    """Start the gpu worker ``name`` (again, or a new one with ``env``) and wait until every
    detection job is done, the killed one by it; its log since the start."""
    log = cluster.processes[name].log if name in cluster.processes else None
    since = log.stat().st_size if log is not None else 0
    cluster.worker_start("gpu", name=name, env=env)
    cluster.worker_ready(name, since=since)
    cluster.deadline.wait(
        lambda: _quiet(cluster),
        what=f"detection and embedding on {name}",
        timeout=300,
        alive=cluster.alive(name, "cpu", "web"),
    )
    jobs = {j[0]: j for j in _detection_jobs(cluster)}
    assert jobs[killed_job][2] == cluster.node(name), jobs[killed_job]
    return cluster.processes[name].log.read_bytes()[since:].decode(errors="replace")


def _wait_embedded(cluster: Cluster, admin: Api, killed_job: int) -> dict[str, Any]:
    """Restart the gpu worker; every detection job done, every image detected and embedded."""
    restarted = _gpu_worker_takes_over(cluster, name="gpu", killed_job=killed_job)
    # projects.taskqueue.tasks_requeue, on the worker's start: its previous life's task.
    assert f"queued {DETECTION_TASK}({killed_job},) again" in restarted, restarted[-3000:]
    status = admin.get()
    assert status["images"] == status["images_detected"] == N_IMAGES, status
    assert status["crops"] > 0 and status["embedding_version"] is not None, status
    return dict(status)


def _quiet(cluster: Cluster) -> bool:
    """Every detection job done and the outbox empty (a failed job fails the test)."""
    jobs = _detection_jobs(cluster)
    assert all(j[1] != "failed" for j in jobs), jobs
    return all(j[1] == "done" for j in jobs) and not _outbox(cluster)


def _gpu_worker_replaced(cluster: Cluster, admin: Api) -> None:
    """The gpu machine is gone for good: killed mid-task (at its first box of the third
    batch), it never comes back. A replacement under a new node name takes the task over once
    the dead worker's heartbeat is ``TRAPWISE_WORKER_LOST_SECONDS`` old (short here), without
    waiting for Redis' visibility timeout (25 h)."""
    s3 = cluster.s3()
    for sequence in THIRD_BATCH:
        for path in sorted((SAMPLE_DIR / "images" / sequence).iterdir()):
            key = f"incoming/third/{sequence}/{path.name}"
            s3.put_object(Bucket=cluster.bucket, Key=key, Body=path.read_bytes())
    dead = cluster.node("gpu")
    killed = _detection_held_then_killed(cluster, admin, batch="third", table="detector_detection")
    log = _gpu_worker_takes_over(
        cluster, name="gpu2", killed_job=killed, env={"TRAPWISE_WORKER_LOST_SECONDS": str(LOST_S)}
    )
    # projects.taskqueue.tasks_requeue in the replacement: only the lost rule matches another
    # node name's task.
    requeued = f"queued {DETECTION_TASK}({killed},) again, left unfinished by {dead}"
    assert requeued in log, log[-3000:]
    beats = {str(r[0]) for r in cluster.sql("SELECT node FROM projects_workerheartbeat")}
    assert {cluster.node("cpu"), cluster.node("gpu2"), dead} <= beats, beats
    status = admin.get()
    assert status["images"] == status["images_detected"] == N_IMAGES + THIRD_IMAGES, status


def _label_round(admin: Api, volunteer: Api, species: dict[str, int], n_crops: int) -> int:
    """Open a round and label every crop it serves by its true species; the number labelled."""
    size = min(ROUND_SIZE, n_crops)
    opened = admin.post("/rounds", {"strategy": "random", "size": size}, expect=201)
    assert (opened["status"], opened["total"]) == ("open", size), opened
    labelled = 0
    while True:
        served = volunteer.get("/next", params={"limit": 10})
        if not served["crops"]:
            break
        for card in served["crops"]:
            if labelled == 0:  # the crop itself is served, from the bucket
                _fetch_file(volunteer, card["crop_url"])
            body = {
                "crop_id": card["crop_id"],
                "kind": "species",
                "species_id": species[_truth(card["image_file"])],
            }
            volunteer.post("/labels", body, expect=201)
            labelled += 1
    assert labelled == size
    [round_] = admin.get("/rounds")
    assert (round_["status"], round_["done"]) == ("closed", size), round_
    return labelled


def _fetch_file(api: Api, url: str) -> bytes:
    """A file endpoint's bytes: the file itself, or a redirect to a signed URL of the bucket."""
    response = api.session.get(url, timeout=60, allow_redirects=False)
    if response.status_code in (301, 302, 303, 307):
        response = requests.get(response.headers["Location"], timeout=60)
    assert response.status_code == 200, (url, response.status_code, response.text[:500])
    return response.content


def _retrain(cluster: Cluster, admin: Api, n_crops: int, labelled: int) -> None:
    admin.post("/retrain", expect=202)

    def predicted() -> dict[str, Any] | None:
        status = admin.get()
        return status if status["classifier_version"] and status["predicted"] == n_crops else None

    cluster.deadline.wait(
        predicted, what="the predictions", timeout=240, alive=cluster.alive("cpu", "web")
    )
    rows: list[dict[str, Any]] = []
    cursor: int | None = 0
    while cursor is not None:
        page = admin.get("/crops", params={"cursor": cursor, "limit": 500})
        rows += page["items"]
        cursor = page["next_cursor"]
    assert len(rows) == n_crops
    assert all(r["machine_label"] for r in rows)
    assert sum(1 for r in rows if r["human_label"]) == labelled


def _export(cluster: Cluster, admin: Api) -> None:
    """Export to storage (COCO: the sample's images carry no capture time, which Camtrap DP
    requires) and download it through its URL, a redirect to a signed URL of the bucket."""
    created = admin.post("/exports", {"format": "coco"}, expect=202)

    def done() -> dict[str, Any] | None:
        export = admin.get(f"/exports/{created['id']}")
        assert export["status"] != "failed", export
        return export if export["status"] == "done" and export.get("download_url") else None

    export = cluster.deadline.wait(
        done, what="the export", timeout=240, alive=cluster.alive("cpu", "web")
    )
    redirect = admin.call("GET", export["download_url"], expect=302)
    signed = redirect.headers["Location"]
    assert signed.startswith(cluster.s3_url) and cluster.bucket in signed, signed
    assert "/exports/" in signed and "Signature" in signed, signed
    download = requests.get(signed, timeout=60)
    assert download.status_code == 200, download.text[:500]
    coco = json.loads(download.content)
    assert len(coco["images"]) == N_IMAGES
    assert {c["name"] for c in coco["categories"]} >= set(SPECIES.values())
    assert coco["annotations"]
    assert cluster.keys("exports/")


def _nothing_local(cluster: Cluster) -> None:
    """Crops, vectors, indexes and models are in the bucket; no process kept them on its disk
    (its cache aside)."""
    assert cluster.keys("media/"), "no crop in the bucket"
    assert cluster.keys("data/"), "no vectors, index or model in the bucket"
    for name in ("web", "gpu", "cpu"):
        for folder in ("media", "data"):
            files = [p for p in (cluster.root / name / folder).rglob("*") if p.is_file()]
            assert not files, f"{name} wrote {folder} files to its own disk: {files[:5]}"


def test_the_loop_on_a_cluster_with_workers_killed_mid_task(tmp_path: Path) -> None:
    cluster = Cluster(root=tmp_path)
    try:
        with cluster.logs_on_failure():
            cluster.database_create()
            cluster.s3_start()
            _upload(cluster)
            cluster.manage("migrate", "--noinput")
            names = ",".join(SPECIES.values())
            setup = json.loads(
                cluster.manage(
                    "shell",
                    "-c",
                    f"from tests.cluster.cluster import project_setup; project_setup({names!r})",
                ).splitlines()[-1]
            )
            cluster.web_start()
            cluster.worker_start("cpu")
            cluster.worker_start("gpu")
            cluster.worker_ready("cpu")
            cluster.worker_ready("gpu")
            admin = Api(cluster.web_url, setup["admin"], setup["slug"])
            volunteer = Api(cluster.web_url, setup["volunteer"], setup["slug"])

            killed = _kill_gpu_worker_mid_task(cluster, admin)
            status = _wait_embedded(cluster, admin, killed)
            _nothing_local(cluster)
            labelled = _label_round(admin, volunteer, setup["species"], status["crops"])
            _retrain(cluster, admin, status["crops"], labelled)
            _export(cluster, admin)
            _gpu_worker_replaced(cluster, admin)
    finally:
        cluster.close()
