"""The LEACE-defended model exposes erased embeddings and keeps its eraser in checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lightning_talos.data.datamodule import Sample
from lightning_talos.defences.leace import ConceptEraser
from lightning_talos.errors import UserError
from lightning_talos.modules.leace_classifier import LeaceLinearClassifier

OPTIM = {"name": "adam", "lr": 1e-2, "weight_decay": 0.0, "schedule": "constant"}


def build() -> LeaceLinearClassifier:
    torch.manual_seed(0)
    return LeaceLinearClassifier(backbone="small_cnn", stem="cifar", num_classes=3, optim=OPTIM)


def test_embed_is_erased_and_training_reads_erased_features(tmp_path: Path) -> None:
    model = build().eval()
    images = torch.rand(40, 3, 8, 8)
    attribute = torch.arange(40) % 2
    with torch.no_grad():
        raw = model.encoder_embed(images)
        assert torch.equal(model.embed(images), raw)  # identity before fitting
        eraser = ConceptEraser.fit(raw, attribute)
        model.set_eraser(eraser)
        erased = model.embed(images)
        torch.testing.assert_close(erased, eraser(raw))
        torch.testing.assert_close(model(images), model.head(erased))
        labels = torch.arange(40) % 3
        batch = Sample(torch.arange(40), images, labels, attribute)
        # no trainer attached: skip the logging, keep the loss of what training_step feeds
        model._train_loss = lambda logits, y, _: F.cross_entropy(logits, y)
        loss = model.training_step(batch, 0)
        torch.testing.assert_close(loss, F.cross_entropy(model.head(erased), labels))
    # the eraser lives in the state dict: a fresh module restores it
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    fresh = build()
    fresh.load_state_dict(torch.load(path, weights_only=True))
    torch.testing.assert_close(fresh.eval().embed(images), erased)


def test_eraser_dimension_must_match() -> None:
    with pytest.raises(ValueError, match="128-d"):
        build().set_eraser(ConceptEraser(5))


def test_fit_eraser_reads_the_loader_rows_through_the_encoder() -> None:
    model = build()
    images = torch.rand(30, 3, 8, 8)
    attribute = torch.arange(30) % 3
    loader = [
        Sample(
            torch.arange(i, i + 10),
            images[i : i + 10],
            attribute[i : i + 10],
            attribute[i : i + 10],
        )
        for i in (0, 10, 20)
    ]
    eraser = model.fit_eraser(loader)
    assert model.training  # mode restored
    with torch.no_grad():
        expected = ConceptEraser.fit(model.eval().encoder_embed(images), attribute)
    torch.testing.assert_close(model.eraser.weight, expected.weight)
    assert torch.equal(eraser.weight, model.eraser.weight)
    no_attribute = [Sample(b.index, b.image, b.label, torch.full((10,), -1)) for b in loader]
    with pytest.raises(UserError, match="sensitive attribute"):
        model.fit_eraser(no_attribute)
