"""Issue 17: exact token counts, honest failure, sane limits, proxies and TLS, against
the mock server behaving like the real servers seen (llama.cpp, vLLM): no usage chunk,
a role-only first chunk, several tokens in one chunk, a tokenize endpoint, a complete
non-streaming answer, a refused connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))
sys.path.insert(0, str(ROOT / "tests"))

from llm_bench import config as config_mod  # noqa: E402
from llm_bench import engine, runner  # noqa: E402
from llm_bench.config import ConfigError  # noqa: E402
from mock_llm_server import WORD, chat_template, count_tokens  # noqa: E402
from mock_llm_server.process import free_port, running  # noqa: E402
from test_release_lib import COLLECTIONS  # noqa: E402

CLI = ROOT / "bin" / "llm-latency-bench"
PROMPTS = ["Hello there, how are you?", "Tell me: what is 2+2?"]
# llama.cpp as seen: no usage chunk, a role-only first chunk, tokens bundled 3 a chunk.
LLAMACPP_LIKE = {"usage": False, "role_first_chunk": True, "tokens_per_chunk": 3}


@pytest.fixture(scope="module")
def base_url():
    with running("--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "11") as url:
        yield url


def bench(base_url: str, mock: dict | None = None, **settings) -> dict:
    cfg = {
        "base_url": base_url,
        "model": "mock-model",
        "prompts": PROMPTS,
        "num_requests": 4,
        "concurrency": 2,
        "request_timeout_s": 5.0,
        **settings,
    }
    if mock:
        cfg["headers"] = {"x-mock": json.dumps(mock)}
    return engine.benchmark(cfg)


def ok_records(result: dict) -> list[dict]:
    assert result["summary"]["failed"] == 0, result["run"]["requests"][0]["error"]
    return result["run"]["requests"]


def by_prompt(records: list[dict]) -> dict[int, tuple[int, int]]:
    """(input, output) tokens per prompt (requests cycle through PROMPTS by index)."""
    return {r["index"] % len(PROMPTS): (r["input_tokens"], r["output_tokens"]) for r in records}


# -- exact counts ---------------------------------------------------------------------


@pytest.mark.parametrize("tokenize", ["vllm", "llamacpp"])
def test_without_usage_the_tokenize_endpoint_gives_the_servers_own_counts(base_url, tokenize):
    with_usage = bench(base_url, {"usage": True})
    without = bench(base_url, {**LLAMACPP_LIKE, "tokenize": tokenize})
    records = ok_records(without)
    for r in records:
        assert (r["output_tokens_source"], r["input_tokens_source"]) == ("tokenize_endpoint",) * 2
        assert r["content_chunks"] == 4  # 11 tokens in chunks of 3: counting chunks is wrong
        assert r["tpot_s"] == pytest.approx((r["e2e_s"] - r["ttft_s"]) / 10)
    # 0 difference from the server's usage, prompt tokens with the chat template
    assert by_prompt(records) == by_prompt(ok_records(with_usage))
    expected_in = count_tokens(chat_template([{"role": "user", "content": PROMPTS[0]}]))
    assert by_prompt(records)[0] == (expected_in, 11)
    summary = without["summary"]
    assert summary["output_tokens"] == 44 and not summary["output_tokens_approximate"]
    assert summary["output_tokens_source"] == "tokenize_endpoint"


def test_completions_prompt_tokens_come_from_the_tokenize_endpoint_without_template(base_url):
    result = bench(base_url, {**LLAMACPP_LIKE, "tokenize": "vllm"}, api="openai_completions")
    assert by_prompt(ok_records(result))[1] == (count_tokens(PROMPTS[1]), 11)


def test_without_any_exact_source_counts_are_estimates_marked_everywhere(
    base_url, tmp_path, pushgateway
):
    result = engine.benchmark(
        {
            "base_url": base_url,
            "model": "mock-model",
            "prompts": PROMPTS,
            "num_requests": 2,
            "headers": {"x-mock": json.dumps({**LLAMACPP_LIKE, "tokenize": "none"})},
            "endpoint": "est",
        },
        {"output_dir": str(tmp_path), "output_name": "r", "pushgateway_url": pushgateway},
    )
    summary = result["summary"]
    assert summary["output_tokens_source"] == summary["input_tokens_source"] == "estimate"
    assert summary["output_tokens_approximate"] and summary["input_tokens_approximate"]
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["summary"]["output_tokens_source"] == "estimate"
    assert ",estimate," in (tmp_path / "r.csv").read_text().splitlines()[1]
    assert "approximate" in (tmp_path / "r.html").read_text()
    import urllib.request  # noqa: PLC0415

    with urllib.request.urlopen(pushgateway + "/metrics", timeout=5) as answer:  # noqa: S310
        body = answer.read().decode()
    series = [
        line
        for line in body.splitlines()
        if line.startswith("llm_tokens_generated_total{") and 'endpoint="est"' in line
    ]
    assert series and all('token_count_source="estimate"' in line for line in series)


def _train_tokenizer(folder: Path, with_template: bool) -> object:
    """A real byte-level BPE tokenizer trained offline on a tiny corpus."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers  # noqa: PLC0415

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|user|>", "<|assistant|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = ["hello there how are you", "word word word", "tell me what is two"] * 50
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.save(str(folder / "tokenizer.json"))
    if with_template:
        template = (
            "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}"
        )
        (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    return tokenizer


def test_a_named_tokenizer_counts_exactly_what_it_would_count(base_url, tmp_path):
    tokenizer = _train_tokenizer(tmp_path, with_template=True)
    result = bench(
        base_url,
        {**LLAMACPP_LIKE, "tokenize": "vllm"},  # the tokenizer comes first
        tokenizer_file=str(tmp_path / "tokenizer.json"),
    )
    records = ok_records(result)
    out = len(tokenizer.encode(WORD * 11, add_special_tokens=False).ids)
    for index, prompt in enumerate(PROMPTS):
        rendered = f"<|user|>{prompt}\n<|assistant|>"  # the template, by hand
        expected_in = len(tokenizer.encode(rendered, add_special_tokens=False).ids)
        assert by_prompt(records)[index] == (expected_in, out)
    assert {r["output_tokens_source"] for r in records} == {"tokenizer"}
    assert result["summary"]["output_tokens_source"] == "tokenizer"
    # the folder works as well as the file; without a template the prompt is plain text
    (tmp_path / "tokenizer_config.json").unlink()
    result = bench(base_url, LLAMACPP_LIKE, tokenizer_file=str(tmp_path), tokenize_api="none")
    assert by_prompt(ok_records(result))[0][0] == len(tokenizer.encode(PROMPTS[0]).ids)


def test_a_tokenizer_file_that_is_not_one_is_refused_before_sending(base_url, tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{}")
    with pytest.raises(ConfigError, match=r"tokenizer_file .*not a readable tokenizer.json"):
        bench(base_url, tokenizer_file=str(bad))


def test_server_usage_wins_over_every_other_source(base_url, tmp_path):
    _train_tokenizer(tmp_path, with_template=False)
    result = bench(base_url, {"usage": True}, tokenizer_file=str(tmp_path))
    assert {r["output_tokens_source"] for r in ok_records(result)} == {"usage"}


# -- honest failure -------------------------------------------------------------------


def test_a_non_streaming_answer_is_named_not_called_an_incomplete_stream(base_url):
    result = bench(base_url, {"non_streaming": True}, num_requests=2)
    errors = {r["error_type"] for r in result["run"]["requests"]}
    assert errors == {"not_event_stream"}
    message = result["run"]["requests"][0]["error"]
    assert "application/json" in message and "not an event stream" in message


def test_a_run_without_success_fails_with_counts_by_type(base_url):
    nobody = f"http://127.0.0.1:{free_port()}/v1"
    result = bench(nobody, num_requests=3)
    why = engine.failure(result["run"], result["summary"], None)
    assert why.startswith("no request succeeded (3 sent")
    assert "{'connection': 3}" in why and "connection refused by 127.0.0.1:" in why
    assert engine.failure(result["run"], result["summary"], None, allow_no_success=True) is None
    # partial failure keeps fail_on_error_rate's meaning
    partial = bench(base_url, num_requests=2, concurrency=1)
    partial["summary"].update(failed=1, succeeded=1)
    assert engine.failure(partial["run"], partial["summary"], None) is None
    assert "above fail_on_error_rate" in engine.failure(partial["run"], partial["summary"], 0.4)


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CLI), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_the_cli_exits_non_zero_when_nothing_succeeded():
    nobody = f"http://127.0.0.1:{free_port()}/v1"
    common = ["--base-url", nobody, "--model", "m", "--prompt", "x", "--num-requests", "2"]
    done = cli(*common)
    assert done.returncode == 1
    assert "no request succeeded" in done.stderr and "'connection': 2" in done.stderr
    assert cli(*common, "--allow-no-success").returncode == 0


# -- sanity up front --------------------------------------------------------------------


def test_absurd_concurrency_is_refused_up_front():
    cfg = {"base_url": "http://127.0.0.1:1/v1", "model": "m", "prompts": ["x"]}
    with pytest.raises(ConfigError, match="sane maximum 4096"):
        config_mod.validate({**cfg, "num_requests": 1, "concurrency": 100_000})
    done = cli(*["--base-url", cfg["base_url"], "--model", "m", "--prompt", "x"],
               "--num-requests", "1", "--concurrency", "100000")  # fmt: skip
    assert done.returncode == 2 and "sane maximum" in done.stderr


def test_concurrency_above_the_open_file_limit_is_refused(monkeypatch):
    real = resource.getrlimit
    monkeypatch.setattr(
        resource,
        "getrlimit",
        lambda which: (256, 256) if which == resource.RLIMIT_NOFILE else real(which),
    )
    cfg = config_mod.validate(
        {
            "base_url": "http://127.0.0.1:1/v1",
            "model": "m",
            "prompts": ["x"],
            "num_requests": 1,
            "concurrency": 300,
            "workers": 1,
        }
    )
    with pytest.raises(ConfigError, match=r"open-file limit \(RLIMIT_NOFILE\) here is 256"):
        runner.plan(cfg)
    with pytest.raises(ConfigError, match="RLIMIT_NOFILE"):
        runner.run(cfg)


# -- same options in the CLI and the module ----------------------------------------------


def test_the_cli_takes_every_option_of_the_module():
    sys.path.insert(0, str(COLLECTIONS))
    from ansible_collections.llmops.registry.plugins.modules import (  # noqa: PLC0415
        llm_latency_benchmark as module,
    )

    help_text = cli("--help").stdout
    spelled = {
        "validate_certs": "--insecure",
        "api_key": "--api-key-env",
        "headers": "--header",
        "prompts": "--prompt",
        "duration_s": "--duration",
        "warmup_requests": "--warmup",
        "request_timeout_s": "--timeout",
        "max_run_s": "--max-run",
        "textfile_path": "--textfile",
        "goodput": "--goodput-ttft",
        "return_samples": "--json",  # the CLI prints the whole result with --json
    }
    missing = [
        name
        for name in module.ARGUMENT_SPEC
        if spelled.get(name, "--" + name.replace("_", "-")) not in help_text
    ]
    assert missing == []


def test_the_cli_endpoint_path_is_used(base_url):
    root = base_url.removesuffix("/v1")
    done = cli("--base-url", root, "--endpoint-path", "/v1/chat/completions", "--model", "m",
               "--prompt", "x", "--num-requests", "1", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["summary"]["succeeded"] == 1
    done = cli("--base-url", root, "--endpoint-path", "/nowhere", "--model", "m",
               "--prompt", "x", "--num-requests", "1")  # fmt: skip
    assert done.returncode == 1 and "http_404" in done.stderr


# -- proxies and TLS --------------------------------------------------------------------


@contextlib.contextmanager
def forward_proxy():
    """A minimal HTTP forward proxy (absolute-form requests) on loopback; yields its
    URL and the list of Proxy-Authorization values it saw."""
    seen: list[str | None] = []
    port = free_port()
    loop = asyncio.new_event_loop()

    async def handle(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        first, _unused, rest = head.partition(b"\r\n")
        method, target, version = first.split(b" ")
        auth = [
            line.split(b":", 1)[1].strip().decode()
            for line in rest.split(b"\r\n")
            if line.lower().startswith(b"proxy-authorization:")
        ]
        seen.append(auth[0] if auth else None)
        host_port = target.split(b"/")[2].decode()
        host, _unused, target_port = host_port.partition(":")
        path = b"/" + b"/".join(target.split(b"/")[3:])
        up_reader, up_writer = await asyncio.open_connection(host, int(target_port))
        up_writer.write(b" ".join([method, path, version]) + b"\r\n" + rest)
        absolute = b" http://" + host_port.encode() + b"/"

        async def pipe(src, dst, upstream: bool):
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    if upstream:  # later requests on the kept-alive connection
                        seen.extend([None] * data.count(absolute))
                        data = data.replace(absolute, b" /")
                    dst.write(data)
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", port))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://user:s3cret@127.0.0.1:{port}", seen
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)


def test_http_proxy_from_the_environment_is_used_unless_no_proxy_names_the_host(
    base_url, monkeypatch
):
    with forward_proxy() as (proxy, seen):
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        ok_records(bench(base_url, tokenize_api="none", num_requests=2, concurrency=1))
        assert seen and seen[0].startswith("Basic ")  # user:s3cret, never logged
        before = len(seen)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        ok_records(bench(base_url, tokenize_api="none", num_requests=2, concurrency=1))
        assert len(seen) == before


@contextlib.contextmanager
def plain_http_server():
    """Answers anything (a TLS hello too) with a plain HTTP 400, as web servers do."""
    import socket  # noqa: PLC0415

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _unused = listener.accept()
                with conn:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{port}/v1"
    finally:
        listener.close()


def test_tls_against_a_plain_http_port_says_so():
    with plain_http_server() as url:
        result = bench(url, num_requests=1, concurrency=1)
    (record,) = result["run"]["requests"]
    assert record["error_type"] == "tls"
    assert "does not speak TLS on this port" in record["error"]


def test_the_mock_can_be_slowed_for_the_next_requests_only(base_url):
    """The alert drill of the monitoring scenario: POST /mock/config."""
    import urllib.request  # noqa: PLC0415

    body = json.dumps({"override": {"ttft_ms": 1500}, "requests": 2}).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback
        base_url.removesuffix("/v1") + "/mock/config", data=body, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
        assert json.loads(answer.read())["override_requests_left"] == 2
    records = ok_records(bench(base_url, num_requests=4, concurrency=1, tokenize_api="none"))
    ttfts = [r["ttft_s"] for r in sorted(records, key=lambda r: r["index"])]
    assert min(ttfts[:2]) >= 1.5 > max(ttfts[2:]), ttfts


@contextlib.contextmanager
def tls_server(folder: Path):
    """A TLS server with a fresh self-signed certificate (openssl), answering 400."""
    import shutil  # noqa: PLC0415
    import socket  # noqa: PLC0415
    import ssl  # noqa: PLC0415

    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                raw, _unused = listener.accept()
                with contextlib.suppress(OSError), context.wrap_socket(raw, server_side=True) as c:
                    c.recv(4096)
                    c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{port}/v1", str(cert)
    finally:
        listener.close()


def test_an_untrusted_certificate_says_what_to_do_and_ca_file_fixes_it(tmp_path):
    with tls_server(tmp_path) as (url, cert):
        (record,) = bench(url, num_requests=1, concurrency=1)["run"]["requests"]
        assert record["error_type"] == "tls"
        assert "certificate of 127.0.0.1:" in record["error"] and "give ca_file" in record["error"]
        # trusted through ca_file: TLS passes, the server's own answer comes through
        (record,) = bench(url, num_requests=1, concurrency=1, ca_file=cert)["run"]["requests"]
        assert record["error_type"] == "http_400"
