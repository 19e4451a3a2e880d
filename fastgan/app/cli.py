"""Command line: `fastgan info | train | sample | fid` (also `python -m fastgan ...`)."""
import argparse
import dataclasses
import difflib
import os
import sys


def _config_file(path):
    """Options from a TOML or YAML file; keys are option names (dashes or underscores)."""
    from .config import TrainError

    if not os.path.isfile(path):
        raise TrainError(f"config file {path!r} does not exist")
    try:
        if path.endswith(".toml"):
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib
            with open(path, "rb") as f:
                values = tomllib.load(f)
        elif path.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError:
                raise TrainError("YAML config files need PyYAML (pip install pyyaml), or use TOML") from None
            with open(path) as f:
                values = yaml.safe_load(f) or {}
        else:
            raise TrainError(f"config file {path!r} must end in .toml, .yaml or .yml")
    except TrainError:
        raise
    except Exception as exc:  # a syntax error, an unreadable file, bytes that are not text
        detail = str(exc).strip().splitlines()
        reason = detail[0] if detail else type(exc).__name__
        raise TrainError(f"config file {path!r} cannot be read: {reason}") from None
    if not isinstance(values, dict):
        raise TrainError(f"config file {path!r} must hold option = value pairs, not a {type(values).__name__}")
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def _train_parser(sub):
    from .config import TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="train a DCGAN with the fused layers",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", help="a TOML or YAML file setting any of these options")
    p.add_argument("--data", default=d.data,
                   help="'digits' (built in), a folder of images, a .zip of them, or a folder with MNIST's idx files")
    p.add_argument("--arch", choices=TrainConfig.CHOICES["arch"], default=d.arch,
                   help="dcgan (convolutions) or mlp (the fully-connected GAN of the MNIST tutorials)")
    p.add_argument("--image-size", type=int, choices=TrainConfig.CHOICES["image_size"], default=d.image_size,
                   help="image side in pixels (28: --arch mlp only)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=d.channels, help="1 (grey) or 3 (RGB)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per step (per process under torchrun)")
    p.add_argument("--steps", type=int, default=d.steps, help="total steps of the run (a resumed run continues to it)")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate of G and D")
    p.add_argument("--beta1", type=float, default=d.beta1, help="Adam beta1 (beta2 is 0.999)")
    p.add_argument("--nz", type=int, default=d.nz, help="latent size")
    p.add_argument("--ngf", type=int, default=d.ngf, help="G's width (channels of its last hidden layer)")
    p.add_argument("--ndf", type=int, default=d.ndf, help="D's width (channels of its first layer)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of weights, data order and latents")
    p.add_argument("--out", default=d.out, help="the run folder")
    p.add_argument("--overwrite", action="store_true", default=d.overwrite,
                   help="delete the run already in --out (checkpoint, metrics, samples) and start over")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device, help="where to train")
    p.add_argument("--backend", choices=("fused", "reference"), default=d.backend,
                   help="fastgan's kernels or the stock-PyTorch reference path")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default=d.amp,
                   help="mixed precision: bf16 (GPU, or a CPU with native bf16) or fp16 (GPU)")
    p.add_argument("--dtype", choices=("float32", "float64"), default=d.dtype,
                   help="the models' and data's dtype (float64: for checking numbers, slow)")
    p.add_argument("--channels-last", action="store_true", default=d.channels_last,
                   help="NHWC activations (faster with --amp)")
    p.add_argument("--cuda-graphs", action="store_true", default=d.cuda_graphs,
                   help="capture each step in a CUDA graph")
    p.add_argument("--n-critic", type=int, default=d.n_critic,
                   help="D steps per G step, each on its own batch (WGAN-GP's paper uses 5)")
    p.add_argument("--data-cache", default=d.data_cache,
                   help="folder where a folder's or .zip's decoded images are cached and memory-mapped by later runs "
                        "(default: $FASTGAN_DATA_CACHE or ~/.cache/fastgan/data; 'none': decode at every start)")
    p.add_argument("--tensorboard", action="store_true", default=d.tensorboard,
                   help="also write the metrics and sample grids as TensorBoard events into OUT/tb")
    p.add_argument("--ema", action="store_true", default=d.ema, help="keep an EMA of G for samples")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay, help="decay of the EMA of G, in [0, 1]")
    p.add_argument("--ema-rampup", type=float, default=d.ema_rampup,
                   help="the EMA's half-life is at most this fraction of the images seen (0: decay from the start)")
    p.add_argument("--conditional", action="store_true", default=d.conditional, help="class-conditional G and D")
    p.add_argument("--resume", action="store_true", default=d.resume,
                   help="continue from the run folder's checkpoint (any number of processes)")
    p.add_argument("--sync-bn", action="store_true", default=d.sync_bn,
                   help="under torchrun: BatchNorm statistics over the whole global batch (fused SyncBatchNorm)")
    p.add_argument("--dist-timeout", type=float, default=d.dist_timeout,
                   help="under torchrun: seconds a rank waits for the others before stopping with an error")
    p.add_argument("--sample-every", type=int, default=d.sample_every, help="steps between sample grids")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
    p.add_argument("--log-every", type=int, default=d.log_every,
                   help="steps between metrics rows (images/s: moving average over the last 10 rows)")
    p.add_argument("--loss", choices=TrainConfig.CHOICES["loss"], default=d.loss,
                   help="GAN loss; wgan-gp also drops BatchNorm from D and adds the gradient penalty")
    p.add_argument("--gp-weight", type=float, default=d.gp_weight, help="weight of WGAN-GP's gradient penalty")
    p.add_argument("--r1", type=float, default=d.r1, help="gamma of the R1 penalty on real images (0: none)")
    p.add_argument("--fid-every", type=int, default=d.fid_every,
                   help="steps between FID/KID evaluations against the training data (0: never); needs --inception")
    p.add_argument("--inception", default=d.inception,
                   help="the Inception network as TorchScript (inception-2015-12-05.pt), for --fid-every")
    p.add_argument("--fid-n", type=int, default=d.fid_n, help="generated (and at most real) images per evaluation")
    return p


def _parse(parser, commands, argv):
    """parser.parse_args, except that an unknown option is refused by its command's parser (its
    usage, not the top level's) with the closest option it has: `did you mean --steps?`."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = commands.get(args.command, parser)
        options = [option for action in command._actions for option in action.option_strings]
        hint = ""
        for word in unknown:
            if word.startswith("-"):
                close = difflib.get_close_matches(word.split("=")[0], options, n=1, cutoff=0.75)
                if close:
                    hint = f" (did you mean {close[0]}?)"
                    break
        command.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    return args


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastgan", description="fastgan: fused operators for fast GAN training")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, whether fastgan._C loaded, ops and their kernels")
    train_parser = _train_parser(sub)
    s = sub.add_parser("sample", help="write a sample grid or interpolation strip from a checkpoint",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--checkpoint", required=True, help="a checkpoint.pt written by fastgan train")
    s.add_argument("--out", required=True, help="the PNG file to write (its folder must exist)")
    s.add_argument("--n", type=int, default=64, help="number of images, 1 to 4096")
    s.add_argument("--class", dest="label", type=int, default=None, help="class to draw (conditional runs)")
    s.add_argument("--interpolate", action="store_true", help="a strip between two latent points")
    s.add_argument("--seed", type=int, default=0, help="seed of the latent vectors")
    s.add_argument("--running-stats", action="store_true",
                   help="normalise with BatchNorm's running statistics (G in eval mode), so that each image is "
                        "independent of the others; by default G uses the statistics of the n images, as the "
                        "grids written during training do")
    f = sub.add_parser("fid", help="FID and KID of a checkpoint's G (or of a set of images) against real images",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    f.add_argument("--inception", required=True,
                   help="the Inception network as TorchScript (inception-2015-12-05.pt); never downloaded")
    f.add_argument("--real", required=True,
                   help="real images: 'digits', a folder or a .zip; or a statistics file (.npz with mu and sigma, "
                        "as pytorch-fid and --save-stats write it: FID only)")
    f.add_argument("--fake", help="a checkpoint.pt whose G generates the images, or a folder/.zip")
    f.add_argument("--save-stats", metavar="STATS.npz",
                   help="write the real images' feature statistics (mu, sigma) to this .npz, to pass as --real later")
    f.add_argument("--n", type=int, default=10000, help="generated images (and at most this many real ones)")
    f.add_argument("--batch-size", type=int, default=64, help="images per forward of G and of the network")
    f.add_argument("--image-size", type=int, choices=(28, 32, 64, 128), default=64,
                   help="side the image sets are read at when --fake is not a checkpoint")
    f.add_argument("--channels", type=int, choices=(1, 3), default=3,
                   help="channels the image sets are read with when --fake is not a checkpoint")
    f.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where G and the network run")
    f.add_argument("--kid-subsets", type=int, default=100, help="random subsets KID averages over")
    f.add_argument("--kid-subset-size", type=int, default=1000, help="images per KID subset (at most --n)")
    f.add_argument("--seed", type=int, default=0, help="seed of the latents and of the subsets")
    argv = sys.argv[1:] if argv is None else argv
    commands = {"train": train_parser, "sample": s, "fid": f}
    args = _parse(parser, commands, argv)
    if args.command == "info":
        from ..info import report
        print(report())
        return 0
    from .checkpoint import CheckpointError
    from .data import DataError
    from .metrics import MetricsError
    from .config import PeerLostError, TrainConfig, TrainError
    try:
        if args.command == "train":
            if args.config:  # the file sets defaults; flags given on the command line win
                values = _config_file(args.config)
                unknown = set(values) - {f.name for f in dataclasses.fields(TrainConfig)}
                if unknown:
                    raise TrainError(f"unknown option(s) in {args.config}: {', '.join(sorted(unknown))}")
                train_parser.set_defaults(**values)
                args = _parse(parser, commands, argv)
            from .train import Trainer
            cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
            trainer = Trainer(cfg)
            trainer.run()
            if trainer.world.is_main:
                print(f"done: {cfg.out}")
        elif args.command == "sample":
            from .sample import sample
            sample(args.checkpoint, args.out, args.n, args.label, args.interpolate, args.seed,
                   running_stats=args.running_stats)
            print(f"wrote {args.out}")
        elif args.command == "fid":
            from .evaluate import evaluate
            result = evaluate(args.inception, args.real, args.fake, args.n, args.batch_size, args.device,
                              args.image_size, args.channels, args.kid_subsets, args.kid_subset_size, args.seed,
                              args.save_stats)
            if args.save_stats:
                print(f"wrote {args.save_stats}")
            if result is not None:
                print(result)
    except (TrainError, DataError, CheckpointError, MetricsError) as exc:
        print(f"fastgan: error: {exc}", file=sys.stderr)
        if isinstance(exc, PeerLostError):
            # A normal exit would run the process group's destructors, which abort the process
            # ("terminate called without an active exception") while gloo still waits on the peer.
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(2)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
