"""`trt-embed serve --processes 2` as the README runs it, on the default model: answers match the in-process
runtime and come from both processes, /metrics adds the processes up, SIGTERM drains every process and leaves none
behind; a process that cannot start makes `serve` exit with the error line. The tests share one server, and the
SIGTERM test, last in the file, stops it."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from trt_embed.cli import main
from trt_embed.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
MARKER = "TRT_EMBED_TEST_SERVER"  # in the environment of the server and every process it starts
TEXTS = ["hello world", "good morning", "the quick brown fox jumps over the lazy dog", "an embedding server"]


def readme_command() -> list[str]:
    """`serve`'s arguments in the README's `serve-processes` block."""
    text = (ROOT / "README.md").read_text()
    body = text.split("<!-- test: serve-processes -->\n```bash\n", 1)[1].split("```", 1)[0]
    words = shlex.split(body, comments=True)
    assert words[:2] == ["trt-embed", "serve"] and "--processes" in words, body
    return words[2:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def left_behind(marker: str, timeout: float = 5.0) -> list[psutil.Process]:
    """Processes started with `marker` in their environment still running after `timeout` seconds."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARKER) == marker:
                found.append(process)
        except (psutil.Error, OSError):
            pass
    return psutil.wait_procs(found, timeout=timeout)[1]


class Server:
    """`trt-embed serve ARGS` in a subprocess, its output collected as it comes."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.marker = uuid.uuid4().hex
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "trt_embed.cli", "serve", *args, "--port", str(self.port)]
        self.process = subprocess.Popen(
            command,
            env={**env, MARKER: self.marker, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_serving(self, timeout: float = 120) -> None:
        """Until every process serves (the parent says so)."""
        deadline = time.time() + timeout
        while not any("serving on" in line for line in self.lines):
            assert self.process.poll() is None and time.time() < deadline, self.output
            time.sleep(0.1)

    def finish(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        self.reader.join(10)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.finish()
            except subprocess.TimeoutExpired:
                self.process.kill()
        for process in left_behind(self.marker, timeout=0):
            process.kill()


@pytest.fixture(scope="module")
def server_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's TMPDIR, where it keeps its metrics files while it runs."""
    return tmp_path_factory.mktemp("server-tmp")


@pytest.fixture(scope="module")
def server(minilm_cache: Path, server_tmp: Path) -> Iterator[Server]:
    env = {**os.environ, "TRT_EMBED_CACHE": str(minilm_cache), "TMPDIR": str(server_tmp)}
    server = Server(readme_command(), env)
    try:
        server.wait_serving()
        yield server
    finally:
        server.stop()


def metric(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def test_answers_match_the_runtime_and_come_from_both_processes(server: Server, minilm_artifact: Path) -> None:
    with Runtime.load(minilm_artifact) as runtime:
        cases = [(TEXTS, runtime.embed(TEXTS)), (TEXTS[::-1], runtime.embed(TEXTS[::-1]))]

    def embed(n: int) -> None:
        texts, expected = cases[n % 2]
        response = httpx.post(f"{server.url}/v1/embeddings", json={"input": texts}, timeout=60)  # a new connection
        assert response.status_code == 200, response.text
        got = [row["embedding"] for row in response.json()["data"]]
        np.testing.assert_allclose(got, expected, atol=1e-5)

    sent = 0
    children = psutil.Process(server.process.pid).children()
    pids = {p.pid for p in children if "spawn_main" in " ".join(p.cmdline())}  # not multiprocessing's tracker
    assert len(pids) == 2, server.output
    answered: dict[str, float] = {}
    with ThreadPoolExecutor(8) as pool:
        while sent < 400 and len([v for v in answered.values() if v > 0]) < 2:
            list(pool.map(embed, range(sent, sent + 16)))
            sent += 16
            answered = {
                labels["pid"]: value
                for labels, value in metric(httpx.get(f"{server.url}/metrics").text, "trt_embed_process_requests")
            }
    assert {int(pid) for pid, value in answered.items() if value > 0} == pids, (answered, pids)

    text = httpx.get(f"{server.url}/metrics").text
    counted = metric(text, "trt_embed_requests_total")
    embeddings = sum(v for labels, v in counted if labels["route"] == "/v1/embeddings")
    assert embeddings == sent, f"/metrics counts {embeddings} requests of {sent}, across {answered}"
    assert sum(v for _, v in metric(text, "trt_embed_batch_size_count")) >= 1
    assert [v for _, v in metric(text, "trt_embed_queue_size")] == [0.0]


def test_sigterm_drains_every_process_and_leaves_none(server: Server, server_tmp: Path) -> None:
    assert list(server_tmp.glob("trt-embed-metrics-*")), "the metrics directory lives in TMPDIR while serving"
    server.process.send_signal(signal.SIGTERM)
    statuses = []
    deadline = time.time() + 2
    while time.time() < deadline and 503 not in statuses:
        statuses.append(httpx.get(f"{server.url}/health", timeout=5).status_code)
        time.sleep(0.05)
    assert 503 in statuses, "during --shutdown-delay /health answers 503"
    response = httpx.post(f"{server.url}/v1/embeddings", json={"input": ["still serving"]}, timeout=30)
    assert response.status_code == 200, "and requests are still served"
    assert server.finish() == 0, server.output
    assert server.output.count("draining: /health answers 503") == 2, server.output
    assert server.output.count("Application shutdown complete") == 2, server.output
    assert not left_behind(server.marker), "no process outlives serve"
    assert not list(server_tmp.glob("trt-embed-metrics-*")), "the metrics directory is removed"


def test_a_process_that_cannot_start_stops_serve_with_its_error(minilm_artifact: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copytree(minilm_artifact / "tokenizer", broken / "tokenizer")
    shutil.copy(minilm_artifact / "trt_embed.json", broken)
    (broken / "model.onnx").write_bytes(b"not a graph")  # the manifest reads fine; the engine does not load
    server = Server([str(broken), "--processes", "2"], {**os.environ, "TRT_EMBED_CACHE": str(tmp_path / "cache")})
    try:
        assert server.finish() == 2, server.output
    finally:
        server.stop()
    errors = [line for line in server.lines if line.startswith("error:")]
    assert len(errors) == 1 and "does not match the manifest" in errors[0], server.output
    assert server.lines[-1] == errors[0], server.output
    assert not left_behind(server.marker), "no process outlives serve"


def test_processes_are_for_the_local_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--ray", "auto", "--processes", "2", "some-artifact"]) == 2
    assert capsys.readouterr().err == "error: --processes is for the local server; on Ray, use --replicas\n"
