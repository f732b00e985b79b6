"""DP-SGD recipe settings: clipping only (epsilon infinity), augmentation multiplicity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lightning_talos.models.backbones import build_backbone
from lightning_talos.models.norm import WSConv2d, dp_compatible
from lightning_talos.modules.dp_classifier import augmented_views
from lightning_talos.report.frontier import frontier_markdown
from lightning_talos.stages.results import _defence_problems
from tests.unit.test_dp import ToyData, dp_module, trainer


def test_clipping_only_is_epsilon_infinity(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = dp_module(epsilon=None, noise_multiplier=0.0)
    assert module.noise_multiplier == 0.0
    fit = trainer(tmp_path, 2)
    fit.fit(module, datamodule=module.wrap_datamodule(ToyData()))
    spent = module.privacy_spent()
    assert spent["steps"] == 8 and spent["epsilon"] is None and spent["target_epsilon"] is None
    assert float(fit.callback_metrics["dp/epsilon"]) == float("inf")
    record = {"defence": "dp_sgd", **spent}
    assert _defence_problems(record, "dp") == []  # null epsilon allowed exactly without noise
    assert _defence_problems({**record, "noise_multiplier": 0.5}, "dp") == [
        "dp.epsilon must be a number"
    ]
    dp_keys = ("epsilon", "delta", "max_grad_norm", "noise_multiplier")
    row = {"label": "DP", "task_acc": 0.5, "task_ci": (0.4, 0.6), "aia_excess": None,
           "aia_ci": None, "aia_probe": None, "mia_adv": None, "mia_ci": None, "mia_attack": None,
           **{k: spent[k] for k in dp_keys}}  # fmt: skip
    assert "inf (no noise)" in frontier_markdown([row], "f.png")[2]
    with pytest.raises(ValueError, match="epsilon or noise_multiplier"):
        dp_module(epsilon=None)


def test_views_are_grouped_flips_and_shifts_of_each_image() -> None:
    torch.manual_seed(0)
    images = torch.rand(3, 3, 8, 8)
    views = augmented_views(images, 4, 0)
    assert views.shape == (12, 3, 8, 8)
    for i in range(3):  # without shifts every view is the image or its mirror
        for view in views[4 * i : 4 * i + 4]:
            assert torch.equal(view, images[i]) or torch.equal(view, images[i].flip(-1))
    shifted = augmented_views(images, 4, 2)
    padded = F.pad(images, (2, 2, 2, 2), mode="reflect")
    for i in range(3):  # each view is an 8x8 window of the padded image or of its mirror
        for view in shifted[4 * i : 4 * i + 4]:
            found = any(
                torch.equal(view, src[:, dy : dy + 8, dx : dx + 8])
                for src in (padded[i], padded[i].flip(-1))
                for dy in range(5)
                for dx in range(5)
            )
            assert found


def test_per_view_gradients_are_averaged_per_sample_before_clipping() -> None:
    torch.manual_seed(0)
    module = dp_module(augmult=3)
    module.train()
    optimizer = module.dp_optimizer()
    images, labels = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
    views = augmented_views(images, 3, 0)
    F.cross_entropy(module(views), labels.repeat_interleave(3)).backward()
    head = module.head.weight
    per_view = head.grad_sample.clone()
    assert per_view.shape[0] == 6
    module.on_before_optimizer_step(optimizer)
    assert head.grad_sample.shape[0] == 2  # one gradient per sample: the sensitivity of one
    torch.testing.assert_close(head.grad_sample, per_view.view(2, 3, *head.shape).mean(1))
    with pytest.raises(ValueError, match="augmult"):
        dp_module(augmult=0)


def test_weight_standardised_convs_ignore_the_local_mean() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    ws = WSConv2d.like(conv)
    assert ws.state_dict().keys() == conv.state_dict().keys()
    w = ws.standardised_weight()
    torch.testing.assert_close(w.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        w.var(dim=(1, 2, 3), unbiased=False), torch.ones(4), atol=1e-3, rtol=0
    )
    # an input constant over the filter's support: zero response away from the zero padding
    flat = torch.full((1, 3, 6, 6), 0.7)
    assert ws(flat)[..., 1:-1, 1:-1].abs().max() < 1e-5
    assert conv(flat)[..., 1:-1, 1:-1].abs().max() > 1e-2  # the plain conv responds
    backbone = dp_compatible(build_backbone("small_cnn")[0])
    convs = [m for m in backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(type(m) is WSConv2d for m in convs)
