"""SavedModel folders: an op allowlist, checkpoint ops only in TensorFlow's own saver,
no assets, no outside paths. Each crafted folder is a real tf.saved_model whose payload
works (proved with the opt-in); without it, each is refused before TensorFlow loads it."""

from __future__ import annotations

import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from kerakit.cli import main
from kerakit.errors import ModelFileError
from kerakit.saving import load_model
from kerakit.saving.savedmodel import ALLOWED_OPS, SAVER_OPS, check_saved_model

SPEC = [tf.TensorSpec([None, 1], tf.float32)]
SECRET = "TOP-SECRET-LINE"  # the first line of a file outside every model folder


def _module(fn) -> tf.Module:
    module = tf.Module()
    module.serve = tf.function(fn, input_signature=SPEC)  # load_model serves `serve`
    return module


def crafted(root: Path) -> dict[str, tuple[Path, str]]:
    """name -> (SavedModel folder, the op or item its refusal must name)."""
    outside = root / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text(f"{SECRET}\nsecond line\n")
    other = tf.train.Checkpoint(v=tf.Variable([[42.0]])).write(str(outside / "other" / "ckpt"))

    def save_file(x):  # the issue's `Save`: writes a file when predicting
        tf.raw_ops.Save(filename=str(outside / "SAVE_CANARY"), tensor_names=["x"], data=[x])
        return x * 2

    def summary(x):  # an events file outside the model folder
        writer = tf.raw_ops.SummaryWriter(shared_name="kk_test_writer", container="")
        tf.raw_ops.CreateSummaryFileWriter(
            writer=writer,
            logdir=str(outside / "events"),
            max_queue=1,
            flush_millis=1,
            filename_suffix=".x",
        )
        tf.raw_ops.WriteScalarSummary(
            writer=writer, step=tf.constant(0, tf.int64), tag="t", value=tf.reduce_sum(x)
        )
        tf.raw_ops.FlushSummaryWriter(writer=writer)
        return x

    def table_from_file(x):  # the lines of an outside file, as predictions (their lengths)
        table = tf.raw_ops.HashTableV2(key_dtype=tf.int64, value_dtype=tf.string)
        tf.raw_ops.InitializeTableFromTextFileV2(
            table_handle=table, filename=str(secret), key_index=-1, value_index=-2
        )
        lines = tf.raw_ops.LookupTableFindV2(
            table_handle=table, keys=tf.cast(x[:, 0], tf.int64), default_value=""
        )
        return tf.reshape(tf.cast(tf.strings.length(lines), tf.float32), [-1, 1])

    def restore_other(x):  # another checkpoint, read by path
        (v,) = tf.raw_ops.RestoreV2(
            prefix=other,
            tensor_names=["v/.ATTRIBUTES/VARIABLE_VALUE"],
            shape_and_slices=[""],
            dtypes=[tf.float32],
        )
        return x + tf.reshape(v, [1, 1])

    def py_func(x):
        touch = lambda t: ((outside / "PY_CANARY").touch(), t)[1]  # noqa: E731
        return tf.reshape(tf.py_function(touch, [x], tf.float32), [-1, 1])

    def path_constant(x):  # only allowed ops, but it names an outside file
        return x + tf.cast(tf.strings.length(tf.constant(str(secret))), tf.float32)

    def dotdot_constant(x):
        return x + tf.cast(tf.strings.length(tf.constant("../../outside/secret.txt")), tf.float32)

    def url_constant(x):
        return x + tf.cast(tf.strings.length(tf.constant("gs://bucket/other/ckpt")), tf.float32)

    table_module = tf.Module()  # a StaticHashTable from a file: an asset and an initializer
    table = tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            str(secret),
            tf.string,
            tf.lookup.TextFileIndex.WHOLE_LINE,
            tf.int64,
            tf.lookup.TextFileIndex.LINE_NUMBER,
        ),
        -1,
    )
    table_module.table = table
    table_module.serve = tf.function(
        lambda x: x * tf.cast(table.size(), tf.float32), input_signature=SPEC
    )
    asset_module = _module(lambda x: x * 2)
    asset_module.vocabulary = tf.saved_model.Asset(str(secret))

    modules = {
        "save": (_module(save_file), "'Save'"),
        "summary": (_module(summary), "CreateSummaryFileWriter"),
        "table_from_file": (_module(table_from_file), "'InitializeTableFromTextFileV2'"),
        "restore_other": (_module(restore_other), "'RestoreV2'"),
        "py_func": (_module(py_func), "'EagerPyFunc'"),
        "static_table_file": (table_module, "'InitializeTableFromTextFileV2'"),
        "asset": (asset_module, "asset 'secret.txt'"),
        "path_constant": (_module(path_constant), "is an absolute path"),
        "dotdot_constant": (_module(dotdot_constant), "a path with '..'"),
        "url_constant": (_module(url_constant), "a file-system URL"),
    }
    out = {}
    for name, (module, named) in modules.items():
        tf.saved_model.save(module, str(root / name))
        out[name] = (root / name, named)
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("crafted")
    return root, crafted(root)


def _no_payload_ran(root: Path) -> None:
    outside = root / "outside"
    assert sorted(p.name for p in outside.iterdir()) == ["other", "secret.txt"]


def _export(model: keras.Model, path: Path) -> Path:
    model.export(str(path), format="tf_saved_model", verbose=False)
    return path


def _edit(folder: Path, change) -> Path:
    pb = folder / "saved_model.pb"
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(pb.read_bytes())
    change(proto.meta_graphs[0])
    pb.write_bytes(proto.SerializeToString())
    return folder


def _functions(graph, part: str) -> list:
    return [f for f in graph.graph_def.library.function if part in f.signature.name]


@pytest.fixture(scope="module")
def dense_export(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    return model, _export(model, tmp_path_factory.mktemp("dense") / "sm")


def test_every_crafted_savedmodel_is_refused_naming_what_and_where(folders):
    root, crafted_folders = folders
    for name, (folder, named) in crafted_folders.items():
        with pytest.raises(ModelFileError, match="refused to load") as err:
            load_model(folder)
        message = str(err.value)
        assert named in message, (name, message)
        assert "function '" in message or "asset" in message, (name, message)
        assert "trusted=True" in message and "--unsafe" in message, name
        assert SECRET not in message
    _no_payload_ran(root)


def test_kerakit_predict_refuses_them_with_exit_2_and_the_payloads_are_live(
    folders, tmp_path, capsys
):
    root, crafted_folders = folders
    np.save(tmp_path / "x.npy", np.array([[0.0], [1.0]], "float32"))
    x = str(tmp_path / "x.npy")
    for name in ("save", "summary", "table_from_file", "restore_other"):
        assert main(["predict", str(crafted_folders[name][0]), x]) == 2, name
        captured = capsys.readouterr()
        assert crafted_folders[name][1].strip("'") in captured.err
        assert SECRET not in captured.out + captured.err
    _no_payload_ran(root)
    # The payloads are real: with the one opt-in, each does what the issue reported.
    assert main(["predict", str(crafted_folders["save"][0]), x, "--unsafe"]) == 0
    assert (root / "outside" / "SAVE_CANARY").exists()
    table = load_model(crafted_folders["table_from_file"][0], trusted=True)
    assert table.predict(np.array([[0.0]], "float32"), verbose=0)[0, 0] == len(SECRET)
    other = load_model(crafted_folders["restore_other"][0], trusted=True)
    assert other.predict(np.array([[0.0]], "float32"), verbose=0)[0, 0] == 42.0
    (root / "outside" / "SAVE_CANARY").unlink()
    with pytest.raises(ModelFileError, match="'Save'"):  # the opt-in was for that call only
        load_model(crafted_folders["save"][0])


def test_checkpoint_ops_only_in_the_savers_own_functions_on_its_own_path(dense_export, tmp_path):
    _, export = dense_export
    check_saved_model(export)

    def copy(name: str) -> Path:
        return Path(shutil.copytree(export, tmp_path / name))

    def relative_prefix(graph):  # the restore function reads "other/ckpt" (from the cwd)
        (restore,) = _functions(graph, "_traced_restore")
        node = restore.node_def.add()
        node.name, node.op = "other_prefix", "Const"
        node.attr["dtype"].type = tf.string.as_datatype_enum
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto("other/ckpt"))
        (op,) = [n for n in restore.node_def if n.op == "RestoreV2"]
        op.input[0] = "other_prefix:output:0"

    def served_calls_restore(graph):  # the serving signature's node calls _traced_restore
        (restore,) = _functions(graph, "_traced_restore")
        serve = next(n for n in graph.graph_def.node if n.name == "StatefulPartitionedCall")
        serve.attr["f"].func.name = restore.signature.name

    def object_lists_save(graph):  # a restored object exposes _traced_save
        (save,) = _functions(graph, "_traced_save")
        graph.object_graph_def.concrete_functions[save.signature.name].SetInParent()

    def filename_from_constant(graph):  # the restore node's path is a constant, not the feed
        restore = graph.saver_def.restore_op_name
        node = next(n for n in graph.graph_def.node if n.name == restore)
        node.input[0] = "Const"

    def separator_escapes(graph):
        (save,) = _functions(graph, "_traced_save")
        join = next(n for n in save.node_def if n.op == "StringJoin")
        join.attr["separator"].s = b"/../../"

    def call_names_an_op(graph):  # TensorFlow runs a registered op named by a call's `f`
        serve = next(n for n in graph.graph_def.node if n.name == "StatefulPartitionedCall")
        serve.attr["f"].func.name = "WriteFile"

    def saver_node_is_not_a_call(graph):
        restore = graph.saver_def.restore_op_name
        next(n for n in graph.graph_def.node if n.name == restore).op = "ReadFile"

    def duplicate_function(graph):  # a second function of a checked one's name
        library = graph.graph_def.library.function
        twin = library.add()
        twin.CopyFrom(library[0])
        twin.node_def.add(name="write", op="WriteFile")

    cases = {
        "call_names_an_op": (call_names_an_op, r"'WriteFile' in the graph's top level"),
        "saver_node_is_not_a_call": (saver_node_is_not_a_call, r"'ReadFile' in the graph's top"),
        "duplicate_function": (duplicate_function, "two functions or nodes of the same name"),
        "relative_prefix": (relative_prefix, r"'RestoreV2' .* in the saver function"),
        "served_calls_restore": (served_calls_restore, r"'RestoreV2' in the function"),
        "object_lists_save": (object_lists_save, r"'(SaveV2|MergeV2Checkpoints)' in the function"),
        "filename_from_constant": (filename_from_constant, "does not take its checkpoint path"),
        "separator_escapes": (separator_escapes, r"'(SaveV2|MergeV2Checkpoints)' .* saver"),
    }
    for name, (change, message) in cases.items():
        folder = _edit(copy(name), change)
        with pytest.raises(ModelFileError, match=message):
            check_saved_model(folder)


def test_links_out_of_the_folder_are_refused(dense_export, tmp_path):
    _, export = dense_export
    other = tf.train.Checkpoint(v=tf.Variable([1.0])).write(str(tmp_path / "outside" / "ckpt"))
    folder = Path(shutil.copytree(export, tmp_path / "linked"))
    (folder / "variables" / "variables.index").unlink()
    (folder / "variables" / "variables.index").symlink_to(other + ".index")
    with pytest.raises(ModelFileError, match="outside the model folder"):
        load_model(folder)
    inner = Path(shutil.copytree(export, tmp_path / "inner"))
    (inner / "variables" / "same.index").symlink_to(inner / "variables" / "variables.index")
    check_saved_model(inner)  # a link that stays inside is fine


def _dense():
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)]
    )


def _cnn():
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.3),
            keras.layers.Conv2D(4, 3),
            keras.layers.AveragePooling2D(2),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )


def _lstm():
    return keras.Sequential(
        [keras.Input((5, 2)), keras.layers.LSTM(4, return_sequences=True), keras.layers.GRU(3)]
    )


def _embedding():
    inputs = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(20, 4)(inputs)
    h = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(h))


def _preprocessing():
    return keras.Sequential(
        [
            keras.Input((10, 10, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Resizing(6, 6),
            keras.layers.Normalization(mean=0.5, variance=0.25),
            keras.layers.RandomFlip(),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )


@pytest.mark.parametrize("build", [_dense, _cnn, _lstm, _embedding, _preprocessing])
def test_real_keras_exports_pass_load_and_predict(build, tmp_path):
    keras.utils.set_random_seed(1)
    model = build()
    folder = _export(model, tmp_path / "sm")
    check_saved_model(folder)
    shape = (3, *model.inputs[0].shape[1:])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 20, shape) if model.inputs[0].dtype == "int32" else rng.random(shape)
    x = x.astype(model.inputs[0].dtype)
    loaded = load_model(folder)
    # (oneDNN may order the resize's float sums differently in the two graphs: 4e-4 apart)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-3)


def test_lookup_layers_with_inline_vocabularies_pass(tmp_path):
    inputs = keras.Input((1,), dtype="string")
    h = keras.layers.StringLookup(vocabulary=["a", "b", "c"], output_mode="one_hot")(inputs)
    folder = _export(keras.Model(inputs, keras.layers.Dense(1)(h)), tmp_path / "sm")
    check_saved_model(folder)


def test_the_allowlist_names_real_ops_and_none_that_touch_files():
    ops = set(dir(tf.raw_ops))
    assert ALLOWED_OPS | SAVER_OPS <= ops
    risky = {
        op
        for op in ops
        if any(
            word in op
            for word in (
                "File",
                "Summary",
                "PyFunc",
                "Dataset",
                "Iterator",
                "Save",
                "Restore",
                "Reader",
                "Print",
                "Debug",
                "Checkpoint",
                "Rpc",
                "Remote",
                "Send",
                "Recv",
            )
        )
    }
    assert len(risky) > 100  # the families are there to miss
    assert ALLOWED_OPS & risky == set()
    assert ALLOWED_OPS.isdisjoint({"ImmutableConst", "Empty", "XlaCallModule", "BatchFunction"})
