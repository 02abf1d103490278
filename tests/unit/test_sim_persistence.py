"""The simulator's state file keeps snapshots, image actions and servers' new fields; what it may
not keep (passwords) ends what depends on it instead of leaving it unusable."""

from __future__ import annotations

import json
from pathlib import Path

from nodewright.sim.config import SimConfig
from nodewright.sim.persistence import load_state, save_state
from nodewright.sim.state import SimState


def _state() -> SimState:
    return SimState(SimConfig(create_duration=0, start_duration=0, action_duration=0))


def test_images_and_rescue_round_trip(tmp_path: Path) -> None:
    state = _state()
    project = "p-test"
    server = state.create_server(project, {"name": "web-1", "server_type": "cx23", "image": "debian-12"})
    server_id = server["server"]["id"]
    state.advance()
    image = state.create_image(project, server_id, {"labels": {"role": "web"}})["image"]
    state.advance()
    state.enable_rescue(project, server_id, {})
    state.advance()
    assert state.get_server(project, server_id)["server"]["rescue_enabled"] is True
    path = tmp_path / "state.json"
    save_state(state, path)
    saved = path.read_text()
    assert "rescue_password" not in saved and "root_password" not in saved

    loaded = _state()
    load_state(loaded, path)
    assert loaded.get_image(project, image["id"])["image"]["labels"] == {"role": "web"}
    actions = loaded.image_actions(project, image["id"], {})["actions"]
    assert [a["command"] for a in actions] == ["create_image"]
    # The rescue password was not saved: the restart ends rescue mode, never a locked-out rescue.
    assert loaded.get_server(project, server_id)["server"]["rescue_enabled"] is False
    assert loaded.next_image_id == state.next_image_id


def test_an_older_state_file_loads(tmp_path: Path) -> None:
    state = _state()
    state.create_server("p-test", {"name": "web-1", "server_type": "cx23", "image": "debian-12"})
    path = tmp_path / "state.json"
    save_state(state, path)
    data = json.loads(path.read_text())
    data.pop("images")
    del data["counters"]["image"]
    for raw in data["servers"]:
        for name in ("key_login", "rescue_enabled", "rescue_keys"):
            raw.pop(name)
    path.write_text(json.dumps(data))
    loaded = _state()
    load_state(loaded, path)
    assert [s["name"] for s in loaded.list_servers("p-test", {})["servers"]] == ["web-1"]
