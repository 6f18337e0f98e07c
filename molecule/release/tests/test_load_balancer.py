"""HAProxy in front of every instance: traffic flows, metrics and admin socket exist."""

import json
import uuid

testinfra_hosts = ["lb"]

# https on this host's own name (in its certificate), connected on loopback.
CA = "/etc/llmops/tls/ca.crt"


def lb_curl(host) -> tuple[str, str]:
    """curl that checks the certificate, and the https URL of this host's front end."""
    name = host.ansible.get_variables()["inventory_hostname"]
    return f"curl --cacert {CA} --resolve {name}:8443:127.0.0.1", f"https://{name}:8443"


def test_config_is_valid(host):
    assert host.run("haproxy -c -f /etc/haproxy/haproxy.cfg").rc == 0


def test_every_instance_is_a_backend_server_and_up(host):
    out = host.check_output("echo 'show stat' | socat stdio /run/haproxy/admin.sock")
    servers = [line.split(",") for line in out.splitlines() if line.startswith("schema_registry,")]
    names = {row[1]: row[17] for row in servers if row[1] not in ("FRONTEND", "BACKEND")}
    assert len(names) == 4, names
    assert set(names.values()) == {"UP"}, names


def test_prometheus_metrics_on_8404_over_https_with_the_monitoring_login(host):
    """The stats listener is https; /metrics wants the monitoring stack's login."""
    variables = host.ansible.get_variables()
    name, password = variables["inventory_hostname"], variables["vault_monitoring_web_password"]
    curl = f"curl -sS --cacert {CA} --resolve {name}:8404:127.0.0.1"
    url = f"https://{name}:8404/metrics"
    code = "-o /dev/null -w '%{http_code}'"
    assert host.check_output(f"{curl} {code} {url}") == "401"
    assert host.check_output(f"{curl} {code} -u monitoring:wrong-password {url}") == "401"
    plain = host.run("curl -sS -o /dev/null -w '%{http_code}' http://127.0.0.1:8404/metrics")
    assert plain.stdout != "200", plain.stdout
    out = host.check_output(f"{curl} -f -u monitoring:%s {url}", password)
    assert "haproxy_backend_active_servers" in out


def test_register_and_fetch_a_schema_through_the_load_balancer(host):
    curl, lb = lb_curl(host)
    subject = f"verify.lb.s{uuid.uuid4().hex[:10]}"
    body = json.dumps({"subject": subject, "schema_type": "JSON", "schema": {"type": "object"}})
    created = json.loads(
        host.check_output(
            f"{curl} -fsS -X POST -H 'Content-Type: application/json' "
            "-H 'Authorization: Bearer molecule-rel-api-key-0123456789abcdef' "
            f"-d '{body}' {lb}/api/v1/schemas"
        )
    )
    fetched = json.loads(host.check_output(f"{curl} -fsS {lb}/api/v1/schemas/{created['id']}"))
    assert fetched["id"] == created["id"]
