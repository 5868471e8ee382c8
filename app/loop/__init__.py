"""The closed loop in production: `ingest` appends new weeks to the dataset, the forecast
`ticker` writes fresh forecasts from the served model, and `monitor` scores past forecasts against
what happened, checks for drift and signals a retrain."""
