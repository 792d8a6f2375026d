"""The `jaxmed` command: argument parsing only; the work is done by the library.

    jaxmed train gan --data SPEC --workdir DIR [--steps N] [--batch-size N]
                     [--image-size N] [--seed N] [--set key=value ...]
    jaxmed train vae --data SPEC --workdir DIR [--steps N] [--batch-size N]
                     [--image-size N] [--seed N] [--set key=value ...]
    jaxmed train classifier --data SPEC --workdir DIR [--epochs N] [--batch-size N]
                     [--image-size N] [--seed N] [--set key=value ...]
    (all three also take --coordinator HOST:PORT --num-processes N --process-id I for multi-host runs)
    jaxmed train diffusion --data SPEC --workdir DIR [--steps N] [--batch-size N]
                     [--image-size N] [--seed N] [--set key=value ...]
    jaxmed sample --workdir DIR --n N --out DIR [--seed N] [--format png|npz|dcm]
                  [--sampler ddpm|ddim|dpm_solver_2m] [--sampling-steps K] [--guidance S] [--eta E]
    jaxmed evaluate --workdir DIR --out DIR [--data SPEC] [--features DIR] [--feature-steps N] [--n N] [--seed N]
                    [--max-reference N] [--sampler S] [--sampling-steps K] [--guidance S] [--eta E]
    jaxmed study augmentation --data SPEC --workdir DIR [--seeds N] [--set key=value ...]
    jaxmed data inspect SPEC [--json [FILE]] [--montage FILE] [--image-size N] [--skip-bad]
                     [--set data.KEY=VALUE ...]
    (train, study and data inspect take --skip-bad: skip unreadable files, listing each)
    jaxmed bench conv-pool [--models dcgan,vae,unet,seed_cnn,resnet18] [--batch-sizes 1,32,128]
                     [--dtypes float32,bfloat16] [--plot FILE] [--json [FILE]]
    jaxmed bench train-step --model dcgan128|dcgan64|vae128|unet64|seed_cnn|resnet18 --batch-size N [--steps N]
                     [--precision fp32[,bf16]] [--conv-backend auto|xla|onednn[,...]] [--devices N[,N...]]
                     [--json [FILE]]

Exit status: 0 on success, 2 on a usage error, 1 on a data, checkpoint or training
error. Errors are one line on stderr; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from jaxmed import __version__, families, host_memory
from jaxmed.output import STDOUT
from jaxmed.data import SPECS
from jaxmed.errors import JaxmedError, UsageError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage text is one `--help` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    """`--version`, computed only when asked for (finding the convolution backend may build kernels)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version_text())
        parser.exit()


def _int_at_least(minimum: int, description: str):
    """An argparse type: an integer of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {description} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {description} integer, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1, "positive")
_non_negative_int = _int_at_least(0, "non-negative")


def _non_negative_float(text: str) -> float:
    """An argparse type: a finite number of at least 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def key_value(text: str) -> tuple[str, str]:
    """An argparse type for `--set KEY=VALUE` (also used by the experiment scripts): (key, value)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxmed", description="Generative modeling of medical images in JAX.")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks instead of one-line errors (accepted anywhere on the command line)")
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="print the version and which kernels compute the convolutions here, and why")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a model (resumes if the workdir has checkpoints)")
    train_kinds = train.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    for family in families.all_families():
        defaults = family.config_type()
        run_parser = train_kinds.add_parser(
            family.name, help=family.description,
            description=f"{family.description[0].upper()}{family.description[1:]}; run again on the same workdir to "
                        f"resume. --{family.length_key} is the total number of {family.length_key}.")
        run_parser.add_argument(f"--{family.length_key}", type=_positive_int,
                                help=f"total {family.length_key} (default {getattr(defaults, family.length_key)})")
        run_parser.add_argument("--data", help=f"data spec: {', '.join(SPECS)} (default {defaults.data.spec})")
        run_parser.add_argument("--workdir", required=True, help="run directory (checkpoints, plots, metrics.jsonl)")
        run_parser.add_argument("--batch-size", type=_positive_int,
                                help=f"global batch size (default {defaults.batch_size})")
        run_parser.add_argument("--image-size", type=_positive_int,
                                help=f"side of the square images (default {defaults.image_size})")
        run_parser.add_argument("--seed", type=_non_negative_int, help=f"run seed (default {defaults.seed})")
        _add_common_run_flags(run_parser)
        _add_distributed_flags(run_parser)

    sample = commands.add_parser(
        "sample", help="write images from a trained GAN (EMA generator), VAE (decoder) or diffusion model")
    sample.add_argument("--workdir", required=True, help="a GAN, VAE or diffusion run directory")
    sample.add_argument("--n", type=_positive_int, required=True, help="number of images")
    sample.add_argument("--out", required=True, help="output folder")
    sample.add_argument("--seed", type=_non_negative_int, default=0, help="noise seed (default 0)")
    sample.add_argument("--checkpoint", default="best", metavar="best|latest|STEP",
                        help="which checkpoint: the best by FID where the run measured it, else the latest "
                             "(default best), the latest, or a step")
    sample.add_argument("--class", dest="class_name", metavar="NAME", default=None,
                        help="the class to draw, for a class-conditional GAN (default: its classes in turn)")
    sample.add_argument("--format", choices=("png", "npz", "dcm"), default="png",
                        help="file format: png, npz, or dcm (DICOM Secondary Capture marked synthetic, no patient "
                             "attributes) (default png)")
    _add_drawing_flags(sample)

    evaluate = commands.add_parser(
        "evaluate", help="FID, KID, precision/recall, diversity and memorisation of a trained generator",
        description="Compare a generator's images with real ones in the features of a model trained on the "
                    "domain's images (a VAE unless --features says otherwise); look for copies of training images. "
                    "Writes OUT/eval.json and OUT/plots/.")
    evaluate.add_argument("--workdir", required=True, help="a GAN, VAE or diffusion run directory")
    evaluate.add_argument("--out", required=True, help="output folder")
    evaluate.add_argument("--data", help="reference data spec (default: the generator's own source; phantom sources "
                                         "are drawn afresh: unseen patients)")
    evaluate.add_argument("--features", help="a VAE or finished classifier workdir to embed images with (default: "
                                             "train a VAE on the generator's source into OUT/feature_extractor)")
    evaluate.add_argument("--feature-steps", type=_positive_int,
                          help="train steps of that default VAE (default 600)")
    evaluate.add_argument("--n", type=_positive_int, help="generated images (default: as many as reference images)")
    evaluate.add_argument("--seed", type=_non_negative_int, default=0, help="noise seed (default 0)")
    evaluate.add_argument("--max-reference", type=_positive_int,
                          help="reference images used at most, a random subset beyond (default 5000)")
    evaluate.add_argument("--checkpoint", default="best", metavar="best|latest|STEP",
                          help="which checkpoint of the generator (default best; see sample --help)")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_drawing_flags(evaluate)

    study = commands.add_parser("study", help="run a study")
    study_kinds = study.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    augmentation = study_kinds.add_parser(
        "augmentation", help="does synthetic data help a classifier when one class is scarce?",
        description="Per seed (a repeated stratified split) and scarcity: keep few real images of the minority class "
                    "(the rarest unless --set minority_class=NAME), train each generator on them, train each "
                    "classifier on every arm (real, classic augmentation, + synthetic at each ratio, filtered, "
                    "train-on-synthetic, all real), compare each with classic augmentation on the same test split. "
                    "Tuple keys take comma-separated lists, e.g. --set synthetic_ratios=0.5,1,2. Writes study.json, "
                    "report.md and plots/.")
    augmentation.add_argument("--data", help=f"data spec: {', '.join(SPECS)} (default phantom:brain)")
    augmentation.add_argument("--workdir", required=True, help="study directory")
    augmentation.add_argument("--seeds", type=_positive_int, help="number of seeds, repeated splits (default 5)")
    _add_common_run_flags(augmentation)
    _add_data_parsers(commands)
    _add_bench_parsers(commands)
    return parser


def _add_common_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set optimizer.lr=1e-4 (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_skip_bad_flag(parser)


def _add_skip_bad_flag(parser: argparse.ArgumentParser) -> None:
    # store_const with default None: only a flag actually given becomes a config override.
    parser.add_argument("--skip-bad", action="store_const", const=True, default=None,
                        help="skip unreadable or unusable files instead of stopping at the first, listing every "
                             "one (training: in WORKDIR/skipped.json) (= --set data.skip_bad=true)")


def _add_data_parsers(commands) -> None:
    data = commands.add_parser("data", help="look at a data source")
    kinds = data.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    inspect = kinds.add_parser(
        "inspect", help="counts, raw formats, skipped files, duplicates and a montage of a data source",
        description="Reads SPEC as training would and reports images per class and split, raw sizes, sample types "
                    "and intensities, every skipped file, and exact and near-duplicate images within a class, "
                    "across classes (conflicting labels) and across predefined splits (test leakage). Text on "
                    "stdout; exit 1 with one line if SPEC cannot be read.")
    inspect.add_argument("spec", metavar="SPEC", nargs="?", help=f"data spec: {', '.join(SPECS)}")
    inspect.add_argument("--json", nargs="?", const=STDOUT, metavar="FILE",
                         help="write the report as JSON to FILE; without FILE, print only the JSON object on stdout "
                              "(the text report goes to stderr)")
    inspect.add_argument("--montage", metavar="FILE", help="write a PNG of example images, one row per class")
    inspect.add_argument("--image-size", type=_positive_int, default=64,
                         help="preprocess to this size before looking for duplicates (default 64)")
    inspect.add_argument("--set", type=key_value, action="append", default=[], metavar="data.KEY=VALUE",
                         help="a data option, e.g. --set data.window=brain or --set data.n=500 (repeatable)")
    _add_skip_bad_flag(inspect)


def _add_distributed_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "multi-host", "start one process per host with the same command and its own --process-id; "
                      "env JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID work too")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0's coordinator service")
    group.add_argument("--num-processes", type=_positive_int, help="number of processes in the run")
    group.add_argument("--process-id", type=_non_negative_int, help="this process's id (0 writes the outputs)")
    group.add_argument("--distributed", action="store_true",
                       help="start JAX's distributed runtime, detecting the cluster (Slurm, Open MPI, TPU)")


def _overrides(args: argparse.Namespace, flags: dict[str, str]) -> dict[str, object]:
    """Config overrides from the flags the user gave ({config key: argparse dest}) and --set."""
    overrides = {key: getattr(args, dest) for key, dest in flags.items() if getattr(args, dest, None) is not None}
    for key, value in args.set:
        if key in overrides:
            raise UsageError(f"{key} is given twice (a flag and --set); give it once")
        overrides[key] = value
    return overrides


RUN_FLAGS = {"data.spec": "data", "batch_size": "batch_size", "image_size": "image_size", "seed": "seed",
             "data.skip_bad": "skip_bad"}


def _train(args: argparse.Namespace) -> None:
    from jaxmed.training import distributed

    # Before anything touches JAX's devices (reading a workdir's checkpoints does).
    settings = distributed.settings_from(args.coordinator, args.num_processes, args.process_id, args.distributed)
    if settings is not None:
        distributed.initialize(settings)

    from jaxmed.training.workdir import Workdir, resolve_config

    family = families.get(args.kind)
    workdir = Workdir(Path(args.workdir))
    flags = {**RUN_FLAGS, family.length_key: family.length_key}
    config = resolve_config(family.config_type, workdir, _overrides(args, flags))
    result = family.train(config, workdir.root, progress=not args.no_progress)
    done = f"trained to step {result.step}" + (f" (epoch {result.epoch})" if result.epoch is not None else "")
    if result.eval is not None and "accuracy" in result.eval:
        done += (f"; test accuracy {result.eval['accuracy']:.3f}, macro F1 {result.eval['macro']['f1']:.3f} "
                 f"(n={result.eval['n']}); eval: {result.eval_path}")
    print(f"{done}; checkpoints: {workdir.checkpoints}; plots: {workdir.plots}; metrics: {workdir.metrics}",
          file=sys.stderr)


def _study(args: argparse.Namespace) -> None:
    from jaxmed import config as config_lib
    from jaxmed.studies.augmentation import StudyConfig, run_study

    config = config_lib.apply_overrides(StudyConfig(), _overrides(args, {"data.spec": "data", "seeds": "seeds",
                                                              "data.skip_bad": "skip_bad"}))
    summary = run_study(config, args.workdir, progress=not args.no_progress)
    print(f"study written to {Path(args.workdir) / 'study.json'} and {Path(args.workdir) / 'report.md'}: "
          f"{summary['summary']}", file=sys.stderr)


# `jaxmed sample` and `evaluate` flags that override a restored run's config key ({config key: argparse dest}).
SAMPLING_FLAGS = {"sampling.sampler": "sampler", "sampling.steps": "sampling_steps", "sampling.guidance": "guidance",
                  "sampling.eta": "eta"}


def _add_drawing_flags(parser: argparse.ArgumentParser) -> None:
    drawing = parser.add_argument_group(
        "diffusion sampling", "override the run's sampling.* settings (a run that has none refuses them)")
    drawing.add_argument("--sampler", help="ddpm, ddim or dpm_solver_2m (= sampling.sampler)")
    drawing.add_argument("--sampling-steps", type=_positive_int,
                         help="network evaluations of ddim and dpm_solver_2m (= sampling.steps)")
    drawing.add_argument("--guidance", type=_non_negative_float,
                         help="classifier-free guidance scale of a conditional model: 0 unconditional, 1 conditional "
                              "(= sampling.guidance)")
    drawing.add_argument("--eta", type=_non_negative_float,
                         help="ddim's stochasticity: 0 deterministic, 1 ancestral noise per step (= sampling.eta)")


def _drawing_settings(args: argparse.Namespace) -> dict:
    return {key: getattr(args, dest) for key, dest in SAMPLING_FLAGS.items() if getattr(args, dest) is not None}


def _sample(args: argparse.Namespace) -> None:
    from jaxmed.export import write_images
    from jaxmed.sampling import sample_from_workdir
    from jaxmed.training.restore import parse_checkpoint

    images, step = sample_from_workdir(args.workdir, args.n, seed=args.seed,
                                       checkpoint=parse_checkpoint(args.checkpoint), class_name=args.class_name,
                                       settings=_drawing_settings(args))
    source = f"{args.workdir} step {step} seed {args.seed}" + (f" class {args.class_name}" if args.class_name else "")
    paths = write_images(images, args.out, args.format, source=source)
    print(f"wrote {args.n} synthetic images to {args.out} ({len(paths)} file(s), checkpoint step {step})",
          file=sys.stderr)


def _evaluate(args: argparse.Namespace) -> None:
    from jaxmed.evaluation.generators import evaluate_generator
    from jaxmed.training.restore import parse_checkpoint

    options = {key: value for key, value in (("feature_steps", args.feature_steps),
                                              ("max_reference", args.max_reference)) if value is not None}
    report = evaluate_generator(args.workdir, args.out, data=args.data, features=args.features, n=args.n,
                                seed=args.seed, checkpoint=parse_checkpoint(args.checkpoint),
                                settings=_drawing_settings(args), progress=not args.no_progress, **options)
    copying = report["memorization"]["data_copying"]
    print(f"FID {report['fid']:.2f}, KID {report['kid']['mean']:.4f}, precision {report['precision']:.3f}, "
          f"recall {report['recall']:.3f}, copies of training images {report['memorization']['copies']}"
          + (f", data-copying Z {copying['z']:.2f}" if copying else "")
          + (f" (C_T over {copying['cells_used']} cells {copying['c_t']:.2f})" if copying and copying["c_t"] is not None
             else "")
          + f"; wrote {Path(args.out) / 'eval.json'}", file=sys.stderr)


def _data(args: argparse.Namespace) -> None:
    from jaxmed import config as config_lib
    from jaxmed import data as data_lib
    from jaxmed.data import inspection
    from jaxmed.data.options import DataOptions
    from jaxmed.output import emit
    from jaxmed.viz import inspection as inspection_plots

    if args.spec is None:
        if args.json in (None, STDOUT):
            raise UsageError("data inspect needs a SPEC")
        args.spec, args.json = args.json, STDOUT  # `--json SPEC`: the optional FILE took the spec
    known = {f"data.{key}" for key in config_lib.flat_items(DataOptions())} - {"data.spec"}
    overrides = _overrides(args, {"data.skip_bad": "skip_bad"})
    for key in overrides:
        if key not in known:
            raise UsageError(f"unknown data key {key!r} (the data spec is SPEC); known keys: {', '.join(sorted(known))}")
    options = config_lib.apply_overrides(DataOptions(spec=args.spec),
                                         {key.removeprefix("data."): value for key, value in overrides.items()})
    dataset = data_lib.load(options, args.image_size, 1, seed=0)
    summary = inspection.report(dataset)
    if args.montage:
        summary["montage"] = str(inspection_plots.save_montage(dataset, args.montage))
    emit(summary, inspection.render_text(summary), args.json)
    if args.json != STDOUT:  # otherwise the text report, warnings included, went to stderr already
        for warning in summary["warnings"]:
            print(f"jaxmed: WARNING: {warning}", file=sys.stderr)


def _comma_list(item_type, description: str):
    """An argparse type: a comma-separated list of `item_type` values, e.g. "1,32,128"."""

    def parse(text: str) -> list:
        try:
            items = [item_type(item) for item in text.split(",") if item.strip()]
        except (ValueError, argparse.ArgumentTypeError):
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {description}, got {text!r}") from None
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {description}, got {text!r}")
        return items

    return parse


def _add_bench_parsers(commands) -> None:
    bench = commands.add_parser("bench", help="benchmark the convolution/pooling core or a train step")
    kinds = bench.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    json_help = "write the result as JSON to FILE; without FILE, print only the JSON object on stdout"
    conv_pool = kinds.add_parser(
        "conv-pool", help="forward and backward of every conv, up-sampling conv and pooling layer shape",
        description="Times every distinct convolution, up-sampling convolution and pooling layer shape of the models "
                    "(forward, input gradient, weight gradient) against a float32 matmul and a memory-copy "
                    "ceiling measured in the same run. The full sweep: --batch-sizes 1,32,128 "
                    "--dtypes float32,bfloat16 (long on a CPU).")
    conv_pool.add_argument("--models", type=_comma_list(str, "model names"), default=None,
                           help="of dcgan, vae, unet, seed_cnn, resnet18 (default all but unet, the diffusion U-Net, "
                                "whose many large layers take long; shapes the VAE shares with the DCGAN are timed "
                                "once)")
    conv_pool.add_argument("--batch-sizes", type=_comma_list(_positive_int, "positive integers"), default=[32],
                           help="default 32")
    conv_pool.add_argument("--dtypes", type=_comma_list(str, "dtypes"), default=["float32"],
                           help="float32 and/or bfloat16 (default float32)")
    conv_pool.add_argument("--image-size", type=_positive_int, default=128,
                           help="image side of every model (default 128)")
    conv_pool.add_argument("--kinds", type=_comma_list(str, "layer kinds"),
                           help="only these of conv, upsample_conv, max_pool, avg_pool (default all)")
    conv_pool.add_argument("--no-reference", action="store_true",
                           help="skip lax.conv_transpose (the slow reference for the up-sampling layers)")
    conv_pool.add_argument("--repeats", type=_positive_int, default=5, help="timed samples per direction (default 5)")
    conv_pool.add_argument("--warmup", type=_non_negative_int, default=1, help="untimed calls after compiling")
    conv_pool.add_argument("--plot", metavar="FILE", help="also write the fraction-of-ceiling bar chart (PNG)")
    conv_pool.add_argument("--json", nargs="?", const="-", metavar="FILE", help=json_help)
    train_step = kinds.add_parser(
        "train-step", help="images/s, step time, compile time and peak memory of a full train step",
        description="Times a model's full jitted train step on random data. --devices, --precision and "
                    "--conv-backend take lists (a sweep: each combination in its own process); more devices "
                    "than visible run on forced CPU devices in a child process.")
    train_step.add_argument("--model", required=True,
                            choices=("dcgan128", "dcgan64", "vae128", "unet64", "seed_cnn", "resnet18"))
    train_step.add_argument("--batch-size", type=_positive_int, required=True, help="global batch size")
    train_step.add_argument("--steps", type=_positive_int, default=20, help="timed steps (default 20)")
    train_step.add_argument("--warmup", type=_non_negative_int, default=3, help="untimed steps after the first")
    train_step.add_argument("--precision", type=_comma_list(str, "precisions"), default=["fp32"],
                            help="fp32 and/or bf16 (default fp32)")
    train_step.add_argument("--conv-backend", type=_comma_list(str, "backends"), default=["auto"],
                            help="auto, xla and/or onednn: which kernels compute the convolutions (default auto)")
    train_step.add_argument("--devices", type=_comma_list(_positive_int, "positive integers"), default=[1],
                            help="devices on the data mesh, e.g. 1 or 1,2,4,8 (default 1)")
    train_step.add_argument("--image-size", type=_positive_int, help="classifiers only (default 128)")
    train_step.add_argument("--json", nargs="?", const="-", metavar="FILE", help=json_help)


def _bench(args: argparse.Namespace) -> None:
    from jaxmed.output import emit

    if args.kind == "conv-pool":
        from jaxmed.bench.conv_pool import DEFAULT_MODELS, format_table, run_conv_pool
        from jaxmed.bench.plot import plot_roofline_fractions

        report = run_conv_pool(args.models or DEFAULT_MODELS, args.batch_sizes, args.dtypes, image_size=args.image_size,
                               reference=not args.no_reference, kinds=args.kinds, warmup=args.warmup,
                               repeats=args.repeats, progress=lambda line: print(line, file=sys.stderr))
        emit(report, format_table(report), args.json)
        if args.plot:
            print(f"wrote {plot_roofline_fractions(report, args.plot)}", file=sys.stderr)
    else:
        from jaxmed.bench.train_step import format_table, run_train_steps

        report = run_train_steps(args.model, args.batch_size, devices=args.devices, precisions=args.precision,
                                 conv_backends=args.conv_backend, steps=args.steps, warmup=args.warmup,
                                 image_size=args.image_size)
        emit(report, format_table(report), args.json)


def _enable_compilation_cache() -> None:
    """Reuses XLA compilations across runs (resuming, studies, repeated commands).

    The cache lives in $JAXMED_XLA_CACHE (default ~/.cache/jaxmed/xla); set it empty to disable.
    """
    import jax

    directory = os.environ.get("JAXMED_XLA_CACHE", str(Path.home() / ".cache" / "jaxmed" / "xla"))
    if directory and jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", directory)


def _version_text() -> str:
    """`jaxmed --version`: the version and which kernels compute the convolutions here, and why."""
    from jaxmed.nn import conv_backend

    found = conv_backend.describe()
    isa = f", {found['isa']}" if found["isa"] else ""
    return (f"jaxmed {__version__}\nconvolutions (conv_backend=auto): {found['backend']}{isa}: {found['reason']}\n"
            f"kernel cache: {found['cache']}")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status.

    `--debug` may stand anywhere before a `--` (errors tell users to rerun with it).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    head = argv[:argv.index("--")] if "--" in argv else argv
    debug = "--debug" in head
    if debug:
        argv = [arg for arg in head if arg != "--debug"] + argv[len(head):]
    args = build_parser().parse_args(argv)
    args.debug = args.debug or debug
    if args.command != "bench":  # a benchmark's compile_s must be a compilation, not a cache read
        _enable_compilation_cache()
    run = {"train": _train, "sample": _sample, "evaluate": _evaluate, "study": _study, "bench": _bench,
           "data": _data}[args.command]
    try:
        run(args)
    except JaxmedError as error:
        if args.debug:
            raise
        print(f"jaxmed: error: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        print("jaxmed: interrupted; completed checkpoints are kept", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: keep it to one line unless asked
        if args.debug:
            raise
        print(f"jaxmed: internal error: {type(error).__name__}: {error} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1
    return 0


def console() -> None:
    """The `jaxmed` program: the process's memory settings for XLA:CPU, then `main`.

    Only a process of its own changes them (see `jaxmed.host_memory`); `main` called from
    Python leaves the caller's process as it is.
    """
    host_memory.keep_freed_memory()  # before JAX starts its threads
    sys.exit(main())


if __name__ == "__main__":
    console()
