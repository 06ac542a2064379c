"""The exact linear-Gaussian model, checked against independent routes.

References: scipy.stats (multivariate normal densities in float64), scipy.integrate.quad
(the 1-D evidence integral), a dense grid (the 1-D posterior), Bayes' rule evaluated with
scipy, Monte Carlo with standard-error tolerances, and hand-derived float64 gradients.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from vae_edu import conjugate, kl

# (D, d): d < D takes the d x d route, d > D the D x D route, and d = D (the 1-D notebook
# case) the D x D route for the evidence but the d x d one for the posterior covariance.
SHAPES = [(1, 1), (3, 2), (2, 4)]


def _model(seed, data_dim, latent_dim, noise_std=0.5):
    return conjugate.make_model(jax.random.key(seed), data_dim, latent_dim, noise_std)


def _float64(model):
    """(W, b, sigma_x^2, C = W W^T + sigma_x^2 I) in float64 NumPy."""
    weight = np.asarray(model.weight, np.float64)
    bias = np.asarray(model.bias, np.float64)
    noise_var = float(np.exp(np.float64(model.log_var_x)))
    return weight, bias, noise_var, weight @ weight.T + noise_var * np.eye(len(bias))


NUM_POINTS = 4  # one batch shape throughout, so jit compiles each method once per model shape


def _data(model, seed):
    """(NUM_POINTS, D) draws from the model's evidence p(x)."""
    return model.sample(jax.random.key(seed), NUM_POINTS).x


# ------------------------------------------------------------------------ the evidence


def test_scalar_evidence_matches_quadrature():
    w, b, sigma = 1.3, -0.4, 0.7
    model = conjugate.make_scalar_model(w, b, sigma)
    xs = np.array([-3.0, 0.0, 0.6, 2.5])

    def integrand(z, x):  # p(x | z) p(z), each density from scipy
        return stats.norm.pdf(x, w * z + b, sigma) * stats.norm.pdf(z)

    by_quadrature = [
        np.log(integrate.quad(integrand, -np.inf, np.inf, args=(x,), epsabs=0, epsrel=1e-12)[0])
        for x in xs
    ]
    np.testing.assert_allclose(model.log_evidence(xs[:, None]), by_quadrature, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("data_dim, latent_dim", SHAPES)
def test_evidence_matches_scipy_multivariate_normal(data_dim, latent_dim):
    model = _model(0, data_dim, latent_dim)
    x = _data(model, 1)
    _, bias, _, cov = _float64(model)
    expected = stats.multivariate_normal(bias, cov).logpdf(np.asarray(x, np.float64))
    got = model.log_evidence(x)
    assert got.shape == (NUM_POINTS,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_scalar_model_closed_forms():
    w, b, sigma = -0.8, 1.5, 0.3
    model = conjugate.make_scalar_model(w, b, sigma)
    xs = np.array([-1.0, 1.5, 4.0, 0.0])
    np.testing.assert_allclose(
        model.log_evidence(xs[:, None]),
        stats.norm.logpdf(xs, b, np.sqrt(w**2 + sigma**2)),
        rtol=1e-6,
    )
    post = model.posterior(xs[:, None])
    np.testing.assert_allclose(post.mean[:, 0], w * (xs - b) / (w**2 + sigma**2), rtol=1e-6)
    np.testing.assert_allclose(post.cov, [[sigma**2 / (w**2 + sigma**2)]], rtol=1e-6)


# ----------------------------------------------------------------------- the posterior


def test_scalar_posterior_matches_grid():
    w, b, sigma = 2.0, 0.3, 0.9
    model = conjugate.make_scalar_model(w, b, sigma)
    grid = np.linspace(-10.0, 10.0, 40001)
    step = grid[1] - grid[0]
    for x in (-2.0, 0.3, 3.7):
        log_joint = stats.norm.logpdf(x, w * grid + b, sigma) + stats.norm.logpdf(grid)
        density = np.exp(log_joint - log_joint.max())
        density /= density.sum() * step
        grid_mean = np.sum(grid * density) * step
        grid_var = np.sum((grid - grid_mean) ** 2 * density) * step
        post = model.posterior(jnp.array([x]))
        np.testing.assert_allclose(post.mean, [grid_mean], atol=1e-6)
        np.testing.assert_allclose(post.cov, [[grid_var]], rtol=1e-5)
        inner = slice(10000, 30001)  # where the density is not vanishingly small
        np.testing.assert_allclose(
            model.log_posterior(jnp.full((grid[inner].size, 1), x), grid[inner, None]),
            np.log(density[inner]),
            rtol=1e-5,
            atol=1e-4,
        )


@pytest.mark.parametrize("data_dim, latent_dim", SHAPES)
def test_posterior_satisfies_bayes_rule(data_dim, latent_dim):
    model = _model(2, data_dim, latent_dim)
    weight, bias, noise_var, cov = _float64(model)
    x = np.asarray(_data(model, 3), np.float64)
    z = np.asarray(jax.random.normal(jax.random.key(4), (NUM_POINTS, latent_dim)), np.float64)
    # Right-hand side of Bayes' rule at (x_n, z_n), every term from scipy in float64.
    bayes = (
        stats.norm.logpdf(x, z @ weight.T + bias, np.sqrt(noise_var)).sum(-1)
        + stats.norm.logpdf(z).sum(-1)
        - stats.multivariate_normal(bias, cov).logpdf(x)
    )
    post = model.posterior(x)
    assert post.mean.shape == (NUM_POINTS, latent_dim)
    assert post.cov.shape == (latent_dim, latent_dim)
    from_moments = [
        stats.multivariate_normal(mean, np.asarray(post.cov, np.float64)).logpdf(z_n)
        for mean, z_n in zip(np.asarray(post.mean, np.float64), z, strict=True)
    ]
    np.testing.assert_allclose(from_moments, bayes, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.log_posterior(x, z), bayes, rtol=1e-4, atol=1e-4)
    # The model's own pieces obey the same identity.
    np.testing.assert_allclose(
        model.log_likelihood(x, z) + model.log_prior(z) - model.log_evidence(x),
        bayes,
        rtol=1e-4,
        atol=1e-4,
    )


@pytest.mark.parametrize("data_dim, latent_dim", SHAPES)
def test_posterior_moments_match_textbook_formulas(data_dim, latent_dim):
    model = _model(5, data_dim, latent_dim)
    weight, bias, noise_var, _ = _float64(model)
    x = np.asarray(_data(model, 6), np.float64)
    cov = np.linalg.inv(np.eye(latent_dim) + weight.T @ weight / noise_var)  # PRML 2.117
    mean = (x - bias) @ weight @ cov / noise_var  # PRML 2.116
    post = model.posterior(x)
    np.testing.assert_allclose(post.cov, cov, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(post.mean, mean, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------ likelihood and sampling


def test_log_likelihood_is_batched_over_z():
    model = _model(7, 3, 2)
    weight, bias, noise_var, _ = _float64(model)
    x_batch = np.asarray(_data(model, 8), np.float64)  # (B, D)
    z = np.asarray(jax.random.normal(jax.random.key(9), (5, NUM_POINTS, 2)), np.float64)
    expected = stats.norm.logpdf(x_batch, z @ weight.T + bias, np.sqrt(noise_var)).sum(-1)
    # (B, D) data with (L, B, d) latents -> (L, B).
    np.testing.assert_allclose(model.log_likelihood(x_batch, z), expected, rtol=1e-5)
    # One x against L samples: (D,) with (L, d) -> (L,).
    np.testing.assert_allclose(model.log_likelihood(x_batch[0], z[:, 0]), expected[:, 0], rtol=1e-5)
    # Several leading axes on the data side: (2, 2, D) data, (2, 2, d) latents.
    np.testing.assert_allclose(
        model.log_likelihood(x_batch.reshape(2, 2, 3), z[0].reshape(2, 2, 2)),
        expected[0].reshape(2, 2),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        model.log_evidence(x_batch.reshape(2, 2, 3)),
        model.log_evidence(x_batch).reshape(2, 2),
        rtol=1e-6,
    )


def test_samples_have_the_joint_moments():
    model = _model(10, 3, 2)
    _, bias, _, cov = _float64(model)
    num = 20_000
    draw = model.sample(jax.random.key(11), num)
    assert draw.z.shape == (num, 2) and draw.x.shape == (num, 3)
    x = np.asarray(draw.x, np.float64)
    z = np.asarray(draw.z, np.float64)
    # Means within 5 standard errors sqrt(C_ii / n).
    assert np.all(np.abs(x.mean(0) - bias) < 5 * np.sqrt(np.diag(cov) / num))
    assert np.all(np.abs(z.mean(0)) < 5 / np.sqrt(num))
    # Covariance entries within 5 SE; for Gaussians Var(x_i x_j) = C_ii C_jj + C_ij^2.
    centred = x - bias
    sample_cov = centred.T @ centred / num
    cov_se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / num)
    assert np.all(np.abs(sample_cov - cov) < 5 * cov_se)
    np.testing.assert_allclose(z.T @ z / num, np.eye(2), atol=5 * np.sqrt(2 / num))


# -------------------------------------------------------------------- the exact ELBO


def _random_gaussian(seed, latent_dim, batch=()):
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=(*batch, latent_dim))
    factor = rng.normal(size=(*batch, latent_dim, latent_dim))
    cov = factor @ np.swapaxes(factor, -1, -2) / latent_dim + 0.1 * np.eye(latent_dim)
    return jnp.asarray(mean, jnp.float32), jnp.asarray(cov, jnp.float32)


@pytest.mark.parametrize("data_dim, latent_dim", SHAPES)
def test_expected_log_likelihood_matches_monte_carlo(data_dim, latent_dim):
    model = _model(12, data_dim, latent_dim)
    x = _data(model, 13)
    mean, cov = _random_gaussian(14, latent_dim, batch=(NUM_POINTS,))
    num = 4000
    z = jax.random.multivariate_normal(jax.random.key(15), mean, cov, (num, NUM_POINTS))
    values = np.asarray(model.log_likelihood(x, z), np.float64)  # (num, NUM_POINTS)
    estimate, std_error = values.mean(0), values.std(0, ddof=1) / np.sqrt(num)
    exact = model.expected_log_likelihood(x, mean, cov)
    assert exact.shape == (NUM_POINTS,)
    assert np.all(np.abs(estimate - exact) < 5 * std_error)


@pytest.mark.parametrize("data_dim, latent_dim", SHAPES)
def test_exact_elbo_bounds_evidence_with_gap_kl_to_posterior(data_dim, latent_dim):
    model = _model(16, data_dim, latent_dim)
    x = _data(model, 17)[0]
    log_evidence = model.log_evidence(x)
    post = model.posterior(x)
    # Equality at the exact posterior.
    np.testing.assert_allclose(
        model.exact_elbo(x, post.mean, post.cov), log_evidence, rtol=1e-5, atol=1e-5
    )
    # Many random q: ELBO <= log p(x), and the gap is KL(q || p(z | x)).
    mean, cov = _random_gaussian(18, latent_dim, batch=(200,))
    elbos = model.exact_elbo(x, mean, cov)
    assert elbos.shape == (200,)
    assert np.all(elbos <= log_evidence + 1e-5 * abs(log_evidence))
    gap_kl = kl.kl_mvn(mean, cov, post.mean, post.cov)
    np.testing.assert_allclose(log_evidence - elbos, gap_kl, rtol=1e-4, atol=2e-4)


# ------------------------------------------------------------- numerics and transforms


def _analytic_gradients(model, x):
    """d log N(x; b, C) / d(W, b, log sigma^2, x) in float64 (matrix-calculus by hand)."""
    weight, bias, noise_var, cov = _float64(model)
    cov_inv = np.linalg.inv(cov)
    alpha = cov_inv @ (np.asarray(x, np.float64) - bias)  # C^{-1} (x - b)
    grad_weight = (np.outer(alpha, alpha) - cov_inv) @ weight
    grad_log_var = 0.5 * noise_var * (alpha @ alpha - np.trace(cov_inv))
    return grad_weight, alpha, grad_log_var, -alpha


@pytest.mark.parametrize("data_dim, latent_dim", SHAPES)
def test_gradients_of_log_evidence_match_matrix_calculus(data_dim, latent_dim):
    model = _model(19, data_dim, latent_dim)
    x = _data(model, 20)
    grads = jax.grad(lambda m, x_: m.log_evidence(x_).sum(), argnums=(0, 1))(model, x)
    per_point = [_analytic_gradients(model, x_n) for x_n in x]
    expected = [sum(g[i] for g in per_point) for i in range(3)]  # d/dparams of the sum
    expected.append(np.stack([g[3] for g in per_point]))  # d/dx_n, one row each
    got = (grads[0].weight, grads[0].bias, grads[0].log_var_x, grads[1])
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


def _reference_log_evidence(model, x):
    """log N(x; b, W W^T + sigma^2 I) in float64, in the basis of a QR factorisation of W.

    With W = Q R (Q orthogonal D x D), Q^T C Q = blockdiag(R_k R_k^T + sigma^2 I_k,
    sigma^2 I_{D-k}), k = min(d, D): no tiny eigenvalue is ever added to a large one.
    """
    weight, bias, noise_var, _ = _float64(model)
    data_dim, latent_dim = weight.shape
    k = min(data_dim, latent_dim)
    q, r = np.linalg.qr(weight, mode="complete")
    rotated = (np.asarray(x, np.float64) - bias) @ q
    head, tail = rotated[..., :k], rotated[..., k:]
    block = r[:k] @ r[:k].T + noise_var * np.eye(k)
    quadratic = (
        np.sum(head * np.linalg.solve(block, head.T).T, axis=-1)
        + np.sum(tail**2, axis=-1) / noise_var
    )
    log_det = np.linalg.slogdet(block)[1] + (data_dim - k) * np.log(noise_var)
    return -0.5 * (data_dim * np.log(2 * np.pi) + log_det + quadratic)


@jax.jit
def _everything(model, x, z):
    """Every method's output, and the gradient of log p(x) in all parameters."""
    post = model.posterior(x)
    outputs = (
        model.log_evidence(x),
        post.mean,
        post.cov,
        model.log_posterior(x, z),
        model.log_likelihood(x, z),
        model.expected_log_likelihood(x, z, jnp.eye(z.shape[-1])),
    )
    return outputs, jax.grad(lambda m: m.log_evidence(x).sum())(model)


@pytest.mark.parametrize("log_var_x", [-30.0, 30.0])
@pytest.mark.parametrize("data_dim, latent_dim", SHAPES)
def test_extreme_noise_log_variance_is_finite(data_dim, latent_dim, log_var_x):
    model = _model(21, data_dim, latent_dim)
    x = _data(model, 22)
    model = model._replace(log_var_x=jnp.float32(log_var_x))
    z = jax.random.normal(jax.random.key(23), (NUM_POINTS, latent_dim))
    outputs, grads = _everything(model, x, z)
    for value in (*outputs, *jax.tree_util.tree_leaves(grads)):
        assert np.all(np.isfinite(value))
    # The values are also right, not just finite (a float64 reference that stays accurate
    # when C has eigenvalues of 1e-13, where scipy refuses C as singular).
    np.testing.assert_allclose(outputs[0], _reference_log_evidence(model, x), rtol=1e-5)


def test_works_under_jit_vmap_and_grad():
    model = _model(24, 3, 2)
    x = _data(model, 25)
    eager = model.log_evidence(x)
    np.testing.assert_allclose(
        jax.jit(lambda m, x_: m.log_evidence(x_))(model, x), eager, rtol=1e-6
    )
    per_point = jax.vmap(lambda x_: model.posterior(x_).mean)(x)
    np.testing.assert_allclose(per_point, model.posterior(x).mean, rtol=1e-5, atol=1e-6)
    # Maximum likelihood in the bias: the gradient of sum_n log p(x_n) vanishes at the mean.
    grad_bias = jax.grad(lambda b: model._replace(bias=b).log_evidence(x).sum())(
        jnp.mean(x, axis=0)
    )
    np.testing.assert_allclose(grad_bias, np.zeros(3), atol=1e-4)
    draws = jax.jit(model.sample, static_argnums=1)(jax.random.key(0), NUM_POINTS)
    assert draws.x.shape == (NUM_POINTS, 3)


# ---------------------------------------------------------------------------- errors


def test_shape_errors_name_both_shapes():
    model = _model(26, 3, 2)
    with pytest.raises(ValueError, match=r"x has shape \(4,\).*weight has shape \(3, 2\)"):
        model.log_evidence(jnp.zeros(4))
    with pytest.raises(ValueError, match=r"z has shape \(5, 3\).*weight has shape \(3, 2\)"):
        model.log_likelihood(jnp.zeros(3), jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"cov has shape \(3, 3\).*mean has shape \(2,\)"):
        model.exact_elbo(jnp.zeros(3), jnp.zeros(2), jnp.eye(3))
    with pytest.raises(ValueError, match=r"bias has shape \(2,\).*weight has shape \(3, 2\)"):
        model._replace(bias=jnp.zeros(2)).log_evidence(jnp.zeros(3))
    with pytest.raises(ValueError, match=r"x has shape \(4, 3\).*z has shape \(5, 2\)"):
        model.log_likelihood(jnp.zeros((4, 3)), jnp.zeros((5, 2)))
    with pytest.raises(ValueError, match="log_var_x must be a scalar"):
        model._replace(log_var_x=jnp.zeros(3)).posterior(jnp.zeros(3))
    with pytest.raises(ValueError, match="noise_std must be positive"):
        conjugate.make_model(jax.random.key(0), 3, 2, 0.0)
    with pytest.raises(ValueError, match="noise_std must be positive"):
        conjugate.make_scalar_model(1.0, 0.0, -1.0)
    with pytest.raises(ValueError, match="not positive definite"):
        model.exact_elbo(jnp.zeros(3), jnp.zeros(2), -jnp.eye(2))
