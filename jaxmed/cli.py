"""The `jaxmed` command: argument parsing only; the work is done by the library.

    jaxmed train gan --data SPEC --workdir DIR [--steps N] [--batch-size N]
                     [--image-size N] [--seed N] [--set key=value ...]
    jaxmed train classifier --data SPEC --workdir DIR [--epochs N] [--batch-size N]
                     [--image-size N] [--seed N] [--set key=value ...]
    jaxmed sample --workdir DIR --n N --out DIR [--seed N] [--format png|npz]
    jaxmed study augmentation --data SPEC --workdir DIR [--seeds N] [--set key=value ...]

Exit status: 0 on success, 2 on a usage error, 1 on a data, checkpoint or training
error. Errors are one line on stderr; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from jaxmed.errors import JaxmedError, UsageError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage text is one `--help` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxmed", description="Generative modeling of medical images in JAX.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a model (resumes if the workdir has checkpoints)")
    train_kinds = train.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    gan = train_kinds.add_parser("gan", help="train a DCGAN",
                                 description="Train a DCGAN; run again on the same workdir to resume. "
                                             "--steps is the total number of steps.")
    gan.add_argument("--steps", type=_positive_int, help="total train steps")
    classifier = train_kinds.add_parser(
        "classifier", help="train a CNN classifier and evaluate it on a held-out test split",
        description="Train seed_cnn or resnet18 (--set model=...); writes eval.json and plots; run again to resume.")
    classifier.add_argument("--epochs", type=_positive_int, help="maximum number of epochs")
    for run_parser in (gan, classifier):
        run_parser.add_argument("--data", help="data spec: phantom:brain, phantom:lung or a folder")
        run_parser.add_argument("--workdir", required=True, help="run directory (checkpoints, plots, metrics.jsonl)")
        run_parser.add_argument("--batch-size", type=_positive_int, help="global batch size")
        run_parser.add_argument("--image-size", type=_positive_int, help="side of the square images")
        run_parser.add_argument("--seed", type=_non_negative_int, help="run seed")
        _add_common_run_flags(run_parser)

    sample = commands.add_parser("sample", help="write images from a trained generator (EMA weights)")
    sample.add_argument("--workdir", required=True, help="a GAN run directory")
    sample.add_argument("--n", type=_positive_int, required=True, help="number of images")
    sample.add_argument("--out", required=True, help="output folder")
    sample.add_argument("--seed", type=_non_negative_int, default=0, help="noise seed (default 0)")
    sample.add_argument("--format", choices=("png", "npz"), default="png", help="file format (default png)")

    study = commands.add_parser("study", help="run a study")
    study_kinds = study.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    augmentation = study_kinds.add_parser(
        "augmentation", help="does GAN-synthetic data help a classifier? (arms: real, augment, synthetic, both)",
        description="Per seed: split, keep a scarce minority class, train a GAN on it, train classifiers on each "
                    "arm, evaluate all on the same real test split. Writes study.json and plots/study.png.")
    augmentation.add_argument("--data", help="data spec (default phantom:brain)")
    augmentation.add_argument("--workdir", required=True, help="study directory")
    augmentation.add_argument("--seeds", type=_positive_int, help="number of seeds (default 3)")
    _add_common_run_flags(augmentation)
    return parser


def _add_common_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set optimizer.lr=1e-4 (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _overrides(args: argparse.Namespace, flags: dict[str, str]) -> dict[str, object]:
    """Config overrides from the flags the user gave ({config key: argparse dest}) and --set."""
    overrides = {key: getattr(args, dest) for key, dest in flags.items() if getattr(args, dest, None) is not None}
    for key, value in args.set:
        if key in overrides:
            raise UsageError(f"{key} is given twice (a flag and --set); give it once")
        overrides[key] = value
    return overrides


RUN_FLAGS = {"data.spec": "data", "batch_size": "batch_size", "image_size": "image_size", "seed": "seed"}


def _train(args: argparse.Namespace) -> None:
    from jaxmed.train.classifier_loop import train_classifier
    from jaxmed.train.config import ClassifierConfig, GanConfig
    from jaxmed.train.gan_loop import train_gan
    from jaxmed.train.workdir import Workdir, resolve_config

    workdir = Workdir(Path(args.workdir))
    progress = not args.no_progress
    if args.kind == "gan":
        config = resolve_config(GanConfig, workdir, _overrides(args, {**RUN_FLAGS, "steps": "steps"}))
        state = train_gan(config, workdir.root, progress=progress)
        done = f"trained to step {int(state.step)}"
    else:
        config = resolve_config(ClassifierConfig, workdir, _overrides(args, {**RUN_FLAGS, "epochs": "epochs"}))
        report = train_classifier(config, workdir.root, progress=progress)
        done = (f"test accuracy {report['accuracy']:.3f}, macro F1 {report['macro']['f1']:.3f} "
                f"(n={report['n']}); eval: {workdir.eval}")
    print(f"{done}; checkpoints: {workdir.checkpoints}; plots: {workdir.plots}; metrics: {workdir.metrics}",
          file=sys.stderr)


def _study(args: argparse.Namespace) -> None:
    from jaxmed.studies.augmentation import StudyConfig, run_study
    from jaxmed.train import config as config_lib

    config = config_lib.apply_overrides(StudyConfig(), _overrides(args, {"data.spec": "data", "seeds": "seeds"}))
    summary = run_study(config, args.workdir, progress=not args.no_progress)
    print(f"study written to {Path(args.workdir) / 'study.json'}: {summary['summary']}", file=sys.stderr)


def _sample(args: argparse.Namespace) -> None:
    from jaxmed.export import write_images
    from jaxmed.train.gan_sampling import sample_from_workdir

    images, step = sample_from_workdir(args.workdir, args.n, seed=args.seed)
    paths = write_images(images, args.out, args.format, source=f"{args.workdir} step {step} seed {args.seed}")
    print(f"wrote {args.n} synthetic images to {args.out} ({len(paths)} file(s), checkpoint step {step})",
          file=sys.stderr)


def _enable_compilation_cache() -> None:
    """Reuses XLA compilations across runs (resuming, studies, repeated commands).

    The cache lives in $JAXMED_XLA_CACHE (default ~/.cache/jaxmed/xla); set it empty to disable.
    """
    import jax

    directory = os.environ.get("JAXMED_XLA_CACHE", str(Path.home() / ".cache" / "jaxmed" / "xla"))
    if directory and jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", directory)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    _enable_compilation_cache()
    run = {"train": _train, "sample": _sample, "study": _study}[args.command]
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


if __name__ == "__main__":
    sys.exit(main())
