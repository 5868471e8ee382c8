"""The container app: validate, train, gate and serve a weekly forecaster from the shared store.

Every command runs as `python -m app <command>` (`__main__`). The rooms:

    forecasting/  the model families, their backtest, the device, the check before serving
    pipeline/     validate, train, gate and promote: the steps of a training run
    serving/      the inference api (`serve`)
    loop/         ingest, the forecast ticker, monitor: new data in, drift watched
    dashboard/    the Dash dashboard
    local/        `local`: the whole product on this machine, and its replay

and what every command shares: `settings` (the environment), `cli` (a command's start),
`store` (the shared store), `series` (what the stored series is), `provenance` (the image a
task runs), `processes` (children that die with their parent, crash points), `logging_setup`.
`slim` is the image build's (app/Dockerfile). The store protocol shared with the platform's
image (run ids, models/CURRENT, atomic writes, the gate lock) is `mlops_contract`, beside `app`.
"""
