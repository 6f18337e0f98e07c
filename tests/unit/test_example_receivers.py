"""The example inventories route alerts to real receivers, with every secret in vault.

Each example's group_vars (vault decrypted with its example password) render through
the alertmanager role's template into a configuration `amtool check-config` accepts,
with email, Slack, PagerDuty and webhook receivers, the alert inbox, and only
CHANGE_ME placeholders as secrets (the test swaps them for well-formed fakes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[2]
PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars_files:
    - {project}/roles/alertmanager/defaults/main.yml
    - {project}/roles/alertmanager/vars/main.yml
    - {project}/roles/monitoring_web/defaults/main.yml
    - {project}/roles/monitoring_web/vars/main.yml
    - {inventory}/group_vars/all/main.yml
    - {inventory}/group_vars/all/vault.yml
  tasks:
    - name: Every alertmanager secret in the example is a placeholder in vault
      ansible.builtin.assert:
        that:
          - vault_alertmanager_slack_api_url is match('CHANGE_ME')
          - vault_alertmanager_pagerduty_routing_key is match('CHANGE_ME')
          - vault_alertmanager_smtp_password is match('CHANGE_ME')
          - vault_alertmanager_webhook_token is match('CHANGE_ME')
    - name: Render with well-formed fake secrets
      ansible.builtin.template:
        src: {project}/roles/alertmanager/templates/alertmanager.yml.j2
        dest: {out}
        mode: "0600"
      vars:
        ansible_default_ipv4: {{address: 192.0.2.10}}
        vault_alertmanager_slack_api_url: https://hooks.slack.invalid/services/T0/B0/FAKE
        vault_alertmanager_pagerduty_routing_key: fake0000000000000000000000000000
        vault_alertmanager_smtp_password: fake-smtp-password
        vault_alertmanager_webhook_token: fake-webhook-token
"""


@pytest.mark.skipif(shutil.which("amtool") is None, reason="needs amtool")
@pytest.mark.parametrize("name", ["staging", "production"])
def test_example_receivers_are_real_and_valid(name, tmp_path):
    inventory = PROJECT / "inventories" / name
    out = tmp_path / "alertmanager.yml"
    playbook = tmp_path / "render.yml"
    playbook.write_text(PLAYBOOK.format(project=PROJECT, inventory=inventory, out=out))
    password = tmp_path / "vault-password"
    password.write_text(f"example-only-{name}-vault-password")
    venv = PROJECT / ".venv/bin/ansible-playbook"
    command = str(venv) if venv.exists() else "ansible-playbook"
    proc = subprocess.run(
        [command, str(playbook), "--vault-password-file", str(password)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT,
        env=dict(os.environ, ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg")),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check = subprocess.run(
        ["amtool", "check-config", str(out)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load(out.read_text())
    kinds = {
        kind
        for receiver in config["receivers"]
        for kind in receiver
        if kind.endswith("_configs") and receiver["name"] != "alert-inbox"
    }
    assert {"email_configs", "slack_configs", "pagerduty_configs", "webhook_configs"} <= kinds
    assert config["global"]["smtp_auth_password"] == "fake-smtp-password"  # noqa: S105
    routes = config["route"]["routes"]
    assert routes[0] == {"receiver": "alert-inbox", "continue": True}
    assert {"matchers": ['severity="critical"'], "receiver": "oncall", "continue": True} in routes
    # The default receiver delivers somewhere (it was an empty receiver before).
    default = next(r for r in config["receivers"] if r["name"] == config["route"]["receiver"])
    assert any(key.endswith("_configs") for key in default)
    # The inbox is reached like the rest of the stack: https, the CA, the login.
    inbox = next(r for r in config["receivers"] if r["name"] == "alert-inbox")
    assert inbox["webhook_configs"] == [
        {
            "url": "https://192.0.2.10:9095/alerts",
            "send_resolved": True,
            "http_config": {
                "tls_config": {"ca_file": "/etc/llmops/tls/ca.crt"},
                "basic_auth": {
                    "username": "monitoring",
                    "password_file": "/etc/llmops/alertmanager-inbox.password",
                },
            },
        }
    ]
