"""Mutation tests for the autograder checks in vae_edu.grading.

Each check is fed known-correct implementations (which must pass) and known-wrong ones,
written the way a student would write them (which must fail, with feedback that names the
mistake). An autograder that accepts a wrong answer, or rejects a right one, fails here.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_edu import elbo, grading, kl

# --------------------------------------------------------------------- correct answers


def kl_std_correct(mean, log_var):
    return 0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - 1.0 - log_var, axis=-1)


def kl_two_correct(mean_q, log_var_q, mean_p, log_var_p):
    ratio = jnp.exp(log_var_q - log_var_p)
    return 0.5 * jnp.sum(
        log_var_p - log_var_q + ratio + (mean_q - mean_p) ** 2 * jnp.exp(-log_var_p) - 1.0, axis=-1
    )


def kl_mc_correct(samples_q, log_q, log_p):
    ratios = log_q(samples_q) - log_p(samples_q)
    n = ratios.shape[0]
    return jnp.mean(ratios), jnp.std(ratios) / jnp.sqrt(n)  # ddof=0 is accepted too


def reparameterize_correct(key, mean, log_var):
    eps = jax.random.normal(key, mean.shape)
    return mean + jnp.exp(0.5 * log_var) * eps


def bernoulli_correct(x, logits):
    return jnp.sum(x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits), -1)


def negative_elbo_correct(x, logits, mean, log_var):
    reconstruction = bernoulli_correct(x, logits)
    return jnp.mean(-reconstruction + kl_std_correct(mean, log_var))


def draw_samples(key, mean, log_var, num_samples):
    """num_samples reparameterized draws from q, stacked on a new leading axis."""
    shape = (num_samples, *mean.shape)
    return reparameterize_correct(
        key, jnp.broadcast_to(mean, shape), jnp.broadcast_to(log_var, shape)
    )


def log_weights(model, x, z, mean, log_var):
    """log p(x | z) + log p(z) - log q(z), one per sample."""
    log_q = elbo.diag_gaussian_log_density(z, mean, log_var)
    return model.log_likelihood(x, z) + model.log_prior(z) - log_q


def elbo_estimate_correct(key, model, x, mean, log_var, num_samples):
    z = draw_samples(key, mean, log_var, num_samples)
    return jnp.mean(log_weights(model, x, z, mean, log_var))


def elbo_estimate_closed_form_kl(key, model, x, mean, log_var, num_samples):
    z = draw_samples(key, mean, log_var, num_samples)
    return jnp.mean(model.log_likelihood(x, z)) - kl_std_correct(mean, log_var)


CORRECT = [
    (grading.check_kl_diag, kl_std_correct),
    (grading.check_kl_diag, kl.kl_diag_gaussians),
    (grading.check_kl_two_gaussians, kl_two_correct),
    (grading.check_kl_two_gaussians, kl.kl_diag_gaussians),
    (grading.check_kl_monte_carlo, kl_mc_correct),
    (grading.check_kl_monte_carlo, kl.kl_monte_carlo),
    (grading.check_reparameterize, reparameterize_correct),
    (grading.check_reparameterize, elbo.reparameterize),
    (grading.check_bernoulli_log_likelihood, bernoulli_correct),
    (grading.check_bernoulli_log_likelihood, elbo.bernoulli_log_likelihood),
    (grading.check_negative_elbo, negative_elbo_correct),
    (grading.check_elbo_estimate, elbo_estimate_correct),
    (grading.check_elbo_estimate, elbo_estimate_closed_form_kl),
]


@pytest.mark.parametrize(
    "check, fn", CORRECT, ids=[f"{c.__name__}-{f.__module__}.{f.__name__}" for c, f in CORRECT]
)
def test_correct_implementations_pass(check, fn):
    result = check(fn)
    assert result.passed, result.feedback
    assert bool(result) is True
    assert "correct" in result.feedback


# --------------------------------------------------------------------- known mistakes


def kl_std_no_minus(mean, log_var):  # the "-KL" form from lecture notes
    return 0.5 * jnp.sum(1.0 + log_var - mean**2 - jnp.exp(log_var), axis=-1)


def kl_std_log_sigma(mean, log_var):  # log sigma where log sigma^2 belongs
    sigma = jnp.exp(0.5 * log_var)
    return 0.5 * jnp.sum(mean**2 + sigma**2 - 1.0 - jnp.log(sigma), axis=-1)


def kl_std_log_var_as_log_sigma(mean, log_var):  # reads log_var as log sigma
    return 0.5 * jnp.sum(mean**2 + jnp.exp(2 * log_var) - 1.0 - 2 * log_var, axis=-1)


def kl_std_no_half(mean, log_var):
    return jnp.sum(mean**2 + jnp.exp(log_var) - 1.0 - log_var, axis=-1)


def kl_std_mean_over_dims(mean, log_var):
    return 0.5 * jnp.mean(mean**2 + jnp.exp(log_var) - 1.0 - log_var, axis=-1)


def kl_std_no_sum(mean, log_var):
    return 0.5 * (mean**2 + jnp.exp(log_var) - 1.0 - log_var)


def kl_std_sums_batch(mean, log_var):
    return 0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - 1.0 - log_var)


def kl_two_swapped(mean_q, log_var_q, mean_p, log_var_p):  # KL(p || q)
    return kl_two_correct(mean_p, log_var_p, mean_q, log_var_q)


def kl_two_no_minus(mean_q, log_var_q, mean_p, log_var_p):
    return -kl_two_correct(mean_q, log_var_q, mean_p, log_var_p)


def kl_two_no_half(mean_q, log_var_q, mean_p, log_var_p):
    return 2.0 * kl_two_correct(mean_q, log_var_q, mean_p, log_var_p)


def kl_two_mean_over_dims(mean_q, log_var_q, mean_p, log_var_p):
    ratio = jnp.exp(log_var_q - log_var_p)
    return 0.5 * jnp.mean(
        log_var_p - log_var_q + ratio + (mean_q - mean_p) ** 2 * jnp.exp(-log_var_p) - 1.0, axis=-1
    )


def kl_two_log_sigma(mean_q, log_var_q, mean_p, log_var_p):  # log(s_p / s_q) for log(s_p^2 / s_q^2)
    ratio = jnp.exp(log_var_q - log_var_p)
    return 0.5 * jnp.sum(
        0.5 * (log_var_p - log_var_q) + ratio + (mean_q - mean_p) ** 2 * jnp.exp(-log_var_p) - 1.0,
        axis=-1,
    )


def kl_mc_sum(samples_q, log_q, log_p):  # the estimate is missing 1/n
    ratios = log_q(samples_q) - log_p(samples_q)
    return jnp.sum(ratios), jnp.std(ratios, ddof=1) / jnp.sqrt(ratios.shape[0])


def kl_mc_se_over_n(samples_q, log_q, log_p):
    ratios = log_q(samples_q) - log_p(samples_q)
    return jnp.mean(ratios), jnp.std(ratios, ddof=1) / ratios.shape[0]


def kl_mc_se_is_std(samples_q, log_q, log_p):
    ratios = log_q(samples_q) - log_p(samples_q)
    return jnp.mean(ratios), jnp.std(ratios, ddof=1)


def kl_mc_reversed(samples_q, log_q, log_p):
    ratios = log_p(samples_q) - log_q(samples_q)
    return jnp.mean(ratios), jnp.std(ratios, ddof=1) / jnp.sqrt(ratios.shape[0])


def reparameterize_sigma_squared(key, mean, log_var):  # z = mu + sigma^2 * eps
    return mean + jnp.exp(log_var) * jax.random.normal(key, mean.shape)


def reparameterize_stop_gradient(key, mean, log_var):  # no gradient to mu
    return jax.lax.stop_gradient(mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape))


def reparameterize_sample_directly(key, mean, log_var):  # normal(key) * sigma + stop_grad(mu)
    sigma = jnp.exp(0.5 * log_var)
    return jax.random.normal(key, mean.shape) * sigma + jax.lax.stop_gradient(mean)


def reparameterize_shared_noise(key, mean, log_var):  # one eps for the whole batch
    eps = jax.random.normal(key, mean.shape[-1:])
    return mean + jnp.exp(0.5 * log_var) * eps


def reparameterize_numpy(key, mean, log_var):  # ignores the key: a global numpy generator
    eps = np.random.default_rng(0).normal(size=mean.shape)
    return mean + jnp.exp(0.5 * log_var) * eps


def bernoulli_from_probabilities(x, logits):  # log(0) risk at large |logits|
    p = jax.nn.sigmoid(logits)
    return jnp.sum(x * jnp.log(p) + (1 - x) * jnp.log(1 - p), axis=-1)


def bernoulli_clipped(x, logits):  # finite, but wrong by 84 nats at logits of +-100
    p = jnp.clip(jax.nn.sigmoid(logits), 1e-7, 1 - 1e-7)
    return jnp.sum(x * jnp.log(p) + (1 - x) * jnp.log(1 - p), axis=-1)


def bernoulli_mean_over_pixels(x, logits):
    return jnp.mean(x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits), -1)


def bernoulli_cross_entropy(x, logits):  # returns the loss, not the log-likelihood
    return -bernoulli_correct(x, logits)


def negative_elbo_pixel_mean(x, logits, mean, log_var):  # reconstruction averaged over pixels
    return jnp.mean(-bernoulli_mean_over_pixels(x, logits) + kl_std_correct(mean, log_var))


def negative_elbo_batch_sum(x, logits, mean, log_var):
    return jnp.sum(-bernoulli_correct(x, logits) + kl_std_correct(mean, log_var))


def negative_elbo_kl_mean(x, logits, mean, log_var):
    return jnp.mean(-bernoulli_correct(x, logits) + kl_std_mean_over_dims(mean, log_var))


def negative_elbo_is_elbo(x, logits, mean, log_var):
    return jnp.mean(bernoulli_correct(x, logits) - kl_std_correct(mean, log_var))


def negative_elbo_per_example(x, logits, mean, log_var):
    return -bernoulli_correct(x, logits) + kl_std_correct(mean, log_var)


def elbo_estimate_no_kl(key, model, x, mean, log_var, num_samples):
    z = draw_samples(key, mean, log_var, num_samples)
    return jnp.mean(model.log_likelihood(x, z))


def elbo_estimate_summed(key, model, x, mean, log_var, num_samples):
    z = draw_samples(key, mean, log_var, num_samples)
    return jnp.sum(log_weights(model, x, z, mean, log_var))


def reparameterize_noise_per_example(key, mean, log_var):  # eps of shape (B, 1)
    eps = jax.random.normal(key, mean.shape[:-1] + (1,))
    return mean + jnp.exp(0.5 * log_var) * eps


def reparameterize_uniform(key, mean, log_var):  # unit variance, but not Gaussian
    eps = jax.random.uniform(key, mean.shape, minval=-jnp.sqrt(3.0), maxval=jnp.sqrt(3.0))
    return mean + jnp.exp(0.5 * log_var) * eps


def elbo_estimate_one_draw_reused(key, model, x, mean, log_var, num_samples):
    z = draw_samples(key, mean, log_var, 1)
    z = jnp.broadcast_to(z, (num_samples, *mean.shape))
    return jnp.mean(log_weights(model, x, z, mean, log_var))


def elbo_estimate_fixed_key(key, model, x, mean, log_var, num_samples):
    z = draw_samples(jax.random.key(0), mean, log_var, num_samples)
    return jnp.mean(log_weights(model, x, z, mean, log_var))


MISTAKES = [
    # (check, wrong implementation, phrases the feedback must contain)
    (
        grading.check_reparameterize,
        reparameterize_noise_per_example,
        ["correlated", "shape (B, 1)"],
    ),
    (grading.check_reparameterize, reparameterize_uniform, ["not Gaussian", "4.55%"]),
    (
        grading.check_elbo_estimate,
        elbo_estimate_one_draw_reused,
        ["fall like 1 / sqrt(L)", "one draw reused"],
    ),
    (grading.check_elbo_estimate, elbo_estimate_fixed_key, ["same for every key"]),
    (grading.check_kl_diag, kl_std_no_minus, ["negative for mu=2, sigma=1", "check the sign"]),
    (grading.check_kl_diag, kl_std_log_sigma, ["log sigma and log sigma^2"]),
    (grading.check_kl_diag, kl_std_log_var_as_log_sigma, ["log sigma and log sigma^2"]),
    (grading.check_kl_diag, kl_std_no_half, ["factor 1/2", "4.0000 but it should be 2.0000"]),
    (grading.check_kl_diag, kl_std_mean_over_dims, ["averaged over the latent dimensions"]),
    (grading.check_kl_diag, kl_std_no_sum, ["one value per dimension", "sum over the last axis"]),
    (grading.check_kl_diag, kl_std_sums_batch, ["single number", "not over the batch"]),
    (
        grading.check_kl_two_gaussians,
        kl_two_swapped,
        ["KL(p || q) instead of KL(q || p)", "q = N(0, 1), p = N(0, 4)"],
    ),
    (grading.check_kl_two_gaussians, kl_two_no_minus, ["check the sign"]),
    (grading.check_kl_two_gaussians, kl_two_no_half, ["factor 1/2"]),
    (
        grading.check_kl_two_gaussians,
        kl_two_mean_over_dims,
        ["averaged over the latent dimensions"],
    ),
    (grading.check_kl_two_gaussians, kl_two_log_sigma, ["log sigma and log sigma^2"]),
    (grading.check_kl_monte_carlo, kl_mc_sum, ["n times too large", "divide the sum by n"]),
    (grading.check_kl_monte_carlo, kl_mc_se_over_n, ["shrinks like 1/n"]),
    (grading.check_kl_monte_carlo, kl_mc_se_is_std, ["not the standard error", "sqrt(n)"]),
    (grading.check_kl_monte_carlo, kl_mc_reversed, ["log p - log q"]),
    (
        grading.check_reparameterize,
        reparameterize_sigma_squared,
        ["sigma^4", "scaled eps by sigma^2", "exp(log_var / 2)"],
    ),
    (
        grading.check_reparameterize,
        reparameterize_stop_gradient,
        ["No gradient reaches mu", "reparameterization trick"],
    ),
    (
        grading.check_reparameterize,
        reparameterize_sample_directly,
        ["No gradient reaches mu", "reparameterization trick"],
    ),
    (grading.check_reparameterize, reparameterize_shared_noise, ["same noise"]),
    (grading.check_reparameterize, reparameterize_numpy, ["Different keys gave identical samples"]),
    (
        grading.check_bernoulli_log_likelihood,
        bernoulli_from_probabilities,
        ["-inf", "logits=(100, -100, -100, 100)", "log_sigmoid"],
    ),
    (grading.check_bernoulli_log_likelihood, bernoulli_clipped, ["clipping", "log_sigmoid"]),
    (
        grading.check_bernoulli_log_likelihood,
        bernoulli_mean_over_pixels,
        ["averaged over the pixels"],
    ),
    (
        grading.check_bernoulli_log_likelihood,
        bernoulli_cross_entropy,
        ["positive", "flip the sign"],
    ),
    (
        grading.check_negative_elbo,
        negative_elbo_pixel_mean,
        ["reconstruction term is averaged over the 6 pixels", "SUM over its pixels"],
    ),
    (grading.check_negative_elbo, negative_elbo_batch_sum, ["summed over the batch"]),
    (grading.check_negative_elbo, negative_elbo_kl_mean, ["KL term is averaged over the 3 latent"]),
    (grading.check_negative_elbo, negative_elbo_is_elbo, ["returned the ELBO itself"]),
    (grading.check_negative_elbo, negative_elbo_per_example, ["one value per example", "MEAN"]),
    (grading.check_elbo_estimate, elbo_estimate_no_kl, ["KL term", "is missing"]),
    (grading.check_elbo_estimate, elbo_estimate_summed, ["average over the samples"]),
]


@pytest.mark.parametrize(
    "check, fn, phrases", MISTAKES, ids=[f"{c.__name__}-{f.__name__}" for c, f, _ in MISTAKES]
)
def test_known_mistakes_are_rejected_with_matching_feedback(check, fn, phrases):
    result = check(fn)
    assert not result.passed, f"{fn.__name__} was accepted by {check.__name__}"
    assert bool(result) is False
    for phrase in phrases:
        assert phrase in result.feedback, (phrase, result.feedback)


# --------------------------------------------------------------------- robustness


def stub(*args):
    raise NotImplementedError()


def forgot_return(mean, log_var):
    0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - 1.0 - log_var, axis=-1)


def crashes(*args):
    return 1 / 0


ALL_CHECKS = [
    grading.check_kl_diag,
    grading.check_kl_two_gaussians,
    grading.check_kl_monte_carlo,
    grading.check_reparameterize,
    grading.check_bernoulli_log_likelihood,
    grading.check_negative_elbo,
    grading.check_elbo_estimate,
]


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
def test_a_stub_that_raises_fails_with_a_not_implemented_message(check):
    result = check(stub)
    assert not result.passed
    assert "Not implemented yet" in result.feedback


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
def test_an_exception_is_reported_not_raised(check):
    result = check(crashes)
    assert not result.passed
    assert "ZeroDivisionError" in result.feedback


def test_missing_return_and_non_functions_are_explained():
    assert "forget the `return`" in grading.check_kl_diag(forgot_return).feedback
    result = grading.check_kl_diag(kl_std_correct(jnp.zeros(2), jnp.zeros(2)))
    assert not result.passed and "expected a function" in result.feedback


def test_numpy_implementation_is_told_to_use_jax_for_gradients():
    def kl_numpy(mean, log_var):
        mean, log_var = np.asarray(mean), np.asarray(log_var)
        return 0.5 * np.sum(mean**2 + np.exp(log_var) - 1.0 - log_var, axis=-1)

    result = grading.check_kl_diag(kl_numpy)
    assert not result.passed
    assert "Your KL cannot be differentiated by jax.grad" in result.feedback
    assert "jax.numpy" in result.feedback


def test_feedback_lists_every_message_under_the_check_name():
    result = grading.check_kl_diag(kl_std_no_minus)
    lines = result.feedback.splitlines()
    assert lines[0] == "check_kl_diag: failed"
    assert all(line.startswith("- ") for line in lines[1:])
    assert len(lines) == 1 + len(result.messages)


# --------------------------------------------------------------------- A2: more named mistakes


def negative_elbo_kl_batch_sum(x, logits, mean, log_var):  # KL summed, reconstruction averaged
    return jnp.mean(-bernoulli_correct(x, logits)) + jnp.sum(kl_std_correct(mean, log_var))


def negative_elbo_kl_sigma(x, logits, mean, log_var):  # exp(log_var / 2) inside the KL
    kl_ = 0.5 * jnp.sum(mean**2 + jnp.exp(log_var / 2) - 1.0 - log_var, axis=-1)
    return jnp.mean(-bernoulli_correct(x, logits) + kl_)


def negative_elbo_log_term_halved(x, logits, mean, log_var):
    kl_ = 0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - 1.0 - log_var / 2, axis=-1)
    return jnp.mean(-bernoulli_correct(x, logits) + kl_)


def negative_elbo_beta_half(x, logits, mean, log_var):
    return jnp.mean(-bernoulli_correct(x, logits) + 0.5 * kl_std_correct(mean, log_var))


def negative_elbo_sigmoid_twice(x, logits, mean, log_var):
    return negative_elbo_correct(x, jax.nn.sigmoid(logits), mean, log_var)


def elbo_estimate_iwae(key, model, x, mean, log_var, num_samples):
    z = draw_samples(key, mean, log_var, num_samples)
    return jax.scipy.special.logsumexp(log_weights(model, x, z, mean, log_var)) - jnp.log(
        num_samples
    )


def elbo_estimate_average_z(key, model, x, mean, log_var, num_samples):
    z = jnp.mean(draw_samples(key, mean, log_var, num_samples), axis=0)
    return log_weights(model, x, z, mean, log_var)


def elbo_estimate_prior_twice(key, model, x, mean, log_var, num_samples):
    z = draw_samples(key, mean, log_var, num_samples)
    return jnp.mean(log_weights(model, x, z, mean, log_var) + model.log_prior(z))


NAMED = [
    (grading.check_negative_elbo, negative_elbo_kl_batch_sum, ["KL term is summed over the batch"]),
    (grading.check_negative_elbo, negative_elbo_kl_sigma, ["uses exp(log_var / 2) = sigma"]),
    (grading.check_negative_elbo, negative_elbo_log_term_halved, ["log term of your KL is halved"]),
    (grading.check_negative_elbo, negative_elbo_beta_half, ["beta = 0.5"]),
    (grading.check_negative_elbo, negative_elbo_sigmoid_twice, ["applied the sigmoid twice"]),
    (grading.check_elbo_estimate, elbo_estimate_iwae, ["IWAE bound"]),
    (grading.check_elbo_estimate, elbo_estimate_average_z, ["AVERAGE z_bar"]),
    (grading.check_elbo_estimate, elbo_estimate_prior_twice, ["counts the prior twice"]),
]


@pytest.mark.parametrize(
    ("check", "fn", "phrases"), NAMED, ids=[f"{c.__name__}-{f.__name__}" for c, f, _ in NAMED]
)
def test_unnamed_mistakes_of_issue_11_get_named_feedback(check, fn, phrases):
    result = check(fn)
    assert not result.passed
    for phrase in phrases:
        assert phrase in result.feedback, result.feedback


# --------------------------------------------------------------------- A3


def a3_loss_correct(params, key, x):  # written independently of vae_edu.mlp_vae
    h = jnp.maximum(x @ params["enc_w1"] + params["enc_b1"], 0.0)
    out = h @ params["enc_w2"] + params["enc_b2"]
    mean, log_var = out[..., :2], out[..., 2:]
    z = mean + jnp.sqrt(jnp.exp(log_var)) * jax.random.normal(key, mean.shape)
    g = jnp.maximum(z @ params["dec_w1"] + params["dec_b1"], 0.0)
    logits = g @ params["dec_w2"] + params["dec_b2"]
    log_px = -jnp.sum(x * jax.nn.softplus(-logits) + (1 - x) * jax.nn.softplus(logits), -1)
    kl_ = -0.5 * jnp.sum(1 + log_var - mean**2 - jnp.exp(log_var), -1)
    return jnp.mean(kl_) - jnp.mean(log_px)


def a3_loss_fixed_key(params, key, x):
    return a3_loss_correct(params, jax.random.key(0), x)


def a3_loss_beta_half(params, key, x):
    full = a3_loss_correct(params, key, x)
    zero_kl = {**params}  # the KL part alone, from the encoder's outputs
    h = jnp.maximum(x @ zero_kl["enc_w1"] + zero_kl["enc_b1"], 0.0)
    out = h @ params["enc_w2"] + params["enc_b2"]
    mean, log_var = out[..., :2], out[..., 2:]
    kl_ = 0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - 1 - log_var, -1)
    return full - 0.5 * jnp.mean(kl_)


def a3_loss_batch_sum(params, key, x):
    return x.shape[0] * a3_loss_correct(params, key, x)


A3_LOSS_MISTAKES = [
    (a3_loss_fixed_key, ["fixed PRNG key"]),
    (a3_loss_beta_half, ["beta = 0.5"]),
    (a3_loss_batch_sum, ["summed over the batch"]),
]


def test_check_a3_loss_accepts_a_correct_loss():
    result = grading.check_a3_loss(a3_loss_correct)
    assert result.passed, result.feedback


@pytest.mark.parametrize(
    ("fn", "phrases"), A3_LOSS_MISTAKES, ids=lambda v: getattr(v, "__name__", "")
)
def test_check_a3_loss_names_mistakes(fn, phrases):
    result = grading.check_a3_loss(fn)
    assert not result.passed
    for phrase in phrases:
        assert phrase.lower() in result.feedback.lower(), result.feedback


def test_the_kernel_loss_code_is_the_reference_loss():
    from vae_edu import mlp_vae

    params = mlp_vae.init_params(jax.random.key(3), hidden=8)
    x = (np.random.default_rng(0).uniform(size=(4, 784)) < 0.3).astype(np.float32)
    code = grading.KernelFunction(grading.A3_LOSS_CODE)
    for key in (jax.random.key(1), jax.random.key(2)):
        assert np.isclose(code(params, key, x), a3_loss_correct(params, key, x), rtol=1e-5)


SMALL = None


def small_budget(**changes):
    from vae_edu import mlp_vae

    base = dict(num_steps=60, checkpoint_every=20, hidden=32, target_elbo=-260.0)
    return mlp_vae.Budget(**{**base, **changes})


def a3_step_correct(loss_fn, params, opt_state, key, x):
    import optax

    grads = jax.grad(loss_fn)(params, key, x)
    updates, opt_state = optax.adam(2e-3).update(grads, opt_state)
    params = jax.tree_util.tree_map(lambda p, u: p + u, params, updates)
    return params, opt_state, loss_fn(params, key, x)


def a3_step_ascent(loss_fn, params, opt_state, key, x):
    new, state, loss = a3_step_correct(loss_fn, params, opt_state, key, x)
    return jax.tree_util.tree_map(lambda p, n: 2 * p - n, params, new), state, loss


def a3_step_fixed_key(loss_fn, params, opt_state, key, x):
    return a3_step_correct(loss_fn, params, opt_state, jax.random.key(0), x)


def a3_step_old_state(loss_fn, params, opt_state, key, x):
    new, _, loss = a3_step_correct(loss_fn, params, opt_state, key, x)
    return new, opt_state, loss


def a3_step_sgd(loss_fn, params, opt_state, key, x):
    grads = jax.grad(loss_fn)(params, key, x)
    return jax.tree_util.tree_map(lambda p, g: p - 2e-3 * g, params, grads), opt_state, 0.0


A3_STEP_MISTAKES = [
    (a3_step_ascent, "goes UP the loss"),
    (a3_step_fixed_key, "fixed PRNG key"),
    (a3_step_old_state, "OLD optimizer state"),
    (a3_step_sgd, "plain gradient descent"),
]


def test_check_a3_training_re_runs_a_correct_step_and_enforces_the_target():
    result = grading.check_a3_training(a3_step_correct, small_budget())
    assert result.passed, result.feedback
    # the same run against an unreachable target: measured, not assumed
    failed = grading.check_a3_training(a3_step_correct, small_budget(target_elbo=-50.0))
    assert not failed.passed and "below the target -50.0" in failed.feedback


@pytest.mark.parametrize(
    ("fn", "phrase"), A3_STEP_MISTAKES, ids=lambda v: getattr(v, "__name__", "")
)
def test_check_a3_training_names_mistakes(fn, phrase):
    result = grading.check_a3_training(fn, small_budget(num_steps=2, checkpoint_every=1))
    assert not result.passed
    assert phrase in result.feedback, result.feedback


class ForgedRun:
    """A kernel that answers the probe honestly, then returns a run trained elsewhere (a
    shipped model standing in: parameters that did not come from these steps)."""

    def __init__(self, budget):
        self.budget = budget

    def __call__(self, *args):
        return a3_step_correct(*args)

    def run_training(self, params, images, loss_fn, budget):
        from vae_edu import mlp_vae

        run = mlp_vae.run_training(a3_step_correct, params, images, loss_fn, budget)
        if budget["num_steps"] == self.budget.num_steps:
            elsewhere = mlp_vae.run_training(
                a3_step_correct,
                params,
                images,
                loss_fn,
                {**budget, "num_steps": 120, "checkpoint_every": 120},
            )
            run["final"] = elsewhere["final"]
        return run


def test_check_a3_training_rejects_parameters_trained_elsewhere():
    budget = small_budget()
    result = grading.check_a3_training(ForgedRun(budget), budget)
    assert not result.passed
    assert "does not reproduce" in result.feedback and "step 40" in result.feedback


@pytest.fixture(scope="module")
def a3_latents():
    """Briefly trained A3 parameters (100 reference steps: the check wants a trained model)
    and their test-set statistics, computed here with NumPy."""
    import dataclasses

    from vae_edu import data, mlp_vae

    budget = dataclasses.replace(mlp_vae.BUDGET, num_steps=100, checkpoint_every=100)
    images = mlp_vae.training_images()
    params0 = mlp_vae.init_params(jax.random.key(5), pixel_mean=images.mean(axis=0))
    run = mlp_vae.run_training(mlp_vae.train_step, params0, images, mlp_vae.negative_elbo, budget)
    params = {k: np.asarray(v) for k, v in run["final"][0].items()}
    images = np.asarray(mlp_vae.test_images(), np.float64)
    labels = np.asarray(data.load_mnist("test").labels[: len(images)])
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    mean = (np.maximum(images @ p["enc_w1"] + p["enc_b1"], 0) @ p["enc_w2"] + p["enc_b2"])[:, :2]
    class_means = np.stack([mean[labels == k].mean(axis=0) for k in range(10)])
    nearest = np.argmin(((mean[:, None] - class_means[None]) ** 2).sum(-1), axis=1)
    answers = dict(
        class_means=class_means,
        farthest_digit=int(np.argmax((class_means**2).sum(1))),
        centroid_accuracy=float(np.mean(nearest == labels)),
    )
    return params, answers


def test_check_latent_statistics_wants_an_encoder_of_the_a3_shapes_that_varies(a3_latents):
    from vae_edu import mlp_vae

    params, answers = a3_latents
    check = grading.check_latent_statistics
    zeros = {k: np.zeros_like(v) for k, v in params.items()}
    assert "hardly vary" in check(zeros, **answers).feedback
    constant = dict(zeros, enc_b2=np.ones_like(params["enc_b2"]), dec_b2=params["dec_b2"])
    assert "hardly vary" in check(constant, **answers).feedback  # any biases: still constant
    diverged = dict(params, enc_b2=np.full_like(params["enc_b2"], np.nan))
    assert "not finite" in check(diverged, **answers).feedback
    small = mlp_vae.init_params(jax.random.key(5), hidden=32)
    assert "has shape" in check(small, **answers).feedback


def test_check_latent_statistics_accepts_the_right_answers_and_names_mistakes(a3_latents):
    params, answers = a3_latents
    check = grading.check_latent_statistics
    assert check(params, **answers).passed
    percent = dict(answers, centroid_accuracy=100 * answers["centroid_accuracy"])
    assert "not a percentage" in check(params, **percent).feedback
    norms = np.linalg.norm(answers["class_means"], axis=1)
    nearest = dict(answers, farthest_digit=int(np.argmin(norms)))
    assert "NEAREST" in check(params, **nearest).feedback
    reversed_rows = dict(answers, class_means=answers["class_means"][::-1])
    assert "reverse order" in check(params, **reversed_rows).feedback
    wrong_shape = dict(answers, class_means=answers["class_means"][:5])
    assert "one row" in check(params, **wrong_shape).feedback
    swapped = answers["class_means"].copy()
    swapped[[3, 5]] = swapped[[5, 3]]
    feedback = check(params, **dict(answers, class_means=swapped)).feedback
    assert "2 of 10 rows" in feedback and "row 3" in feedback
    assert "holds the class mean of digit 5" in feedback and "Class_means" not in feedback


def test_check_latent_statistics_counts_none_as_a_wrong_answer(a3_latents):
    """Review 5: `class_means = None` passed as 'not asked' and scored full marks."""
    params, answers = a3_latents
    check = grading.check_latent_statistics
    for name in answers:
        result = check(params, **dict(answers, **{name: None}))
        assert not result.passed and f"{name} is None" in result.feedback
    assert check(params, class_means=answers["class_means"]).passed  # the others not asked
    for bad in (answers["farthest_digit"] + 0.5, np.array([1, 2]), float("nan"), "7"):
        result = check(params, **dict(answers, farthest_digit=bad))
        assert not result.passed and "an integer 0-9" in result.feedback
    assert check(params, **dict(answers, farthest_digit=np.int64(answers["farthest_digit"]))).passed


# --------------------------------------------------------------------- hidden inputs (issue 11)


def test_hidden_inputs_come_from_the_run_secret():
    """The checks' random inputs change with the grading run's secret (a table of last
    run's inputs answers nothing) and are reproducible for a fixed one."""
    from vae_edu.grading import a1, core

    try:
        core.new_run_secret(1)
        first = a1._kl_diag_inputs()
        assert np.array_equal(first[0], a1._kl_diag_inputs()[0])
        core.new_run_secret(2)
        second = a1._kl_diag_inputs()
        assert not np.allclose(first[0], second[0])
        key_1 = jax.random.key_data(core.hidden_key(3))
        core.new_run_secret(1)
        assert not np.array_equal(key_1, jax.random.key_data(core.hidden_key(3)))
    finally:
        core.new_run_secret()


def test_a_check_calls_the_graders_code_for_the_other_answers():
    """check_elbo_estimate runs the student's estimate with the grader's reparameterize in
    place of the student's (here sigma^2 for sigma): a wrong reparameterize costs its own
    question only; the notebook's namespace is restored afterwards."""
    notebook = {
        "jnp": jnp,
        "log_weights": log_weights,
        "reparameterize": reparameterize_sigma_squared,
    }
    exec(  # the student's cell, in the notebook's namespace
        "def elbo_estimate(key, model, x, mean, log_var, num_samples):\n"
        "    shape = (num_samples, *mean.shape)\n"
        "    z = reparameterize(key, jnp.broadcast_to(mean, shape),"
        " jnp.broadcast_to(log_var, shape))\n"
        "    return jnp.mean(log_weights(model, x, z, mean, log_var))\n",
        notebook,
    )
    assert not grading.check_reparameterize(reparameterize_sigma_squared).passed
    assert grading.check_elbo_estimate(notebook["elbo_estimate"]).passed
    assert notebook["reparameterize"] is reparameterize_sigma_squared
