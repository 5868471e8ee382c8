"""The container app: validate, train, gate and serve a weekly forecaster from the shared store."""
