"""A SavedModel's functions, each loaded on first use (fast start-up).

`tf.saved_model.load` rebuilds every traced function of an export (the
codec export of digits holds 359 FunctionDefs: every signature, sampling,
ELBOs, ...) as a Python graph, which took about 10 s on the 2-core CPU.
`LazyExport` reads saved_model.pb once and, when a function of the root
object is first used (`export.encode`), registers only the FunctionDefs that
it reaches (21 of the 359 for the codec's `encode`) in the eager context,
under names made unique to this load, and binds its captured inputs: the
root's variables, created once from the variables checkpoint and shared by
all functions (so `export.use_xla.assign(...)` reaches every function that
reads it), and captured constants from the export's graph. A call then runs
the same FunctionDefs with the same inputs as the function that
`tf.saved_model.load` gives, so the outputs are the same to the bit; a
caller that knows which branch its Case ops take can pin them to it
(`LazyExport.function(name, case_branch)`), which removes the other
branches from the graph that the first call instantiates.

`LazyExport.unsupported(names)` says why functions can't be loaded this way
(a function with several traces, or one that captures anything other than a
variable or a constant, such as a lookup table or an asset); the caller then
falls back to `tf.saved_model.load`.
"""
import itertools
import os

import tensorflow as tf

from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-direct-tensorflow-import
from tensorflow.core.protobuf import trackable_object_graph_pb2  # pylint: disable=g-direct-tensorflow-import
from tensorflow.python.eager import context  # pylint: disable=g-direct-tensorflow-import
from tensorflow.python.framework import op_def_registry  # pylint: disable=g-direct-tensorflow-import

# Suffixes that keep the FunctionDef names of each load apart (two exports
# may hold different functions under the same name).
_LOADS = itertools.count()
_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


def read_meta_graph(export_dir):
  """The MetaGraphDef of a SavedModel directory (its only one)."""
  saved = saved_model_pb2.SavedModel()
  with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
    saved.ParseFromString(f.read())
  if len(saved.meta_graphs) != 1:
    raise ValueError(f"{export_dir} holds {len(saved.meta_graphs)} meta graphs, not 1")
  return saved.meta_graphs[0]


def _may_call(op, cache={}):  # pylint: disable=dangerous-default-value
  """Whether a node of type `op` may name a function in its attributes: its
  OpDef has a func or list(func) attr, or it has no registered OpDef."""
  if op not in cache:
    op_def = op_def_registry.get(op)
    cache[op] = op_def is None or any(a.type in ("func", "list(func)") for a in op_def.attr)
  return cache[op]


def _called(fdef, library):
  """Names of the library functions that a FunctionDef calls directly."""
  out = set()
  for node in fdef.node_def:
    op = node.op
    if op in library:
      out.add(op)
    if not _may_call(op):
      continue
    for value in node.attr.values():
      if value.HasField("func"):
        out.add(value.func.name)
      out.update(f.name for f in value.list.func)
  return out


def reached(name, library, called=None):
  """The names of the FunctionDefs that function `name` reaches, itself
  included. library: {name: FunctionDef}; KeyError for a missing one.
  called: a dict that memoizes `_called` per name across calls."""
  called = {} if called is None else called
  seen, todo = set(), [name]
  while todo:
    current = todo.pop()
    if current not in seen:
      seen.add(current)
      if current not in called:
        called[current] = _called(library[current], library)
      todo.extend(called[current] - seen)
  return seen


def _structure(value):
  """The nest of a saved StructuredValue proto, with None for each tensor
  (to pack flat tensors into with tf.nest.pack_sequence_as)."""
  kind = value.WhichOneof("kind")
  if kind in ("tensor_spec_value", "bounded_tensor_spec_value"):
    return None
  if kind == "none_value":
    return ()
  if kind == "dict_value":
    return {k: _structure(v) for k, v in value.dict_value.fields.items()}
  if kind in ("tuple_value", "list_value"):
    items = [_structure(v) for v in getattr(value, kind).values]
    return tuple(items) if kind == "tuple_value" else items
  raise ValueError(f"a function output of kind {kind}")


def _renamed(fdef, names):
  """A copy of fdef with every function name in `names` ({old: new}) replaced."""
  out = type(fdef)()
  out.CopyFrom(fdef)
  out.signature.name = names[fdef.signature.name]
  for node in out.node_def:
    if node.op in names:
      node.op = names[node.op]
    if not _may_call(node.op):
      continue
    for value in node.attr.values():
      if value.HasField("func") and value.func.name in names:
        value.func.name = names[value.func.name]
      for f in value.list.func:
        if f.name in names:
          f.name = names[f.name]
  return out


class _Graph:
  """The parts of saved_model.pb that loading functions needs."""

  def __init__(self, export_dir):
    meta = read_meta_graph(export_dir)
    self.objects = meta.object_graph_def
    self.library = {f.signature.name: f for f in meta.graph_def.library.function}
    self.graph_nodes = {n.name: n for n in meta.graph_def.node}
    self.children = {c.local_name: c.node_id for c in self.objects.nodes[0].children}
    self.called = {}  # Memo of reached().

  def concrete(self, name):
    """The SavedConcreteFunction name of root function `name`, or None."""
    node_id = self.children.get(name)
    if node_id is None or self.objects.nodes[node_id].WhichOneof("kind") != "function":
      return None
    names = self.objects.nodes[node_id].function.concrete_functions
    return names[0] if len(names) == 1 else None

  def why_not(self, name):
    """Why root function `name` can't be loaded lazily, or None if it can."""
    concrete = self.concrete(name)
    if concrete is None:
      return f"{name} is not a function with one trace"
    try:
      reached(concrete, self.library, self.called)
      _structure(self.objects.concrete_functions[concrete].output_signature)
    except ValueError as e:
      return f"{name} returns {e}"
    except KeyError as e:
      return f"{name} calls {e}, which the export lacks"
    for node_id in self.objects.concrete_functions[concrete].bound_inputs:
      kind = self.objects.nodes[node_id].WhichOneof("kind")
      if kind not in ("variable", "constant"):
        return f"{name} captures a {kind}"
    return None


def _pin_cases(fdef, branch):
  """fdef with every Case op replaced by a call of its branch `branch` (the
  branch index input kept as a control input, so it still runs first)."""
  for node in fdef.node_def:
    if node.op in ("Case", "StatelessCase"):
      name = node.attr["branches"].list.func[branch].name
      keep = {k: node.attr[k] for k in ("Tin", "Tout")}
      index, args = node.input[0], list(node.input[1:])
      node.op = "StatefulPartitionedCall"
      node.ClearField("attr")
      for k, v in keep.items():
        node.attr[k].CopyFrom(v)
      node.attr["f"].func.name = name
      node.attr["config_proto"].s = b""
      node.attr["executor_type"].s = b""
      del node.input[:]
      node.input.extend(args + ["^" + index.split(":")[0].lstrip("^")])
  return fdef


def _case_branches(fdefs):
  """The branch counts of the Case ops in FunctionDefs `fdefs`."""
  return [len(node.attr["branches"].list.func) for f in fdefs for node in f.node_def
          if node.op in ("Case", "StatelessCase")]


class LazyExport:
  """The root functions and variables of a SavedModel, loaded on first use.

  `export.f(*args)` calls root function f (loading it on the first call)
  with positional arguments as in its input signature and returns its
  outputs in their saved structure (a tensor, or a dict of tensors);
  `export.v` is root variable v (the same variable that the functions read).
  Each function's FunctionDefs are registered under names with a suffix
  unique to the load (`_lazy<N>`).
  `hasattr(export, name)` says whether the root has a function or variable
  `name`, without loading anything. `export.function(name, case_branch=i)`
  is f with every Case op that it reaches replaced by a call of its branch
  i: for a caller that knows the branch index those ops would compute (it
  then skips instantiating the other branches, seconds for big ones).
  Loading raises ValueError for a function that `unsupported` refuses.
  """

  def __init__(self, export_dir):
    """Reads saved_model.pb and the variables checkpoint's index: OSError,
    protobuf's DecodeError or tf.errors.OpError for a missing or corrupt one."""
    self._dir = export_dir
    self._graph = _Graph(export_dir)
    self._reader = tf.train.load_checkpoint(os.path.join(export_dir, "variables", "variables"))
    objects = trackable_object_graph_pb2.TrackableObjectGraph()
    objects.ParseFromString(self._reader.get_tensor(_OBJECT_GRAPH_KEY))
    self._keys = {i: a.checkpoint_key for i, node in enumerate(objects.nodes)
                  for a in node.attributes if a.name == "VARIABLE_VALUE"}
    self._captured = {}  # Object node id -> tf.Variable or tensor.
    self._functions = {}  # (name, case_branch) -> callable.

  def __getattr__(self, name):
    if name.startswith("_"):
      raise AttributeError(name)
    node_id = self._graph.children.get(name)
    kind = None if node_id is None else self._graph.objects.nodes[node_id].WhichOneof("kind")
    if kind == "variable":
      return self._capture(node_id)
    if kind != "function":
      raise AttributeError(f"the export in {self._dir} has no function or variable {name}")
    return lambda *args: self.function(name)(*args)

  def unsupported(self, names):
    """Why root functions `names` can't be loaded lazily, or None."""
    for name in names:
      reason = self._graph.why_not(name)
      if reason:
        return reason
    return None

  def function(self, name, case_branch=None):
    """Root function `name` as a Python callable, loaded once."""
    key = (name, case_branch)
    if key not in self._functions:
      self._functions[key] = self._load(name, case_branch)
    return self._functions[key]

  def _load(self, name, case_branch):
    graph = self._graph
    reason = graph.why_not(name)
    if reason:
      raise ValueError(f"cannot load {name} of {self._dir} lazily: {reason}")
    concrete = graph.concrete(name)
    library = graph.library
    closure = reached(concrete, library, graph.called)
    called = graph.called
    if case_branch is not None:
      branches = _case_branches(library[n] for n in closure)
      if not branches or min(branches) <= case_branch:
        raise ValueError(f"{name} of {self._dir} has no Case op with a branch "
                         f"{case_branch} (its Case ops have {branches} branches)")
      library, called = dict(library), dict(called)
      for n in closure:
        if _case_branches([library[n]]):
          del called[n]  # Recomputed below.
          copy = type(library[n])()
          copy.CopyFrom(library[n])
          library[n] = _pin_cases(copy, case_branch)
    # Fresh names (the suffix is unique to this load: TF never makes such
    # names, and two exports may hold different functions under one name).
    suffix = f"_lazy{next(_LOADS)}"
    names = {n: n + suffix for n in reached(concrete, library, called)}
    for n in sorted(names):
      context.context().add_function_def(_renamed(library[n], names))
    saved = graph.objects.concrete_functions[concrete]
    captured = [self._capture(i) for i in saved.bound_inputs]
    signature = library[concrete].signature
    # The FunctionDef's inputs: the flat arguments, then the captured ones.
    dtypes = [tf.dtypes.as_dtype(a.type)
              for a in signature.input_arg[:len(signature.input_arg) - len(captured)]]
    outputs = _structure(saved.output_signature)
    num_outputs = len(signature.output_arg)
    function = names[concrete].encode()

    def call(*args):
      flat = tf.nest.flatten(args)
      if len(flat) != len(dtypes):
        raise TypeError(f"{name} takes {len(dtypes)} inputs, got {len(flat)}")
      inputs = [tf.convert_to_tensor(x, dtype=d) for x, d in zip(flat, dtypes)]
      inputs += [c.handle if isinstance(c, tf.Variable) else c for c in captured]
      # As tf.saved_model.load's functions run: the function as an op, with
      # the context's call options (its config, e.g. grappler disabled).
      results = context.context().call_function(function, inputs, num_outputs)
      return tf.nest.pack_sequence_as(outputs, results or [])

    return call

  def _capture(self, node_id):
    """The variable (made once) or constant tensor of object node node_id."""
    if node_id not in self._captured:
      node = self._graph.objects.nodes[node_id]
      if node.WhichOneof("kind") == "constant":
        value = tf.make_ndarray(self._graph.graph_nodes[node.constant.operation].attr["value"].tensor)
        self._captured[node_id] = tf.constant(value)
      else:
        spec = node.variable
        value = self._reader.get_tensor(self._keys[node_id])
        self._captured[node_id] = tf.Variable(value, dtype=spec.dtype, trainable=False,
                                              name=spec.name or None)
    return self._captured[node_id]
