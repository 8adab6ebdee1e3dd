"""The documentation's Python examples (README.md and docs/*.md) run as written, with the
real `replicate` client (requirements-dev.txt), against a stand-in of Replicate's API
(tests/replicate_standin.py). Only the client's environment differs from a reader's:
REPLICATE_BASE_URL points it at the stand-in, and REPLICATE_API_TOKEN is a made-up token.

The examples name the hosted model's version, or placeholders for your own model
(`<your-user>/<your-model>:<version>`) and deployment (`<your-user>/<your-deployment>`),
which the stand-in answers to as they are written.
"""

import os
import subprocess
import sys

import pytest
from PIL import Image

from tests.conftest import REPO_ROOT
from tests.replicate_standin import ReplicateStandIn, documented_python_examples, placeholder_bytes

DOCUMENTS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
EXAMPLES = {
    f"{document.relative_to(REPO_ROOT)}, example {number}": code
    for document in DOCUMENTS
    for number, code in enumerate(documented_python_examples(document.read_text()), start=1)
}
VERSIONS = {
    "andreasjansson/stable-diffusion-animation": "ca1f5e306e5721e19c473e0d094e6603f0456fe759c10715fcd6c1b79242d4a5",
    "<your-user>/<your-model>": "<version>",
}
DEPLOYMENTS = {"<your-user>/<your-deployment>": "<your-user>/<your-model>:<version>"}


@pytest.fixture
def standin():
    replicate_api = ReplicateStandIn(VERSIONS, DEPLOYMENTS)
    yield replicate_api
    replicate_api.close()


def test_each_way_to_call_replicate_has_an_example():
    readme = "\n".join(code for name, code in EXAMPLES.items() if name.startswith("README.md"))
    assert "replicate.run(" in readme and "andreasjansson/stable-diffusion-animation:" in readme
    everything = "\n".join(EXAMPLES.values())
    assert "replicate.deployments.get(" in everything  # a deployment
    assert '"<your-user>/<your-model>:<version>"' in everything  # your own model, by version
    assert 'open("photo.jpg", "rb")' in everything  # a file input, uploaded by the client


@pytest.mark.parametrize("code", EXAMPLES.values(), ids=EXAMPLES.keys())
def test_example_runs_as_written_with_the_current_client(standin, tmp_path, code):
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 48), "orange").save(photo)
    environment = {
        **os.environ,
        "REPLICATE_BASE_URL": standin.base_url,
        "REPLICATE_API_TOKEN": "r8_made_up_for_the_stand_in",
        "REPLICATE_POLL_INTERVAL": "0.05",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(standin.predictions) == 1, standin.requests
    # What the example wrote is the animation, in the format it asked for, not a keyframe.
    written = [path for path in tmp_path.iterdir() if path != photo]
    assert written, f"the example wrote no file\n{result.stdout}"
    for path in written:
        assert path.read_bytes() in placeholder_bytes()
        assert path.read_bytes() == f"stand-in animation{path.suffix}".encode(), path.name
    # A file input is uploaded by the client, and the prediction gets the upload's URL.
    [prediction] = standin.predictions.values()
    if "photo.jpg" in code:
        assert standin.uploads == {"photo.jpg": photo.read_bytes()}
        assert prediction["input"]["init_image"].startswith("https://")
