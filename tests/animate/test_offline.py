"""Setup and predict never reach the network: the Hugging Face libraries are put offline by
animate.weights, even when they were imported (and read their settings) before it.

The proof runs in a fresh Python process, started without any offline variable, that
imports huggingface_hub, transformers and diffusers first, then blocks every socket that
is not loopback or a Unix socket (recording the attempt), and only then loads the tiny
weights and runs a walk.
"""

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DIFFUSERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")

CHILD = r'''
import ipaddress, json, socket, sys

import huggingface_hub, transformers, diffusers  # first, before animate: their settings are read now
import torch

torch.set_num_threads(1)
attempts = []


def is_local(address):
    if not isinstance(address, tuple):  # a Unix socket path
        return True
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name to resolve: the network


def guarded(real):
    def call(self_or_address, *args, **kwargs):
        address = args[0] if args and isinstance(self_or_address, socket.socket) else self_or_address
        if not is_local(address):
            attempts.append(repr(address))
            raise OSError(f"network blocked by the test: {address!r}")
        return real(self_or_address, *args, **kwargs)
    return call


def guarded_getaddrinfo(real):
    def call(host, *args, **kwargs):
        if not is_local((host,)):
            attempts.append(f"getaddrinfo {host!r}")
            raise socket.gaierror(f"name resolution blocked by the test: {host!r}")
        return real(host, *args, **kwargs)
    return call


socket.socket.connect = guarded(socket.socket.connect)
socket.socket.connect_ex = guarded(socket.socket.connect_ex)
socket.getaddrinfo = guarded_getaddrinfo(socket.getaddrinfo)

# The guard works: a connection to a public address is refused and recorded.
try:
    socket.create_connection(("93.184.215.14", 443), timeout=1)
except OSError:
    pass
guard_works = len(attempts) == 1 and "93.184.215.14" in attempts[0]
attempts.clear()

import animate
from animate.weights import load_components

weights_dir, output_dir = sys.argv[1], sys.argv[2]
components = load_components(weights_dir, "cpu", torch.float32)
settings = animate.Settings(
    prompts=("a red apple", "a green pear"), seed=1, width=64, height=64, num_inference_steps=2,
    num_animation_frames=2, num_interpolation_steps=2, frames_per_second=10, intermediate_output=True,
)
outputs = [path.name for path in animate.animate(components, settings, output_dir)]

# A model that is not on disk is refused by the libraries themselves, without trying the hub.
refusals = []
for load in (
    lambda: huggingface_hub.hf_hub_download("stable-diffusion-v1-5/stable-diffusion-v1-5", "model_index.json"),
    lambda: transformers.CLIPTextConfig.from_pretrained("openai/clip-vit-large-patch14"),
    lambda: diffusers.UNet2DConditionModel.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5", subfolder="unet"),
):
    try:
        load()
        refusals.append("loaded")
    except Exception as error:
        refusals.append(type(error).__name__)

print("RESULT " + json.dumps({
    "guard_works": guard_works,
    "offline": huggingface_hub.constants.is_offline_mode(),
    "attempts": attempts,
    "outputs": outputs,
    "refusals": refusals,
}))
'''


def test_setup_and_predict_never_reach_the_network(tiny_weights, tmp_path):
    env = {name: value for name, value in os.environ.items() if name not in OFFLINE_VARIABLES}
    env.update(PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1", HF_HOME=str(tmp_path / "hf-home"))
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tiny_weights), str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    report = json.loads(lines[-1].removeprefix("RESULT "))

    assert report["guard_works"], "the socket guard did not catch a public connection"
    assert report["offline"], "huggingface_hub is not in offline mode after importing animate"
    assert report["attempts"] == [], f"network reached: {report['attempts']}"
    assert report["outputs"] == ["keyframe-000.png", "keyframe-001.png", "animation.gif"]
    assert "loaded" not in report["refusals"], report["refusals"]
