"""The local Kafka's KRaft cluster id: never one the storage tool would read as an option."""

from __future__ import annotations

import base64
import uuid

import pytest

from lhpipe.stack import services


def test_an_id_starting_with_a_dash_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xf8 0x.. encodes to "-..." in URL-safe base64; the second UUID does not.
    drawn = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(int=1)])
    monkeypatch.setattr(services.uuid, "uuid4", lambda: next(drawn))
    cluster_id = services._cluster_id()
    assert not cluster_id.startswith("-")
    assert base64.urlsafe_b64decode(cluster_id + "==") == uuid.UUID(int=1).bytes
