import pickle

import pytest
import torch

import torchawp
from torchawp.io.checkpoint import load_state, read_weights, save_state, save_weights
from torchawp.errors import CheckpointError
from torchawp.models import create_model


def _model(classes=10):
    torch.manual_seed(0)
    return create_model("small_cnn", classes, 1, 8, [0.3], [0.4], width=4)


def test_weights_round_trip_with_the_model_spec(tmp_path):
    model = _model()
    save_weights(tmp_path / "m.safetensors", model, {"epoch": 3})
    loaded = torchawp.load(tmp_path / "m.safetensors")
    assert not loaded.training and loaded.checkpoint_meta["epoch"] == 3
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(loaded(x), model.eval()(x))


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    save_weights(tmp_path / "m.safetensors", _model(10), {})
    with pytest.raises(CheckpointError, match="another architecture or number of classes"):
        torchawp.load(tmp_path / "m.safetensors", model=_model(5))


def test_truncated_checkpoint_is_detected(tmp_path):
    path = tmp_path / "m.safetensors"
    save_weights(path, _model(), {})
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="corrupt"):
        read_weights(path)


def test_pickle_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "state.pt"
    with open(path, "wb") as f:
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(CheckpointError, match="could run code"):
        load_state(path)
    with pytest.raises(CheckpointError, match="safetensors only"):
        torchawp.load(tmp_path / "model.pt")


def test_state_round_trip_and_atomic_replace(tmp_path):
    path = tmp_path / "s.pt"
    save_state(path, {"epoch": 1, "t": torch.arange(3)})
    save_state(path, {"epoch": 2, "t": torch.arange(4)})
    state = load_state(path)
    assert state["epoch"] == 2 and torch.equal(state["t"], torch.arange(4))
    assert [p.name for p in tmp_path.iterdir()] == ["s.pt"]  # no temporary files left
