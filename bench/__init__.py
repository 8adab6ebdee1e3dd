"""Benchmarks of the walk: `python -m bench --preset NAME` (`make bench PRESET=NAME`).

The same request and seed run through a plain reference (bench.reference: one item at a
time, the way the hosted model worked) and through animate.animate, in one process; the
table gives per-stage times, the ratio, UNet forward passes and peak memory, and says
whether the two made the same keyframes. Results also go to bench/results/<preset>.json.
The presets (bench.presets), the one place they are described:

tiny         the project's tiny random weights (animate.tiny), CPU, a small request
tiny-sdxl    the tiny SDXL weights (animate.tiny --kind sdxl), CPU, tiny's request
sd15-small   the full SD 1.5 architecture and the full default FILM, random weights,
             CPU float32, 256x256, 10 keyframes, 10 steps
sd15-default the same models on CUDA in half precision, the default request
             (512x512, 10 keyframes, 50 steps)
sdxl         the full SDXL base architecture (bench/sdxl.py) and the full default FILM,
             random weights, CUDA half precision, the default request at 1024x768
sd15-upscale sd15-default's models and request with upscale=4x, and the upscaler's full
             architecture (realesr-general-x4v3: SRVGGNetCompact, 64 features, 32
             convolutions) with random weights; pipeline only, MP4 and GIF
largest      tiny weights on CPU, the largest request the contract allows, pipeline only
"""
