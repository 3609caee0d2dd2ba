"""Support for the bad-input tests (``tests/bad_input``): generators of hostile input (MQTT
messages, console frames, images) and a hub prepared for fuzzing its HTTP API."""
