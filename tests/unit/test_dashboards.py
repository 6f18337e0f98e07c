"""The grafana role's rendered provisioning and dashboards, checked without Grafana
(which cannot be installed on the build machines): the real role templates are
rendered by ansible-playbook, then the JSON, the datasource uid references and every
panel query (parsed by promtool) are checked. The molecule `monitoring` scenario runs
the same queries against a live Prometheus."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# One reading of the dashboards' queries, shared with the live checks in Molecule.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "molecule" / "shared"))
from dashboard_checks import board_queries, concrete

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "grafana"
DASHBOARD_FILES = sorted((ROLE / "files" / "dashboards").glob("*.json"))
TEST_UID = "uid-from-test"

RENDER_PLAYBOOK = """
- name: Render the grafana role's provisioning like the role does
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
    role_path: {role}
    out: {out}
  tasks:
    - name: Role defaults and internal vars
      ansible.builtin.include_vars:
        file: "{{{{ item }}}}"
      loop:
        - "{role}/defaults/main.yml"
        - "{role}/vars/main.yml"
        - "{role}/../monitoring_web/defaults/main.yml"
        - "{role}/../monitoring_web/vars/main.yml"
    - name: Datasource and dashboard provider
      ansible.builtin.template:
        src: "{role}/templates/{{{{ item }}}}.j2"
        dest: "{{{{ out }}}}/{{{{ item }}}}"
        mode: "0644"
      loop: [datasource.yml, dashboards.yml]
      vars:
        ansible_default_ipv4: {{address: 192.0.2.10}}
    - name: Dashboards
      ansible.builtin.template:
        src: "{role}/templates/dashboard.json.j2"
        dest: "{{{{ out }}}}/{{{{ item }}}}"
        mode: "0644"
      loop: "{{{{ grafana_dashboards }}}}"
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("grafana")
    playbook = out / "render.yml"
    playbook.write_text(RENDER_PLAYBOOK.format(role=ROLE, out=out))
    binary = shutil.which("ansible-playbook") or str(REPO / ".venv/bin/ansible-playbook")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    result = subprocess.run(
        # A non-default uid, given as an extra var like an inventory would override it.
        [binary, "-i", "localhost,", "-e", f"grafana_datasource_uid={TEST_UID}", str(playbook)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_every_dashboard_is_valid_json_with_a_unique_uid() -> None:
    uids = [json.loads(path.read_text())["uid"] for path in DASHBOARD_FILES]
    assert sorted(uids) == [
        "cache-lb-ha",
        "database-ha",
        "infrastructure",
        "llm-latency-overview",
        "registry-overview",
    ]


def test_role_default_lists_exactly_the_shipped_dashboards() -> None:
    defaults = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    assert sorted(defaults["grafana_dashboards"]) == [p.name for p in DASHBOARD_FILES]


def test_llm_latency_overview_has_the_spec_settings_and_panels() -> None:
    board = json.loads((ROLE / "files/dashboards/llm-latency-overview.json").read_text())
    assert board["refresh"] == "10s"
    assert board["time"] == {"from": "now-1h", "to": "now"}
    assert [v["name"] for v in board["templating"]["list"]] == ["provider"]
    queries = " ".join(expr for _unused, expr in board_queries(board))
    for needed in (
        "histogram_quantile(0.5,",
        "histogram_quantile(0.95,",
        "histogram_quantile(0.99,",
        "llm_ttft_seconds_bucket",
        "llm_tpot_seconds_bucket",
        "llm_tokens_generated_total",
        "llm_tokens_prompt_total",
        "sum by (error_type)",
    ):
        assert needed in queries, needed
    assert "gauge" in {p["type"] for p in board["panels"]}
    # Every LLM query honours the provider variable.
    for title, expr in board_queries(board):
        assert 'provider=~"$provider"' in expr, title


def test_rendered_datasource_has_the_uid_every_dashboard_refers_to(rendered: Path) -> None:
    provisioning = yaml.safe_load((rendered / "datasource.yml").read_text())
    (datasource,) = provisioning["datasources"]
    assert datasource["uid"] == TEST_UID
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "https://192.0.2.10:9090"
    # The monitoring stack's login and CA (role monitoring_web); Grafana reads the CA file.
    assert datasource["basicAuth"] is True
    assert datasource["basicAuthUser"] == "monitoring"
    assert datasource["jsonData"]["tlsAuthWithCACert"] is True
    assert datasource["secureJsonData"]["tlsCACert"] == "$__file{/etc/llmops/tls/ca.crt}"
    assert "basicAuthPassword" in datasource["secureJsonData"]
    for path in DASHBOARD_FILES:
        board = json.loads((rendered / path.name).read_text())
        refs = [p["datasource"] for p in board["panels"]]
        refs += [t["datasource"] for p in board["panels"] for t in p.get("targets", [])]
        refs += [v["datasource"] for v in board["templating"]["list"] if "datasource" in v]
        assert refs, path.name
        assert all(ref == {"type": "prometheus", "uid": TEST_UID} for ref in refs), path.name
        assert "${DS_UID}" not in (rendered / path.name).read_text()


def test_rendered_dashboard_provider_points_at_the_dashboard_folder(rendered: Path) -> None:
    defaults = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    (provider,) = yaml.safe_load((rendered / "dashboards.yml").read_text())["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == defaults["grafana_dashboards_dir"]


def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule: a syntax error fails here."""
    rules = []
    for path in DASHBOARD_FILES:
        for index, (_unused, expr) in enumerate(board_queries(json.loads(path.read_text()))):
            name = re.sub(r"[^a-z0-9]", "_", path.stem)
            rules.append({"record": f"dashboard:{name}:q{index}", "expr": concrete(expr)})
    assert len(rules) > 30
    rule_file = tmp_path / "queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        ["promtool", "check", "rules", str(rule_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_query_is_caught_by_the_promql_check(tmp_path: Path) -> None:
    """The check above can fail: promtool rejects an unbalanced query."""
    rule_file = tmp_path / "broken.yml"
    rule_file.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "x",
                        "rules": [{"record": "dashboard:broken", "expr": "sum(rate(up[1m])"}],
                    }
                ]
            }
        )
    )
    result = subprocess.run(
        ["promtool", "check", "rules", str(rule_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0


PREFLIGHT_PLAYBOOK = """
- name: Run the grafana role's preflight checks only
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
  tasks:
    - name: Preflight
      ansible.builtin.include_role:
        name: {role}
        tasks_from: preflight.yml
"""


def run_grafana_preflight(tmp_path: Path, password: str) -> subprocess.CompletedProcess:
    playbook = tmp_path / "preflight.yml"
    playbook.write_text(PREFLIGHT_PLAYBOOK.format(role=ROLE))
    binary = shutil.which("ansible-playbook") or str(REPO / ".venv/bin/ansible-playbook")
    extra = json.dumps(
        {"grafana_admin_password": password, "monitoring_web_password": "a-web-Secret-for-the-test"}
    )
    return subprocess.run(
        [binary, "-i", "localhost,", "-e", extra, str(playbook)],
        cwd=REPO,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg")),
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("password", ["", "admin", "grafana"])
def test_grafana_refuses_an_empty_or_default_admin_password(tmp_path: Path, password: str) -> None:
    result = run_grafana_preflight(tmp_path, password)
    assert result.returncode != 0
    assert "grafana_admin_password" in result.stdout


def test_grafana_refuses_a_placeholder_without_printing_it(tmp_path: Path) -> None:
    result = run_grafana_preflight(tmp_path, "CHANGE_ME_grafana_7Yq")
    assert result.returncode != 0
    assert "grafana_admin_password" in result.stdout
    assert "CHANGE_ME_grafana_7Yq" not in result.stdout + result.stderr


def test_grafana_accepts_a_real_admin_password(tmp_path: Path) -> None:
    result = run_grafana_preflight(tmp_path, "a-real-Secret-for-the-test-81")
    assert result.returncode == 0, result.stdout + result.stderr
