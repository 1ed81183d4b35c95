import os

from celery import Celery
from kombu.transport import redis as kombu_redis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oversight.settings")


class RedisChannel(kombu_redis.Channel):
    """kombu's Redis channel, able to close after the broker went away (a Redis restart, failover, network cut).

    Without this a worker exits when Redis drops while it holds unacknowledged messages — which a worker always
    does during a study (the eta task of every shown trial's deadline). kombu 5.7 with redis-py 8, step by step
    (reproduced by tests/faults/test_redis_restart.py and tests/faults scenario b):

    1. the consumer's connection fails; Celery calls `Connection.collect()`, which closes the channel: its
       BRPOP read, or the deletion of the remote-control (pidbox) queue, raises ConnectionError because Redis
       is gone, *before* the unacked messages are restored, so the channel is not marked closed;
    2. `collect()` then detaches the transport from its connection (`transport.client = None`);
    3. Celery's `connection.close()` closes the channel again; this time it gets to restoring the unacked
       messages, which needs a new connection pool, whose parameters come from `transport.client`:
       `AttributeError: 'NoneType' object has no attribute 'hostname'` in `_connparams`. That is not one of
       the transport's connection errors, so Celery calls it an "Unrecoverable error" and the worker exits 1.

    Here the channel keeps its connection details, so step 3 restores the messages if Redis is back, or fails
    with a ConnectionError, which Celery ignores before reconnecting (messages not restored stay in Redis's
    unacked set and come back after the visibility timeout; the sweep finalises their deadlines meanwhile).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._conninfo = self.connection.client

    def _connparams(self, asynchronous=False):
        transport = self.connection
        if transport.client is not None or getattr(self, "_conninfo", None) is None:
            return super()._connparams(asynchronous=asynchronous)
        transport.client = self._conninfo  # only while the parameters are read: kombu detached it on purpose
        try:
            return super()._connparams(asynchronous=asynchronous)
        finally:
            transport.client = None


class RedisTransport(kombu_redis.Transport):
    """The `redis://` broker transport with RedisChannel (settings.CELERY_BROKER_TRANSPORT)."""

    Channel = RedisChannel


app = Celery("oversight")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
