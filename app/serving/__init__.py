"""The inference api, `python -m app serve` (`server`): the routes (`api`), `/predict` handled
without HTTP (`predict`) from a body read and parsed by hand (`body`, `payload`) through the
micro-batcher (`batcher`), the model being served and its hot reload (`model_slot`), read
deadlines (`deadlines`), Prometheus metrics (`metrics`) and the OpenAPI document (`openapi`)."""
