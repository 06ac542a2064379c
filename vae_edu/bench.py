"""Training-speed benchmark: ``python -m vae_edu.bench``.

Measures, for the classic 784-400-20 VAE (Kingma & Welling 2014) at batch 128 on
dynamically binarized MNIST, on this machine:

* compile time of the jitted chunk of training steps;
* seconds per epoch (median over several epochs after compilation) and images per second;
* FLOPs per training step, counted analytically from the layer shapes: a dense layer
  (m x n) @ (n x k) costs 2 m n k forward and twice that backward (weight and input
  gradients), so a step costs 3 x forward. The first layer's input gradient is not needed
  (the data is not a parameter), so XLA really executes 3 F - 2 m n_0 k_0; both numbers
  are printed, with XLA's own count from ``compiled.cost_analysis()`` as a cross-check;
* the achieved GFLOP/s and its ratio to the float32 matmul throughput measured in the
  same run (a chain of dependent 128x784 @ 784x400 and 128x400 @ 400x784 products inside
  one jitted ``lax.scan``, the shapes that dominate the VAE step);
* the peak resident memory of the process (``vae_edu.system.peak_memory_mib``; not
  available on Windows).

The machine may be shared: the load average is printed at start and end, and the matmul
peak is re-measured right after the epochs so that the ratio compares like with like.

``python -m vae_edu.bench --time-to-elbo -100`` measures instead the figure a student feels:
the wall seconds from a fresh process (imports, data, compilation, the per-epoch test
evaluations included) until the main model's architecture (784-512-256-32, Bernoulli,
dynamic binarization), trained from scratch with :data:`TIME_TO_ELBO_TRAINING`, first has
a test ELBO (all 10,000 test images) above -100 nats; it reports the epoch, the seconds
and the load average.
"""

from __future__ import annotations

# The time-to-ELBO clock starts before JAX is imported, so JAX's import comes after a statement.
# ruff: noqa: E402
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_MODULE_START = time.perf_counter()  # before JAX is imported: the time-to-ELBO clock

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vae_edu import _checks, data
from vae_edu.config import TrainConfig, VAEConfig, add_dataclass_arguments, positive_int
from vae_edu.system import ensure_writable_folder, load_average, peak_memory_mib
from vae_edu.train import (
    chunk_runner,
    epoch_key,
    epoch_plan,
    init_model,
    make_optimizer,
    mean_image,
    run_epoch,
    train,
    training_images,
)

__all__ = [
    "dense_flops_per_step",
    "matmul_gflops",
    "run_benchmark",
    "profile_steps",
    "time_to_elbo",
    "MAIN_ARCHITECTURE",
    "TIME_TO_ELBO_TRAINING",
    "main",
]


def dense_flops_per_step(layer_shapes: list[tuple[int, int]], batch_size: int) -> dict:
    """Analytic FLOPs of one training step of an MLP.

    Args:
      layer_shapes: (fan_in, fan_out) of every dense layer, in the order the data flows
        (encoder layers first; the first one reads the data).
      batch_size: m.

    Returns:
      dict with ``forward`` = sum 2 m n k, ``nominal_step`` = 3 x forward and
      ``executed_step`` = nominal minus the first layer's unneeded input gradient.
    """
    forward = sum(2 * batch_size * n * k for n, k in layer_shapes)
    first = 2 * batch_size * layer_shapes[0][0] * layer_shapes[0][1]
    return {"forward": forward, "nominal_step": 3 * forward, "executed_step": 3 * forward - first}


def matmul_gflops(
    batch: int = 128, n: int = 784, k: int = 400, steps: int = 100, repeats: int = 7
) -> float:
    """Float32 matmul throughput (GFLOP/s, median of ``repeats``) on (batch x n) @ (n x k).

    Each scan step computes h = x W then x' = h W^T * c: two dependent products, so XLA
    can neither hoist them out of the loop nor skip them.
    """
    x = jnp.asarray(np.random.default_rng(0).random((batch, n)), jnp.float32)
    w = jnp.asarray(np.random.default_rng(1).normal(size=(n, k)) / np.sqrt(n * k), jnp.float32)

    @jax.jit
    def chain(x, w):
        def body(c, _):
            return (c @ w) @ w.T, None

        return jax.lax.scan(body, x, None, length=steps)[0]

    chain(x, w).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        chain(x, w).block_until_ready()
        times.append(time.perf_counter() - start)
    flops = steps * 2 * (2 * batch * n * k)
    return flops / statistics.median(times) / 1e9


def _xla_flops(compiled) -> float | None:
    try:
        cost = compiled.cost_analysis()
    except Exception:  # not every backend implements it
        return None
    if isinstance(cost, list):  # older JAX returned one dict per device
        cost = cost[0] if cost else {}
    return float(cost["flops"]) if cost and "flops" in cost else None


def _training_setup(
    train_images, num_epochs, batch_size, hidden_sizes, latent, steps_per_call, seed
):
    """What the bench trains, exactly as ``train()`` would: the uint8 training set on the
    device, the initial model, Adam, the cached chunk runner and the first chunk's arguments.

    Returns ``(model_config, train_config, images, run_chunk, args)`` with ``args`` the
    arguments of ``run_chunk`` for the first ``steps_per_call`` steps of epoch 0.
    """
    images = training_images(train_images)  # what train() keeps: uint8 on the device
    num_examples = images.shape[0]
    model_config = VAEConfig(hidden_sizes=hidden_sizes, latent_dim=latent)
    train_config = TrainConfig(
        num_epochs=num_epochs, batch_size=batch_size, steps_per_call=steps_per_call, seed=seed
    )
    model = init_model(model_config, seed, mean_image(train_images))
    graphdef, state = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(state)
    opt_state = jax.jit(make_optimizer(train_config, num_examples).init)(params)
    run_chunk = chunk_runner(graphdef, train_config, num_examples)
    batch_index, step_keys = (
        np.asarray(a) for a in epoch_plan(epoch_key(seed, 0), num_examples, batch_size)
    )
    args = (
        params,
        opt_state,
        images,
        batch_index[:steps_per_call],
        step_keys[:steps_per_call],
        np.float32(1.0),
        np.float32(1.0),
    )
    return model_config, train_config, images, run_chunk, args


def run_benchmark(
    num_epochs: int = 5,
    batch_size: int = 128,
    hidden: int | tuple[int, ...] = 400,
    latent: int = 20,
    steps_per_call: int = 50,
    seed: int = 0,
) -> dict:
    """Times training epochs of the 784-hidden-latent VAE; see the module docstring.

    ``hidden`` is one width or the encoder's widths (the decoder mirrors them)."""
    hidden_sizes = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
    train_images = data.load_mnist("train").images
    if batch_size > len(train_images):  # checked before any timing starts
        raise ValueError(
            f"batch_size {batch_size} exceeds the {len(train_images)} MNIST training images: "
            "an epoch would have no step"
        )
    load_start = load_average()
    peak_before = matmul_gflops()
    setup = _training_setup(
        train_images, num_epochs + 1, batch_size, hidden_sizes, latent, steps_per_call, seed
    )
    model_config, train_config, images, run_chunk, args = setup
    params, opt_state = args[:2]
    num_examples = images.shape[0]

    # Compile explicitly (ahead of time) to time compilation on its own.
    start = time.perf_counter()
    run_chunk.lower(*args).compile()
    compile_seconds = time.perf_counter() - start
    # XLA's cost analysis counts a loop body once, so ask it about a one-step chunk.
    one_step = (*args[:3], args[3][:1], args[4][:1], *args[5:])
    xla_flops_per_step = _xla_flops(run_chunk.lower(*one_step).compile())

    epoch_seconds = []
    for epoch in range(num_epochs + 1):  # epoch 0 also compiles the remainder chunk
        start = time.perf_counter()
        params, opt_state, means = run_epoch(
            run_chunk, params, opt_state, images, epoch_key(seed, epoch), train_config
        )
        epoch_seconds.append(time.perf_counter() - start)
    timed = epoch_seconds[1:]
    peak_after = matmul_gflops()
    seconds_per_epoch = statistics.median(timed)
    steps_per_epoch = num_examples // batch_size
    encoder = [784, *hidden_sizes]
    decoder = [latent, *reversed(hidden_sizes), 784]
    layers = [*zip(encoder[:-1], encoder[1:], strict=True), (hidden_sizes[-1], 2 * latent)]
    layers += list(zip(decoder[:-1], decoder[1:], strict=True))
    flops = dense_flops_per_step(layers, batch_size)
    achieved = flops["nominal_step"] * steps_per_epoch / seconds_per_epoch / 1e9
    peak = max(peak_before, peak_after)
    return {
        "model": model_config.describe(),
        "batch_size": batch_size,
        "steps_per_epoch": steps_per_epoch,
        "compile_seconds": compile_seconds,
        "first_epoch_seconds": epoch_seconds[0],
        "epoch_seconds": timed,
        "seconds_per_epoch_median": seconds_per_epoch,
        "milliseconds_per_step": 1e3 * seconds_per_epoch / steps_per_epoch,
        "images_per_second": steps_per_epoch * batch_size / seconds_per_epoch,
        "flops_forward_per_step": flops["forward"],
        "flops_per_step_nominal": flops["nominal_step"],
        "flops_per_step_executed": flops["executed_step"],
        "flops_per_step_xla_cost_analysis": xla_flops_per_step,
        "achieved_gflops": achieved,
        "achieved_gflops_executed": achieved * flops["executed_step"] / flops["nominal_step"],
        "matmul_peak_gflops_before": peak_before,
        "matmul_peak_gflops_after": peak_after,
        "fraction_of_matmul_peak": achieved / peak,
        "final_train_elbo": means["elbo"],
        "peak_rss_mb": peak_memory_mib(),
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "cpu_count": os.cpu_count(),
        "jax_version": jax.__version__,
    }


# ----------------------------------------------------------------------------- profile
def profile_steps(
    directory,
    num_calls: int = 4,
    batch_size: int = 128,
    hidden: int | tuple[int, ...] = 400,
    latent: int = 20,
    steps_per_call: int = 50,
    seed: int = 0,
) -> dict:
    """Where a training step's time goes: a ``jax.profiler`` trace of the bench's chunks.

    Compiles and runs one chunk, then traces ``num_calls`` more chunk calls with
    ``jax.profiler.trace(directory, create_perfetto_trace=True)``. The trace (under
    ``directory/plugins/profile/<run>/``) opens in https://ui.perfetto.dev
    (``perfetto_trace.json.gz``) or TensorBoard's profile plugin (``*.xplane.pb``). The
    summary sums, per operation of the compiled chunk, the durations of its events in
    that trace (Chrome trace-event format: complete events ``"ph": "X"``, ``dur`` in
    microseconds) and divides by the number of steps traced. Operations that ran at the
    same time on different cores are both counted, so the operations' times add up to more
    than the step's wall time.

    Returns:
      a dict: ``trace_file``, ``steps``, ``step_wall_us`` (wall time of the traced calls per
      step, profiler overhead included), ``matmul_us`` and ``other_us`` per step (operations
      that do / do not contain a matrix product), ``operations``: a list of
      ``{"name", "us_per_step", "matmul", "source"}`` sorted by time, ``source`` being the
      JAX operation XLA names in its metadata.
    """
    hidden_sizes = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
    directory = ensure_writable_folder(directory, "profile folder (--profile)")
    train_images = data.load_mnist("train").images
    _, _, _, run_chunk, args = _training_setup(
        train_images, 1, batch_size, hidden_sizes, latent, steps_per_call, seed
    )
    program = run_chunk.lower(*args).compile().as_text()
    params, opt_state, *rest = args
    params, opt_state, losses, _ = run_chunk(params, opt_state, *rest)  # warm-up
    losses.block_until_ready()
    # The trace goes to plugins/profile/<time to the second>/: a trace started within the
    # same second as an earlier one overwrites its file, so find ours by its time of writing.
    traced_at = time.time()
    with jax.profiler.trace(str(directory), create_perfetto_trace=True):
        start = time.perf_counter()
        for _ in range(num_calls):
            params, opt_state, losses, _ = run_chunk(params, opt_state, *rest)
        losses.block_until_ready()
        wall = time.perf_counter() - start
    written = [
        path
        for path in directory.glob("plugins/profile/*/perfetto_trace.json.gz")
        if path.stat().st_mtime >= traced_at - 1.0  # file times may be coarser than ours
    ]
    if not written:
        raise RuntimeError(f"jax.profiler wrote no trace under {directory}")
    trace_file = max(written, key=lambda path: path.stat().st_mtime)
    steps = num_calls * len(args[3])
    operations = _operation_times(trace_file, program, steps)
    matmul = sum(op["us_per_step"] for op in operations if op["matmul"])
    return {
        "model": VAEConfig(hidden_sizes=hidden_sizes, latent_dim=latent).describe(),
        "batch_size": batch_size,
        "trace_file": str(trace_file),
        "steps": steps,
        "step_wall_us": 1e6 * wall / steps,
        "matmul_us": matmul,
        "other_us": sum(op["us_per_step"] for op in operations) - matmul,
        "operations": operations,
        "load_average": load_average(),
        "jax_version": jax.__version__,
    }


def _operation_times(trace_file: Path, program: str, steps: int) -> list[dict]:
    """Microseconds per step of each instruction of ``program`` (HLO text) in the trace."""
    import gzip

    with gzip.open(trace_file, "rt", encoding="utf-8") as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    # The instructions of the compiled program, the computations they call, and whether a
    # matrix product (an HLO dot) is among what they run.
    computations = {}
    for block in re.split(r"\n(?=\S)", program):
        header = re.match(r"(?:ENTRY )?%?([\w.-]+)", block)
        if header:
            computations[header.group(1)] = block
    instructions = {}
    for m in re.finditer(r"^\s*(?:ROOT )?%([\w.-]+) = .*$", program, flags=re.MULTILINE):
        line = m.group(0)
        called = re.findall(r"(?:calls|to_apply|body)=%([\w.-]+)", line)
        has_dot = " dot(" in line or any(" dot(" in computations.get(name, "") for name in called)
        source = re.search(r'op_name="([^"]*)"', line)
        instructions[m.group(1)] = (has_dot, source.group(1) if source else "")
    totals: dict[str, float] = {}
    for event in events:
        name = event.get("name")
        if event.get("ph") == "X" and name in instructions:
            totals[name] = totals.get(name, 0.0) + float(event.get("dur", 0.0))
    rows = [
        {
            "name": name,
            "us_per_step": total / steps,
            "matmul": instructions[name][0],
            "source": "/".join(instructions[name][1].split("/")[-2:]),
        }
        for name, total in totals.items()
        if not name.startswith(("while", "call"))  # containers: their contents are listed
    ]
    return sorted(rows, key=lambda row: -row["us_per_step"])


def _profile_report(r: dict, top: int = 15) -> str:
    lines = [
        f"where a training step's time goes: {r['model']}, batch {r['batch_size']}, "
        f"{r['steps']} steps traced with jax.profiler, JAX {r['jax_version']}",
        f"trace                      {r['trace_file']} (open it at https://ui.perfetto.dev)",
        f"load average               {_or_na(r['load_average'], '.2f')}",
        f"step wall time             {r['step_wall_us']:.0f} us (profiler overhead included)",
        f"matrix products            {r['matmul_us']:.0f} us per step, summed over the cores",
        f"everything else            {r['other_us']:.0f} us per step, summed over the cores",
        f"the {top} longest operations (us per step; operations on different cores overlap):",
    ]
    for op in r["operations"][:top]:
        kind = "matmul" if op["matmul"] else "      "
        lines.append(f"  {op['us_per_step']:7.1f}  {kind}  {op['name']:32s} {op['source']}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- time to quality
#: The main model's architecture (``vae_edu.pretrained`` "main"): 784-512-256-32, Bernoulli.
MAIN_ARCHITECTURE = VAEConfig(hidden_sizes=(512, 256), latent_dim=32)
#: How the time-to-ELBO run trains (the main model's protocol, with a higher peak
#: learning rate and a schedule chosen to reach -100 nats in few epochs).
TIME_TO_ELBO_TRAINING = TrainConfig(
    num_epochs=10,
    batch_size=128,
    learning_rate=3e-3,
    schedule="warmup_cosine",
    warmup_epochs=1,
    seed=0,
)


class _Reached(Exception):
    """Raised by the per-epoch callback to stop training at the target."""


def time_to_elbo(
    target: float = -100.0,
    *,
    model_config: VAEConfig = MAIN_ARCHITECTURE,
    train_config: TrainConfig = TIME_TO_ELBO_TRAINING,
    clock_start: float | None = None,
) -> dict:
    """Wall time until the test ELBO of a model trained from scratch first exceeds ``target``.

    Trains with :func:`vae_edu.train.train` (dynamic binarization, the full 10,000-image test
    set evaluated after every epoch with the fixed key ``train.test_key(seed)``) and stops
    after the first epoch whose test ELBO is above ``target``.

    Args:
      target: nats per image (e.g. -100).
      model_config, train_config: what is trained and how (at most ``num_epochs`` epochs).
      clock_start: ``time.perf_counter()`` value the seconds count from; default the
        moment this module was imported (so, from ``python -m vae_edu.bench``, the run's
        seconds include importing JAX, loading MNIST, compiling and evaluating).

    Returns:
      dict with ``reached`` (bool), ``epoch`` and ``seconds`` (None if not reached),
      ``epochs`` (one row per epoch: epoch, test ELBO, seconds since the clock started),
      the load averages at start and end and the peak resident memory.
    """
    clock_start = _MODULE_START if clock_start is None else clock_start
    load_start = load_average()
    rows = []

    def check(epoch: int, row: dict) -> None:
        rows.append(
            {
                "epoch": epoch,
                "test_elbo": row["test_elbo"],
                "seconds": time.perf_counter() - clock_start,
            }
        )
        if row["test_elbo"] > target:
            raise _Reached

    try:
        train(model_config, train_config, progress=False, callback=check)
    except _Reached:
        pass
    reached = bool(rows) and rows[-1]["test_elbo"] > target
    return {
        "model": model_config.describe(),
        "train_config": train_config.to_dict(),
        "target_elbo": target,
        "reached": reached,
        "epoch": rows[-1]["epoch"] if reached else None,
        "seconds": rows[-1]["seconds"] if reached else None,
        "epochs": rows,
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "peak_rss_mb": peak_memory_mib(),
        "cpu_count": os.cpu_count(),
        "jax_version": jax.__version__,
    }


def _time_to_elbo_report(r: dict) -> str:
    tc = r["train_config"]
    lines = [
        f"vae_edu time to test ELBO > {r['target_elbo']:g} nats: {r['model']}, batch "
        f"{tc['batch_size']}, learning rate {tc['learning_rate']:g} ({tc['schedule']}), "
        f"{r['cpu_count']} CPUs, JAX {r['jax_version']}",
        f"load average               {_or_na(r['load_average_start'], '.2f')} at start, "
        f"{_or_na(r['load_average_end'], '.2f')} at end",
    ]
    lines += [
        f"epoch {row['epoch']:3d}                  test ELBO {row['test_elbo']:8.2f} nats at "
        f"{row['seconds']:6.1f} s"
        for row in r["epochs"]
    ]
    if r["reached"]:
        lines.append(
            f"reached                    epoch {r['epoch']}, {r['seconds']:.1f} s from a fresh "
            "process (imports, data, compilation and evaluations included)"
        )
    else:
        lines.append(f"not reached                in {len(r['epochs'])} epochs")
    lines.append(f"peak resident memory       {_or_na(r['peak_rss_mb'], '.0f')} MiB")
    return "\n".join(lines)


def _or_na(value: float | None, spec: str) -> str:
    """``value`` formatted with ``spec``, or "n/a" where the platform has no such reading."""
    return "n/a (not available on this platform)" if value is None else format(value, spec)


def _report(r: dict) -> str:
    xla = r["flops_per_step_xla_cost_analysis"]
    lines = [
        f"vae_edu training benchmark: {r['model']}, batch {r['batch_size']}, "
        f"{r['steps_per_epoch']} steps/epoch, {r['cpu_count']} CPUs, JAX {r['jax_version']}",
        f"load average               {_or_na(r['load_average_start'], '.2f')} at start, "
        f"{_or_na(r['load_average_end'], '.2f')} at end",
        f"compile time               {r['compile_seconds']:.2f} s",
        f"seconds per epoch          {r['seconds_per_epoch_median']:.2f} s (median of "
        f"{len(r['epoch_seconds'])}: " + ", ".join(f"{s:.2f}" for s in r["epoch_seconds"]) + ")",
        f"time per step              {r['milliseconds_per_step']:.2f} ms",
        f"images per second          {r['images_per_second']:,.0f}",
        f"FLOPs per step (analytic)  {r['flops_per_step_nominal'] / 1e6:.1f} M nominal "
        f"(3 x {r['flops_forward_per_step'] / 1e6:.1f} M forward), "
        f"{r['flops_per_step_executed'] / 1e6:.1f} M executed",
        "FLOPs per step (XLA)       "
        + (
            f"{xla / 1e6:.1f} M (cost_analysis, includes elementwise ops)"
            if xla
            else "not available"
        ),
        f"achieved                   {r['achieved_gflops']:.1f} GFLOP/s nominal "
        f"({r['achieved_gflops_executed']:.1f} executed)",
        f"float32 matmul peak        {r['matmul_peak_gflops_before']:.1f} GFLOP/s before, "
        f"{r['matmul_peak_gflops_after']:.1f} after (128x784 @ 784x400 chain)",
        f"fraction of matmul peak    {100 * r['fraction_of_matmul_peak']:.0f} %",
        f"peak resident memory       {_or_na(r['peak_rss_mb'], '.0f')} MiB",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vae_edu.bench",
        description="Benchmark one training epoch of the 784-400-20 VAE against this "
        "machine's float32 matmul throughput.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=5,
        help="timed epochs after the first (compiling) one",
    )
    # The model's and the optimiser's options, their help texts and checks come from the
    # dataclasses (vae_edu.config), with the benchmark's 784-400-20 model as default.
    add_dataclass_arguments(
        parser, VAEConfig, fields=("hidden_sizes", "latent_dim"), defaults={"hidden_sizes": (400,)}
    )
    add_dataclass_arguments(parser, TrainConfig, fields=("batch_size", "steps_per_call"))
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    modes = parser.add_mutually_exclusive_group()  # instead of timing epochs: one of these
    modes.add_argument(
        "--time-to-elbo",
        type=float,
        default=None,
        metavar="NATS",
        help="instead of timing epochs, train the main model's architecture (784-512-256-32) "
        "from scratch and report the epoch and wall seconds at which the test ELBO first "
        "exceeds NATS (e.g. -100)",
    )
    modes.add_argument(
        "--notebooks",
        nargs="+",
        default=None,
        metavar="NOTEBOOK",
        help="instead of timing epochs, run each lesson from a fresh kernel and report its wall "
        f"time and the kernel's peak memory against the budget ({NOTEBOOK_BUDGET_SECONDS:.0f} s, "
        f"{NOTEBOOK_BUDGET_MIB:.0f} MiB)",
    )
    modes.add_argument(
        "--profile",
        default=None,
        metavar="DIRECTORY",
        help="instead of timing epochs, trace a few chunks of training steps with "
        "jax.profiler into DIRECTORY and print the operations by their time per step",
    )
    args = parser.parse_args(argv)
    if args.profile is not None:
        try:
            result = profile_steps(
                args.profile,
                batch_size=args.batch_size,
                hidden=args.hidden_sizes,
                latent=args.latent_dim,
                steps_per_call=args.steps_per_call,
            )
        except OSError as err:
            parser.error(str(err))
        print(json.dumps(result, indent=2) if args.json else _profile_report(result))
        return 0
    if args.notebooks is not None:
        try:
            rows = [measure_notebook(path) for path in args.notebooks]
        except ValueError as err:
            parser.error(str(err))
        print(json.dumps(rows, indent=2) if args.json else _notebooks_report(rows))
        return 0
    if args.time_to_elbo is not None:
        result = time_to_elbo(args.time_to_elbo)
        print(json.dumps(result, indent=2) if args.json else _time_to_elbo_report(result))
        return 0
    num_train = len(data.load_mnist("train").labels)
    if args.batch_size > num_train:
        parser.error(
            f"--batch-size {args.batch_size} exceeds the {num_train} MNIST training images "
            "(an epoch would have no step)"
        )
    result = run_benchmark(
        args.epochs, args.batch_size, args.hidden_sizes, args.latent_dim, args.steps_per_call
    )
    print(json.dumps(result, indent=2) if args.json else _report(result))
    return 0


# --------------------------------------------------------------------------------------
# Timing of one call (notebook 09, the appendix)
# --------------------------------------------------------------------------------------

__all__ += ["median_seconds"]


def median_seconds(fn, repeats: int = 200, warmup: int = 3) -> float:
    """Median wall-clock time of ``fn()`` over ``repeats`` calls, after ``warmup`` calls.

    The warm-up calls absorb compilation; the median ignores the odd slow call (another
    process on the CPU). ``fn`` should return numpy arrays or bytes, i.e. finish its
    device work before returning (``LatentModel.decode`` does).

    Args:
      fn: a function of no arguments.
      repeats: timed calls (>= 1).
      warmup: untimed calls before them (>= 0).

    Returns:
      Seconds (a float).
    """
    repeats = _checks.count(repeats, "repeats")
    warmup = _checks.count(warmup, "warmup", minimum=0)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# --------------------------------------------------------------------------------------
# Lessons: wall time and the kernel's peak memory of a run from a fresh kernel
# --------------------------------------------------------------------------------------

__all__ += ["NOTEBOOK_BUDGET_MIB", "NOTEBOOK_BUDGET_SECONDS", "measure_notebook"]

#: The course's budget for one lesson on a 2-core CPU: 2 minutes and 2 GiB.
NOTEBOOK_BUDGET_SECONDS = 120.0
NOTEBOOK_BUDGET_MIB = 2048.0

# Runs in a fresh Python process, so that RUSAGE_CHILDREN sees one kernel only.
_NOTEBOOK_RUNNER = """
import json, sys, time
import nbformat
from nbclient import NotebookClient
from vae_edu.system import peak_memory_mib
path, folder = sys.argv[1], sys.argv[2]
nb = nbformat.read(path, as_version=4)
start = time.perf_counter()
NotebookClient(nb, timeout=1800, kernel_name="python3",
               resources={"metadata": {"path": folder}}).execute()
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "kernel_peak_mib": peak_memory_mib("children")}))
"""


def measure_notebook(path) -> dict:
    """Executes a lesson top to bottom in a fresh kernel; its wall time and peak memory.

    The notebook runs from its own folder, with figures sent to a temporary folder (the
    committed ones are not rewritten), in a fresh Python process whose only child is the
    kernel, so the kernel's peak resident memory is that process's
    ``getrusage(RUSAGE_CHILDREN)`` after the kernel has exited (``None`` on Windows).

    Returns: {"notebook", "seconds", "kernel_peak_mib", "load_before", "load_after",
    "within_budget"}. Raises ValueError naming the file if it is missing or does not run.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such notebook")
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="vae_edu_bench_figures_") as figures:
        env = dict(os.environ, VAE_EDU_FIGURES=figures)
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _NOTEBOOK_RUNNER,
                str(path.resolve()),
                str(path.parent.resolve()),
            ],
            capture_output=True,
            text=True,
            env=env,
        )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no error output"])[-1]
        raise ValueError(f"{path.name} did not run to the end: {last[:300]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    peak = result["kernel_peak_mib"]
    within = result["seconds"] <= NOTEBOOK_BUDGET_SECONDS and (
        peak is None or peak <= NOTEBOOK_BUDGET_MIB
    )
    return {
        "notebook": path.name,
        "seconds": result["seconds"],
        "kernel_peak_mib": peak,
        "load_before": load_before,
        "load_after": load_average(),
        "within_budget": within,
    }


def _notebooks_report(rows: list[dict]) -> str:
    lines = [
        f"lessons from a fresh kernel (budget: {NOTEBOOK_BUDGET_SECONDS:.0f} s and "
        f"{NOTEBOOK_BUDGET_MIB:.0f} MiB on 2 cores)",
        f"{'notebook':34s} {'seconds':>8s} {'kernel peak':>12s} {'load':>11s}  within budget",
    ]
    for r in rows:
        load = f"{_or_na(r['load_before'], '.1f')}-{_or_na(r['load_after'], '.1f')}"
        lines.append(
            f"{r['notebook']:34s} {r['seconds']:8.0f} {_or_na(r['kernel_peak_mib'], '.0f'):>8s} MiB"
            f" {load:>11s}  {'yes' if r['within_budget'] else 'NO'}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
