from __future__ import annotations

from zyra.env import env_float, env_int, env_str

REDIS_URL = env_str("REDIS_URL", "")

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # A subscriber replaying a long run queues live events meanwhile; the
    # default capacity (100) would drop them (they would be re-read from the DB).
    CHANNEL_LAYERS["default"]["CONFIG"] = {"capacity": env_int("ZYRA_WS_CHANNEL_CAPACITY", 10000)}

# Live monitoring (executions.consumers): heartbeat/resync period and replay page size.
ZYRA_WS_HEARTBEAT_S = env_float("ZYRA_WS_HEARTBEAT_S", 20.0)
# A burst of broadcasts to one group is sent to its subscribers at most once per this many ms
# (the first broadcast after a quiet spell goes at once): one frame per window, not per broadcast.
ZYRA_WS_COALESCE_MS = env_float("ZYRA_WS_COALESCE_MS", 10.0)
ZYRA_WS_REPLAY_PAGE = env_int("ZYRA_WS_REPLAY_PAGE", 500)
