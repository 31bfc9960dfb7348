"""The example modules are imported by the tests (registering them twice would be an error)."""

collect_ignore = ["example_ring_loss.py", "example_viper.py"]
