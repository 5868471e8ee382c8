"""Everything you can check before `pulumi up`; none of it runs during `pulumi up`."""
