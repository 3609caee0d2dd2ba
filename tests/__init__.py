"""framehub's tests, laid out as the source they test (``tests/actors/<package>/``,
``tests/supervision/`` ...), with the reliability suite under ``tests/reliability/`` and what
they share in ``tests/harness/``.

Every test directory is a package, so pytest imports each test module by its full name
(``tests.actors.ota.test_ota_e2e``) and the harness as ``tests.harness``.
"""
