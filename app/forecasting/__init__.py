"""The forecaster itself: its two model families and their intervals (`model`), the rolling-origin
backtest that scores them (`backtest`), the device they run on (`device`), and the check a run's
model passes in a child process before any process serves it (`model_check`)."""
