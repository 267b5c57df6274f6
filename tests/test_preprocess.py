import numpy as np
import pytest

from livercore.errors import InputError
from livercore.preprocess import (
    CROP_SIZE,
    LesionBox,
    crop_square,
    field_side_px,
    lesion_crop,
    preprocess_case,
    window_to_uint8,
)
from livercore.vocab import PHASES, Phase, Window


def test_window_maps_low_high_and_level_by_hand():
    # unenhanced L40/W250: low -85 -> 0, high 165 -> 255, level 40 -> 127.5 -> 128 (round half even: 128)
    hu = np.array([[-1000, -85, 40, 165, 3000]], float)
    assert window_to_uint8(hu, Window(40, 250)).tolist() == [[0, 0, 128, 255, 255]]
    # arterial L45/W290: 100 HU -> (100 + 100) / 290 * 255 = 175.86 -> 176
    assert window_to_uint8(np.array([[100.0]]), Phase.ARTERIAL.window)[0, 0] == 176


def test_crop_square_pads_outside_the_image_with_fill():
    img = np.arange(25, dtype=np.uint8).reshape(5, 5)
    crop = crop_square(img, 0, 0, 4)  # centred on the corner pixel: the top-left 2x2 is outside
    assert crop.shape == (4, 4)
    assert crop[:2].sum() == 0 and crop[:, :2].sum() == 0
    assert crop[2:, 2:].tolist() == [[0, 1], [5, 6]]


def test_field_of_view_is_fixed_in_mm_until_the_lesion_outgrows_it():
    # 5 mm and 40 mm lesions at 0.7 mm/px share one 64 mm field: 91.4 px, whatever their size
    assert field_side_px(LesionBox.from_center(0, 0, 5, 0.7), spacing_mm=0.7) == 91
    assert field_side_px(LesionBox(0, 0, 40 / 0.7, 30), spacing_mm=0.7) == 91
    # and at another spacing the same 64 mm
    assert field_side_px(LesionBox.from_center(0, 0, 20, 0.8), spacing_mm=0.8) == 80
    # a 100 mm lesion outgrows it: 1.25 x its box, so its border stays in view
    assert field_side_px(LesionBox.from_center(0, 0, 100, 0.7), spacing_mm=0.7) == 179
    # no pixel size (a screen capture): 2.5 x the box's longer side
    assert field_side_px(LesionBox(0, 0, 40, 30), spacing_mm=None) == 100


def test_lesion_crop_of_a_uniform_slice_is_the_windowed_constant():
    hu = np.full((512, 512), 100.0)
    crop = lesion_crop(hu, Phase.ARTERIAL, LesionBox(256, 256, 50, 50), 0.7)
    assert crop.shape == (CROP_SIZE, CROP_SIZE) and crop.dtype == np.uint8
    assert np.all(crop == 176)


def test_preprocess_centres_each_phase_on_its_own_box():
    hu = {}
    boxes = {}
    for i, p in enumerate(PHASES):
        img = np.zeros((200, 200))
        img[90 + 5 * i : 110 + 5 * i, 90:110] = 160  # the lesion moves 5 px down per phase
        hu[p] = img
        boxes[p] = LesionBox(100 + 5 * i, 100, 20, 20)
    x = preprocess_case(hu, boxes, None)
    assert x.shape == (3, 70, 70)
    # the same picture in every channel apart from the window: bright centre, darker rim
    for c, p in enumerate(PHASES):
        expected = window_to_uint8(np.array([[160.0]]), p.window)[0, 0]
        assert x[c, 35, 35] == expected
        assert x[c, 2, 2] == window_to_uint8(np.array([[0.0]]), p.window)[0, 0]


def test_preprocess_names_missing_phases():
    with pytest.raises(InputError, match="delayed"):
        preprocess_case(
            {Phase.ARTERIAL: np.zeros((8, 8))},
            {Phase.ARTERIAL: LesionBox(4, 4, 2, 2)},
            1.0,
            phases=(Phase.ARTERIAL, Phase.DELAYED),
        )
