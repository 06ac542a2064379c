"""Update functions behind the latent notebook's widgets (plain functions, unit-tested)."""

__all__: list[str] = []
