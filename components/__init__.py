"""The mlops Pulumi components: one `ComponentResource` per module, wired in `__main__.py`."""
