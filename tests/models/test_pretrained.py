"""The bundled efficientnet_lite0 weights are real ImageNet weights (classify scikit-image photos)."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from unfreeze.models import create_model, load_bundled_weights

skimage_data = pytest.importorskip("skimage.data")

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def preprocess(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Resize the short side to 256, centre-crop 224, normalize: the usual ImageNet evaluation."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()[None] / 255
    height, width = x.shape[-2:]
    scale = 256 / min(height, width)
    x = F.interpolate(x, size=(round(height * scale), round(width * scale)), mode="bicubic", antialias=True)
    top, left = (x.shape[-2] - 224) // 2, (x.shape[-1] - 224) // 2
    x = x[..., top : top + 224, left : left + 224].clamp(0, 1)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


@pytest.fixture(scope="module")
def imagenet_lite0() -> torch.nn.Module:
    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000)
    model.load_state_dict(load_bundled_weights("efficientnet_lite0"))
    return model.eval()


def test_bundled_weights_classify_real_photos(imagenet_lite0: torch.nn.Module) -> None:
    transfer = create_model("efficientnet_lite0", 2)
    photos = torch.cat(
        [preprocess(image, transfer.mean, transfer.std) for image in (skimage_data.chelsea(), skimage_data.coffee())]
    )
    with torch.no_grad():
        top1 = imagenet_lite0(photos).argmax(dim=1).tolist()
    assert top1[0] in CAT_CLASSES, f"chelsea classified as ImageNet class {top1[0]}"
    assert top1[1] == ESPRESSO, f"coffee classified as ImageNet class {top1[1]}"


def test_transfer_body_carries_the_same_weights(imagenet_lite0: torch.nn.Module) -> None:
    transfer = create_model("efficientnet_lite0", 2).eval()
    photo = preprocess(skimage_data.coffee(), transfer.mean, transfer.std)
    with torch.no_grad():
        expected = imagenet_lite0.forward_features(photo)
        assert torch.allclose(transfer.body(photo), expected, atol=1e-5)
