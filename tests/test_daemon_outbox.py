"""The outbox: FIFO, bounded, and a retained topic's newer value supersedes the one still waiting."""

from __future__ import annotations

import asyncio

import pytest

from devintel.daemon.outbox import Outbox
from devintel.ingest.counters import Counters
from devintel.ingest.outbound import Outgoing


def state(topic: str, value: str) -> Outgoing:
    return Outgoing(topic, value.encode(), retain=True)


def drain(outbox: Outbox) -> list[tuple[str, bytes]]:
    out = []
    while not outbox.empty():
        message = outbox.get_nowait()
        out.append((message.topic, message.payload))
        outbox.task_done()
    return out


def test_messages_leave_in_order_and_a_full_outbox_refuses_more() -> None:
    counters = Counters()
    outbox = Outbox(3, counters)
    for i in range(3):
        outbox.put_nowait(Outgoing("events", str(i).encode()))  # not retained: never merged, even on one topic
    with pytest.raises(asyncio.QueueFull):
        outbox.put_nowait(Outgoing("events", b"3"))
    assert outbox.qsize() == 3
    assert drain(outbox) == [("events", b"0"), ("events", b"1"), ("events", b"2")]
    assert counters.superseded_publish == 0
    with pytest.raises(asyncio.QueueEmpty):
        outbox.get_nowait()


def test_a_retained_value_supersedes_the_waiting_one_and_goes_to_the_back() -> None:
    counters = Counters()
    outbox = Outbox(3, counters)
    outbox.put_nowait(state("p/a", "a1"))
    outbox.put_nowait(state("p/b", "b1"))
    outbox.put_nowait(Outgoing("log", b"x"))
    outbox.put_nowait(state("p/a", "a2"))  # full, but a replacement always fits
    outbox.put_nowait(state("p/a", "a3"))
    assert outbox.qsize() == 3
    assert counters.superseded_publish == 2
    assert drain(outbox) == [("p/b", b"b1"), ("log", b"x"), ("p/a", b"a3")]


def test_a_removal_keeps_its_order_config_cleared_before_the_state() -> None:
    outbox = Outbox(10, Counters())
    outbox.put_nowait(state("ha/sensor/d/config", "{config}"))
    outbox.put_nowait(state("p/d", "{prediction}"))
    outbox.put_nowait(state("ha/sensor/d/config", ""))  # the removal: config first, then the state
    outbox.put_nowait(state("p/d", ""))
    assert drain(outbox) == [("ha/sensor/d/config", b""), ("p/d", b"")]


def test_a_failed_message_put_back_yields_to_a_newer_one_of_its_topic() -> None:
    counters = Counters()
    outbox = Outbox(10, counters)
    outbox.put_nowait(state("p/a", "old"))
    in_flight = outbox.get_nowait()
    outbox.put_nowait(state("p/a", "new"))
    outbox.requeue(in_flight)  # the connection dropped while "old" was in flight: "new" is what counts
    outbox.task_done()
    assert counters.superseded_publish == 1
    assert drain(outbox) == [("p/a", b"new")]
    failed = Outgoing("log", b"x")
    outbox.requeue(failed)
    assert drain(outbox) == [("log", b"x")]


async def test_join_waits_for_every_message_handled_or_superseded() -> None:
    outbox = Outbox(10, Counters())
    await asyncio.wait_for(outbox.join(), 1)  # nothing queued
    outbox.put_nowait(state("p/a", "1"))
    outbox.put_nowait(state("p/a", "2"))  # the first is done: superseded
    joined = asyncio.create_task(outbox.join())
    await asyncio.sleep(0)
    assert not joined.done()
    message = await asyncio.wait_for(outbox.get(), 1)
    assert message.payload == b"2"
    outbox.task_done()
    await asyncio.wait_for(joined, 1)
    with pytest.raises(ValueError, match="too many"):
        outbox.task_done()


async def test_get_waits_for_a_message() -> None:
    outbox = Outbox(1, Counters())
    getting = asyncio.create_task(outbox.get())
    await asyncio.sleep(0.01)
    assert not getting.done()
    outbox.put_nowait(Outgoing("t", b"1"))
    assert (await asyncio.wait_for(getting, 1)).payload == b"1"


def test_an_outbox_needs_room() -> None:
    with pytest.raises(ValueError, match="room"):
        Outbox(0, Counters())
