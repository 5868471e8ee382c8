"""The inference api, `python -m app serve` (`server`): `/predict` bodies parsed and checked by
hand (`payload`), concurrent requests batched into one model call (`batcher`), and the OpenAPI
document (`openapi`)."""
