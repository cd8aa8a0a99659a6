"""The training losses (pipeline.training.losses): the detail terms (census, gradient L1, Charbonnier) on tiny
generated images, and RIFE's loss left exactly as it was while their weights are 0."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
import yaml

from pipeline.core.errors import UserError
from pipeline.core.params import Loss, load_params
from pipeline.models.base import IFNetOutput
from pipeline.training.losses import (
    DETAIL_TERMS,
    census_loss,
    charbonnier,
    flow_distillation,
    gradient_l1,
    laplacian_l1,
    rife_loss,
)

RIFE_WEIGHTS = Loss(laplacian=1.0, teacher=1.0, distill=0.01, census=0.0, gradient=0.0, charbonnier=0.0)


def images(seed: int, shape: tuple[int, ...] = (2, 3, 32, 32)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(DETAIL_TERMS))
def test_a_detail_term_is_zero_for_identical_images_and_positive_otherwise(name):
    term = DETAIL_TERMS[name]
    gt = images(0)
    assert term(gt.clone(), gt).item() == 0.0
    assert term(images(1), gt).item() > 0.0 and torch.isfinite(term(images(1), gt))


@pytest.mark.parametrize("name", sorted(DETAIL_TERMS))
@pytest.mark.parametrize("same", [False, True], ids=["different", "identical"])
def test_a_detail_term_has_finite_gradients(name, same):
    """Finite where the prediction is exact too (|d| and sqrt(d^2) have no finite slope at 0)."""
    gt = images(0)
    pred = (gt.clone() if same else images(1)).requires_grad_(True)
    DETAIL_TERMS[name](pred, gt).backward()
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad.abs().sum() > 0) != same


def test_census_ignores_a_brightness_offset():
    pred, gt = images(1) * 0.8, images(0) * 0.8
    assert census_loss(gt + 0.1, gt).item() == pytest.approx(0.0, abs=1e-6)
    assert census_loss(pred + 0.1, gt).item() == pytest.approx(census_loss(pred, gt).item(), rel=1e-5)


def test_census_looks_at_a_seven_pixel_window():
    """A dot moved within its 7x7 window (2 pixels) costs other than one moved out of it; moved 4 or 14 pixels,
    beyond the window's reach, it costs the same: the census compares neighbourhoods, not distances."""
    def dot(x: int) -> torch.Tensor:
        img = torch.zeros(1, 3, 32, 32)
        img[:, :, 16, x] = 1.0
        return img

    near, out, far = (census_loss(dot(10 + shift), dot(10)).item() for shift in (2, 4, 14))
    assert 0 < near and near != pytest.approx(out, rel=1e-3) and out == pytest.approx(far, rel=1e-6)


def test_the_gradient_loss_ignores_a_constant_offset_but_not_a_blur():
    gt = images(0) * 0.8
    assert gradient_l1(gt + 0.1, gt).item() == pytest.approx(0.0, abs=1e-6)
    blurred = F.avg_pool2d(F.pad(gt, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    assert gradient_l1(blurred, gt).item() > 0.05


def test_the_gradient_loss_is_the_mean_edge_difference():
    """A step of height 1 along one column: each direction's mean |difference| is the one edge over its pixels."""
    gt = torch.zeros(1, 1, 4, 5)
    pred = gt.clone()
    pred[..., 2:] = 1.0  # one horizontal step (between columns 1 and 2); no vertical one
    assert gradient_l1(pred, gt).item() == pytest.approx(4 / (4 * 4))


def test_charbonnier_approaches_l1_for_large_differences_and_is_quadratic_for_small_ones():
    gt = torch.zeros(1, 3, 8, 8)
    for d in (0.1, 0.5):
        assert charbonnier(gt + d, gt).item() == pytest.approx(d, rel=0.02)
    small = 1e-4  # far below eps = 1e-3: d^2 / (2 eps)
    assert charbonnier(gt + small, gt).item() == pytest.approx(small ** 2 / 2e-3, rel=0.01)


def outputs(seed: int) -> tuple[IFNetOutput, torch.Tensor]:
    """A model output with a teacher (leaf tensors, so their gradients can be compared) and its target, 64x64 (the
    Laplacian pyramid's five levels need it)."""
    size = (2, 3, 64, 64)
    gt = images(seed, size)
    merged = [images(seed + i + 1, size).requires_grad_(True) for i in range(3)]
    flows = [torch.randn(2, 4, 64, 64, generator=torch.Generator().manual_seed(seed + i)).requires_grad_(True)
             for i in range(3)]
    out = IFNetOutput(prediction=merged[-1], merged=merged, flows=flows,
                      teacher_prediction=images(seed + 9, size).requires_grad_(True),
                      teacher_flow=torch.randn(2, 4, 64, 64, generator=torch.Generator().manual_seed(99)))
    return out, gt


def rife_loss_as_before(out: IFNetOutput, gt: torch.Tensor, w: Loss) -> torch.Tensor:
    """RIFE's loss as the project computed it before the detail terms: the three weighted terms summed in order."""
    return sum(weight * value for weight, value in ((w.laplacian, laplacian_l1(out.prediction, gt)),
                                                    (w.teacher, laplacian_l1(out.teacher_prediction, gt)),
                                                    (w.distill, flow_distillation(out, gt))))


def leaf_gradients(out: IFNetOutput) -> list[torch.Tensor]:
    """The gradients the loss gives (the earlier blocks' predictions get none: distillation detaches them)."""
    leaves = [out.prediction, *out.flows, out.teacher_prediction]
    grads = [t.grad.clone() for t in leaves]
    for t in leaves:
        t.grad = None
    return grads


def test_with_the_detail_weights_at_zero_the_loss_and_its_gradients_are_bit_identical_to_rifes():
    out, gt = outputs(3)
    terms = rife_loss(out, gt, RIFE_WEIGHTS)
    assert set(terms) == {"total", "laplacian", "teacher", "distill"}  # no curve for a term that is off
    terms["total"].backward()
    new = leaf_gradients(out)
    before = rife_loss_as_before(out, gt, RIFE_WEIGHTS)
    before.backward()
    assert torch.equal(terms["total"], before)
    assert all(torch.equal(a, b) for a, b in zip(new, leaf_gradients(out), strict=True))


@pytest.mark.parametrize("name", sorted(DETAIL_TERMS))
def test_a_detail_term_with_a_weight_is_logged_and_added(name):
    out, gt = outputs(3)
    terms = rife_loss(out, gt, replace(RIFE_WEIGHTS, **{name: 0.5}))
    assert set(terms) == {"total", "laplacian", "teacher", "distill", name}
    expected = rife_loss_as_before(out, gt, RIFE_WEIGHTS) + 0.5 * DETAIL_TERMS[name](out.prediction, gt)
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms[name].item() == pytest.approx(DETAIL_TERMS[name](out.prediction, gt).item(), rel=1e-6)


@pytest.mark.parametrize("name", sorted(DETAIL_TERMS))
def test_a_negative_detail_weight_is_one_line_naming_the_key(tmp_path, params_dict, name):
    params_dict["train"]["loss"][name] = -0.1
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params_dict))
    with pytest.raises(UserError) as err:
        load_params(path)
    assert str(err.value) == f"{path}: train.loss.{name} = -0.1: expected a number >= 0"


def test_the_project_params_leave_every_detail_term_off(params_dict):
    assert all(params_dict["train"]["loss"][name] == 0.0 for name in DETAIL_TERMS)
