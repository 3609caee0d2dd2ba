"""What the tests share: real parts to test against, one module per topic.

A test imports the module of the topic it needs (``from tests.harness.hub import
running_hub``), so a test of the frame program does not import Schemathesis or Playwright.
``tests/conftest.py`` exposes the commonly used pieces as fixtures (``broker``, ``free_port``).

* ``ports``, ``broker``, ``mqtt``: a free loopback port, a Mosquitto of the test's own, an MQTT
  client that records what it receives.
* ``hub``, ``http``, ``hub_process``: the whole hub in the test process, a small HTTP-only hub,
  and the hub as ``run.py serve`` in a child process (for kills and restarts).
* ``replies``, ``photos``, ``images``, ``icc``: HTTP reply checks and real image files.
* ``frames``, ``photos_api``, ``console``, ``ota``, ``telemetry``, ``simulator``: driving one
  area of the hub end to end; ``frame_program``: the fakes a frame program talks to.
* ``journal``, ``journal_worker``: a recording subscriber and a child that publishes until
  killed.
* ``contracts`` (with the vendored ``asyncapi/`` schema), ``security``, ``faults/``,
  ``fuzz/``: the contract, security, fault-injection and bad-input suites.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository: where ``run.py`` is, and the working directory of child processes."""
