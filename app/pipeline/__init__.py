"""The steps a training run goes through, as the state machine runs them: `validate` the dataset,
`train` a model into `models/<run_id>/`, `gate` it into `models/CURRENT` (or `promote` one by
hand); `lineage` ties each run to the dataset a validation report passed, `sagemaker` runs the
same steps in SageMaker's `/opt/ml` layout."""
