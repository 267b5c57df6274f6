"""The review page's upload pool: phases proposed from the headers, kept across slice changes."""

from __future__ import annotations

import numpy as np
import pytest

from livercore.app.uploads import UploadPool
from livercore.dicom_io import read_ct_slice
from livercore.vocab import PHASES, Phase

U, A, D = PHASES


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory) -> dict[Phase, object]:
    """One phantom case (test-2016 #3) read back from the three DICOM files the exporter writes."""
    from livercore.phantom.cohort import generate_case
    from livercore.phantom.export import write_case

    out = tmp_path_factory.mktemp("phantom")
    row = write_case(generate_case("test-2016", 0, 3), out)
    return {p: read_ct_slice(out / str(row[p.value])) for p in PHASES}


def test_dicom_slices_get_the_phases_their_headers_say(slices) -> None:
    items = [slices[D], slices[U], slices[A]]  # shuffled
    pool = UploadPool.start("dicom", ("f1", "f2", "f3"), (), items, ["1", "2", "3"])
    assert pool.assignment == {U: 1, A: 2, D: 0}
    assert pool.stale and not pool.keeps_marks
    case = pool.build()
    assert not pool.stale and pool.keeps_marks
    np.testing.assert_array_equal(case.images[A], slices[A].hu)


def test_the_pickers_and_the_aorta_check_change_the_assignment(slices) -> None:
    pool = UploadPool.start("dicom", ("f",), (), [slices[U], slices[A], slices[D]], ["u", "a", "d"])
    pool.build()
    assert not pool.assign({U: 0, A: 0, D: 2})  # one item twice: refused, nothing changed
    assert pool.assignment == {U: 0, A: 1, D: 2} and not pool.stale
    assert pool.assign({U: 0, A: 2, D: 1}) and pool.stale
    pool.reorder({A: D, D: A})  # what the aorta check proposes back
    assert pool.assignment == {U: 0, A: 1, D: 2} and pool.version == 1


def test_another_slice_of_the_same_series_keeps_the_pool(slices) -> None:
    pool = UploadPool.start("series", ("s",), (1, 1, 1), [slices[U], slices[A], slices[D]], ["u", "a", "d"])
    pool.build()
    assert pool.holds("series", ("s",)) and not pool.holds("dicom", ("s",))
    pool.show((2, 1, 1), lambda: [slices[U], slices[A], slices[D]], ["u2", "a", "d"], None)
    assert pool.stale and pool.keeps_marks and pool.labels[0] == "u2"


def test_the_same_view_of_the_same_uploads_is_not_read_again(slices) -> None:
    """The review page asks on every rerun; the files are read only for a new view."""
    pool = UploadPool.start("dicom", ("f",), (), [slices[U], slices[A], slices[D]], ["u", "a", "d"])
    reads = []
    pool.show((), lambda: reads.append(1) or [slices[U], slices[A], slices[D]], ["u", "a", "d"], None)
    assert reads == []
    pool.show((), lambda: reads.append(1) or [slices[U], slices[A], slices[D]], ["u", "a", "d"], 0.7)
    assert reads == [1] and pool.pixel_mm == 0.7
