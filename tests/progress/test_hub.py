"""The channel layer (``progress.hub``) against the real Redis of the test run.

One subscription per group per process, local delivery to every member, no
Redis round trip for a consumer's own channel, nothing left behind by a closed
socket, and a ``layer.reconnected`` message to every member once a lost
subscription is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis

from progress.hub import HubChannelLayer
from progress.protocol import layer_reconnected_message

pytestmark = pytest.mark.asyncio

TIMEOUT = 5.0


@pytest_asyncio.fixture
async def layer(redis_url: str) -> AsyncIterator[HubChannelLayer]:
    hub = HubChannelLayer(hosts=[redis_url], prefix="test-hub", capacity=10)
    yield hub
    await hub.flush()


async def receive(hub: HubChannelLayer, channel: str) -> dict:
    async with asyncio.timeout(TIMEOUT):
        return await hub.receive(channel)


def kill_subscription(client: redis.Redis, hub: HubChannelLayer) -> int:
    """Close the hub's subscription connection, and only its own: the live servers of the
    test run share this Redis."""
    killed = 0
    for info in client.client_list(_type="pubsub"):
        if info.get("name") == hub.subscriber_name:
            killed += client.client_kill_filter(_id=info["id"])
    return killed


def subscribers(redis_url: str, group: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.pubsub_numsub(f"test-hub:group:{group}")[0][1])
    finally:
        client.close()


async def test_a_group_message_reaches_every_member_through_one_subscription(
    layer: HubChannelLayer, redis_url: str
) -> None:
    members = [await layer.new_channel() for _ in range(50)]
    for channel in members:
        await layer.group_add("execution.a", channel)
    assert subscribers(redis_url, "execution.a") == 1

    await layer.group_send("execution.a", {"type": "progress.event", "seq": 1, "frame": "{}"})
    for channel in members:
        assert await receive(layer, channel) == {"type": "progress.event", "seq": 1, "frame": "{}"}


async def test_a_batch_of_group_sends_arrives_in_order_in_every_group(layer: HubChannelLayer) -> None:
    one, two = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("execution.one", one)
    await layer.group_add("feed.two", two)
    sends = []
    for seq in range(1, 9):
        sends.append(("execution.one", {"type": "progress.event", "seq": seq}))
        sends.append(("feed.two", {"type": "feed.frame", "seq": seq}))
        sends.append(("execution.nobody", {"type": "progress.event", "seq": seq}))
    await layer.group_send_many(sends)
    assert [(await receive(layer, one))["seq"] for _ in range(8)] == list(range(1, 9))
    assert [(await receive(layer, two))["seq"] for _ in range(8)] == list(range(1, 9))


async def test_a_member_of_another_group_gets_nothing(layer: HubChannelLayer) -> None:
    mine, other = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("execution.mine", mine)
    await layer.group_add("execution.other", other)
    await layer.group_send("execution.mine", {"type": "progress.event", "seq": 7})
    assert (await receive(layer, mine))["seq"] == 7
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await layer.receive(other)


async def test_the_last_member_leaving_unsubscribes_the_process(layer: HubChannelLayer, redis_url: str) -> None:
    first, second = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("execution.b", first)
    await layer.group_add("execution.b", second)
    await layer.group_discard("execution.b", first)
    await layer.group_send("execution.b", {"type": "progress.event", "seq": 1})
    assert (await receive(layer, second))["seq"] == 1
    await layer.group_discard("execution.b", second)
    # The reader drops the subscription at its next turn.
    async with asyncio.timeout(TIMEOUT):
        while subscribers(redis_url, "execution.b"):  # noqa: ASYNC110 - Redis state: nothing to wait on
            await asyncio.sleep(0.05)


async def test_a_cancelled_receive_forgets_the_channel_and_its_groups(layer: HubChannelLayer) -> None:
    """What Channels does when a socket closes: nothing may stay behind per connection."""
    for _ in range(20):
        channel = await layer.new_channel()
        await layer.group_add("execution.c", channel)
        task = asyncio.create_task(layer.receive(channel))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert_nothing_left(layer)


def assert_nothing_left(layer: HubChannelLayer) -> None:
    state = layer._state()
    assert (state.channels, state.groups, state.memberships, state.receiving) == ({}, {}, {}, {})


async def test_a_receive_cancelled_before_it_ran_leaves_nothing_once_the_group_is_left(layer: HubChannelLayer) -> None:
    """Channels' dispatch loop starts a new receive after each message; a socket closing
    in that turn cancels it before it has run a line, so only leaving the group remains."""
    for _ in range(20):
        channel = await layer.new_channel()
        await layer.group_add("execution.h", channel)
        task = asyncio.create_task(layer.receive(channel))
        task.cancel()  # before the task had a turn
        with pytest.raises(asyncio.CancelledError):
            await task
        await layer.group_discard("execution.h", channel)  # the consumer's disconnect
    assert_nothing_left(layer)


async def test_a_message_received_in_the_turn_of_the_disconnect_leaves_nothing(layer: HubChannelLayer) -> None:
    """The receive returned a message (so it was never cancelled) and the consumer then
    ended: the leak the connect-churn soak found, one queue per such socket."""
    for seq in range(20):
        channel = await layer.new_channel()
        await layer.group_add("execution.i", channel)
        await layer.group_send("execution.i", {"type": "progress.event", "seq": seq})
        await layer.group_send("execution.i", {"type": "progress.event", "seq": seq + 100})
        assert (await receive(layer, channel))["seq"] == seq
        async with asyncio.timeout(TIMEOUT):  # the next one waits in the queue, unread
            while layer._state().channels[channel].empty():  # noqa: ASYNC110 - a queue has no "non-empty" event to await
                await asyncio.sleep(0.01)
        await layer.group_discard("execution.i", channel)
    assert_nothing_left(layer)


async def test_a_channel_in_no_group_keeps_no_queue_between_receives(layer: HubChannelLayer) -> None:
    """A refused socket never joins a group: its receive is all there is."""
    channel = await layer.new_channel()
    assert_nothing_left(layer)
    task = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_nothing_left(layer)


async def test_a_full_member_queue_drops_instead_of_growing(layer: HubChannelLayer) -> None:
    channel = await layer.new_channel()
    await layer.group_add("execution.d", channel)
    for seq in range(1, 31):
        await layer.group_send("execution.d", {"type": "progress.event", "seq": seq})
    await layer.group_send("execution.e", {"type": "barrier"})  # no member: just let the reader run
    async with asyncio.timeout(TIMEOUT):
        while layer._state().channels[channel].qsize() < 10:  # noqa: ASYNC110 - the layer's queue: nothing to wait on
            await asyncio.sleep(0.01)
    received = [(await receive(layer, channel))["seq"] for _ in range(10)]
    assert received == list(range(1, 11))  # capacity 10: the rest were dropped, the consumer repairs by seq


async def test_members_are_told_the_layer_reconnected_once_a_lost_subscription_is_back(
    layer: HubChannelLayer, redis_url: str
) -> None:
    channel = await layer.new_channel()
    await layer.group_add("execution.f", channel)
    client = redis.Redis.from_url(redis_url)
    try:
        killed = kill_subscription(client, layer)
    finally:
        client.close()
    assert killed >= 1
    assert await receive(layer, channel) == layer_reconnected_message()
    # And the subscription is live again.
    await layer.group_send("execution.f", {"type": "progress.event", "seq": 2})
    assert (await receive(layer, channel))["seq"] == 2


async def test_joining_while_the_subscription_connection_breaks_neither_raises_nor_misses(
    layer: HubChannelLayer, redis_url: str
) -> None:
    """A group_add racing the reader's reconnect (seen in CI: a second coroutine reading
    the subscription connection raised RuntimeError into the consumer, close 1011)."""
    first = await layer.new_channel()
    await layer.group_add("execution.h0", first)
    client = redis.Redis.from_url(redis_url)
    try:
        for round_ in range(1, 31):
            assert kill_subscription(client, layer) == 1
            channel = await layer.new_channel()
            group = f"execution.h{round_}"
            await layer.group_add(group, channel)  # must not raise
            # Published until it arrives: a message sent before the resubscription is
            # lost by design (the member is told the layer reconnected and reads the database).
            async with asyncio.timeout(TIMEOUT):
                while True:
                    await layer.group_send(group, {"type": "progress.event", "seq": round_})
                    try:
                        async with asyncio.timeout(0.2):
                            message = await layer.receive(channel)
                    except TimeoutError:
                        continue
                    if message != layer_reconnected_message():
                        break
            assert message["seq"] == round_
            await layer.group_discard(group, channel)
    finally:
        client.close()


async def test_joining_after_an_idle_spell_with_no_group_neither_raises_nor_misses(redis_url: str) -> None:
    """Seen in CI: every group left, the subscription connection idle past the health-check
    interval, then a group_add. A health check on that connection reads its PONG while the
    reader reads too: RuntimeError into the consumer (close 1011) and a lost subscription."""
    hub = HubChannelLayer(hosts=[redis_url], prefix="test-hub-idle", health_check_seconds=0.2)
    try:
        for round_ in range(3):
            channel = await hub.new_channel()
            group = f"execution.i{round_}"
            await hub.group_add(group, channel)
            await hub.group_send(group, {"type": "progress.event", "seq": 1})
            assert (await receive(hub, channel))["seq"] == 1
            await hub.group_discard(group, channel)
            state = hub._state()
            assert state.pubsub is not None
            pubsub = state.pubsub
            async with asyncio.timeout(TIMEOUT):  # the reader has unsubscribed: no channel left
                while pubsub.channels or pubsub.pending_unsubscribe_channels:  # noqa: ASYNC110 - redis-py's state: nothing to wait on
                    await asyncio.sleep(0.01)
            # Idle past the health-check interval (the condition is the time itself).
            await asyncio.sleep(0.5)
    finally:
        await hub.flush()


async def test_joining_while_redis_is_unreachable_neither_raises_nor_hangs() -> None:
    hub = HubChannelLayer(hosts=["redis://127.0.0.1:9/0"], prefix="test-hub")
    channel = await hub.new_channel()
    async with asyncio.timeout(TIMEOUT):
        await hub.group_add("execution.g", channel)
    assert hub._state().groups == {"execution.g": {channel}}
    await hub.flush()
