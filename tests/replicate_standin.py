"""A STAND-IN for Replicate's HTTP API (api.replicate.com), which tests cannot reach: the few
endpoints that the documentation's Python examples call through the `replicate` client,
served on 127.0.0.1 by the standard library. It is not Replicate and runs no model.

What it answers, in the shapes the client (replicate 1.0.7) reads:

    POST /v1/files                                 an upload (multipart): a file record
    GET  /v1/models/<owner>/<name>/versions/<id>   a version, with this project's schema
    POST /v1/predictions                           a prediction of a version
    GET  /v1/deployments/<owner>/<name>            a deployment of a version
    POST /v1/deployments/<owner>/<name>/predictions   a prediction of that deployment
    GET  /v1/predictions/<id>                      the prediction, finished

A new prediction is answered as "starting", as Replicate answers one that takes longer than
the client's wait (a real one takes minutes), so the client polls GET /v1/predictions/<id>;
that answers it succeeded. Its outputs are placeholder files, as data
URIs (which Replicate also returns, and which the client reads without a download): one PNG
per keyframe with intermediate_output, then the animation, in the request's output_format.

Each prediction's input is checked against the schema of this project's predict.py
(.cog/openapi_schema.json, written by `make schema`): known names, the required ones, types,
choices and bounds. A bad input is answered 422, as Replicate does; an unknown name is
refused too (Replicate drops it), since in the documentation it is a typo.
"""

import base64
import email.parser
import email.policy
import itertools
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.conftest import REPO_ROOT

SCHEMA_FILE = REPO_ROOT / ".cog" / "openapi_schema.json"
COG_VERSION = "0.23.1"
# What the placeholder outputs hold: a name each, so a test can tell which one it got.
MIME_TYPES = {"gif": "image/gif", "mp4": "video/mp4", "png": "image/png"}
JSON_TYPES = {"integer": int, "number": (int, float), "boolean": bool, "string": str}


def placeholder(name: str) -> str:
    """A data URI of a placeholder file: its bytes say which output it stands for."""
    mime = MIME_TYPES[name.rsplit(".", 1)[1]]
    return f"data:{mime};base64,{base64.b64encode(f'stand-in {name}'.encode()).decode()}"


def outputs_for(model_input: dict) -> list[str]:
    """The outputs of a prediction with this input: keyframes first (with intermediate_output;
    two, as a stand-in), then the animation."""
    keyframes = [f"keyframe-{index:03d}.png" for index in range(2)] if model_input.get("intermediate_output") else []
    return [placeholder(name) for name in [*keyframes, f"animation.{model_input.get('output_format', 'gif')}"]]


def input_problems(model_input: dict, schema: dict) -> list[str]:
    """What is wrong with a prediction's input for the project's OpenAPI schema, one line each."""
    schemas = schema["components"]["schemas"]
    properties = schemas["Input"]["properties"]
    problems = [f"{name} is required" for name in schemas["Input"].get("required", []) if name not in model_input]
    for name, value in model_input.items():
        if name not in properties:
            problems.append(f"{name} is not an input of this model")
            continue
        field = dict(properties[name])
        for part in field.get("allOf", []):
            field.update(schemas[part["$ref"].rsplit("/", 1)[1]])
        wanted = JSON_TYPES[field["type"]]
        if not isinstance(value, wanted) or (isinstance(value, bool) and field["type"] != "boolean"):
            problems.append(f"{name}: {value!r} is not of type {field['type']}")
        elif "enum" in field and value not in field["enum"]:
            problems.append(f"{name}: {value!r} is not one of {field['enum']}")
        elif not field.get("minimum", value) <= value <= field.get("maximum", value):
            problems.append(f"{name}: {value!r} is outside {field.get('minimum')}..{field.get('maximum')}")
    return problems


class ReplicateStandIn:
    """The stand-in, serving on 127.0.0.1 in a thread; `base_url` is what the client is given
    (REPLICATE_BASE_URL). It records what it was sent: `uploads` (file name: bytes),
    `predictions` (id: the prediction), `requests` ((method, path) in order)."""

    def __init__(self, versions: dict[str, str], deployments: dict[str, str]):
        """versions: {"owner/name": version id}; deployments: {"owner/name": "owner/model:version"}."""
        self.versions = versions
        self.deployments = deployments
        self.schema = json.loads(SCHEMA_FILE.read_text())
        self.uploads: dict[str, bytes] = {}
        self.predictions: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.ids = itertools.count(1)
        self.lock = threading.Lock()
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), self.handler_class())
        self.base_url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()

    def version_record(self, version: str) -> dict:
        return {
            "id": version,
            "created_at": "2026-11-01T00:00:00.000000Z",
            "cog_version": COG_VERSION,
            "openapi_schema": self.schema,
        }

    def new_prediction(self, model: str, version: str, body: dict) -> tuple[int, dict]:
        """(HTTP status, answer) for a new prediction of `version` of `model`."""
        model_input = body.get("input") or {}
        problems = input_problems(model_input, self.schema)
        if problems:
            return 422, {"title": "Input validation failed", "detail": "; ".join(problems), "status": 422}
        with self.lock:
            prediction_id = f"standin{next(self.ids):04d}"
        prediction = {
            "id": prediction_id,
            "model": model,
            "version": version,
            "input": model_input,
            "logs": "",
            "error": None,
            "metrics": {},
            "created_at": "2026-11-01T00:00:00.000000Z",
            "started_at": None,
            "completed_at": None,
            "urls": {
                "get": f"{self.base_url}/v1/predictions/{prediction_id}",
                "cancel": f"{self.base_url}/v1/predictions/{prediction_id}/cancel",
            },
        }
        self.predictions[prediction_id] = prediction
        return 201, {**prediction, "status": "starting", "output": None}

    def finished(self, prediction_id: str) -> dict:
        prediction = self.predictions[prediction_id]
        return {
            **prediction,
            "status": "succeeded",
            "output": outputs_for(prediction["input"]),
            "logs": "Using seed: 42\n",
            "started_at": "2026-11-01T00:00:01.000000Z",
            "completed_at": "2026-11-01T00:01:00.000000Z",
        }

    def deployment_record(self, owner: str, name: str) -> dict:
        model, version = self.deployments[f"{owner}/{name}"].split(":")
        return {
            "owner": owner,
            "name": name,
            "current_release": {
                "number": 1,
                "model": model,
                "version": version,
                "created_at": "2026-11-01T00:00:00.000000Z",
                "created_by": {"type": "user", "username": owner, "name": owner, "github_url": None},
                "configuration": {"hardware": "gpu-l40s", "min_instances": 0, "max_instances": 1},
            },
        }

    def upload(self, content_type: str, body: bytes) -> tuple[int, dict]:
        """A multipart upload (one part, `content`), recorded; its file record."""
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        part = next(message.iter_parts())
        name = part.get_filename() or "file"
        self.uploads[name] = part.get_payload(decode=True)
        file_id = f"file{len(self.uploads):04d}"
        return 201, {
            "id": file_id,
            "name": name,
            "content_type": part.get_content_type(),
            "size": len(self.uploads[name]),
            "etag": "stand-in",
            "checksums": {},
            "metadata": {},
            "created_at": "2026-11-01T00:00:00.000000Z",
            "expires_at": None,
            "urls": {"get": f"https://stand-in.invalid/v1/files/{file_id}"},
        }

    def answer(self, method: str, path: str, content_type: str, body: bytes) -> tuple[int, dict]:
        """(HTTP status, JSON answer) for one request."""
        self.requests.append((method, path))
        if (method, path) == ("POST", "/v1/files"):
            return self.upload(content_type, body)
        if method == "POST" and path == "/v1/predictions":
            request = json.loads(body)
            for model, version in self.versions.items():
                if request.get("version") == version:
                    return self.new_prediction(model, version, request)
            return 404, {"detail": f"no version {request.get('version')!r}", "status": 404}
        if match := re.fullmatch(r"/v1/models/([^/]+/[^/]+)/versions/([^/]+)", path):
            if method == "GET" and self.versions.get(match[1]) == match[2]:
                return 200, self.version_record(match[2])
        if match := re.fullmatch(r"/v1/deployments/([^/]+)/([^/]+)(/predictions)?", path):
            if f"{match[1]}/{match[2]}" in self.deployments:
                record = self.deployment_record(match[1], match[2])
                if method == "GET" and not match[3]:
                    return 200, record
                if method == "POST" and match[3]:
                    release = record["current_release"]
                    return self.new_prediction(release["model"], release["version"], json.loads(body))
        if match := re.fullmatch(r"/v1/predictions/([^/]+)", path):
            if method == "GET" and match[1] in self.predictions:
                return 200, self.finished(match[1])
        return 404, {"detail": f"the stand-in has no {method} {path}", "status": 404}

    def handler_class(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def respond(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = urllib.parse.unquote(self.path)  # placeholders such as <your-user> come quoted
                status, answer = standin.answer(method, path, self.headers.get("Content-Type", ""), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self.respond("GET")

            def do_POST(self):
                self.respond("POST")

            def log_message(self, *args):
                pass

        return Handler


def documented_python_examples(text: str) -> list[str]:
    """The ```python blocks of a Markdown text that use the replicate client."""
    return [block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "import replicate" in block]


def read_placeholder(uri: str) -> bytes:
    return base64.b64decode(uri.split(",", 1)[1])


def placeholder_bytes() -> set[bytes]:
    """Every placeholder file's bytes, for checking what an example wrote."""
    names = [f"keyframe-{index:03d}.png" for index in range(2)] + ["animation.gif", "animation.mp4"]
    return {read_placeholder(placeholder(name)) for name in names}

