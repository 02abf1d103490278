"""A provisioning profile that does the least a node must (the marker that verify reads), for tests
whose subject is not Ansible's work on the node (watching, remediation): the builtin baseline costs
about 18 CPU seconds per run on a shared 2-core machine, this one a few. The baseline itself is
proven on real nodes by tests/e2e/test_provisioning.py and the node end-to-end tests."""

from __future__ import annotations

from pathlib import Path

MARKER = "{'node_id': nw_node_id, 'profile': nw_profile, 'profile_version': nw_profile_version}"
PLAYBOOK = """- name: nodewright quick test profile
  hosts: all
  gather_facts: false
  tasks:
    - name: Marker directory
      ansible.builtin.file:
        path: /etc/nodewright
        state: directory
        mode: "0755"
    - name: Node marker
      ansible.builtin.copy:
        dest: /etc/nodewright/node.json
        content: "{{ MARKER | to_nice_json }}\\n"
        mode: "0644"
""".replace("MARKER", MARKER)


def write_quick_profile(directory: Path, extra: str = "") -> Path:
    """The profile in ``directory`` (its name is the directory's); ``extra``: more profile.yml keys."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "playbook.yml").write_text(PLAYBOOK)
    (directory / "profile.yml").write_text(
        f'version: "1"\ndescription: the marker only (tests)\nplaybook: playbook.yml\n'
        f"timeout_seconds: 300\nchecks: []\n{extra}"
    )
    return directory
