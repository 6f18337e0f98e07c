"""The pki role's expiry metric script (templates/llmops-tls-expiry-metrics.sh.j2),
rendered from the role's template and run with bash and openssl against certificates
with known notAfter times: one series per certificate (each one of a CA bundle), label
values escaped, an exposition promtool accepts, written by rename; a broken certificate
fails the run and leaves the previous file as it was."""

from __future__ import annotations

import datetime
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

ROLE = Path(__file__).resolve().parents[2] / "roles" / "pki"
METRIC = "llmops_tls_certificate_expiry_timestamp_seconds"
SERIES = re.compile(
    METRIC + r'\{path="((?:[^"\\]|\\.)*)",subject="((?:[^"\\]|\\.)*)",serial="([0-9A-F]+)"\} (\d+)$'
)


def _unescape(value: str) -> str:
    """A label value as the exposition format reads it."""
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)


def _certificate(common_name: str, not_after: datetime.datetime, serial: int) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM)


def _script(tmp_path: Path) -> Path:
    # A shell script, not HTML: nothing to escape.
    env = jinja2.Environment(  # noqa: S701
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    env.filters["quote"] = shlex.quote
    template = env.from_string((ROLE / "templates/llmops-tls-expiry-metrics.sh.j2").read_text())
    script = tmp_path / "llmops-tls-expiry-metrics"
    script.write_text(
        template.render(pki_dir=str(tmp_path / "tls"), pki_textfile_dir=str(tmp_path / "textfile"))
    )
    return script


def _run(script: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["/bin/bash", str(script)], capture_output=True, text=True, check=False, timeout=30
    )


@pytest.fixture
def host(tmp_path: Path) -> Path:
    (tmp_path / "tls").mkdir()
    (tmp_path / "textfile").mkdir()
    return tmp_path


SERVER_END = datetime.datetime(2027, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)
CA_ENDS = [
    datetime.datetime(2036, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    datetime.datetime(2030, 6, 30, 23, 59, 59, tzinfo=datetime.UTC),
]


def test_every_certificate_gets_its_not_after(host: Path) -> None:
    tls = host / "tls"
    (tls / "server.crt").write_bytes(_certificate('app "1" \\ a', SERVER_END, 0x1A2B))
    (tls / "ca.crt").write_bytes(
        _certificate("llmops internal CA", CA_ENDS[0], 1) + _certificate("old CA", CA_ENDS[1], 2)
    )
    result = _run(_script(host))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (host / "textfile").iterdir()) == ["llmops_tls.prom"]
    out = host / "textfile/llmops_tls.prom"
    assert out.stat().st_mode & 0o777 == 0o644
    lines = out.read_text().splitlines()
    series = [SERIES.match(line) for line in lines if line.startswith(METRIC)]
    assert all(series), out.read_text()
    got = [(_unescape(m[1]), _unescape(m[2]), m[3], int(m[4])) for m in series]
    # Subjects as RFC 2253 writes them (its own escapes: \" and \\).
    assert got == [
        (f"{tls}/server.crt", 'CN=app \\"1\\" \\\\ a', "1A2B", int(SERVER_END.timestamp())),
        (f"{tls}/ca.crt", "CN=llmops internal CA", "01", int(CA_ENDS[0].timestamp())),
        (f"{tls}/ca.crt", "CN=old CA", "02", int(CA_ENDS[1].timestamp())),
    ]
    if shutil.which("promtool"):
        check = subprocess.run(
            ["promtool", "check", "metrics"],
            input=out.read_text(),
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr


def test_a_broken_certificate_fails_and_keeps_the_last_file(host: Path) -> None:
    tls = host / "tls"
    (tls / "server.crt").write_bytes(_certificate("app1", SERVER_END, 5))
    script = _script(host)
    assert _run(script).returncode == 0
    before = (host / "textfile/llmops_tls.prom").read_text()
    broken = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
    (tls / "server.crt").write_text(broken)
    result = _run(script)
    assert result.returncode != 0
    assert sorted(p.name for p in (host / "textfile").iterdir()) == ["llmops_tls.prom"]
    assert (host / "textfile/llmops_tls.prom").read_text() == before
