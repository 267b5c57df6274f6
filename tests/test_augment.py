import torch

from livercore.augment import AugmentConfig, augment_batch

STILL = AugmentConfig(max_rotation_deg=0, max_shift=0, min_zoom=1, max_zoom=1, max_noise_std=0)


def _images() -> torch.Tensor:
    return torch.rand(6, 3, 70, 70, generator=torch.Generator().manual_seed(1))


def _augment(x: torch.Tensor, seed: int, config: AugmentConfig | None = None) -> torch.Tensor:
    return augment_batch(x.clone(), config or AugmentConfig(), torch.Generator().manual_seed(seed))


def test_same_seed_same_variants_other_seed_other_variants() -> None:
    x = _images()
    assert torch.equal(_augment(x, 0), _augment(x, 0))
    assert not torch.allclose(_augment(x, 0), _augment(x, 1))


def test_zero_strengths_leave_images_unchanged() -> None:
    x = _images()
    torch.testing.assert_close(_augment(x, 0, STILL), x, atol=1e-5, rtol=0)


def test_variants_keep_shape_and_range() -> None:
    out = _augment(_images(), 0)
    assert out.shape == (6, 3, 70, 70)
    assert out.min() >= 0 and out.max() <= 1


def test_zoom_two_doubles_a_central_square() -> None:
    x = torch.zeros(1, 1, 70, 70)
    x[..., 25:45, 25:45] = 1.0  # a 20-pixel square in the centre
    out = _augment(
        x, 0, AugmentConfig(max_rotation_deg=0, max_shift=0, min_zoom=2, max_zoom=2, max_noise_std=0)
    )
    assert (out[0, 0, 35] > 0.5).sum() == 40  # the row through the centre
    assert out[0, 0, 35, 14] < 0.5 and out[0, 0, 35, 16] > 0.5


def test_phases_of_one_image_set_share_the_transform() -> None:
    x = _images()[:, :1].repeat(1, 3, 1, 1)
    out = _augment(x, 0, AugmentConfig(max_noise_std=0))
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])
    assert not torch.allclose(out, x, atol=0.05)


def test_noise_alone_stays_within_its_strength() -> None:
    x = torch.full((64, 1, 70, 70), 0.5)
    noise = (
        _augment(
            x, 0, AugmentConfig(max_rotation_deg=0, max_shift=0, min_zoom=1, max_zoom=1, max_noise_std=0.03)
        )
        - x
    )
    std = noise.std(dim=(1, 2, 3))
    assert std.max() < 0.032 and std.min() < 0.01 and std.mean() > 0.01
    assert abs(noise.mean()) < 1e-3
