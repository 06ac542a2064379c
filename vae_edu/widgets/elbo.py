"""Update functions behind the elbo notebook's widgets (plain functions, unit-tested)."""

__all__: list[str] = []
