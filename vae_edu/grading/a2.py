"""Assignment 2 checks: reparameterized sampling, the Bernoulli log-likelihood from
logits, the negative ELBO of a batch and an unbiased ELBO estimate on the conjugate model."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from vae_edu.conjugate import make_model
from vae_edu.elbo import bernoulli_log_likelihood, diag_gaussian_log_density
from vae_edu.grading.core import (
    ATOL,
    BERNOULLI_CODE,
    KL_STANDARD_NORMAL_CODE,
    NUM_SE,
    REPARAMETERIZE_CODE,
    RTOL,
    CheckResult,
    Stop,
    as_array,
    bernoulli_by_hand,
    call_student,
    check_event_shape,
    close,
    diagnose,
    expect_finite,
    f32,
    fmt,
    gradient,
    hidden_key,
    hidden_rng,
    kl_standard_normal_by_hand,
    run_check,
    scalar,
    with_reference_names,
)
from vae_edu.kl import kl_diag_gaussians

# ------------------------------------------------- reparameterized sampling

_REPARAM_HINT = (
    "no gradient reaches mu: dz/dmu should be 1 but yours is 0, so you sampled z without the "
    "reparameterization trick (for example through jax.lax.stop_gradient, or by drawing z "
    "directly as jax.random.normal(key) * sigma + stop_gradient(mu)). Write "
    "z = mu + sigma * eps with eps = jax.random.normal(key, mean.shape) drawn independently "
    "of mu and sigma, so that dz/dmu = 1 and dz/dsigma = eps."
)


def check_reparameterize(student_fn) -> CheckResult:
    r"""Checks ``student_fn(key, mean, log_var) -> z``, a reparameterized draw from q.

        z = mu + sigma * eps,   sigma = exp(log_var / 2),   eps ~ N(0, I)  (same shape as mu)

    Checked by Monte Carlo (20,000 draws: sample means and variances within 5 standard
    errors of mu and sigma^2), for independent noise per example, for reproducibility under
    a fixed key, for finite draws at log-variances of +-30, and for the gradients that make
    the trick worth doing: dz/dmu = 1 and dz/dlog_var = (z - mu) / 2.
    """
    return run_check(
        "check_reparameterize",
        (_reparam_distribution, _reparam_keys, _reparam_gradients, _reparam_extremes),
        student_fn,
        "correct: sample means and variances match mu and sigma^2 (20,000 draws), "
        "the noise is independent per entry and driven by the key, and gradients "
        "flow to mu and log_var.",
    )


_REPARAM_CALL = "reparameterize(key, mean, log_var)"
_SMALL_MEAN = np.array([[0.5, -1.0], [2.0, 0.0], [0.0, 3.0]])
_SMALL_LOG_VAR = np.array([[0.0, 1.0], [-1.0, 0.5], [2.0, -2.0]])


def _sample(fn, key, mean, log_var) -> np.ndarray:
    """The student's z for (mean, log_var), required to have the shape of mean."""
    z = as_array(call_student(fn, key, f32(mean), f32(log_var), call=_REPARAM_CALL), "your sampler")
    if z.shape != np.shape(mean):
        raise Stop(
            f"for mean and log_var of shape {np.shape(mean)} your z has shape "
            f"{z.shape}; z must have the shape of mean (one draw per entry): "
            "eps = jax.random.normal(key, mean.shape)."
        )
    return z


def _reparam_distribution(fn) -> list[str]:
    """Step 1: 20,000 draws have mean mu, variance sigma^2, independent Gaussian noise."""
    mu, sigma2 = np.array([1.0, -2.0]), np.array([4.0, 0.25])
    num = 20_000
    mean = np.broadcast_to(mu, (num, 2))
    z = _sample(fn, hidden_key(3), mean, np.broadcast_to(np.log(sigma2), (num, 2)))
    expect_finite(z, "your samples")
    if np.allclose(z, mean, atol=1e-6):
        raise Stop("your samples are exactly mu: the noise term sigma * eps is missing.")
    if np.allclose(z[0], z[1]) and np.allclose(z.std(axis=0), 0.0):
        raise Stop(
            "every example received the same noise: draw eps with the shape of "
            "mean, jax.random.normal(key, mean.shape), so that each entry gets "
            "its own independent eps."
        )
    problem = (
        _variance_problem(z.var(axis=0, ddof=1), sigma2, num)
        or _mean_problem(z.mean(axis=0), mu, sigma2, num)
        or _noise_problem((z - mu) / np.sqrt(sigma2), num)
    )
    return [problem] if problem else []


def _variance_problem(sample_var, sigma2, num: int) -> str | None:
    """Sample variances within NUM_SE standard errors of sigma^2; else the named mistake."""
    se_var = sigma2 * np.sqrt(2.0 / (num - 1))
    bad_var = np.abs(sample_var - sigma2) > NUM_SE * se_var
    if not np.any(bad_var):
        return None
    j = int(np.argmax(bad_var))
    where = (
        f"your samples have variance {sample_var[j]:.4f} in a dimension where "
        f"sigma^2 = exp(log_var) = {sigma2[j]:.4f}"
    )
    if np.allclose(sample_var, sigma2**2, rtol=0.05):
        return (
            f"{where}, which is sigma^4: you scaled eps by sigma^2 = exp(log_var). "
            "Scale it by the standard deviation sigma = exp(log_var / 2)."
        )
    if np.allclose(sample_var, 1.0, rtol=0.05):
        return (
            f"{where}: eps was not scaled at all. z = mu + sigma * eps with "
            "sigma = exp(log_var / 2)."
        )
    return (
        f"{where} (expected within {NUM_SE:g} standard errors): z = mu + sigma * "
        "eps with sigma = exp(log_var / 2)."
    )


def _mean_problem(sample_mean, mu, sigma2, num: int) -> str | None:
    """Sample means within NUM_SE standard errors of mu."""
    bad_mean = np.abs(sample_mean - mu) > NUM_SE * np.sqrt(sigma2 / num)
    if not np.any(bad_mean):
        return None
    j = int(np.argmax(bad_mean))
    return (
        f"your samples have mean {sample_mean[j]:.4f} in a dimension where "
        f"mu = {mu[j]:.4f}: z = mu + sigma * eps (did you add mu?)."
    )


def _noise_problem(eps, num: int) -> str | None:
    """The standardized noise: uncorrelated across dimensions, and Gaussian (its tails)."""
    corr = float(np.corrcoef(eps[:, 0], eps[:, 1])[0, 1])
    if abs(corr) > NUM_SE / np.sqrt(num):
        return (
            f"the noise of the two latent dimensions is correlated (correlation "
            f"{corr:.3f} over {num} draws, expected 0): all dimensions of an example "
            "share one eps, as with noise of shape (B, 1). Draw eps with the shape of "
            "mean: jax.random.normal(key, mean.shape)."
        )
    # 4.55% of standard normal draws lie beyond 2 (a uniform noise of unit variance has
    # none, a Laplace one 5.9%).
    beyond = float(np.mean(np.abs(eps) > 2.0))
    expected, se_beyond = 0.0455, np.sqrt(0.0455 * (1 - 0.0455) / eps.size)
    if abs(beyond - expected) > NUM_SE * se_beyond:
        return (
            f"your noise is not Gaussian: {100 * beyond:.2f}% of the standardized draws "
            f"(z - mu) / sigma lie beyond 2, where a standard normal puts 4.55% (mean and "
            "variance alone do not make a Gaussian; uniform noise has no such tails). "
            "Use eps = jax.random.normal(key, mean.shape)."
        )
    return None


def _reparam_keys(fn) -> list[str]:
    """Step 2: the same key gives the same draw, another key another one."""
    key = hidden_key(4)
    z1 = _sample(fn, key, _SMALL_MEAN, _SMALL_LOG_VAR)
    z2 = _sample(fn, key, _SMALL_MEAN, _SMALL_LOG_VAR)
    z3 = _sample(fn, hidden_key(5), _SMALL_MEAN, _SMALL_LOG_VAR)
    if not np.array_equal(z1, z2):
        return [
            "two calls with the same key gave different samples: take all randomness "
            "from the key argument (jax.random.normal(key, ...)), not from numpy or a "
            "global random state."
        ]
    if np.array_equal(z1, z3):
        return [
            "different keys gave identical samples: draw eps with the key you are "
            "given, jax.random.normal(key, mean.shape)."
        ]
    return []


def _reparam_gradients(fn) -> list[str]:
    """Step 3: dz/dmu = 1 and dz/dlog_var = (z - mu) / 2 through jax.grad."""
    key = hidden_key(4)
    args = (key, f32(_SMALL_MEAN), f32(_SMALL_LOG_VAR))
    grad_mean = gradient(fn, args, 1, "your sampler")
    if np.allclose(grad_mean, 0.0):
        return [_REPARAM_HINT]
    if not close(grad_mean, np.ones_like(_SMALL_MEAN), rtol=1e-4, atol=1e-4):
        return [
            f"dz/dmu should be 1 for every entry, yours is {fmt(grad_mean)}: z = mu + sigma * eps."
        ]
    grad_log_var = gradient(fn, args, 2, "your sampler")
    if np.allclose(grad_log_var, 0.0):
        return [
            "no gradient reaches log_var (dz/dlog_var is 0): compute sigma = "
            "exp(log_var / 2) inside the sample, without stop_gradient."
        ]
    expected = 0.5 * (_sample(fn, key, _SMALL_MEAN, _SMALL_LOG_VAR) - _SMALL_MEAN)
    if not close(grad_log_var, expected, rtol=1e-3, atol=1e-4):
        return [
            f"dz/dlog_var should be sigma * eps / 2 = (z - mu) / 2 = {fmt(expected)}, "
            f"yours is {fmt(grad_log_var)}."
        ]
    return []


def _reparam_extremes(fn) -> list[str]:
    """Step 4: finite draws at log-variances of -30 and 30."""
    extreme_mean = np.array([[0.0, 1.0], [5.0, -5.0]])
    extreme_log_var = np.array([[-30.0, 30.0], [30.0, -30.0]])
    z = _sample(fn, hidden_key(6), extreme_mean, extreme_log_var)
    expect_finite(
        z,
        "for log-variances of -30 and 30 your samples",
        "Compute sigma as exp(log_var / 2), which is finite for |log_var| <= 30.",
    )
    return []


# ------------------------------------------------- Bernoulli log-likelihood from logits

_LOGITS_HINT = (
    "Computing p = sigmoid(logits) and then log(p), log(1 - p) breaks down once p rounds to "
    "exactly 0 or 1 in floating point (already at |logit| ~ 17 in float32): log(0) = -inf. "
    "Work with the logits directly: log p(x | z) = sum_j [x_j * l_j - softplus(l_j)], e.g. "
    "with jax.nn.log_sigmoid(l) = log p and jax.nn.log_sigmoid(-l) = log(1 - p)."
)


def check_bernoulli_log_likelihood(student_fn) -> CheckResult:
    r"""Checks ``student_fn(x, logits) -> log p(x | logits)``, summed over the last axis.

        log p(x | z) = sum_j [ x_j log sigmoid(l_j) + (1 - x_j) log(1 - sigmoid(l_j)) ]
                     = sum_j [ x_j l_j - softplus(l_j) ]

    for binary x of shape (..., D) and logits of the same shape; result shape (...).
    Checked on hand values (logits 0 give -D log 2), on logits of +-100 (where the
    probability form gives -inf or NaN), against :func:`vae_edu.elbo.bernoulli_log_likelihood`
    on seeded random inputs, and through jax.grad (d/dl = x - sigmoid(l), finite).
    """
    return run_check(
        "check_bernoulli_log_likelihood",
        (_bernoulli_values, _bernoulli_gradient),
        student_fn,
        "correct: hand values, random inputs, logits of +-100 (values and gradients "
        "finite) and the sum over pixels.",
    )


_BERNOULLI_CALL = "bernoulli_log_likelihood(x, logits)"
_BERNOULLI_CASES = [
    ("x=(1, 0, 1), logits=(0, 0, 0)", ([1.0, 0.0, 1.0], [0.0, 0.0, 0.0]), 3 * math.log(0.5)),
    ("x=1, logit=2", ([1.0], [2.0]), -math.log1p(math.exp(-2.0))),
    ("x=0, logit=2", ([0.0], [2.0]), -math.log1p(math.exp(2.0))),
]
_EXTREME_X = np.array([[1.0, 0.0, 1.0, 0.0]])
_EXTREME_LOGITS = np.array([[100.0, -100.0, -100.0, 100.0]])


def _bernoulli_of(fn, x, logits) -> np.ndarray:
    return as_array(
        call_student(fn, f32(x), f32(logits), call=_BERNOULLI_CALL), "your log-likelihood"
    )


def _bernoulli_values(fn) -> list[str]:
    """Step 1: shape, hand values, logits of +-100 and the reference; names the mistake."""
    rng = hidden_rng(5)
    batch, dim = 4, 6
    x = rng.integers(0, 2, size=(batch, dim)).astype(np.float64)
    logits = rng.normal(0.0, 3.0, size=(batch, dim))
    got = _bernoulli_of(fn, x, logits)
    check_event_shape(got, batch, dim, "log-likelihood")
    problems = []
    hand = _bernoulli_hand_problem(fn)
    if hand:
        problems.append(hand)
    value = _bernoulli_of(fn, _EXTREME_X, _EXTREME_LOGITS)
    expected = bernoulli_by_hand(_EXTREME_X, _EXTREME_LOGITS)
    if not np.all(np.isfinite(value)):
        problems.insert(
            0,
            f"your log-likelihood is {fmt(value.ravel()[0])} for "
            "x=(1, 0, 1, 0) and logits=(100, -100, -100, 100), where the "
            f"right answer is {fmt(expected[0])} (each wrong pixel costs "
            "100 nats). " + _LOGITS_HINT,
        )
        return problems
    if not problems and not close(value, expected):
        problems.append(
            f"for x=(1, 0, 1, 0) and logits=(100, -100, -100, 100) your "
            f"log-likelihood is {fmt(value.ravel()[0])} but it should be "
            f"{fmt(expected[0])}: "
            "clipping or adding a small constant inside the log changes the "
            "answer. " + _LOGITS_HINT
        )
    reference = np.asarray(bernoulli_log_likelihood(f32(x), f32(logits)), np.float64)
    if not problems and close(got, reference):
        return []
    if not problems:
        problems.append(
            f"on random inputs your log-likelihood differs from the "
            f"reference: for x={fmt(x[0])}, logits={fmt(logits[0])} you "
            f"return {fmt(got[0])}, expected {fmt(reference[0])}."
        )
    hint = diagnose(got, _bernoulli_mistakes(x, logits, reference))
    if hint:
        problems.append(hint)
    return problems


def _bernoulli_hand_problem(fn) -> str | None:
    """The first hand-checkable case the student's function gets wrong, or None."""
    for description, (xs, ls), expected in _BERNOULLI_CASES:
        value = scalar(_bernoulli_of(fn, [xs], [ls]), "your log-likelihood")
        if not math.isclose(value, expected, rel_tol=RTOL, abs_tol=ATOL):
            return (
                f"for {description} your log-likelihood is {value:.4f} but it "
                f"should be {expected:.4f}."
            )
    return None


def _bernoulli_mistakes(x, logits, reference):
    """(output, message) of the known mistakes of a Bernoulli log-likelihood."""
    dim = x.shape[-1]
    return [
        (
            -reference,
            "your log-likelihood is positive: a probability is at most 1, so "
            "its log is <= 0. You returned the binary cross-entropy (the "
            "NEGATIVE log-likelihood): flip the sign.",
        ),
        (
            reference / dim,
            f"your log-likelihood for {dim} pixels is 1/{dim} of the "
            "correct value: you averaged over the pixels. The pixels are "
            "independent given z, so log p(x | z) is the SUM of the "
            "per-pixel terms (averaging would weaken the reconstruction "
            "term 784-fold against the KL on MNIST).",
        ),
        (
            bernoulli_by_hand(1.0 - x, logits),
            "you swapped x and 1 - x: the term x_j log "
            "sigmoid(l_j) belongs to pixels that are on "
            "(x_j = 1).",
        ),
    ]


def _bernoulli_gradient(fn) -> list[str]:
    """Step 2: d/dlogits = x - sigmoid(logits), finite at logits of +-100."""
    grad = gradient(fn, (f32(_EXTREME_X), f32(_EXTREME_LOGITS)), 1, "your log-likelihood")
    expected_grad = _EXTREME_X - 1.0 / (1.0 + np.exp(-_EXTREME_LOGITS))
    if close(grad, expected_grad, rtol=1e-4, atol=1e-4):
        return []
    return [
        f"at logits=(100, -100, -100, 100) your gradient is {fmt(grad)}, expected "
        f"x - sigmoid(logits) = {fmt(expected_grad)}. " + _LOGITS_HINT
    ]


# ------------------------------------------------- the negative ELBO of a batch


def negative_elbo_mistakes(x, logits, mean, log_var, extra=()):
    """(value, message) for the known mistakes in a batch's negative ELBO (float64)."""
    x, logits = np.asarray(x, np.float64), np.asarray(logits, np.float64)
    mean, log_var = np.asarray(mean, np.float64), np.asarray(log_var, np.float64)
    batch, dim_x = x.shape
    dim_z = mean.shape[-1]

    recon = bernoulli_by_hand(x, logits)
    kl = kl_standard_normal_by_hand(mean, log_var)
    reference = float(np.mean(-recon + kl))
    return [
        *extra,
        (
            np.mean(-recon / dim_x + kl),
            f"your reconstruction term is averaged over the {dim_x} pixels: the "
            "reconstruction log-likelihood of an image is the SUM over its pixels "
            "(averaging weakens it 784-fold against the KL on MNIST and the VAE learns "
            "blurry digits).",
        ),
        (
            np.sum(-recon + kl),
            f"your loss is {batch} times too large for a batch of {batch}: "
            "you summed over the batch. Sum over pixels and latent dimensions, "
            "then take the MEAN over the batch (so the learning rate does not depend "
            "on the batch size).",
        ),
        (
            np.mean(-recon) + np.sum(kl),
            f"your KL term is summed over the batch of {batch} while the reconstruction "
            "term is averaged: take the MEAN over the batch of both (the KL is summed over "
            "the latent dimensions only).",
        ),
        (
            np.mean(-recon + kl / dim_z),
            f"your KL term is averaged over the {dim_z} latent dimensions: sum it."
            + (
                " (Or you weighted it by 1/2, beta = 0.5, which gives the same number for "
                "d = 2: the negative ELBO weights the KL by 1.)"
                if dim_z == 2
                else ""
            ),
        ),
        (
            np.mean(-recon / dim_x + kl / dim_z),
            "you averaged over pixels and over latent dimensions: sum over both, then "
            "take the mean over the batch.",
        ),
        (
            np.mean(-recon + 0.5 * np.sum(mean**2 + np.exp(0.5 * log_var) - 1.0 - log_var, -1)),
            "your KL uses exp(log_var / 2) = sigma where the variance belongs: the KL to "
            "N(0, I) is 1/2 sum_j (mu_j^2 + exp(log_var_j) - 1 - log_var_j), with "
            "sigma^2 = exp(log_var) (exp(log_var / 2) is the sigma of the sampling step).",
        ),
        (
            np.mean(-recon + 0.5 * np.sum(mean**2 + np.exp(log_var) - 1.0 - 0.5 * log_var, -1)),
            "the log term of your KL is halved: inside 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - "
            "log sigma_j^2) the log term is log sigma^2 = log_var itself, not log_var / 2 "
            "(the 1/2 in front already applies to it).",
        ),
        (
            np.mean(-recon + 0.5 * kl),
            "your KL term carries a weight of 1/2 (beta = 0.5): the negative ELBO is "
            "-log p(x | z) + KL with weight 1 (beta = 1); a factor 1/2 belongs only inside "
            "the KL formula.",
        ),
        (
            np.mean(-bernoulli_by_hand(x, 1.0 / (1.0 + np.exp(-logits))) + kl),
            "you applied the sigmoid twice: the decoder's outputs are LOGITS, and the "
            "log-likelihood from logits uses log_sigmoid(logits) and log_sigmoid(-logits) "
            "directly (do not pass sigmoid(logits) as the logits).",
        ),
        (
            -reference,
            "you returned the ELBO itself; the loss to MINIMISE is the "
            "negative ELBO, -log p(x | z) + KL.",
        ),
        (
            np.mean(-recon - kl),
            "you subtracted the KL: the negative ELBO is -log p(x | z) + KL(q || p).",
        ),
        (
            np.mean(recon + kl),
            "the reconstruction term has the wrong sign: the "
            "negative ELBO is -log p(x | z) + KL(q || p).",
        ),
        (
            np.mean(-recon),
            "the KL term is missing: the negative ELBO is -log p(x | z) + KL(q || p).",
        ),
        (
            np.mean(kl),
            "the reconstruction term is missing: the negative ELBO is -log p(x | z) + KL(q || p).",
        ),
    ]


def check_negative_elbo(student_fn) -> CheckResult:
    r"""Checks ``student_fn(x, logits, mean, log_var) -> loss``, the VAE training loss.

        loss = (1/B) sum_b [ -log p(x_b | z_b) + KL(q(z | x_b) || N(0, I)) ]

    with log p(x_b | z_b) the Bernoulli log-likelihood summed over the D pixels (logits are
    the decoder's output at the sampled z_b), the KL summed over the d latent dimensions,
    and the mean over the B examples of the batch (Odaibo 2019, eq. 43). x, logits: (B, D);
    mean, log_var: (B, d); loss: a scalar. Checked on hand values, against the package's
    reference on seeded random inputs, at logits of +-100, and through jax.grad.
    """

    student_fn = with_reference_names(
        student_fn,
        bernoulli_log_likelihood=BERNOULLI_CODE,
        reparameterize=REPARAMETERIZE_CODE,
        kl_standard_normal=KL_STANDARD_NORMAL_CODE,
    )
    return run_check(
        "check_negative_elbo",
        (_negative_elbo_values, _negative_elbo_extremes, _negative_elbo_gradient),
        student_fn,
        "correct: hand values, the reference on a random batch, logits of +-100 and "
        "gradients (sum over pixels and latent dimensions, mean over the batch).",
    )


_NEGATIVE_ELBO_CALL = "negative_elbo(x, logits, mean, log_var)"
_X2 = [[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
_NEGATIVE_ELBO_CASES = [
    (
        "a batch of 2 images with 3 pixels, logits=0, mu=0, sigma=1 (KL = 0)",
        (_X2, np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((2, 2))),
        3 * math.log(2.0),
    ),
    (
        "the same batch with mu=(2, 0) for both images, sigma=1 (KL = 2 per image)",
        (_X2, np.zeros((2, 3)), [[2.0, 0.0], [2.0, 0.0]], np.zeros((2, 2))),
        3 * math.log(2.0) + 2.0,
    ),
]


def _loss_of(fn, *args) -> float:
    """The student's loss for (x, logits, mean, log_var), required to be a scalar."""
    out = as_array(call_student(fn, *(f32(a) for a in args), call=_NEGATIVE_ELBO_CALL), "your loss")
    if out.shape != ():
        batch = np.shape(args[0])[0]
        per_example = " (one value per example)" if out.shape == (batch,) else ""
        raise Stop(
            f"your loss has shape {out.shape}{per_example}; the loss is a single "
            "number, the MEAN over the batch of the per-example negative ELBOs."
        )
    return float(out)


def _negative_elbo_inputs():
    """A random batch (B=4, D=6, d=3) drawn from the run's secret: x, logits, mean,
    log_var in float64."""
    rng = hidden_rng(6)
    x = rng.integers(0, 2, size=(4, 6)).astype(np.float64)
    logits = rng.normal(0.0, 2.0, size=(4, 6))
    mean = rng.normal(0.0, 1.0, size=(4, 3))
    log_var = rng.uniform(-1.0, 1.0, size=(4, 3))
    return x, logits, mean, log_var


def _negative_elbo_values(fn) -> list[str]:
    """Step 1: hand values and the reference on a random batch; names the mistake."""
    x, logits, mean, log_var = _negative_elbo_inputs()
    (batch, dim_x), dim_z = x.shape, mean.shape[-1]
    got = _loss_of(fn, x, logits, mean, log_var)
    recon = np.asarray(bernoulli_log_likelihood(f32(x), f32(logits)), np.float64)
    kl = np.asarray(kl_diag_gaussians(f32(mean), f32(log_var)), np.float64)
    reference = float(np.mean(-recon + kl))
    problems = []
    for description, args, expected in _NEGATIVE_ELBO_CASES:
        value = _loss_of(fn, *args)
        if not math.isclose(value, expected, rel_tol=RTOL, abs_tol=ATOL):
            problems.append(
                f"for {description} your loss is {value:.4f} but it should be "
                f"{expected:.4f} (= 3 log 2 + KL)."
            )
            break
    if not problems and math.isclose(got, reference, rel_tol=RTOL, abs_tol=ATOL):
        return []
    if not problems:
        problems.append(
            f"on a random batch (B={batch}, D={dim_x}, d={dim_z}) your loss "
            f"is {got:.4f}, expected {reference:.4f}."
        )
    hint = diagnose(np.asarray(got), negative_elbo_mistakes(x, logits, mean, log_var))
    if hint:
        problems.append(hint)
    return problems


def _negative_elbo_extremes(fn) -> list[str]:
    """Step 2: logits of +-100 give the exact loss (no log of a rounded probability)."""
    extreme_x = np.array([[1.0, 0.0], [0.0, 1.0]])
    extreme_logits = np.array([[100.0, -100.0], [100.0, -100.0]])
    zeros = np.zeros((2, 2))
    value = _loss_of(fn, extreme_x, extreme_logits, zeros, zeros)
    if math.isclose(value, 100.0, rel_tol=1e-4):
        return []
    return [
        f"for logits of +-100 your loss is {value:.4f}, expected 100.0000 (the "
        "second image has two pixels wrong by 100 nats each, the first none). " + _LOGITS_HINT
    ]


def _negative_elbo_gradient(fn) -> list[str]:
    """Step 3: d loss / d logits = (sigmoid(logits) - x) / B through jax.grad."""
    x, logits, mean, log_var = _negative_elbo_inputs()
    args = (f32(x), f32(logits), f32(mean), f32(log_var))
    grad = gradient(fn, args, 1, "your loss")
    expected_grad = (1.0 / (1.0 + np.exp(-logits)) - x) / x.shape[0]
    if close(grad, expected_grad, rtol=1e-3, atol=1e-5):
        return []
    return [
        f"your loss has the right value but d loss / d logits is {fmt(grad[0])} "
        f"for the first image, expected (sigmoid(logits) - x) / B = "
        f"{fmt(expected_grad[0])}."
    ]


# ------------------------------------------------- ELBO <= log p(x) on the conjugate model


def check_elbo_estimate(
    student_fn, *, num_repeats: int = 20, num_samples: int = 100
) -> CheckResult:
    r"""Checks ``student_fn(key, model, x, mean, log_var, num_samples) -> ELBO estimate``.

    On the linear-Gaussian model of :mod:`vae_edu.conjugate` (here D = 3, d = 1), for
    q = N(mean, diag exp(log_var)) the estimator must be unbiased for

        ELBO(q) = E_q[log p(x | z) + log p(z) - log q(z)] = log p(x) - KL(q || p(z | x)),

    which the model gives exactly (``model.exact_elbo``). The check repeats the student's
    estimate with ``num_repeats`` keys and compares the average with the exact ELBO within
    5 standard errors (plus 1e-3 nats) for four q's: the exact posterior (where
    ELBO = log p(x)) and three others (where ELBO < log p(x)).

    Args:
      student_fn: the student's function; ``model`` is a
        :class:`vae_edu.conjugate.LinearGaussianModel`, x: (D,), mean and log_var: (d,).
      num_repeats: independent calls per q.
      num_samples: the ``num_samples`` passed to each call.

    Returns:
      A :class:`CheckResult`.
    """
    # the student's other answers it calls are the grader's: a mistake in reparameterize
    # costs Question 1 only
    student_fn = with_reference_names(
        student_fn, reparameterize=REPARAMETERIZE_CODE, bernoulli_log_likelihood=BERNOULLI_CODE
    )
    return run_check(
        "check_elbo_estimate",
        (
            functools.partial(
                _elbo_estimate_steps, num_repeats=num_repeats, num_samples=num_samples
            ),
        ),
        student_fn,
        "correct: unbiased for the exact ELBO of four q's (within 5 standard errors), "
        "equal to log p(x) at the exact posterior.",
    )


_ELBO_ESTIMATE_CALL = "elbo_estimate(key, model, x, mean, log_var, num_samples)"


def _conjugate_problem():
    """The check's model (D = 3, d = 1), its x, and the four q's as (description, mean,
    log_var), the exact posterior first."""
    model = make_model(jax.random.key(7), data_dim=3, latent_dim=1, noise_std=0.7)
    x = f32(np.array([0.5, -1.0, 2.0]) + hidden_rng(7).normal(0.0, 0.3, size=3))
    post_mean, post_cov = model.posterior(x)
    m, v = np.asarray(post_mean, np.float64), np.diag(np.asarray(post_cov, np.float64))
    candidates = [
        ("the exact posterior q = p(z | x)", m, np.log(v)),
        ("q with its mean shifted by +1", m + 1.0, np.log(v)),
        ("q with 4 times the posterior variance", m, np.log(4.0 * v)),
        ("q = N(m - 0.5, v / 4)", m - 0.5, np.log(v / 4.0)),
    ]
    return model, x, candidates


def _call_many(fn, arg_lists) -> list:
    """fn(*a) for every a, compiled once for all calls when the student's code allows it
    (it should: it is jax code); otherwise called as it is, which is slower but gives the
    same numbers. The grader's proxy does this in the student's kernel, in one request."""
    if hasattr(fn, "call_many"):
        return list(fn.call_many(arg_lists, static_argnums=(5,)))
    compiled = jax.jit(fn, static_argnums=5)
    try:
        first = compiled(*arg_lists[0])
    except Exception:  # noqa: BLE001 - not jittable: fall back to plain calls
        compiled = fn
        first = compiled(*arg_lists[0])
    return [first] + [compiled(*a) for a in arg_lists[1:]]


def _estimates(fn, seed, model, x, mean, log_var, num, num_repeats) -> np.ndarray:
    """The student's estimates with ``num`` samples for keys fold_in(key(seed), i)."""
    arg_lists = [
        (jax.random.fold_in(hidden_key(seed), i), model, x, f32(mean), f32(log_var), num)
        for i in range(num_repeats)
    ]
    outs = call_student(functools.partial(_call_many, fn), arg_lists, call=_ELBO_ESTIMATE_CALL)
    if not isinstance(outs, list) or len(outs) != num_repeats:
        raise Stop("the grader could not collect your ELBO estimates.")
    values = np.array(
        [scalar(as_array(o, "your ELBO estimate"), "your ELBO estimate") for o in outs]
    )
    expect_finite(values, "your ELBO estimates")
    return values


def _elbo_estimate_steps(fn, *, num_repeats: int, num_samples: int) -> list[str]:
    """The spread for 1 and for L samples (drawn with the key?), the bias for four q's,
    then the fall of the spread like 1 / sqrt(L)."""
    model, x, candidates = _conjugate_problem()
    # The spread of the estimate must fall like 1 / sqrt(L): with L = 100 samples it
    # is 10 times smaller than with L = 1 (unless the L draws are one draw reused, the
    # same key for every draw, or num_samples ignored).
    _, mean, log_var = candidates[1]
    spreads = {
        num: float(_estimates(fn, 9, model, x, mean, log_var, num, num_repeats).std(ddof=1))
        for num in (1, num_samples)
    }
    if spreads[1] == 0.0:
        return [
            "your estimate is the same for every key with a single sample away from the "
            "posterior: the samples z must be drawn with the key (jax.random.normal(key, "
            "...)), so that different keys give different draws."
        ]
    for i, (description, mean, log_var) in enumerate(candidates):
        estimates = _estimates(fn, 8, model, x, mean, log_var, num_samples, num_repeats)
        problem = _elbo_bias_problem(model, x, description, mean, log_var, estimates, num_samples)
        if problem:
            return [problem]
        if i == 0:  # the exact posterior
            problem = _posterior_spread_problem(model, x, mean, log_var, estimates, num_samples)
            if problem:
                return [problem]
    ratio = spreads[num_samples] / spreads[1]
    if ratio > 3.0 / math.sqrt(num_samples):
        return [
            f"the spread of your estimate over {num_repeats} keys is {spreads[1]:.4f} with "
            f"num_samples=1 and {spreads[num_samples]:.4f} with num_samples="
            f"{num_samples}: it should fall like 1 / sqrt(L), about "
            f"{1 / math.sqrt(num_samples):.2f} times smaller, but yours is "
            f"{ratio:.2f} times. Use num_samples independent draws: one draw reused L "
            "times, one key for every draw, or a fixed number of samples average nothing."
        ]
    return []


def _posterior_spread_problem(model, x, mean, log_var, estimates, num_samples) -> str | None:
    """At the exact posterior every log-weight log p(x | z) + log p(z) - log q(z) equals
    log p(x), so every estimate is log p(x); the one other accepted form, E_q[log p(x | z)]
    by Monte Carlo minus the KL in closed form, varies there exactly as the average of
    ``num_samples`` log-likelihoods does. An estimate that varies otherwise is not built
    from samples of q (e.g. the exact ELBO plus made-up noise)."""
    log_evidence = float(model.log_evidence(x))
    worst = float(np.max(np.abs(estimates - log_evidence)))
    if worst <= 1e-2:
        return None
    mean, log_var = f32(mean), f32(log_var)
    eps = jax.random.normal(jax.random.key(321), (20_000, *mean.shape))
    log_lik = np.asarray(model.log_likelihood(x, mean + jnp.exp(0.5 * log_var) * eps))
    expected = float(log_lik.std(ddof=1)) / math.sqrt(num_samples)
    spread = float(estimates.std(ddof=1))
    # the sample std of 20 estimates lies within [0.3, 2] times the true one, but for
    # odds far below one in a million (chi distribution with 19 degrees of freedom)
    if expected > 0 and 0.3 <= spread / expected <= 2.0:
        return None
    return (
        f"at the exact posterior q = p(z | x) every sample z gives log p(x | z) + log p(z) - "
        f"log q(z) = log p(x) = {log_evidence:.4f} exactly, so every estimate must equal "
        f"it; yours vary (up to {worst:.4f} away over {len(estimates)} keys, a spread of "
        f"{spread:.4f} that not even E_q[log p(x | z)] - KL with the KL in closed form "
        f"would have: {expected:.4f}). Your estimate is not the average (1/L) sum_l "
        "[log p(x | z_l) + log p(z_l) - log q(z_l)] over reparameterized samples z_l ~ q "
        "(made-up noise, or another formula?)."
    )


def _elbo_bias_problem(model, x, description, mean, log_var, estimates, num_samples):
    """None if the estimates average to the exact ELBO of q (within NUM_SE standard
    errors + 1e-3 nats); else what is wrong, naming the mistake when it is a known one."""
    num_repeats = len(estimates)
    average = float(estimates.mean())
    std_error = float(estimates.std(ddof=1) / math.sqrt(num_repeats))
    cov = jnp.diag(jnp.exp(f32(log_var)))
    exact = float(model.exact_elbo(x, f32(mean), cov))
    tolerance = NUM_SE * std_error + 1e-3
    if abs(average - exact) <= tolerance:
        return None
    expected_ll = float(model.expected_log_likelihood(x, f32(mean), cov))
    kl_prior = expected_ll - exact
    entropy = 0.5 * float(np.sum(1.0 + math.log(2.0 * math.pi) + log_var))
    hint = None
    for wrong, message in (
        (
            expected_ll,
            "Your estimate matches E_q[log p(x | z)] alone: the KL term "
            "(or log p(z) - log q(z)) is missing.",
        ),
        (
            expected_ll + kl_prior,
            "You added the KL instead of subtracting it: ELBO = E_q[log p(x | z)] - KL(q || p(z)).",
        ),
        (
            exact - entropy,
            "Your estimate matches E_q[log p(x | z) + log p(z)]: the - log q(z) term is missing.",
        ),
        (
            num_samples * exact,
            f"Your estimate is {num_samples} times the ELBO: average over the samples, do not sum.",
        ),
    ):
        if abs(average - wrong) <= tolerance:
            hint = message
            break
    if hint is None:
        hint = _elbo_estimate_mutants(model, x, mean, log_var, num_samples, average, std_error)
    log_evidence = float(model.log_evidence(x))
    return (
        f"for {description} your ELBO estimates average {average:.4f} "
        f"(standard error {std_error:.4f} over {num_repeats} calls), but the exact "
        f"ELBO is {exact:.4f} and log p(x) = {log_evidence:.4f}. "
        + (
            hint
            or "Estimate E_q[log p(x | z) + log p(z) - log q(z)] with "
            "reparameterized samples z ~ q."
        )
    )


def _elbo_estimate_mutants(model, x, mean, log_var, num_samples, average, std_error):
    """Names an ELBO estimate that is the IWAE bound, uses the average z, or counts log p(z)
    twice: their expectations are estimated here by Monte Carlo (100,000 draws in all)."""
    repeats = 2000
    mean, log_var = f32(mean), f32(log_var)
    eps = jax.random.normal(jax.random.key(123), (repeats, num_samples, *mean.shape))
    z = mean + jnp.exp(0.5 * log_var) * eps
    log_q = jax.vmap(jax.vmap(lambda v: diag_gaussian_log_density(v, mean, log_var)))(z)
    log_p = model.log_likelihood(x, z) + model.log_prior(z)
    log_w = np.asarray(log_p - log_q, np.float64)
    z_bar = jnp.mean(z, axis=1)
    at_mean = np.asarray(
        model.log_likelihood(x, z_bar)
        + model.log_prior(z_bar)
        - jax.vmap(lambda v: diag_gaussian_log_density(v, mean, log_var))(z_bar),
        np.float64,
    )
    twice = log_w + np.asarray(model.log_prior(z), np.float64)
    iwae = np.log(np.mean(np.exp(log_w - log_w.max(1, keepdims=True)), 1)) + log_w.max(1)
    for values, message in (
        (
            iwae,
            "Your estimate matches the IWAE bound log (1/L) sum_l w_l (the log of the average "
            "weight), which is above the ELBO: the ELBO averages the LOGS, "
            "(1/L) sum_l [log p(x | z_l) + log p(z_l) - log q(z_l)].",
        ),
        (
            at_mean,
            "Your estimate matches log p(x, z_bar) - log q(z_bar) at the AVERAGE z_bar of the "
            "L draws: average the L values of log p(x | z_l) + log p(z_l) - log q(z_l), not "
            "the z_l themselves.",
        ),
        (
            np.mean(twice, axis=1),
            "Your estimate counts the prior twice (log p(x, z) already contains log p(z)): "
            "use log p(x | z) + log p(z) - log q(z).",
        ),
    ):
        mc_se = float(values.std(ddof=1) / math.sqrt(repeats))
        if abs(average - float(values.mean())) <= NUM_SE * (std_error + mc_se) + 1e-3:
            return message
    return None
