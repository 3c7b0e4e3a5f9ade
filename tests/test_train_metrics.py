"""Metrics on known values, and the synthetic refocus used by predict --refocus."""

import numpy as np
import pytest
import torch
from train_fixtures import single_torch_thread  # noqa: F401

from focalstack.train.metrics import MeanMeter, aif_psnr, aif_ssim, bumpiness, defocus_mse, depth_metrics
from focalstack.train.predict import disk_kernel, refocus


def _depth(b=2, h=24, w=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.2 + 2.5 * torch.rand(b, h, w, generator=g)


def test_perfect_depth_prediction():
    gt = _depth()
    mask = torch.ones_like(gt, dtype=torch.bool)
    m = depth_metrics(gt.clone(), gt, mask)
    for k in ("depth_mse", "depth_rmse", "depth_absrel", "depth_sqrel", "bumpiness"):
        assert torch.allclose(m[k], torch.zeros(2), atol=1e-6), k
    for k in ("delta1", "delta2", "delta3"):
        assert torch.allclose(m[k], torch.ones(2)), k


def test_depth_metrics_on_known_errors():
    gt = _depth()
    mask = torch.ones_like(gt, dtype=torch.bool)
    m = depth_metrics(1.1 * gt, gt, mask)
    assert torch.allclose(m["depth_absrel"], torch.full((2,), 0.1), atol=1e-5)
    assert torch.allclose(m["depth_mse"], (0.01 * gt**2).flatten(1).mean(1), rtol=1e-4)
    assert torch.allclose(m["depth_sqrel"], (0.01 * gt).flatten(1).mean(1), rtol=1e-4)
    assert torch.allclose(m["delta1"], torch.ones(2))
    m = depth_metrics(1.3 * gt, gt, mask)  # 1.25 < 1.3 < 1.5625
    assert torch.allclose(m["delta1"], torch.zeros(2)) and torch.allclose(m["delta2"], torch.ones(2))
    m = depth_metrics(gt / 1.7, gt, mask)  # 1.5625 < 1.7 < 1.953
    assert torch.allclose(m["delta2"], torch.zeros(2)) and torch.allclose(m["delta3"], torch.ones(2))


def test_masked_pixels_do_not_count():
    gt = _depth(b=1)
    pred = gt.clone()
    pred[0, :, :12] += 5.0
    mask = torch.zeros_like(gt, dtype=torch.bool)
    mask[0, :, 12:] = True
    m = depth_metrics(pred, gt, mask)
    assert m["depth_rmse"].item() == pytest.approx(0.0, abs=1e-6)
    assert m["bumpiness"].item() == pytest.approx(0.0, abs=1e-6)


def test_bumpiness_ignores_planar_errors_and_sees_bumps():
    gt = _depth(b=1, h=32, w=32)
    mask = torch.ones_like(gt, dtype=torch.bool)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    tilted = gt + 0.3 + 0.01 * xx - 0.02 * yy  # a planar error has a zero Hessian
    assert bumpiness(tilted, gt, mask).item() == pytest.approx(0.0, abs=1e-4)
    bumpy = gt + 0.01 * torch.randn(1, 32, 32, generator=torch.Generator().manual_seed(1))
    b = bumpiness(bumpy, gt, mask).item()
    assert 0.5 < b <= 5.0  # clipped at 0.05 per pixel, times 100
    assert bumpiness(gt + torch.randn(1, 32, 32), gt, mask).item() == pytest.approx(5.0, abs=0.2)


def test_defocus_mse_and_aif_psnr_ssim():
    a = torch.zeros(2, 3, 4, 4)
    assert torch.allclose(defocus_mse(a + 2.0, a), torch.full((2,), 4.0))
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, 32, 32, generator=g)
    noisy = (gt + 0.05 * torch.randn(2, 3, 32, 32, generator=g)).clamp(0, 1)
    mse = ((noisy - gt) ** 2).flatten(1).mean(1)
    assert torch.allclose(aif_psnr(noisy, gt), 10 * torch.log10(1 / mse), atol=1e-3)
    assert torch.allclose(aif_ssim(gt, gt), torch.ones(2), atol=1e-5)
    s = aif_ssim(noisy, gt)
    assert torch.all(s < 0.99) and torch.all(s > 0.3)
    assert torch.isfinite(aif_ssim(noisy[..., :8, :8], gt[..., :8, :8])).all()  # smaller than the window


def test_mean_meter_leaves_out_undefined_scenes_and_counts_them():
    m = MeanMeter()
    m.add_images("a", [1.0, None, 3.0])
    m.add_images("b", [None])
    m.add("c", torch.tensor([2.0, 4.0]))
    assert m.means() == {"a": 2.0, "c": 3.0}  # b has no value at all: absent, not 0
    assert m.skipped == {"a": 1, "b": 1}


def test_disk_kernel_and_refocus():
    for d in (0.5, 1.0, 3.0, 6.4):
        k = disk_kernel(d)
        assert k.sum() == pytest.approx(1.0, abs=1e-6) and k.shape[0] % 2 == 1
    k = disk_kernel(6.0)
    c = np.arange(k.shape[0]) - k.shape[0] // 2
    second_moment = (k * (c[:, None] ** 2 + c[None, :] ** 2)).sum()
    assert second_moment == pytest.approx(3.0**2 / 2, rel=0.05)  # uniform disk of radius r: r^2 / 2
    rng = np.random.default_rng(0)
    img = rng.random((40, 40, 3)).astype(np.float32)
    assert np.allclose(refocus(img, np.zeros((40, 40))), img, atol=1e-6)  # in focus: unchanged
    blurred = refocus(img, np.full((40, 40), 5.0))
    assert blurred.std() < 0.5 * img.std()
    half = np.zeros((40, 40))
    half[:, 20:] = 5.0
    mixed = refocus(img, half)
    assert np.allclose(mixed[:, :18], img[:, :18], atol=1e-6) and mixed[:, 24:].std() < 0.5 * img.std()


def test_refocus_caps_huge_blur():
    """Depth near zero gives enormous blur diameters: capped, so memory and time stay bounded."""
    img = np.random.default_rng(1).random((24, 32, 3)).astype(np.float32)
    out = refocus(img, np.full((24, 32), 1e9))
    assert out.shape == img.shape and np.isfinite(out).all()
