pytest_plugins = ["tests.conftest_ledger"]
