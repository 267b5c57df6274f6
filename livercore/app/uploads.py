"""The uploads of one review, in memory: what was uploaded, which item is which phase, and
whether the case under review was built from the current assignment.

The review page keeps one `UploadPool` per browser session (livercore.app.state); nothing
here is written to disk. A new upload starts a new pool with the phases proposed from the
DICOM headers (livercore.phases.assign_phases); choosing another slice of the same series
keeps the pool, its assignment and the lesion marks.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from livercore import dicom_io
from livercore.app.inputs import case_from_pool
from livercore.phases import assign_phases, assignment_from_check
from livercore.review_case import ReviewCase
from livercore.vocab import PHASES, Phase

Item = dicom_io.CTSlice | np.ndarray  # a CT slice, or the grey levels of a screen capture


@dataclass
class UploadPool:
    """One review's uploads and their phase assignment (assignment[phase] = index into items)."""

    source: str  # "dicom", "series" or "capture" (inputs.SOURCES)
    files: tuple[Hashable, ...]  # identifies the uploaded files
    view: tuple[int, ...]  # the slices chosen from them (series only)
    items: list[Item]
    labels: list[str]  # one per item, for the phase pickers
    assignment: dict[Phase, int]
    pixel_mm: float | None = None  # screen captures: the pixel size the user typed
    version: int = 0  # bumped when the assignment changes from outside the pickers
    built: tuple[Hashable, ...] | None = field(default=None, repr=False)  # build_key of the case built

    @classmethod
    def start(
        cls,
        source: str,
        files: tuple[Hashable, ...],
        view: tuple[int, ...],
        items: Sequence[Item],
        labels: Sequence[str],
        pixel_mm: float | None = None,
    ) -> UploadPool:
        """A new pool; DICOM slices get the phases their headers suggest, other items the order given."""
        slices = [i for i in items if isinstance(i, dicom_io.CTSlice)]
        assignment = (
            assign_phases(slices)
            if source == "dicom" and len(slices) == len(items)
            else dict(zip(PHASES, range(len(PHASES)), strict=True))
        )
        return cls(source, files, view, list(items), list(labels), assignment, pixel_mm)

    def holds(self, source: str, files: tuple[Hashable, ...]) -> bool:
        """Whether these are the uploads this pool was started from."""
        return self.source == source and self.files == files

    def show(
        self,
        view: tuple[int, ...],
        read: Callable[[], Sequence[Item]],
        labels: Sequence[str],
        pixel_mm: float | None,
    ) -> None:
        """Other slices (or pixel size) of the same uploads: the assignment and marks stay.
        `read` gives the items; it is called only for a view the pool does not show already."""
        if self.view != view or self.pixel_mm != pixel_mm:
            self.view, self.items, self.labels, self.pixel_mm = view, list(read()), list(labels), pixel_mm

    def assign(self, chosen: Mapping[Phase, int]) -> bool:
        """Use the phase pickers' choice; False (nothing changed) unless each item is used once."""
        if sorted(chosen.values()) != list(range(len(PHASES))):
            return False
        self.assignment = dict(chosen)
        return True

    def reorder(self, suggested: Mapping[Phase, Phase]) -> None:
        """Relabel as the aorta check suggests (labelled phase -> the phase it looks like)."""
        self.assignment = assignment_from_check(self.assignment, suggested)
        self.version += 1  # new widget keys: the pickers start from the new assignment

    @property
    def build_key(self) -> tuple[Hashable, ...]:
        return (self.files, self.view, self.pixel_mm, tuple(self.assignment.items()))

    @property
    def stale(self) -> bool:
        """Whether the case under review was built from another assignment or view."""
        return self.built != self.build_key

    @property
    def keeps_marks(self) -> bool:
        """Whether the last case built came from the same files (so its marks still apply)."""
        return self.built is not None and self.built[0] == self.files

    def build(self) -> ReviewCase:
        """The review case of the current assignment (InputError, a sentence, if it cannot be)."""
        case = case_from_pool(self.source, self.items, self.assignment, pixel_mm=self.pixel_mm)
        self.built = self.build_key
        return case
