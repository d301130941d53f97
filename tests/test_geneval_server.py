import io
import os
import pickle
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
from PIL import Image

from creditzoo.rewards.geneval_server import (
    GenEvalServerClient,
    GenEvalServerError,
    GenEvalServerReward,
    check_server_url,
    safe_unpickle,
)

METADATA = {
    "a photo of a cat": {
        "tag": "single_object",
        "include": [{"class": "cat", "count": 1}],
        "prompt": "a photo of a cat",
    },
    "a photo of two dogs": {
        "tag": "counting",
        "include": [{"class": "dog", "count": 2}],
        "prompt": "a photo of two dogs",
    },
}


def fake_scores(images, metadata):
    """What the fake server answers: a function of each decoded image and its metadata (known to the test)."""
    partial = [round(float(np.asarray(img).mean()) / 255, 1) for img in images]  # the image's brightness
    strict = [float(m["include"][0]["count"] == 1) for m in metadata]
    return partial, strict


class FakeServer:
    """A GenEval reward server on 127.0.0.1 that follows Flow-GRPO's protocol; ``mode`` sets its behaviour."""

    def __init__(self, mode="ok", *, delay=0.0, failures=0, redirect_to=""):
        self.mode, self.delay, self.failures, self.redirect_to = mode, delay, failures, redirect_to
        self.requests = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # a followed redirect arrives as a GET
                owner.requests.append("GET")
                self.reply(405, b"")

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.requests.append(pickle.loads(body))
                if owner.delay:
                    time.sleep(owner.delay)
                if owner.mode == "error" or len(owner.requests) <= owner.failures:
                    self.reply(500, b"Traceback (most recent call last):\n  ...\nKeyError: 'include'\n")
                elif owner.mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", owner.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif owner.mode == "bad_request":
                    self.reply(400, b"bad request")
                elif owner.mode == "evil":
                    self.reply(200, pickle.dumps(Evil()))
                elif owner.mode == "short":
                    self.reply(200, pickle.dumps({"scores": [1.0], "rewards": [1.0], "strict_rewards": [1.0]}))
                else:
                    self.reply(200, pickle.dumps(owner.answer(owner.requests[-1])))

            def reply(self, code, payload):
                self.send_response(code)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def answer(request):
        images = [Image.open(io.BytesIO(data), formats=["jpeg"]) for data in request["images"]]
        partial, strict = fake_scores(images, request["meta_datas"])
        correct = [0.0] * len(images) if request["only_strict"] else strict
        return {
            "scores": [np.float64(p) for p in partial],  # numpy scalars, as a real server may send
            "rewards": correct,
            "strict_rewards": strict,
            "group_rewards": {"counting": [-10.0] * len(images)},
            "group_strict_rewards": {"counting": [-10.0] * len(images)},
        }

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def images_with_brightness(values):
    return torch.stack([torch.full((3, 16, 16), v) for v in values])  # [B, 3, 16, 16]


@pytest.mark.slow
def test_client_speaks_flow_grpos_protocol_and_batches():
    images = images_with_brightness([0.2, 0.6, 0.8])
    prompts = ["a photo of a cat", "a photo of two dogs", "a photo of a cat"]
    with FakeServer() as server:
        client = GenEvalServerClient(server.url, batch_size=2, timeout=5)
        scores = client.score(images, [METADATA[p] for p in prompts])
    assert [len(r["images"]) for r in server.requests] == [2, 1]  # split into batches of at most 2
    first = server.requests[0]
    assert set(first) == {"images", "meta_datas", "only_strict"} and first["only_strict"] is False
    assert first["meta_datas"] == [METADATA[p] for p in prompts[:2]]
    assert all(data[:2] == b"\xff\xd8" for data in first["images"])  # JPEG
    torch.testing.assert_close(scores.partial, torch.tensor([0.2, 0.6, 0.8]))
    torch.testing.assert_close(scores.strict, torch.tensor([1.0, 0.0, 1.0]))
    torch.testing.assert_close(scores.correct, torch.tensor([1.0, 0.0, 1.0]))
    assert scores.partial.dtype == torch.float32


def test_reward_looks_up_metadata_by_prompt():
    images = images_with_brightness([0.4, 1.0])
    with FakeServer() as server:
        reward = GenEvalServerReward(GenEvalServerClient(server.url, timeout=5), METADATA)
        partial = reward(images, ["a photo of two dogs", "a photo of a cat"])
        strict = GenEvalServerReward(GenEvalServerClient(server.url, timeout=5), METADATA, kind="strict")(
            images, ["a photo of two dogs", "a photo of a cat"]
        )
        with pytest.raises(ValueError, match="no GenEval metadata for prompt 'a photo of a bus'"):
            reward(images, ["a photo of a bus", "a photo of a cat"])
    torch.testing.assert_close(partial, torch.tensor([0.4, 1.0]))
    torch.testing.assert_close(strict, torch.tensor([0.0, 1.0]))
    assert server.requests[0]["only_strict"] is True  # the partial reward does not need GenEval's non-strict check
    with pytest.raises(ValueError, match="valid: partial, correct, strict"):
        GenEvalServerReward(GenEvalServerClient("http://127.0.0.1:1"), METADATA, kind="best")


def test_a_server_that_times_out_fails_within_the_bounded_time():
    images = images_with_brightness([0.5])
    with FakeServer(delay=2.0) as server:
        client = GenEvalServerClient(server.url, timeout=0.3, retries=1, backoff=0.0)
        start = time.perf_counter()
        with pytest.raises(GenEvalServerError, match=r"failed after 2 attempts: no answer within 0.3 s"):
            client.score(images, [METADATA["a photo of a cat"]])
        elapsed = time.perf_counter() - start
    assert len(server.requests) == 2
    assert elapsed < 1.9  # two timed-out attempts, not one full server delay


def test_a_server_error_is_retried_then_reported_in_one_line():
    with FakeServer(mode="error") as server:
        client = GenEvalServerClient(server.url, timeout=5, retries=2, backoff=0.0)
        with pytest.raises(GenEvalServerError) as error:
            client.score(images_with_brightness([0.5]), [METADATA["a photo of a cat"]])
    assert len(server.requests) == 3
    message = str(error.value)
    assert "failed after 3 attempts: HTTP 500: KeyError: 'include'" in message and "\n" not in message


def test_a_transient_server_error_is_retried_to_success():
    with FakeServer(failures=1) as server:
        client = GenEvalServerClient(server.url, timeout=5, retries=2, backoff=0.0)
        scores = client.score(images_with_brightness([0.6]), [METADATA["a photo of a cat"]])
    assert len(server.requests) == 2
    torch.testing.assert_close(scores.partial, torch.tensor([0.6]))


def test_a_client_error_is_not_retried():
    with FakeServer(mode="bad_request") as server:
        client = GenEvalServerClient(server.url, timeout=5, retries=3, backoff=0.0)
        with pytest.raises(GenEvalServerError, match="failed after 1 attempt: HTTP 400"):
            client.score(images_with_brightness([0.5]), [METADATA["a photo of a cat"]])
    assert len(server.requests) == 1


def test_no_server_listening_is_a_connection_error():
    with FakeServer() as server:
        url = server.url
    client = GenEvalServerClient(url, timeout=1, retries=1, backoff=0.0)  # the port is closed now
    with pytest.raises(GenEvalServerError, match="failed after 2 attempts: cannot connect"):
        client.score(images_with_brightness([0.5]), [METADATA["a photo of a cat"]])


def test_malformed_and_malicious_answers_are_rejected():
    with FakeServer(mode="short") as server:
        client = GenEvalServerClient(server.url, timeout=5)
        with pytest.raises(GenEvalServerError, match="'scores' with 1 values, expected a list of 2"):
            client.score(images_with_brightness([0.5, 0.5]), [METADATA["a photo of a cat"]] * 2)
    with FakeServer(mode="evil") as server:
        client = GenEvalServerClient(server.url, timeout=5)
        with pytest.raises(GenEvalServerError, match="not a valid response: .*posix.system|not a valid response"):
            client.score(images_with_brightness([0.5]), [METADATA["a photo of a cat"]])


def test_safe_unpickle_admits_plain_data_and_numpy_scalars_only():
    data = {"scores": [np.float64(0.5), 1.0], "rewards": (1, 0), "nested": {"a": [True, None, "x"]}}
    assert safe_unpickle(pickle.dumps(data)) == data
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        safe_unpickle(pickle.dumps(Evil()))
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        safe_unpickle(pickle.dumps(np.zeros(3)))  # arrays are not part of the protocol


@pytest.mark.parametrize("url", ["", "127.0.0.1:18085", "ftp://host/", "http://", "file:///etc/passwd"])
def test_bad_urls_are_refused(url):
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        check_server_url(url)


def test_bad_settings_are_refused():
    for kwargs, name in [({"timeout": 0}, "timeout"), ({"retries": -1}, "retries"), ({"batch_size": 0}, "batch_size")]:
        with pytest.raises(ValueError, match=name):
            GenEvalServerClient("http://127.0.0.1:1", **kwargs)
    client = GenEvalServerClient("http://127.0.0.1:1")
    with pytest.raises(ValueError, match="2 images but 1 metadata"):
        client.score(images_with_brightness([0.5, 0.5]), [METADATA["a photo of a cat"]])


def test_the_client_goes_nowhere_but_the_given_url(monkeypatch):
    with FakeServer() as elsewhere, FakeServer(mode="redirect", redirect_to="") as server:
        server.redirect_to = elsewhere.url
        client = GenEvalServerClient(server.url, timeout=5, retries=2, backoff=0.0)
        with pytest.raises(GenEvalServerError, match="failed after 1 attempt: HTTP 302"):
            client.score(images_with_brightness([0.5]), [METADATA["a photo of a cat"]])
        assert elsewhere.requests == []  # the redirect was not followed
        # a proxy setting does not divert requests either: were `server` used as the proxy, it would see them
        monkeypatch.setenv("http_proxy", server.url)
        monkeypatch.setenv("no_proxy", "")
        monkeypatch.delenv("NO_PROXY", raising=False)
        scores = GenEvalServerClient(elsewhere.url, timeout=5).score(
            images_with_brightness([0.5]), [METADATA["a photo of a cat"]]
        )
    torch.testing.assert_close(scores.partial, torch.tensor([0.5]))
    assert len(elsewhere.requests) == 1 and len(server.requests) == 1


# ------------------------------------------------------------------------- the geneval_server task


def write_prompt_files(folder, suffix=".jsonl"):
    import json

    train, test = folder / f"train{suffix}", folder / f"test{suffix}"
    if suffix == ".jsonl":
        train.write_text(json.dumps(METADATA["a photo of a cat"]) + "\n")
        test.write_text(json.dumps(METADATA["a photo of two dogs"]) + "\n")
    else:
        train.write_text("a photo of a cat\n")
        test.write_text("a photo of two dogs\n")
    return f"{train},{test}"


def test_geneval_server_task_trains_and_evaluates_through_the_server(tmp_path, monkeypatch):
    from creditzoo.learner.config import TrainConfig
    from creditzoo.tasks import get_task
    from creditzoo.tasks.prompts import task_with_prompt_files

    files = write_prompt_files(tmp_path)
    images = images_with_brightness([0.3, 0.7])
    prompts = ["a photo of a cat", "a photo of two dogs"]
    with FakeServer() as server:
        monkeypatch.setenv("CREDITZOO_GENEVAL_URL", server.url)
        TrainConfig(env="geneval_server", prompts=files, prompts_per_iteration=1, model="sd3:/any")  # binds, no request
        assert server.requests == []
        task = task_with_prompt_files(get_task("geneval_server"), files)
        assert task.train_prompts() == ["a photo of a cat"] and task.test_prompts() == ["a photo of two dogs"]
        assert task.category("a photo of two dogs") == "counting"
        partial = task.reward()(images, prompts)  # the default reward: Flow-GRPO's partial score
        correct = task.reward("geneval_correct")(images, prompts)
        scores = task.score(images, prompts)
    torch.testing.assert_close(partial, torch.tensor([0.3, 0.7]))
    torch.testing.assert_close(correct, torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(scores["strict_accuracy"], torch.tensor([1.0, 0.0]))  # GenEval's correctness
    torch.testing.assert_close(scores["partial_score"], torch.tensor([0.3, 0.7]))
    torch.testing.assert_close(scores["exact_count_accuracy"], torch.tensor([1.0, 0.0]))
    assert [r["only_strict"] for r in server.requests] == [True, False, False]
    assert [m["prompt"] for m in server.requests[0]["meta_datas"]] == prompts


def test_geneval_server_task_says_what_it_needs(tmp_path, monkeypatch):
    from creditzoo.learner.config import TrainConfig
    from creditzoo.tasks import get_task
    from creditzoo.tasks.prompts import task_with_prompt_files

    task = get_task("geneval_server")
    monkeypatch.delenv("CREDITZOO_GENEVAL_URL", raising=False)
    with pytest.raises(ValueError, match="no prompts of its own; .*--prompts train_metadata.jsonl"):
        TrainConfig(env="geneval_server")
    with pytest.raises(ValueError, match="set CREDITZOO_GENEVAL_URL to your GenEval reward server"):
        task_with_prompt_files(task, write_prompt_files(tmp_path))
    monkeypatch.setenv("CREDITZOO_GENEVAL_URL", "http://127.0.0.1:1")
    with pytest.raises(ValueError, match="give the prompts as GenEval .jsonl files"):
        task_with_prompt_files(task, write_prompt_files(tmp_path, ".txt"))
    with pytest.raises(ValueError, match="give the prompts as GenEval .jsonl files"):
        task.reward()(images_with_brightness([0.5]), ["a photo of a cat"])  # unbound
    monkeypatch.setenv("CREDITZOO_GENEVAL_URL", "127.0.0.1:18085")
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        task_with_prompt_files(task, write_prompt_files(tmp_path))
