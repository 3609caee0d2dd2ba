"""MQTT: the managed Mosquitto broker frames connect to (``/infra/broker``)."""

from ._broker import (
    HUB_USERNAME,
    BrokerAccess,
    BrokerAddress,
    BrokerDied,
    BrokerMessage,
    BrokerProcess,
    BrokerUnavailable,
    FrameAccess,
    GetBrokerAddress,
    GetBrokerProcess,
    InvalidFrameAccess,
    MosquittoBroker,
    SetFrameAccess,
    find_mosquitto,
    hash_password,
)

__all__ = [
    "HUB_USERNAME",
    "BrokerAccess",
    "BrokerAddress",
    "BrokerDied",
    "BrokerMessage",
    "BrokerProcess",
    "BrokerUnavailable",
    "FrameAccess",
    "GetBrokerAddress",
    "GetBrokerProcess",
    "InvalidFrameAccess",
    "MosquittoBroker",
    "SetFrameAccess",
    "find_mosquitto",
    "hash_password",
]
