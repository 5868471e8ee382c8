"""The stack config, one module per group of sections; `stack` joins them (`stack.load()`).

No re-exports: import from the module that defines a name, e.g.
`from components.settings.stack import Settings, load`.
"""
