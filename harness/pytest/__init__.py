"""The pytest plugin (the pytest11 entry point), what its fixtures hand a test, record modes."""
