"""Lab helpers that need no containers."""

from __future__ import annotations

import pytest

import jexida_lab as lab


@pytest.mark.parametrize("name", ["", "Upper", "1abc", "a b", "a/b", "x" * 40])
def test_bad_lab_names_are_refused(name: str) -> None:
    with pytest.raises(lab.LabError, match="bad lab name"):
        lab.validate_lab_name(name)


def test_lab_addresses_stay_on_loopback() -> None:
    with pytest.raises(lab.LabError, match=r"127\.0\.0\.0/8"):
        lab._free_addresses(1, "192.0.2.10", set())
    chosen = lab._free_addresses(2, "127.0.9.1", {"127.0.9.1"})
    assert chosen == ["127.0.9.2", "127.0.9.3"]


def test_image_tag_follows_the_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    first = lab.image_ref()
    from jexida_lab import image

    monkeypatch.setattr(image, "IMAGE_PACKAGES", (*image.IMAGE_PACKAGES, "curl"))
    assert lab.image_ref() != first
    assert first.startswith("localhost/jexida-node:bookworm-")
