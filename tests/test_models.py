"""Every architecture on every dataset shape: forward shapes, local weights. Run: make test."""
import pytest
import torch

from pipeline.training import models

SHAPES = {"digits": (1, 8, 8, 10), "mnist": (1, 28, 28, 10), "cifar10": (3, 32, 32, 10),
          "imagefolder": (3, 64, 64, 5), "imagefolder-large": (3, 96, 96, 3)}


@pytest.mark.parametrize("dataset", SHAPES)
@pytest.mark.parametrize("name", models.MODELS)
def test_forward_shape(name, dataset):
    c, h, w, k = SHAPES[dataset]
    model = models.build(name, c, (h, w), k).eval()
    with torch.no_grad():
        assert model(torch.randn(2, c, h, w)).shape == (2, k)


def test_local_weights_load_what_fits(tmp_path):
    donor = models.build("cnn", 1, (8, 8), 10)
    torch.save(donor.state_dict(), tmp_path / "w.pt")
    model = models.build("cnn", 1, (8, 8), 3, weights=str(tmp_path / "w.pt"))  # other head size
    assert torch.equal(model[0][0].weight, donor[0][0].weight)
    skipped = models.load_weights(models.build("cnn", 1, (8, 8), 3), tmp_path / "w.pt")
    assert skipped == ["8.bias", "8.weight"]  # only the classifier head differs


def test_weights_that_fit_nothing_are_refused(tmp_path):
    torch.save({"unrelated": torch.zeros(3)}, tmp_path / "w.pt")
    with pytest.raises(ValueError, match="no tensor matching"):
        models.build("mlp", 1, (8, 8), 10, weights=str(tmp_path / "w.pt"))
