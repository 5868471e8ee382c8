"""The container app: validate, train, gate and serve a CO2 forecaster from the shared store."""
