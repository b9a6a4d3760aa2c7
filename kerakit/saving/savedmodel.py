"""SavedModel folders: an allowlist of ops, checked before TensorFlow loads the graph.

A SavedModel is a graph, not a config: `check_saved_model` allows only the ops of
`ALLOWED_OPS` in every function and node, the checkpoint ops only in the saver
functions that restore the model's own variables, no assets and no string constant
naming a path outside the folder.
"""

from __future__ import annotations

import os
import re
from typing import Any

from kerakit.errors import ModelFileError
from kerakit.saving.refusals import MAX_CONFIG_BYTES, MAX_ZIP_MEMBERS, refuse

# A SavedModel is a TensorFlow graph, and every function of it may run: the served ones when
# you predict, the `_initialize`/`_create_resource` ones of its resources while
# `tf.saved_model.load` runs. So each op of each function, and of the graph's top level,
# must be one a served inference model needs. A denylist of dangerous ops is the wrong shape
# (every gap in Keras's safe mode was a gadget its list did not name): TensorFlow has over
# 1,500 ops, and those that write files (`Save`, `WriteFile`), create event files
# (`CreateSummaryFileWriter`), fill tables from files (`InitializeTableFromTextFileV2`),
# read checkpoints by path (`RestoreV2`), run Python (`PyFunc`) or read data sets keep
# arriving. Collected from `model.export(format="tf_saved_model")` of Keras's layers
# (Dense, Conv1D/2D/Transpose/Depthwise/Separable, pooling, BatchNormalization,
# LayerNormalization, Dropout, LSTM/GRU (also cuDNN), Bidirectional, Embedding,
# MultiHeadAttention, Normalization, Rescaling, Resizing, the random augmentation layers,
# StringLookup/IntegerLookup/TextVectorization with inline vocabularies, CategoryEncoding),
# of keras.applications (VGG16, ResNet50, MobileNetV2, EfficientNetB0), of kerakit's own
# layers and configs, plus the rest of the same math, array and control-flow families.
_ALLOWED = """
Const Identity IdentityN NoOp Placeholder PlaceholderWithDefault StopGradient PreventGradient
Snapshot EnsureShape CheckNumerics CheckNumericsV2 Assert
PartitionedCall StatefulPartitionedCall If StatelessIf While StatelessWhile Case StatelessCase
Switch Merge Enter Exit NextIteration LoopCond ControlTrigger
EmptyTensorList TensorListReserve TensorListFromTensor TensorListGetItem TensorListSetItem
TensorListStack TensorListPushBack TensorListPopBack TensorListLength TensorListElementShape
TensorListConcatV2 TensorListSplit TensorListGather TensorListScatterIntoExistingList
TensorListResize TensorListConcatLists TensorListPushBackBatch TensorListScatterV2
VarHandleOp ReadVariableOp VarIsInitializedOp VariableShape AssignVariableOp
AssignAddVariableOp AssignSubVariableOp ResourceGather ResourceGatherNd
Abs Acos Acosh Add AddV2 AddN Angle ApproximateEqual Asin Asinh Atan Atan2 Atanh BesselI0e
BesselI1e Betainc Ceil ClipByValue Complex ComplexAbs Conj Cos Cosh Cross Cumprod Cumsum
CumulativeLogsumexp Digamma Div DivNoNan Equal Erf Erfc Erfinv Exp Expm1 Floor FloorDiv
FloorMod Greater GreaterEqual Igamma Igammac Imag Inv Reciprocal IsFinite IsInf IsNan Less
LessEqual Lgamma Log Log1p LogicalAnd LogicalNot LogicalOr Maximum Minimum Mod Mul MulNoNan
Ndtri Neg NextAfter NotEqual Polygamma Pow RealDiv Real Rint Round Rsqrt Sigmoid Sign Sin
Sinh Sqrt Square SquaredDifference Sub Tan Tanh TruncateDiv TruncateMod Xdivy Xlogy Xlog1py
Zeta Select SelectV2 Cast Bitcast BitwiseAnd BitwiseOr BitwiseXor LeftShift RightShift Invert
PopulationCount MatMul BatchMatMul BatchMatMulV2 BatchMatMulV3 Einsum SparseMatMul
Sum Mean Max Min Prod All Any ArgMax ArgMin EuclideanNorm Range LinSpace Bucketize
SegmentSum SegmentMax SegmentMin SegmentMean SegmentProd UnsortedSegmentSum
UnsortedSegmentMax UnsortedSegmentMin UnsortedSegmentProd Bincount DenseBincount TopKV2
InTopKV2 LowerBound UpperBound
Relu Relu6 Elu Selu LeakyRelu Softplus Softsign Softmax LogSoftmax BiasAdd BiasAddV1 L2Loss
LRN Conv Conv2D Conv3D Conv2DBackpropInput Conv3DBackpropInputV2 DepthwiseConv2dNative
DepthwiseConv2dNativeBackpropInput Dilation2D MaxPool MaxPoolV2 MaxPool3D AvgPool AvgPool3D
MaxPoolWithArgmax FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3
BatchNormWithGlobalNormalization CudnnRNN CudnnRNNV2 CudnnRNNV3 CudnnRNNParamsSize
CudnnRNNCanonicalToParams CudnnRNNCanonicalToParamsV2 CudnnRNNParamsToCanonical
CudnnRNNParamsToCanonicalV2 DataFormatDimMap DataFormatVecPermute
Reshape Shape ShapeN Size Rank ExpandDims Squeeze Transpose ConjugateTranspose ConcatV2
Concat ConcatOffset Pack Unpack Split SplitV Slice StridedSlice Tile Pad PadV2 MirrorPad Fill
ZerosLike OnesLike GatherV2 Gather GatherNd ScatterNd TensorScatterUpdate TensorScatterAdd
TensorScatterSub TensorScatterMax TensorScatterMin Where OneHot Reverse ReverseV2
ReverseSequence BroadcastTo BroadcastArgs BroadcastGradientArgs Unique UniqueV2
UniqueWithCounts SpaceToBatchND BatchToSpaceND SpaceToDepth DepthToSpace MatrixBandPart
MatrixDiag MatrixDiagV2 MatrixDiagV3 MatrixDiagPart MatrixDiagPartV2 MatrixDiagPartV3
MatrixSetDiag MatrixSetDiagV2 MatrixSetDiagV3 Diag DiagPart InvertPermutation
ExtractImagePatches ListDiff Roll RandomShuffle
Cholesky MatrixInverse MatrixDeterminant LogMatrixDeterminant Qr Svd SelfAdjointEigV2
MatrixTriangularSolve MatrixSolve Lu FFT IFFT FFT2D IFFT2D FFT3D IFFT3D RFFT IRFFT RFFT2D
IRFFT2D RFFT3D IRFFT3D
ResizeBilinear ResizeNearestNeighbor ResizeBicubic ResizeArea ScaleAndTranslate
CropAndResize AdjustContrastv2 AdjustHue AdjustSaturation RGBToHSV HSVToRGB
ImageProjectiveTransformV2 ImageProjectiveTransformV3 NonMaxSuppressionV5
RandomUniform RandomUniformInt RandomStandardNormal TruncatedNormal Multinomial
StatelessRandomUniform StatelessRandomNormal StatelessTruncatedNormal
StatelessRandomUniformInt StatelessRandomUniformV2 StatelessRandomNormalV2
StatelessTruncatedNormalV2 StatelessRandomUniformIntV2 StatelessRandomUniformFullIntV2
StatelessRandomGetKeyCounter StatelessRandomGetKeyCounterAlg StatelessRandomGetAlg
StatelessMultinomial StatelessRandomBinomial FakeQuantWithMinMaxArgs FakeQuantWithMinMaxVars
FakeQuantWithMinMaxVarsPerChannel
RaggedTensorToTensor RaggedRange StringLower StringUpper StaticRegexReplace StringSplitV2
StringNGrams StringToHashBucketFast StringToHashBucketStrong StringLength Substr StringStrip
UnicodeDecodeWithOffsets AsString
HashTableV2 InitializeTableV2 LookupTableImportV2 LookupTableFindV2 LookupTableSizeV2
"""
# The last line: Keras's lookup layers keep an inline vocabulary in an in-memory table
# (created, filled from constants, looked up). Tables filled from files are not allowed.
ALLOWED_OPS = frozenset(_ALLOWED.split())
# The checkpoint ops every SavedModel has, allowed only in the saver functions that
# `saver_def` names (TensorFlow's `_traced_save` / `_traced_restore`), and there only on a
# path made of the filename TensorFlow passes in (the folder's own variables/variables) and
# relative suffixes such as "_temp/part": never in a function the served model can reach.
SAVER_OPS = frozenset(
    {
        "SaveV2",
        "RestoreV2",
        "MergeV2Checkpoints",
        "ShardedFilename",
        "StringJoin",
        "StaticRegexFullMatch",
        "DisableCopyOnRead",
    }
)
_CHECKPOINT_OPS = {"SaveV2": (0,), "RestoreV2": (0,), "MergeV2Checkpoints": (0, 1)}
_CALL_OPS = ("PartitionedCall", "StatefulPartitionedCall")
# What a refused op would do, by a word in its name (first match wins).
_OP_RISKS = (
    (("Save", "Restore", "Checkpoint"), "reads or writes a checkpoint at a path the graph names"),
    (("Summary",), "writes TensorBoard event files"),
    (("PyFunc",), "runs Python code"),
    (("TableFrom", "TextFile"), "fills a lookup table from a file"),
    (("Dataset", "Iterator"), "reads a data set (files, a database, ...)"),
    (("File", "Reader", "ImmutableConst"), "reads or writes files"),
    (("Print", "Debug"), "writes tensors to a stream or a file"),
    (("Send", "Recv", "Rpc", "Remote", "Collective"), "talks to other processes or machines"),
    (("Table", "Resource", "Variable", "Writer"), "creates or uses a resource"),
)
_SAVED_MODEL_RULE = (
    "a SavedModel kerakit loads may use only math, array, neural-network, control-flow and "
    "variable ops (kerakit.saving.savedmodel.ALLOWED_OPS), and reads no file but its own"
)


def check_saved_model(folder: str | os.PathLike) -> None:
    """Refuse a SavedModel that could read or write files, or run anything but inference.

    Checks, before TensorFlow loads a byte: every op of every function and of the graph's
    top level is in `ALLOWED_OPS`; the checkpoint ops (`SAVER_OPS`) sit only in the saver
    functions of `saver_def`, on the filename TensorFlow passes in; no assets; no string
    constant that is an absolute path, a file-system URL or a path with `..`; no link out of
    the folder.

    Args:
        folder: a TensorFlow SavedModel folder (holds `saved_model.pb`).

    Raises:
        ModelFileError: naming the op (or asset, constant, link), where it is and the risk.
    """
    folder = os.fspath(folder)
    _check_links(folder)
    proto = _read_saved_model(folder)
    for graph in proto.meta_graphs:
        _check_graph_ops(graph, folder)
    for graph in proto.meta_graphs:
        _check_assets(graph, folder)
        _check_strings(graph, folder)


def _read_saved_model(folder: str) -> Any:
    pb = os.path.join(folder, "saved_model.pb")
    try:
        size = os.path.getsize(pb)
    except OSError:
        raise ModelFileError(f"{folder}: not a SavedModel (no saved_model.pb)") from None
    if size > 16 * MAX_CONFIG_BYTES:
        raise refuse(folder, f"its saved_model.pb is {size} bytes")
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        with open(pb, "rb") as f:
            proto.ParseFromString(f.read(size + 1))
    except Exception as e:  # protobuf's DecodeError has no stable import path
        raise ModelFileError(f"{folder}: the SavedModel is corrupt ({e})") from None
    return proto


def _node_name(ref: str) -> str:
    """'name:output:0', 'name:0', '^name' -> 'name' (a node or a function argument)."""
    return ref.lstrip("^").split(":")[0]


def _data_inputs(node: Any) -> list:
    return [ref for ref in node.input if not ref.startswith("^")]


def _runs(node: Any) -> set:
    """Every name a node runs: its op and its function-valued attributes (`f` of a call,
    `body` of a While, ...). TensorFlow runs a registered op named there, too."""
    out = {node.op}
    stack = list(node.attr.values())
    while stack:
        value = stack.pop()
        funcs = [value.func] if value.HasField("func") else list(value.list.func)
        for func in funcs:
            out.add(func.name)
            stack.extend(func.attr.values())
    return out


def _called(node: Any, library: dict) -> set:
    """The library functions a node calls."""
    return _runs(node) & library.keys()


def _reach(roots: set, calls: dict) -> set:
    seen, stack = set(), list(roots)
    while stack:
        name = stack.pop()
        if name in seen or name not in calls:
            continue
        seen.add(name)
        stack.extend(calls[name])
    return seen


def _op_risk(op: str) -> tuple[int, str]:
    """(rank, risk) of a refused op: the lower the rank, the more it says about the file."""
    for rank, (words, risk) in enumerate(_OP_RISKS):
        if op not in SAVER_OPS - _CHECKPOINT_OPS.keys() and any(word in op for word in words):
            return rank, risk
    if op in SAVER_OPS:
        return len(_OP_RISKS), "belongs only in the saver functions that saver_def names"
    return len(_OP_RISKS) + 1, "is not an op an inference model needs"


def _check_graph_ops(graph: Any, folder: str) -> None:
    library = {f.signature.name: f for f in graph.graph_def.library.function}
    top = {node.name: node for node in graph.graph_def.node}
    unique = len(library) == len(graph.graph_def.library.function) and len(top) == len(
        graph.graph_def.node
    )
    for function in graph.graph_def.library.function:
        unique = unique and len({n.name for n in function.node_def}) == len(function.node_def)
    if not unique:  # TensorFlow refuses these too; kerakit's checks look nodes up by name
        raise refuse(folder, "its graph has two functions or nodes of the same name")
    calls = {
        name: set().union(*(_called(n, library) for n in f.node_def)) for name, f in library.items()
    }
    saver = graph.saver_def
    saver_nodes = {_node_name(saver.restore_op_name), _node_name(saver.save_tensor_name)}
    saver_nodes &= top.keys()
    # The saver functions are those only the saver_def nodes reach: a function that a
    # served one (or an object, or any other node) can call is checked as served.
    saver_reach = _reach(set().union(*(_called(top[n], library) for n in saver_nodes)), calls)
    served_roots = (library.keys() - saver_reach) | set(graph.object_graph_def.concrete_functions)
    for name, node in top.items():
        if name not in saver_nodes:
            served_roots |= _called(node, library)
    saver_only = saver_reach - _reach(served_roots, calls)

    refused = []  # (op, where)
    for name, node in top.items():  # the saver nodes too: they must be plain calls
        for op in sorted(_runs(node) - library.keys() - ALLOWED_OPS):
            refused.append((op, f"the graph's top level (node {name!r})"))
    for name, function in library.items():
        allowed = ALLOWED_OPS | SAVER_OPS if name in saver_only else ALLOWED_OPS
        for node in function.node_def:
            for op in sorted(_runs(node) - library.keys() - allowed):
                refused.append((op, f"the function {name!r}"))
    if refused:
        # Name the op whose risk is known first; list a few others.
        refused.sort(key=lambda r: _op_risk(r[0])[0])  # stable: graph order within a rank
        op, where = refused[0]
        others = sorted({r[0] for r in refused} - {op})
        also = f" (also refused: {', '.join(others[:6])})" if others else ""
        raise refuse(
            folder,
            f"the TensorFlow op {op!r} in {where} {_op_risk(op)[1]}{also}; {_SAVED_MODEL_RULE}",
        )
    _check_saver(graph, folder, library, top, saver_nodes, saver_only)


def _check_saver(graph, folder, library, top, saver_nodes, saver_only) -> None:
    """The checkpoint ops read and write only the folder's own variables: the path TensorFlow
    feeds to `saver_def.filename_tensor_name` when it restores, plus relative suffixes."""
    filename = _node_name(graph.saver_def.filename_tensor_name)
    feed = top.get(filename)
    roots = {}  # saver function -> its filename argument
    for name in sorted(saver_nodes):
        node = top[name]
        called = _called(node, library) & saver_only
        where = f"the saver node {name!r}"
        if not called:
            continue
        if len(called) != 1 or (node.op not in _CALL_OPS and node.op not in library):
            raise refuse(folder, f"{where} is not a plain function call")
        (fn,) = called
        inputs = [_node_name(ref) for ref in _data_inputs(node)]
        if feed is None or feed.op != "Placeholder" or filename not in inputs:
            raise refuse(
                folder,
                f"{where} does not take its checkpoint path from the SavedModel's own "
                f"variables folder (saver_def filename {filename!r}); {_SAVED_MODEL_RULE}",
            )
        args = library[fn].signature.input_arg
        index = inputs.index(filename)
        if index >= len(args) or roots.get(fn, args[index].name) != args[index].name:
            raise refuse(folder, f"{where} passes its checkpoint path oddly")
        roots[fn] = args[index].name
    for fn in sorted(saver_only):
        nodes = {n.name: n for n in library[fn].node_def}
        for node in library[fn].node_def:
            if node.op not in _CHECKPOINT_OPS:
                continue
            inputs = _data_inputs(node)
            ok = fn in roots and all(
                i < len(inputs) and _prefix_ok(inputs[i], nodes, roots[fn], 0)
                for i in _CHECKPOINT_OPS[node.op]
            )
            if not ok:
                raise refuse(
                    folder,
                    f"the TensorFlow op {node.op!r} (node {node.name!r}) in the saver function "
                    f"{fn!r} {_op_risk(node.op)[1]}, not the SavedModel's own variables; "
                    f"{_SAVED_MODEL_RULE}",
                )


def _prefix_ok(ref: str, nodes: dict, arg: str, depth: int) -> bool:
    """A checkpoint path made of the saver's filename argument and relative suffixes, the
    way TensorFlow builds it: StringJoin(filename, Select(s3?, ".part", "_temp/part"))."""
    name = _node_name(ref)
    if name == arg:
        return True
    node = nodes.get(name)
    if node is None or depth > 16:
        return False
    inputs = _data_inputs(node)
    if node.op == "Identity" or (node.op == "ShardedFilename" and inputs):
        return _prefix_ok(inputs[0], nodes, arg, depth + 1)
    if node.op == "Pack":
        return all(_prefix_ok(i, nodes, arg, depth + 1) for i in inputs)
    if node.op == "StringJoin" and inputs:
        separator = node.attr["separator"].s.decode("utf-8", "replace")
        return (
            not _escapes(separator)
            and _prefix_ok(inputs[0], nodes, arg, depth + 1)
            and all(_suffix_ok(i, nodes, depth + 1) for i in inputs[1:])
        )
    return False


def _suffix_ok(ref: str, nodes: dict, depth: int) -> bool:
    node = nodes.get(_node_name(ref))
    if node is None or depth > 16:
        return False
    inputs = _data_inputs(node)
    if node.op == "Const":
        tensor = node.attr["value"].tensor
        return not any(_escapes(s.decode("utf-8", "replace")) for s in tensor.string_val)
    if node.op in ("Select", "SelectV2") and len(inputs) == 3:
        return all(_suffix_ok(i, nodes, depth + 1) for i in inputs[1:])
    if node.op == "Identity" and inputs:
        return _suffix_ok(inputs[0], nodes, depth + 1)
    return False


def _escapes(text: str) -> bool:
    return ".." in text.replace("\\", "/").split("/")


def _outside_path(text: str) -> str | None:
    """Why a string constant names a place outside the model folder, or None."""
    if not text or len(text) > 4096 or any(ord(c) < 32 for c in text):
        return None  # binary (a serialized proto), or too long to be a path
    path = text.replace("\\", "/")
    if re.match(r"(file|gs|s3|hdfs|viewfs|ram|az)://", path, re.IGNORECASE):
        return "a file-system URL"  # TensorFlow's file ops open these (http:// they do not)
    if (len(path) > 1 and path.startswith("/")) or re.match(r"[A-Za-z]:/", path):
        return "an absolute path"
    if _escapes(path):
        return "a path with '..'"
    return None


def _check_strings(graph: Any, folder: str) -> None:
    places = [("the graph's top level", graph.graph_def.node)]
    for function in graph.graph_def.library.function:
        places.append((f"the function {function.signature.name!r}", function.node_def))
    for where, nodes in places:
        for node in nodes:
            if node.op != "Const":
                continue
            for raw in node.attr["value"].tensor.string_val:
                text = raw.decode("utf-8", "replace")
                why = _outside_path(text)
                if why:
                    raise refuse(
                        folder,
                        f"the string constant {text[:200]!r} (node {node.name!r}) in {where} is "
                        f"{why}, outside the model folder; {_SAVED_MODEL_RULE}",
                    )


def _check_assets(graph: Any, folder: str) -> None:
    risk = (
        "TensorFlow hands an asset's path to the graph when it loads, for ops that read files "
        "(vocabulary files, tables): a SavedModel kerakit loads carries no assets"
    )
    for asset in graph.asset_file_def:
        raise refuse(folder, f"it declares the asset {asset.filename!r} (asset_file_def); {risk}")
    for node in graph.object_graph_def.nodes:
        if node.WhichOneof("kind") == "asset":
            raise refuse(folder, f"its object graph holds an asset; {risk}")
    assets = os.path.join(folder, "assets")
    if os.path.islink(assets) or (os.path.lexists(assets) and not os.path.isdir(assets)):
        raise refuse(folder, f"its assets folder is not a plain folder; {risk}")
    if os.path.isdir(assets):
        with os.scandir(assets) as entries:
            first = next(entries, None)
        if first is not None:
            raise refuse(folder, f"its assets folder holds {first.name!r}; {risk}")


def _check_links(folder: str) -> None:
    """No file or folder of the SavedModel is a link to somewhere outside it."""
    root = os.path.realpath(folder)
    seen = 0
    for here, dirs, files in os.walk(folder):
        for name in dirs + files:
            seen += 1
            if seen > MAX_ZIP_MEMBERS:
                raise refuse(folder, f"it holds over {MAX_ZIP_MEMBERS} files")
            path = os.path.join(here, name)
            if not os.path.islink(path):
                continue
            target = os.path.realpath(path)
            if os.path.commonpath([root, target]) != root:
                rel = os.path.relpath(path, folder)
                raise refuse(folder, f"{rel!r} is a link to {target!r}, outside the model folder")
