pytest_plugins = ["tests.support.slapd", "tests.support.farm"]
