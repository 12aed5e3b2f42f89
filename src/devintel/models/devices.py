"""Per-device state in one table: one record per device, one ``forget``, one cap.

Everything the live path keeps about a device is a field of one slotted record, :class:`Device`: the state of its
features, its events waiting for a label, the alarm decisions of the serving and the learning models, the live
evidence (its source, home type, offline since), its alarm onsets waiting to be judged, and what the ingest handler
knows of it. The records live in one :class:`DeviceTable`, least recently heard first, which

- forgets a device in one step (:meth:`DeviceTable.forget`: the record goes, every field with it);
- bounds the devices with one cap (``max_devices``): a new device past it evicts the least recently heard one, and
  the table tells its owner which (:meth:`DeviceTable.take_evicted`), who counts and logs it;
- is handed over whole when other models take over serving (a reload or a refresh: one object, so no field can be
  left behind);
- snapshots and restores every field whose metadata names a snapshot key (:meth:`DeviceTable.snapshot`), and every
  field must say either that or why it is not kept (``transient``): a field added without a word fails at import.

Components that used to keep a map of their own (the feature extractor, the label buffer, the episode ledger) take
a :class:`Column` instead: a dict-like view of one field over the table, so they read and write the records
without knowing the table (the warm start gives them plain dicts). Pure: no I/O.

Not here, by choice: what a source's adapter remembers of the source (Zigbee2MQTT's device list and outage
counters, Home Assistant's registries; :mod:`devintel.ingest.adapters`). That memory mirrors the source's own
registry and lives as long as the source lists the device (bounded by the adapter's cap): devintel evicting a silent
device does not make the bridge forget its type and power source, which the device's return would need.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, overload

from devintel.models.decision import AlarmState

if TYPE_CHECKING:
    from devintel.models.features import DeviceState
    from devintel.models.labels import Waiting

V = TypeVar("V")
T = TypeVar("T")

#: Metadata key of a field that the snapshot keeps: the key of its values in :meth:`DeviceTable.snapshot`.
SNAPSHOT: Final = "snapshot"
#: Metadata key of a field that the snapshot does not keep: why not, in words.
TRANSIENT: Final = "transient"


@dataclass(frozen=True, slots=True)
class Codec:
    """How a field's value goes into the snapshot: whether it is worth keeping, its JSON form, and back."""

    keeps: Callable[[Any], bool]
    dump: Callable[[Any], object]
    load: Callable[[Any], Any]


ALARM_CODEC: Final = Codec(
    keeps=lambda state: state.carries(), dump=lambda state: state.as_list(), load=AlarmState.from_list
)
"""An alarm decision that carries anything (an alarm on, or evidence building up), as :meth:`AlarmState.as_list`;
the others restart as they would anyway, from a fresh state."""


def _kept(key: str, codec: Codec) -> dict[str, object]:
    return {SNAPSHOT: key, "codec": codec}


def _transient(why: str) -> dict[str, object]:
    return {TRANSIENT: why}


@dataclass(slots=True)
class Device:
    """Everything kept about one device (None: nothing yet). Each field's metadata says whether the snapshot keeps
    it (under which key) or why not."""

    features: DeviceState | None = field(
        default=None, metadata=_transient("rebuilt from the device's next reports (as after any restart)")
    )
    """The state of its features (:class:`~devintel.models.features.FeatureExtractor`)."""
    waiting: Waiting | None = field(
        default=None, metadata=_transient("labels wait in memory only, as the learner's examples")
    )
    """Its events waiting for a label (a :class:`~devintel.models.labels.Waiting` block of
    :class:`~devintel.models.labels.DelayedLabels`)."""
    held: list[tuple[float, int, str]] | None = field(
        default=None, metadata=_transient("live evidence: found again from the stream")
    )
    """Not None while failure evidence may be coming: the expiries of its events deferred meanwhile."""
    last_held: float | None = field(default=None, metadata=_transient("paces the label buffer only"))
    """The time of its latest event held for a label (``label_interval_s``)."""
    alarm: AlarmState | None = field(default=None, metadata=_kept("serving", ALARM_CODEC))
    """The serving models' alarm decision."""
    challenger_alarm: AlarmState | None = field(default=None, metadata=_kept("challenger", ALARM_CODEC))
    """The learning copy's alarm decision (stepped on the events that wait for a label)."""
    onsets: list[float] | None = field(
        default=None, metadata=_transient("episodes are judged in memory, as the labels they follow")
    )
    """Its alarm onsets waiting to be judged true or false (:class:`~devintel.models.household.EpisodeLedger`)."""
    source: str | None = field(default=None, metadata=_transient("the handler's registry keeps the source"))
    """The source it was last heard from (its evidence is judged on that source's clock)."""
    home_type: str | None = field(default=None, metadata=_transient("every event names it again"))
    offline_since: float | None = field(default=None, metadata=_transient("availability is published again"))
    check_at: float | None = field(default=None, metadata=_transient("scheduled again from its evidence"))
    """When its live evidence (offline, silence) is next worth a look (:mod:`devintel.models.checks`)."""
    ingest: Any = field(default=None, metadata=_transient("the handler saves it as its device registry"))
    """What the ingest handler knows of it once it reported (:class:`devintel.ingest.handler.DeviceRecord`)."""
    info: Any = field(default=None, metadata=_transient("the handler saves it as its device registry"))
    """Its source's word about it (:class:`devintel.ingest.inbound.DeviceInfo`)."""


def check_policies(record: type) -> None:
    """Raise TypeError unless every field of the dataclass ``record`` says whether the snapshot keeps it."""
    for item in fields(record):
        if (SNAPSHOT in item.metadata) == (TRANSIENT in item.metadata):
            raise TypeError(f"{record.__name__}.{item.name} must say either its snapshot key or why it is transient")


check_policies(Device)


class DeviceTable:
    """One record per device, least recently heard first (see the module docstring). ``max_devices`` None: no cap.

    ``record`` is the record type (:class:`Device`; a test may extend it)."""

    def __init__(self, max_devices: int | None = None, record: type[Device] = Device) -> None:
        check_policies(record)
        self.max_devices = max_devices
        self.record_type = record
        self.records: OrderedDict[str, Device] = OrderedDict()
        """Every device's record, least recently heard first."""
        self._evicted: list[tuple[str, Device]] = []

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self.records

    def __iter__(self) -> Iterator[str]:
        return iter(self.records)

    def get(self, device_id: str) -> Device | None:
        """The device's record, if it has one."""
        return self.records.get(device_id)

    def record(self, device_id: str) -> Device:
        """The device's record, made (as the most recently heard) when it has none; a new record past the cap evicts
        the least recently heard devices first (see :meth:`take_evicted`)."""
        device = self.records.get(device_id)
        if device is None:
            cap = self.max_devices
            while cap is not None and self.records and len(self.records) >= cap:
                self._evicted.append(self.records.popitem(last=False))
            device = self.records[device_id] = self.record_type()
        return device

    def heard(self, device_id: str) -> Device:
        """The device's record, made if need be, now the most recently heard."""
        device = self.records.get(device_id)
        if device is None:
            return self.record(device_id)
        self.records.move_to_end(device_id)
        return device

    def forget(self, device_id: str) -> Device | None:
        """Drop everything about a device (evicted, gone, left the network); its record, if it had one."""
        return self.records.pop(device_id, None)

    def take_evicted(self) -> list[tuple[str, Device]]:
        """The (device id, record) of the devices the cap evicted since the last call, oldest first."""
        evicted, self._evicted = self._evicted, []
        return evicted

    def column(self, name: str) -> Column[Any]:
        """A dict-like view of the field ``name`` over every record (see :class:`Column`)."""
        if name not in {item.name for item in fields(self.record_type)}:
            raise AttributeError(f"{self.record_type.__name__} has no field {name!r}")
        return Column(self, name)

    def snapshot(self) -> dict[str, dict[str, object]]:
        """The fields the snapshot keeps, as JSON-ready values: ``{snapshot key: {device id: value}}`` (a value only
        where its codec finds it worth keeping)."""
        kept = [(item.name, item.metadata[SNAPSHOT], item.metadata["codec"]) for item in _kept_fields(self)]
        out: dict[str, dict[str, object]] = {key: {} for _, key, _ in kept}
        for device_id, device in self.records.items():
            for name, key, codec in kept:
                value = getattr(device, name)
                if value is not None and codec.keeps(value):
                    out[key][device_id] = codec.dump(value)
        return out

    def restore(self, saved: Mapping[str, object]) -> None:
        """Take over the values of :meth:`snapshot` (keys it does not know, and values that do not read, are
        skipped: an older or newer snapshot still loads)."""
        for item in _kept_fields(self):
            values = saved.get(item.metadata[SNAPSHOT])
            if not isinstance(values, dict):
                continue
            for device_id, value in values.items():
                try:
                    loaded = item.metadata["codec"].load(value)
                except (TypeError, ValueError):
                    continue
                setattr(self.record(str(device_id)), item.name, loaded)


def _kept_fields(table: DeviceTable) -> list[Any]:
    return [item for item in fields(table.record_type) if SNAPSHOT in item.metadata]


class Column(MutableMapping[str, V], Generic[V]):
    """One field of every record, as a dict keyed by device id: a device whose field is None is not in it.

    Setting a value for a device with no record makes one (the table's cap applies); deleting sets the field to
    None and leaves the rest of the record (dropping a device is :meth:`DeviceTable.forget`'s). Iteration follows
    the table's order (least recently heard first)."""

    __slots__ = ("_get", "name", "records", "table")

    def __init__(self, table: DeviceTable, name: str) -> None:
        self.table = table
        self.records = table.records
        self.name = name
        self._get = attrgetter(name)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Column, (self.table, self.name))

    def __getitem__(self, device_id: str) -> V:
        device = self.records.get(device_id)
        value = None if device is None else self._get(device)
        if value is None:
            raise KeyError(device_id)
        return value  # type: ignore[no-any-return]

    @overload
    def get(self, device_id: str, /) -> V | None: ...

    @overload
    def get(self, device_id: str, /, default: V | T) -> V | T: ...

    def get(self, device_id: str, /, default: Any = None) -> Any:
        """The device's value, else ``default``."""
        device = self.records.get(device_id)
        if device is None:
            return default
        value = self._get(device)
        return default if value is None else value

    def __contains__(self, device_id: object) -> bool:
        device = self.records.get(device_id)  # type: ignore[call-overload]
        return device is not None and self._get(device) is not None

    def __setitem__(self, device_id: str, value: V) -> None:
        device = self.records.get(device_id)
        setattr(self.table.record(device_id) if device is None else device, self.name, value)

    def __delitem__(self, device_id: str) -> None:
        device = self.records.get(device_id)
        if device is None or self._get(device) is None:
            raise KeyError(device_id)
        setattr(device, self.name, None)

    def pop(self, device_id: str, *default: Any) -> Any:
        """The device's value, set to None in its record (``default`` when it has none)."""
        device = self.records.get(device_id)
        value = None if device is None else self._get(device)
        if value is None:
            if default:
                return default[0]
            raise KeyError(device_id)
        setattr(device, self.name, None)
        return value

    def setdefault(self, device_id: str, default: Any = None) -> Any:
        """The device's value, set to ``default`` first when it has none."""
        device = self.records.get(device_id)
        if device is None:
            device = self.table.record(device_id)
        value = self._get(device)
        if value is None:
            setattr(device, self.name, default)
            return default
        return value

    def __iter__(self) -> Iterator[str]:
        get = self._get
        return iter([device_id for device_id, device in self.records.items() if get(device) is not None])

    def __len__(self) -> int:
        get = self._get
        return sum(1 for device in self.records.values() if get(device) is not None)

    def __repr__(self) -> str:
        return f"Column({self.name!r}, {dict(self)!r})"
