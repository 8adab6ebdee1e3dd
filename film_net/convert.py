"""Convert the official film_net SavedModel (e.g. the released Style model) to a film_net
safetensors file, the form film_net.load reads.

The weights are read with TensorFlow's checkpoint reader from
SAVED_MODEL_DIR/variables/variables.*. Their checkpoint keys are object-graph paths
(such as `layer_with_weights-0/.../kernel/.ATTRIBUTES/VARIABLE_VALUE`), not the Keras
variable names, and shapes cannot stand in for names (the model has nine (64,) biases and
four (3, 3, 64, 64) kernels, for instance). The names come from SAVED_MODEL_DIR/saved_model.pb:
its object graph has the same structure as the checkpoint's and records each variable's
name. Every official variable must be found exactly once; other entries (optimizer
slots, counters) are skipped. TensorFlow is needed only here, never at run time.
"""

import argparse
import os
import sys
from collections import deque
from pathlib import Path

import numpy as np

from film_net.options import FilmOptions
from film_net.weights import model_from_state_dict, official_shapes, save, state_dict_from_tf

VARIABLE_VALUE = "VARIABLE_VALUE"


class ConversionError(ValueError):
    """The SavedModel cannot be converted; the message says why in one sentence."""


def checkpoint_paths(checkpoint_graph) -> dict[str, tuple[str, ...]]:
    """Checkpoint key of each variable -> the path of child names from the root object to
    it, found breadth-first in the checkpoint's TrackableObjectGraph."""
    keys = {}
    queue = deque([((), 0)])
    seen = {0}
    while queue:
        path, node_id = queue.popleft()
        node = checkpoint_graph.nodes[node_id]
        for attribute in node.attributes:
            if attribute.name == VARIABLE_VALUE:
                keys[attribute.checkpoint_key] = path
        for child in node.children:
            if child.node_id not in seen:
                seen.add(child.node_id)
                queue.append((path + (child.local_name,), child.node_id))
    return keys


def saved_variable_name(saved_graph, path: tuple[str, ...]) -> str | None:
    """The name of the variable at `path` in the SavedModel's object graph, with the ':0'
    suffix of TensorFlow variable names, or None when the path leads elsewhere."""
    node_id = 0
    for local_name in path:
        children = [child.node_id for child in saved_graph.nodes[node_id].children if child.local_name == local_name]
        if not children:
            return None
        node_id = children[0]
    node = saved_graph.nodes[node_id]
    if node.WhichOneof("kind") != "variable":
        return None
    name = node.variable.name
    return name if name.endswith(":0") else name + ":0"


def read_official_variables(saved_model_dir: Path) -> dict[str, np.ndarray]:
    """Official variable name -> array (TensorFlow layout) from the SavedModel's checkpoint."""
    # The files are checked before TensorFlow is imported, which takes seconds.
    prefix = saved_model_dir / "variables" / "variables"
    graph_file = saved_model_dir / "saved_model.pb"
    if not saved_model_dir.is_dir():
        raise ConversionError(
            f"{saved_model_dir} does not exist: give the folder of the official SavedModel "
            "(the one that holds saved_model.pb and variables/)."
        )
    if not Path(str(prefix) + ".index").is_file() or not graph_file.is_file():
        raise ConversionError(
            f"{saved_model_dir} is not a complete SavedModel folder (it needs saved_model.pb and "
            "variables/variables.*): download the whole folder of the official model."
        )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # only the conversion needs TensorFlow
    from tensorflow.core.protobuf import saved_model_pb2, trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(str(prefix))
    checkpoint_graph = trackable_object_graph_pb2.TrackableObjectGraph()
    checkpoint_graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(graph_file.read_bytes())
    saved_graph = saved_model.meta_graphs[0].object_graph_def

    wanted = official_shapes(FilmOptions())
    found: dict[str, list[str]] = {}
    skipped = 0
    for key, path in checkpoint_paths(checkpoint_graph).items():
        name = saved_variable_name(saved_graph, path)
        if name in wanted:
            found.setdefault(name, []).append(key)
        else:
            skipped += 1
    duplicated = sorted(name for name, keys in found.items() if len(keys) > 1)
    missing = [name for name in wanted if name not in found]
    if duplicated or missing:
        raise ConversionError(
            f"{saved_model_dir} does not hold each film_net variable exactly once: "
            f"missing [{', '.join(missing)}], found more than once [{', '.join(duplicated)}]."
        )
    print(f"Read {len(found)} film_net variables from {prefix} (skipped {skipped} other entries).", flush=True)
    return {name: reader.get_tensor(keys[0]) for name, keys in found.items()}


def convert(saved_model_dir: str | os.PathLike, output: str | os.PathLike) -> None:
    """Writes the SavedModel's film_net weights (default options) to `output` (safetensors)."""
    arrays = read_official_variables(Path(saved_model_dir))
    model = model_from_state_dict(state_dict_from_tf(arrays))
    save(model, output)
    print(f"Wrote {output} ({sum(p.numel() for p in model.parameters()):,} parameters).", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m film_net.convert", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "saved_model_dir", metavar="SAVED_MODEL_DIR", help="folder of the official SavedModel (saved_model.pb, variables/)"
    )
    parser.add_argument(
        "output", metavar="OUTPUT", help="safetensors file to write, e.g. weights/film_net/film_net_style.safetensors"
    )
    args = parser.parse_args(argv)
    try:
        convert(args.saved_model_dir, args.output)
    except ValueError as error:  # ConversionError, or variables of the wrong shape
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
