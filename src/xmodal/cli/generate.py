"""`xmodal generate`: draw an image from a text by optimising it against the model."""

from __future__ import annotations

from pathlib import Path

import click

from xmodal.cli.common import device_option, model_option, warn
from xmodal.errors import InvalidInputError

# Frames kept for an animation when --save-every is not given: about this many in all.
_ANIMATION_FRAMES = 50
_FRAME_MS = 80


@click.command("generate")
@click.argument("prompt")
@click.option("--out", "-o", required=True, help="where to write the image (.png, .jpg, ...)")
@model_option
@click.option(
    "--drawer",
    type=click.Choice(["pixels", "strokes"]),
    default="pixels",
    show_default=True,
    help="pixels: a smooth Fourier-parametrised image; strokes: soft coloured curves",
)
@click.option(
    "--generator",
    default=None,
    help="diffusers:MODEL_OR_DIR: sample --candidates images from a diffusers text-to-image "
    "pipeline and rank them by the model's similarity, instead of optimising one",
)
@click.option(
    "--candidates", type=int, default=4, show_default=True, help="images a --generator samples"
)
@click.option(
    "--steps", type=int, default=None, help="optimisation steps (200), or --generator's (25)"
)
@click.option(
    "--size", type=int, default=None, help="square side in pixels (224; --generator: its own)"
)
@click.option("--seed", type=int, default=0, show_default=True, help="same seed, same image")
@click.option(
    "--not", "negatives", multiple=True, help="a text the image should not look like (repeat)"
)
@click.option("--init", "init", default=None, help="start from this image instead of noise")
@click.option("--cutouts", type=int, default=16, show_default=True, help="views per step")
@click.option("--strokes", type=int, default=64, show_default=True, help="strokes to draw")
@click.option("--lr", type=float, default=None, help="Adam's step size (default: the drawer's)")
@click.option("--save-every", type=int, default=None, help="keep a frame every N steps")
@click.option("--frames", "frames_dir", default=None, help="folder for the kept frames (PNG)")
@click.option("--animation", default=None, help="write the run as an animated .gif (or .mp4)")
@device_option()
def generate_cmd(
    prompt,
    out,
    model_name,
    drawer,
    generator,
    candidates,
    steps,
    size,
    seed,
    negatives,
    init,
    cutouts,
    strokes,
    lr,
    save_every,
    frames_dir,
    animation,
    device,
) -> None:
    """Generate an image that the model finds close to PROMPT ("sea^2 | boat": weighted terms,
    as in search), written to --out. Prints the similarity at the start and the end."""
    from tqdm import tqdm

    from xmodal.generate import GenerateOptions, generate

    if generator:
        unused = {"--init": init, "--save-every": save_every, "--frames": frames_dir}
        unused["--animation"] = animation
        given = [name for name, value in unused.items() if value]
        if given:
            raise InvalidInputError(f"{', '.join(given)} apply to optimisation, not --generator")
        options = dict(steps=steps, size=size, seed=seed, negatives=negatives, device=device)
        _rerank(prompt, out, model_name, generator, candidates, **options)
        return
    steps = 200 if steps is None else steps
    size = 224 if size is None else size
    if frames_dir and not save_every:
        raise InvalidInputError("--frames needs --save-every N (how often to keep a frame)")
    if animation and Path(animation).suffix.lower() not in (".gif", ".mp4"):
        raise InvalidInputError(f"--animation must end in .gif or .mp4, got {animation}")
    if animation and not save_every and steps >= 1:
        save_every = max(1, steps // _ANIMATION_FRAMES)
    init_image = None
    if init:
        from xmodal.images import load_image

        init_image = load_image(init)
    options = GenerateOptions(
        drawer=drawer,
        steps=steps,
        size=size,
        seed=seed,
        negatives=tuple(negatives),
        init_image=init_image,
        cutouts=cutouts,
        lr=lr,
        save_every=save_every,
        strokes=strokes,
        device=device,
    )
    bar = None

    def progress(step: int, similarity: float) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=steps, desc="generating", unit="step", leave=False)
        bar.update(1)
        bar.set_postfix(similarity=f"{similarity:.3f}")

    try:
        result = generate(prompt, model_name, options, on_step=progress)
    finally:
        if bar is not None:
            bar.close()
    _save(result.image, out)
    warn(f"wrote {out}")
    if frames_dir:
        folder = Path(frames_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(result.frames):
            frame.save(folder / f"frame_{i:04d}.png")
        warn(f"wrote {len(result.frames)} frames to {folder}")
    if animation:
        _animate(result.frames, animation)
        warn(f"wrote {animation}")
    click.echo(
        f"similarity {result.start_similarity:.4f} -> {result.similarity:.4f} "
        f"({steps} steps, {drawer})"
    )


def _rerank(prompt, out, model_name, generator, n, *, steps, size, seed, negatives, device):
    """Sample n candidates, write the best to OUT and the rest to OUT-2, OUT-3...; print the
    ranking with each score and the seed that regenerates it."""
    from tqdm import tqdm

    from xmodal.config import get_settings
    from xmodal.generate.rerank import DEFAULT_STEPS, generate_candidates, parse_generator

    parse_generator(generator)  # a bad name fails before the model loads
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc="sampling", unit="image", leave=False)
        bar.update(done - bar.n)

    try:
        ranked = generate_candidates(
            prompt,
            generator,
            model_name or get_settings().model,
            n=n,
            seed=seed,
            steps=DEFAULT_STEPS if steps is None else steps,
            size=size,
            negative=list(negatives) or None,
            device=device,
            on_candidate=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    path = Path(out)
    for rank, candidate in enumerate(ranked, start=1):
        where = path if rank == 1 else path.with_name(f"{path.stem}-{rank}{path.suffix}")
        _save(candidate.image, str(where))
        click.echo(f"{rank}\t{candidate.score:.4f}\tseed {candidate.seed}\t{where}")


def _save(image, out: str) -> None:
    path = Path(out)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        image.save(path)
    except (ValueError, KeyError) as e:  # Pillow: an extension it cannot write
        raise InvalidInputError(f"cannot write {out}: {e}; use .png or .jpg") from e


def _animate(frames, path: str) -> None:
    if Path(path).suffix.lower() == ".mp4":
        _mp4(frames, path)
        return
    first, *rest = frames
    first.save(path, save_all=True, append_images=rest, duration=_FRAME_MS, loop=0)


def _mp4(frames, path: str) -> None:
    try:
        import av
    except ImportError as e:
        from xmodal.errors import MissingExtraError

        raise MissingExtraError("writing an .mp4", None, "av") from e
    side = frames[0].width - frames[0].width % 2  # H.264 wants even sides
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=1000 // _FRAME_MS)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            image = frame.crop((0, 0, side, side))
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
