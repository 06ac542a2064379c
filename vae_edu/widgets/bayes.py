"""Update functions behind the bayes notebook's widgets (plain functions, unit-tested)."""

__all__: list[str] = []
