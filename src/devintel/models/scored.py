"""What the label buffer keeps of a scored event, and how the live learner keeps it small.

:class:`Scored` is what an event leaves in the delayed-label buffer (:mod:`devintel.models.labels`): its features and
the prediction and decisions made then. A live daemon holds a day to a week of them for every device, so the live
learner keeps them packed: :class:`FeaturePacker` interns each feature dict's layout (its names, in order) and keeps the
values as float32, and :class:`ScoredRows` keeps a device's waiting events as the columns of one
:class:`ScoredBlock`. Pure: no I/O.
"""

from __future__ import annotations

import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from devintel.models.features import Features

#: Features packed for the label buffer: (layout id, the values as float32 in the layout's order).
Packed = tuple[int, array.array]  # type: ignore[type-arg]


class FeaturePacker:
    """Packs feature dicts into float32 arrays over interned name layouts, about a tenth of a dict's memory.

    Events wait in the label buffer for up to the horizon, so a live daemon with thousands of devices holds
    hundreds of thousands of them; a dict of ~50 floats costs ~2.7 KB, its packed form ~0.3 KB. A layout is the
    tuple of a dict's keys in order (one per device type and field pattern, so few); unpacking restores the
    same keys in the same order. Values are rounded to float32 (7 significant digits), which learning does not
    notice. At most ``max_layouts`` layouts are interned; past that, dicts are kept as they are.
    """

    def __init__(self, max_layouts: int = 4096, typecode: str = "f") -> None:
        self.max_layouts = max_layouts
        self.typecode = typecode
        """``array`` type of the packed values: ``"f"`` (float32, the default) or ``"d"`` (float64: exact)."""
        self._ids: dict[tuple[str, ...], int] = {}
        self._layouts: list[tuple[str, ...]] = []

    def intern(self, features: Features) -> int | None:
        """The id of the layout of ``features`` (its keys in order), interned if new; None when the table is full."""
        layout = tuple(features)
        layout_id = self._ids.get(layout)
        if layout_id is None:
            if len(self._layouts) >= self.max_layouts:
                return None
            layout_id = self._ids[layout] = len(self._layouts)
            self._layouts.append(layout)
        return layout_id

    def pack(self, features: Features) -> Features | Packed:
        """The packed form of ``features`` (or the dict itself when the layout table is full)."""
        layout_id = self.intern(features)
        if layout_id is None:
            return features
        return layout_id, array.array(self.typecode, features.values())

    def layout(self, layout_id: int) -> tuple[str, ...]:
        """The feature names, in order, of a layout id."""
        return self._layouts[layout_id]

    def unpack(self, packed: Features | Packed) -> Features:
        """The feature dict of a packed form (a dict is returned as it is)."""
        if isinstance(packed, dict):
            return packed
        layout_id, values = packed
        return dict(zip(self._layouts[layout_id], values, strict=True))


@dataclass(frozen=True, slots=True)
class Scored:
    """What the label buffer keeps for an event: its features (packed, when the learner packs them) and the
    probability predicted then."""

    features: Features | Packed
    probability: float
    flagged: bool | None = None
    """The decision made then (probability against the serving model's threshold); None: against the
    learner's own ``threshold`` when the label resolves."""
    alarm: bool = False
    """The serving models' alarm decision after this event (the live daemon's ``needs_attention``)."""
    challenger_alarm: bool = False
    """The learning copy's alarm decision after this event (see :mod:`devintel.models.challenger`)."""


#: :attr:`ScoredBlock.layout` of a row whose features are kept as a dict (the packer's layout table was full).
UNPACKED: Final = 0xFFFF
#: Bits of :attr:`ScoredBlock.flags`.
_FLAGGED_KNOWN, _FLAGGED, _ALARM, _CHALLENGER = 1, 2, 4, 8


@dataclass(slots=True)
class ScoredBlock:
    """One device's waiting :class:`Scored` events as columns, one row per event in arrival order (see
    :class:`ScoredRows`)."""

    layout: array.array  # type: ignore[type-arg]
    """The packer's layout id of each row's features (uint16; :data:`UNPACKED`: kept in :attr:`unpacked`)."""
    sizes: array.array  # type: ignore[type-arg]
    """How many of :attr:`values` each row holds (uint16)."""
    values: array.array  # type: ignore[type-arg]
    """Every row's feature values, one row after the other (the packer's typecode: float32 live)."""
    probability: array.array  # type: ignore[type-arg]
    """The probability predicted then (float64, exact)."""
    flags: bytearray
    """``flagged`` (known, and its value), ``alarm``, ``challenger_alarm``, as bits."""
    unpacked: list[Features | None] | None = None
    """Per row, the features kept as a dict (None until a row needs it: the packer's layout table was full)."""


class ScoredRows:
    """The :class:`~devintel.models.labels.Rows` of the live learner's label buffer: a device's waiting
    :class:`Scored` events as one :class:`ScoredBlock`, about 150 bytes an event of 30 features (as float32, over the
    ``packer``'s layouts; a :class:`Scored` object holding a packed tuple took about 530). The payload given back is
    the one stored: its features packed ``(layout id, values)`` (a dict when the packer's table was full), which
    :meth:`FeaturePacker.unpack` turns back into the same dict (float32 values: exactly what the learner learned
    from before, when each event kept a :class:`Scored` of its packed features)."""

    def __init__(self, packer: FeaturePacker) -> None:
        if packer.max_layouts > UNPACKED:
            raise ValueError(f"a packer of at most {UNPACKED} layouts, not {packer.max_layouts}")
        self.packer = packer

    def block(self) -> ScoredBlock:
        """An empty block."""
        return ScoredBlock(
            array.array("H"), array.array("H"), array.array(self.packer.typecode), array.array("d"), bytearray()
        )

    def append(self, block: ScoredBlock, scored: Scored) -> None:
        """Keep ``scored`` (features as a dict, or packed by this packer) as the block's last row."""
        features = scored.features
        layout: int | None
        if isinstance(features, dict):
            layout = self.packer.intern(features) if len(features) <= UNPACKED else None
            values: Iterable[float] = features.values()
        else:
            layout, values = features
        if layout is None:
            if block.unpacked is None:
                block.unpacked = [None] * len(block.flags)
            block.unpacked.append(features)  # type: ignore[arg-type]
            layout, values = UNPACKED, ()
        elif block.unpacked is not None:
            block.unpacked.append(None)
        before = len(block.values)
        block.values.extend(values)
        block.sizes.append(len(block.values) - before)
        block.layout.append(layout)
        block.probability.append(scored.probability)
        flagged = scored.flagged
        block.flags.append(
            (0 if flagged is None else _FLAGGED_KNOWN | (_FLAGGED if flagged else 0))
            | (_ALARM if scored.alarm else 0)
            | (_CHALLENGER if scored.challenger_alarm else 0)
        )

    def pop(self, block: ScoredBlock, index: int) -> Scored:
        """Row ``index``'s event, removed from the block."""
        start = sum(block.sizes[:index]) if index else 0
        scored = self._row(block, index, start)
        del block.values[start : start + block.sizes[index]]
        del block.sizes[index], block.layout[index], block.probability[index], block.flags[index]
        if block.unpacked is not None:
            del block.unpacked[index]
        return scored

    def payloads(self, block: ScoredBlock) -> list[Scored]:
        """Every row's event, in arrival order."""
        out, start = [], 0
        for index, size in enumerate(block.sizes):
            out.append(self._row(block, index, start))
            start += size
        return out

    @staticmethod
    def _row(block: ScoredBlock, index: int, start: int) -> Scored:
        layout = block.layout[index]
        features: Features | Packed
        if layout == UNPACKED and block.unpacked is not None:
            features = block.unpacked[index]  # type: ignore[assignment]
        else:
            features = (layout, block.values[start : start + block.sizes[index]])
        bits = block.flags[index]
        flagged = bool(bits & _FLAGGED) if bits & _FLAGGED_KNOWN else None
        return Scored(features, block.probability[index], flagged, bool(bits & _ALARM), bool(bits & _CHALLENGER))
