"""The load test's simulated clients: volunteers asking for crops and posting labels (with
deliberate double clicks and retries), and the admin opening rounds."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmarks.loadtest_measure import ADMIN, NEXT, NEXT_EMPTY, RESUBMIT, SUBMIT, Sample


@dataclass
class Recorder:
    """What the clients saw, shared by their threads."""

    samples: list[Sample] = field(default_factory=list)
    # client key (``<idempotency key>:<crop id>``, as stored) -> label id answered
    acknowledged: dict[str, int] = field(default_factory=dict)
    # second copies whose answer named another label than the first copy's
    resubmits_inconsistent: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sample: Sample) -> None:
        with self.lock:
            self.samples.append(sample)

    def fail(self, message: str) -> None:
        with self.lock:
            if len(self.failures) < 20:
                self.failures.append(message)


def _timed(
    recorder: Recorder,
    kind: str | Callable[[Any], str],
    phase: str,
    send: Callable[[], Any],
) -> Any:
    """Send one request; record its latency and status; return the response (None if none).

    ``kind`` is the sample's kind, or a function of the response that names it.
    """
    start = time.perf_counter()
    try:
        response = send()
    except Exception as exc:  # any transport failure is an error of the run, not a crash
        name = kind if isinstance(kind, str) else kind(None)
        recorder.add(Sample(name, time.perf_counter() - start, 0, phase))
        recorder.fail(f"{name}: {type(exc).__name__}: {exc}")
        return None
    seconds = time.perf_counter() - start
    name = kind if isinstance(kind, str) else kind(response)
    recorder.add(Sample(name, seconds, response.status_code, phase))
    if not 200 <= response.status_code < 300:
        recorder.fail(f"{name}: HTTP {response.status_code} {response.text[:200]}")
    return response


def _next_kind(response: Any) -> str:
    """NEXT for an answer that served a crop (or an error), NEXT_EMPTY for an empty queue."""
    if response is not None and response.ok and not response.json().get("crops"):
        return NEXT_EMPTY
    return NEXT


@dataclass(frozen=True)
class ClientPlan:
    """How one simulated volunteer behaves."""

    base_url: str
    slug: str
    token: str
    species: Mapping[str, int]  # name -> species id
    truth: Mapping[str, str]  # image file name -> true species name
    think: tuple[float, float]
    double_click_share: float
    retry_share: float
    mistake_share: float
    seed: int
    timeout_s: float


def volunteer_run(
    plan: ClientPlan,
    recorder: Recorder,
    *,
    stop: threading.Event,
    phase: str = "load",
    cycles: int | None = None,
) -> None:
    """Label until ``stop`` is set (or ``cycles`` labels are acknowledged): next, think, submit."""
    import requests

    rng = random.Random(plan.seed)
    headers = {"Authorization": f"Bearer {plan.token}"}
    session, twin = requests.Session(), requests.Session()
    session.headers.update(headers)
    twin.headers.update(headers)
    api = f"{plan.base_url}/api/v1/projects/{plan.slug}"
    names = sorted(plan.species)

    def think() -> float:
        return rng.uniform(*plan.think)

    done = 0
    while not stop.is_set() and (cycles is None or done < cycles):
        response = _timed(
            recorder, _next_kind, phase, lambda: session.get(f"{api}/next", timeout=plan.timeout_s)
        )
        crops = response.json().get("crops", []) if response is not None and response.ok else []
        if not crops:
            stop.wait(think())  # nothing to label (or an error): look again a moment later
            continue
        card = crops[0]
        name = plan.truth.get(card["image_file"], "")
        if name not in plan.species or rng.random() < plan.mistake_share:
            name = rng.choice(names)
        payload = {
            "crop_id": card["crop_id"],
            "kind": "species",
            "species_id": plan.species[name],
            "idempotency_key": uuid.UUID(int=rng.getrandbits(128)).hex,
        }
        stop.wait(think())  # a volunteer that is stopped mid-thought still submits, then leaves
        answers = _submit(plan, recorder, session, twin, api, payload, rng, phase)
        if answers:
            done += 1


def _submit(
    plan: ClientPlan,
    recorder: Recorder,
    session: Any,
    twin: Any,
    api: str,
    payload: dict[str, Any],
    rng: random.Random,
    phase: str,
) -> list[int]:
    """POST one label, maybe twice on purpose; the label ids answered (all equal if good)."""

    def post(client: Any, kind: str) -> int | None:
        response = _timed(
            recorder,
            kind,
            phase,
            lambda: client.post(f"{api}/labels", json=payload, timeout=plan.timeout_s),
        )
        if response is None or response.status_code != 201:
            return None
        return int(response.json()["id"])

    draw = rng.random()
    answers: list[int | None]
    if draw < plan.double_click_share:
        second: list[int | None] = []
        copy = threading.Thread(target=lambda: second.append(post(twin, RESUBMIT)))
        copy.start()
        answers = [post(session, SUBMIT)]
        copy.join()
        answers += second
    elif draw < plan.double_click_share + plan.retry_share:
        answers = [post(session, SUBMIT)]
        answers.append(post(session, RESUBMIT))
    else:
        answers = [post(session, SUBMIT)]
    ids = [a for a in answers if a is not None]
    if ids:
        key = f"{payload['idempotency_key']}:{payload['crop_id']}"
        with recorder.lock:
            recorder.acknowledged[key] = ids[0]
            if len(set(ids)) > 1:
                recorder.resubmits_inconsistent += 1
    return ids


def admin_run(
    *, base_url: str, slug: str, token: str, recorder: Recorder, stop: threading.Event
) -> list[int]:
    """Start the next round (project defaults) whenever none is open; the rounds started."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    api = f"{base_url}/api/v1/projects/{slug}"
    started: list[int] = []
    while not stop.wait(1.0):
        status = _timed(recorder, ADMIN, "load", lambda: session.get(api, timeout=30))
        if status is None or not status.ok or status.json().get("open_round") is not None:
            continue
        created = _timed(
            recorder, ADMIN, "load", lambda: session.post(f"{api}/rounds", json={}, timeout=60)
        )
        if created is not None and created.status_code == 201:
            started.append(int(created.json()["number"]))
        elif created is not None and "labelled already" in created.text:
            break  # every crop has its votes: nothing left to start
    return started
