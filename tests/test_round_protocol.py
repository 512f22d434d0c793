"""The round protocol's overlap of the commit with the evaluation dispatch, on a recording fake grid."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fl_server.round_protocol import send_and_receive_around


class RecordingGrid:
    """Answers each pushed message on the second pull; logs push/pull order."""

    pull_interval = 0.0

    def __init__(self) -> None:
        self.log: list[str] = []
        self.pulls = 0

    def push_messages(self, messages):
        self.log.append("push")
        return [f"id-{m}" for m in messages]

    def pull_messages(self, ids):
        self.log.append("pull")
        self.pulls += 1
        if self.pulls < 2:
            return []
        return [SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=i)) for i in sorted(ids)]


def test_work_runs_between_the_push_and_the_first_pull():
    # arrange
    grid = RecordingGrid()
    # act
    replies, result = send_and_receive_around(grid, ["a", "b"], lambda: grid.log.append("commit") or "receipt", 5.0)
    # assert
    assert grid.log == ["push", "commit", "pull", "pull"]
    assert result == "receipt" and sorted(r.metadata.reply_to_message_id for r in replies) == ["id-a", "id-b"]


def test_a_failed_commit_stops_before_anything_is_pulled():
    grid = RecordingGrid()

    def commit():
        raise RuntimeError("chain down")

    with pytest.raises(RuntimeError, match="chain down"):
        send_and_receive_around(grid, ["a"], commit, 5.0)
    assert grid.log == ["push"]
