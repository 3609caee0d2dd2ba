"""MQTT: the managed Mosquitto broker frames connect to (``MosquittoBroker``) and the hub's
bridge to it (``MqttBridge``)."""

from ._bridge import (
    BridgeMessage,
    FrameEndpoint,
    GetFrameEndpoint,
    GetMqttStats,
    MqttBridge,
    MqttStats,
)
from ._broker import (
    HUB_USERNAME,
    BrokerAccess,
    BrokerAddress,
    BrokerDied,
    BrokerMessage,
    BrokerProcess,
    BrokerUnavailable,
    GetBrokerAddress,
    GetBrokerProcess,
    InvalidFrameAccess,
    MosquittoBroker,
    SetFrameAccess,
    acl_text,
    find_mosquitto,
)
from ._client import MqttClient

__all__ = [
    "HUB_USERNAME",
    "BridgeMessage",
    "BrokerAccess",
    "BrokerAddress",
    "BrokerDied",
    "BrokerMessage",
    "BrokerProcess",
    "BrokerUnavailable",
    "FrameEndpoint",
    "GetBrokerAddress",
    "GetBrokerProcess",
    "GetFrameEndpoint",
    "GetMqttStats",
    "InvalidFrameAccess",
    "MosquittoBroker",
    "MqttBridge",
    "MqttClient",
    "MqttStats",
    "SetFrameAccess",
    "acl_text",
    "find_mosquitto",
]
