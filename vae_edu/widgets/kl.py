"""Update functions behind the kl notebook's widgets (plain functions, unit-tested)."""

__all__: list[str] = []
