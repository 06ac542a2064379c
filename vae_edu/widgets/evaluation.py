"""Update functions behind the evaluation notebook's widgets (plain functions, unit-tested)."""

__all__: list[str] = []
