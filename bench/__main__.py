"""Run one benchmark preset and print its table: python -m bench --preset NAME [options]."""

import argparse
import dataclasses
import sys
import time

import bench

DTYPE_NAMES = ("bfloat16", "float16", "float32")


def preset_descriptions() -> dict[str, str]:
    """{preset name: one line saying what it runs}, from the table at the end of the bench
    package's docstring, the one place the presets are described (a name at the start of a
    line, its description after it and on the indented lines below)."""
    table = bench.__doc__.rsplit("\n\n", 1)[1]
    descriptions = {}
    for line in table.splitlines():
        if line[:1].strip():
            name, _, text = line.partition(" ")
            descriptions[name] = text.strip()
        elif line.strip():
            descriptions[name] += " " + line.strip()
    return descriptions


def presets_help() -> str:
    """The presets, one line each, for the end of --help."""
    descriptions = preset_descriptions()
    width = max(map(len, descriptions))
    return "presets:\n" + "\n".join(f"  {name:<{width}}  {text}" for name, text in descriptions.items())


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        epilog=presets_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset", choices=sorted(preset_descriptions()), required=True, help="which benchmark to run (below)"
    )
    parser.add_argument("--steps", type=int, help="num_inference_steps instead of the preset's (frame counts stay)")
    parser.add_argument(
        "--keyframes", type=int, help="num_animation_frames instead of the preset's (to see memory against frame count)"
    )
    parser.add_argument("--dtype", choices=DTYPE_NAMES, help="model dtype instead of the preset's")
    parser.add_argument(
        "--formats", help="largest only: comma-separated output formats to run (default mp4,gif)"
    )
    parser.add_argument(
        "--upscale", choices=["none", "2x", "4x"],
        help="upscale instead of the preset's (the models need an upscaler: tiny, tiny-sdxl, sd15-upscale)",
    )
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: the preset's, else torch's choice)")
    parser.add_argument(
        "--warmup", action=argparse.BooleanOptionalAction, default=None,
        help="run both sides once untimed first (default: on for CUDA, off for CPU)",
    )
    parser.add_argument(
        "--no-encode", dest="encode", action="store_false",
        help="make the frames but do not encode them (a GPU machine without ffmpeg; no 'encode' stage)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    # Answer --help and wrong arguments before the imports below, which take seconds.
    parse_arguments(sys.argv[1:])

import torch  # noqa: E402

from animate.pipeline import plan_for  # noqa: E402
from bench.measure import upscaler_gflop  # noqa: E402
from bench.presets import PRESETS, Preset, build_components  # noqa: E402
from bench.report import (  # noqa: E402
    comparison_record,
    comparison_table,
    describe_machine,
    describe_request,
    pipeline_record,
    pipeline_table,
    upscale_line,
    verdict,
    write_results,
)
from bench.runner import SideResult, run_comparison, run_pipeline_only  # noqa: E402


def preset_from_arguments(arguments: argparse.Namespace) -> Preset:
    """The named preset with the command line's overrides applied."""
    preset = PRESETS[arguments.preset]
    if arguments.steps is not None:
        preset = dataclasses.replace(
            preset, settings=dataclasses.replace(preset.settings, num_inference_steps=arguments.steps)
        )
    if arguments.keyframes is not None:
        preset = dataclasses.replace(
            preset, settings=dataclasses.replace(preset.settings, num_animation_frames=arguments.keyframes)
        )
    if arguments.dtype is not None:
        preset = dataclasses.replace(preset, dtype=getattr(torch, arguments.dtype))
    if arguments.upscale is not None:
        preset = dataclasses.replace(preset, settings=dataclasses.replace(preset.settings, upscale=arguments.upscale))
    if arguments.formats is not None:
        preset = dataclasses.replace(preset, output_formats=tuple(arguments.formats.split(",")))
    return preset


def check_device(preset: Preset) -> None:
    if preset.device == "cuda" and not torch.cuda.is_available():
        sys.exit(f"Preset {preset.name} needs a CUDA GPU and none is visible: run it on a GPU machine.")


def upscale_cost(components, settings, result: SideResult) -> str:
    """upscale_line of a pipeline run: the upscaler's GFLOP per frame at the request's size,
    times the frames it upscaled (every frame, and the keyframes again for their PNGs)."""
    plan = plan_for(settings)
    frames = plan.num_frames + (plan.num_keyframes if settings.intermediate_output else 0)
    gflop = upscaler_gflop(components.upscaler, settings.height, settings.width)
    seconds = result.stages.get("upscale", 0.0)
    return upscale_line(result.name, gflop, frames, seconds, result.total_s - seconds)


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    preset = preset_from_arguments(arguments)
    check_device(preset)
    threads = arguments.threads if arguments.threads is not None else preset.threads
    if threads is not None:
        torch.set_num_threads(threads)

    started = time.perf_counter()
    components = build_components(preset)
    setup_s = time.perf_counter() - started
    machine = describe_machine(components.device, components.dtype)
    header = f"bench {preset.name}: {describe_request(preset.settings)}\n{machine}; models built in {setup_s:.1f}s"
    print(header, flush=True)

    if preset.compare:
        warmup = arguments.warmup if arguments.warmup is not None else preset.device == "cuda"
        reference, pipeline, agreement = run_comparison(components, preset.settings, warmup, arguments.encode)
        results = [pipeline]
        table = comparison_table(reference, pipeline)
        record = comparison_record(preset.settings, machine, setup_s, reference, pipeline, agreement)
        closing = verdict(agreement)
    else:
        results = [
            run_pipeline_only(
                components, dataclasses.replace(preset.settings, output_format=output_format), arguments.encode
            )
            for output_format in preset.output_formats
        ]
        table = pipeline_table(results)
        record = pipeline_record(preset.settings, machine, setup_s, results)
        closing = None

    path = write_results(preset.name, record)
    print(f"\n{header}\n{table}", flush=True)
    if preset.settings.upscale != "none":
        for result in results:
            print(upscale_cost(components, preset.settings, result), flush=True)
    if closing is not None:
        print(closing, flush=True)
    print(f"Results written to {path}", flush=True)
    return 0 if closing is None or agreement.agree else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
