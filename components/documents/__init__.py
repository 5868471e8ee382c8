"""Pure builders for every JSON document the program sends, one module per component.

Container definitions, IAM policies, state machine definitions, lifecycle and scaling documents
are built from plain Python values (strings, ints), never from Outputs, so they are tested
without Pulumi. Components serialize them at the edge (`pulumi.Output.json_dumps`, or
`Output.all(...).apply(lambda v: json.dumps(builder(...)))`). Bad input raises `ValueError` with
a message naming the problem.

Each module serves one component and imports only `common` (and `alerts` where its component
publishes alarms); there is no re-export hub: import from the module, e.g.
`from components.documents.training import training_state_machine`.
"""
