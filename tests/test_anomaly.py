"""The AAE + ITSR reproduction (experiments/anomaly/): ITSR drops the training images it ranks
least likely, the contaminated training set has the share of anomalies asked for, and a seeded
detector reproduces bit for bit."""

import importlib.util
import sys
from pathlib import Path

import torch

PATH = Path(__file__).resolve().parents[1] / "experiments" / "anomaly" / "aae.py"
spec = importlib.util.spec_from_file_location("aae", PATH)
aae = sys.modules.setdefault("aae", importlib.util.module_from_spec(spec))
spec.loader.exec_module(aae)


def test_itsr_drops_the_kept_images_with_the_lowest_latent_density():
    model = aae.AutoEncoder(dim=2, latent=2)
    model.encoder = torch.nn.Flatten()  # the encoding is the image itself
    images = torch.tensor([[0.1, 0.0], [3.0, 0.0], [0.0, 0.2], [2.0, 2.0], [0.0, 0.0],
                           [5.0, 1.0]]).view(6, 1, 1, 2)
    keep = torch.tensor([True, True, True, True, True, False])  # the farthest already dropped
    keep = aae.refine(model, images, keep, share=0.4)  # 2 of the 5 kept
    # log-densities -|z|^2/2: image 1 (|z|^2 9) and image 3 (8) are the least likely kept
    assert keep.tolist() == [True, False, True, False, True, False]
    assert aae.refine(model, images, keep, share=0.0).tolist() == keep.tolist()


def test_the_training_set_holds_the_contamination_asked_for():
    x = torch.rand(400, 1, 4, 4)
    y = torch.arange(400) % 4
    images, is_anomaly = aae.contaminated(x, y, normal=1, contamination=0.2, seed=0)
    assert len(images) == 125 and int(is_anomaly.sum()) == 25  # 100 normals, 20% anomalies
    normals = x[y == 1]
    for image, anomaly in zip(images, is_anomaly):
        assert bool((normals == image).all((1, 2, 3)).any()) != bool(anomaly)


def test_a_seeded_detector_reproduces_and_awp_changes_it():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(48, 1, 6, 6, generator=g)
    setting = aae.Setting("aae+itsr", adversarial=True, itsr=True)
    first, keep1 = aae.train_detector(images, setting, seed=3, epochs=6, batch_size=16)
    second, keep2 = aae.train_detector(images, setting, seed=3, epochs=6, batch_size=16)
    assert torch.equal(keep1, keep2) and int((~keep1).sum()) > 0
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                 second.state_dict().values()))
    awp = aae.Setting("aae+itsr+awp", adversarial=True, itsr=True, gamma=0.01)
    third, _ = aae.train_detector(images, awp, seed=3, epochs=6, batch_size=16)
    assert not torch.equal(first.decoder[0].weight, third.decoder[0].weight)
