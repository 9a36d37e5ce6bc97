"""The README's code example runs as written."""

import re
from pathlib import Path

import torch
import torch.nn.functional as F

from torchawp.models import create_model

README = Path(__file__).resolve().parents[1] / "README.md"


def test_awp_loop_example_from_the_readme_trains():
    block = re.search(r"## AWP in your own loop\s+```python\n(.*?)```", README.read_text(),
                      re.S).group(1)
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1, 8, width=8, hidden=32, batchnorm=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 1, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
    loader = [(x[:32], y[:32]), (x[32:], y[32:])] * 5
    before = F.cross_entropy(model.eval()(x), y).item()
    namespace = {"model": model, "optimizer": optimizer, "loader": loader}
    exec(compile(block, str(README), "exec"), namespace)
    assert "awp" in namespace and namespace["awp"]._v is None  # v removed after the block
    assert F.cross_entropy(model.eval()(x), y).item() < before
