// Joining many small arrays into one: the copy behind fastmlp.stack / fastmlp.cat along
// dim 0 and default_collate's batches. One call checks every item, allocates the output
// and copies the items' bytes one after another; for 64 samples of 784 floats the Python
// loop it replaces cost as much as the copy itself.
//
//   join(items, stack, arrays=False) -> ndarray | None
//
// items: a list or tuple of fastmlp Tensors (objects holding their array in `_data`) and,
// with arrays=True (default_collate), NumPy arrays. stack=True: every item has item 0's
// shape S and the result is [n, *S]; stack=False (cat): every item has item 0's rank (>= 1)
// and trailing dims, and the result is [sum of dim 0, *trailing dims].
//
// Errors, raised before any memory is written: an item that is neither (TypeError, naming its
// position), and items whose shapes cannot be joined (RuntimeError with PyTorch's wording,
// naming the item's position and both shapes). None means "not a plain byte copy", and the
// caller takes its general path: an item requires grad, is not a NumPy array (a CuPy array),
// has another dtype than item 0 (PyTorch promotes), is not C-contiguous, holds Python objects,
// or (cat) has another rank than item 0 or is 0-d (the general path has those errors).
#include <Python.h>
#include <structmember.h>

#include <cstring>
#include <limits>

#include "bindings/args.h"
#include "bindings/families.h"

// The member kinds got Py_-prefixed names in Python 3.12; the old ones remain in structmember.h.
#ifndef Py_T_OBJECT_EX
#define Py_T_OBJECT_EX T_OBJECT_EX
#define Py_AUDIT_READ READ_RESTRICTED
#endif

namespace fastmlp::bind {
namespace {

// out[0 : sum(bytes)] = srcs[0][0 : bytes[0]] ++ srcs[1][0 : bytes[1]] ++ ...
void concat_bytes(char* out, const std::vector<const char*>& srcs, const std::vector<size_t>& bytes) {
  for (size_t i = 0; i < srcs.size(); ++i) {
    if (bytes[i] == 0) continue;
    std::memcpy(out, srcs[i], bytes[i]);
    out += bytes[i];
  }
}

std::string dims_str(const py::ssize_t* shape, int nd) {
  return shape_str(std::vector<index_t>(shape, shape + nd));
}

// Where a type keeps `_data` and `_requires_grad`, when both are __slots__ read by plain
// attribute lookup (fastmlp's Tensor and its subclasses). Reading the two slots directly costs a
// few nanoseconds an item where two attribute lookups cost about 100-200 ns: a stack of 64 rows
// of 784 floats took 25 us with the lookups and 12.5 us without (the copy is most of the rest).
struct SlotOffsets {
  PyTypeObject* type = nullptr;  // a strong reference: the address is never another type's
  Py_ssize_t data = -1, grad = -1;
};

Py_ssize_t member_offset(PyTypeObject* type, PyObject* name) {
  PyObject* descr = PyObject_GetAttr(reinterpret_cast<PyObject*>(type), name);
  if (descr == nullptr) {
    PyErr_Clear();
    return -1;
  }
  Py_ssize_t off = -1;
  if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
    const PyMemberDef* def = reinterpret_cast<PyMemberDescrObject*>(descr)->d_member;
    if (def->type == Py_T_OBJECT_EX && !(def->flags & Py_AUDIT_READ)) off = def->offset;
  }
  Py_DECREF(descr);
  return off;
}

const SlotOffsets* slot_offsets(PyTypeObject* type, PyObject* data_name, PyObject* grad_name) {
  static SlotOffsets cache[8];
  for (const SlotOffsets& c : cache) {
    if (c.type == type) return c.data >= 0 ? &c : nullptr;
  }
  if (type->tp_getattro != PyObject_GenericGetAttr) return nullptr;  // a __getattr(ibute)__ of its own
  for (SlotOffsets& c : cache) {
    if (c.type == nullptr) {
      const Py_ssize_t data = member_offset(type, data_name);
      const Py_ssize_t grad = member_offset(type, grad_name);
      Py_INCREF(type);
      c.type = type;
      c.data = data >= 0 && grad >= 0 ? data : -1;
      c.grad = grad;
      return c.data >= 0 ? &c : nullptr;
    }
  }
  return nullptr;  // more tensor types than the cache holds: attribute lookups
}

// The array an item stands for, as a new reference, or an empty object for an item that is
// neither an array (where `arrays` allows them) nor holds one in `_data`. Sets *grad when the item requires grad.
py::object array_of(py::handle item, bool arrays, bool* grad) {
  static PyObject* const data_name = PyUnicode_InternFromString("_data");
  static PyObject* const grad_name = PyUnicode_InternFromString("_requires_grad");
  auto& api = py::detail::npy_api::get();
  if (api.PyArray_Check_(item.ptr())) return arrays ? py::reinterpret_borrow<py::object>(item) : py::object();
  if (const SlotOffsets* slots = slot_offsets(Py_TYPE(item.ptr()), data_name, grad_name)) {
    char* base = reinterpret_cast<char*>(item.ptr());
    PyObject* data = *reinterpret_cast<PyObject**>(base + slots->data);
    PyObject* rg = *reinterpret_cast<PyObject**>(base + slots->grad);
    if (data != nullptr) {
      if (rg != nullptr && rg != Py_False) {
        const int truth = PyObject_IsTrue(rg);
        if (truth < 0) throw py::error_already_set();
        *grad = *grad || truth == 1;
      }
      return py::reinterpret_borrow<py::object>(data);
    }
  }
  PyObject* data = PyObject_GetAttr(item.ptr(), data_name);
  if (data == nullptr) {
    PyErr_Clear();
    return py::object();
  }
  py::object arr = py::reinterpret_steal<py::object>(data);
  PyObject* rg = PyObject_GetAttr(item.ptr(), grad_name);
  if (rg == nullptr) {
    PyErr_Clear();
  } else {
    const int truth = PyObject_IsTrue(rg);
    Py_DECREF(rg);
    if (truth < 0) throw py::error_already_set();
    *grad = *grad || truth == 1;
  }
  return arr;
}

py::object join(py::handle items, bool stack, bool accept_arrays) {
  const char* fn = stack ? "stack" : "cat";
  if (!py::isinstance<py::list>(items) && !py::isinstance<py::tuple>(items))
    type_error(fn, "tensors", "a list or tuple of tensors", items);
  // A tuple owns its items whatever the code run by the attribute reads below does to a list.
  py::tuple seq = py::isinstance<py::tuple>(items) ? py::reinterpret_borrow<py::tuple>(items)
                                                   : py::reinterpret_steal<py::tuple>(PyList_AsTuple(items.ptr()));
  if (!seq) throw py::error_already_set();
  const size_t n = seq.size();
  if (n == 0) throw std::runtime_error(str_cat(fn, "(): expected a non-empty list of Tensors"));

  auto& api = py::detail::npy_api::get();
  std::vector<py::object> arrays;  // holds each array for the length of the call
  arrays.reserve(n);
  std::vector<const char*> srcs;
  std::vector<size_t> bytes;
  srcs.reserve(n);
  bytes.reserve(n);
  bool plain = true;  // false: the caller's general path must do it (see the top of the file)
  bool grad = false;
  PyObject* descr0 = nullptr;
  int nd0 = 0;
  const py::ssize_t* shape0 = nullptr;
  index_t rows = 0;  // cat: the sum of dim 0
  for (size_t i = 0; i < n; ++i) {
    py::handle item = PyTuple_GET_ITEM(seq.ptr(), static_cast<py::ssize_t>(i));
    py::object arr = array_of(item, accept_arrays, &grad);
    if (!arr)
      throw py::type_error(str_cat("expected Tensor as element ", i, " in argument 0, but got ",
                                   std::string(py::str(py::type::handle_of(item).attr("__name__")))));
    if (!api.PyArray_Check_(arr.ptr())) {  // a CuPy array, or something odder: the general path says
      if (i == 0) return py::none();  // (and item 0's shape and dtype are what the others are checked against)
      plain = false;
      arrays.push_back(std::move(arr));
      continue;
    }
    auto* proxy = py::detail::array_proxy(arr.ptr());
    const int nd = proxy->nd;
    const py::ssize_t* shape = proxy->dimensions;
    if (i == 0) {
      descr0 = proxy->descr;
      nd0 = nd;
      shape0 = shape;
      if (!stack && nd == 0) plain = false;  // a 0-d tensor cannot be concatenated: said by the caller
    } else if (stack) {
      if (nd != nd0 || !std::equal(shape, shape + nd, shape0))
        throw std::runtime_error(str_cat("stack expects each tensor to be equal size, but got ", dims_str(shape0, nd0),
                                         " at entry 0 and ", dims_str(shape, nd), " at entry ", i));
    } else if (nd != nd0 || nd == 0) {
      plain = false;  // PyTorch's rules for mixed ranks (and its errors) live in the general path
    } else {
      for (int d = 1; d < nd; ++d) {
        if (shape[d] != shape0[d])
          throw std::runtime_error(str_cat("Sizes of tensors must match except in dimension 0. Expected size ",
                                           shape0[d], " but got size ", shape[d], " for tensor number ", i,
                                           " in the list (tensor 0 has shape ", dims_str(shape0, nd0), ", tensor ",
                                           i, " has shape ", dims_str(shape, nd), ")"));
      }
    }
    if (plain && nd > 0 && !stack) rows += shape[0];
    if (proxy->descr != descr0 && !api.PyArray_EquivTypes_(proxy->descr, descr0)) plain = false;
    if (!(proxy->flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_)) plain = false;
    srcs.push_back(proxy->data);
    arrays.push_back(std::move(arr));
  }
  if (!plain || grad) return py::none();

  py::dtype dt = py::reinterpret_borrow<py::dtype>(descr0);
  const char kind = dt.kind();
  if (kind == 'O' || kind == 'V') return py::none();  // objects are references, not bytes to copy
  std::vector<index_t> out_shape;
  if (stack) {
    out_shape.push_back(static_cast<index_t>(n));
    out_shape.insert(out_shape.end(), shape0, shape0 + nd0);
  } else {
    out_shape.push_back(rows);
    out_shape.insert(out_shape.end(), shape0 + 1, shape0 + nd0);
  }
  const index_t item_size = dt.itemsize();
  const index_t max_elements = std::numeric_limits<std::int64_t>::max() / std::max<index_t>(item_size, 1);
  checked_elements(out_shape, fn, "the result", max_elements);
  for (const py::object& a : arrays) {
    auto* proxy = py::detail::array_proxy(a.ptr());
    size_t count = 1;
    for (int d = 0; d < proxy->nd; ++d) count *= static_cast<size_t>(proxy->dimensions[d]);
    bytes.push_back(count * static_cast<size_t>(item_size));
  }
  py::array out(dt, std::vector<py::ssize_t>(out_shape.begin(), out_shape.end()));
  concat_bytes(static_cast<char*>(out.mutable_data()), srcs, bytes);
  return std::move(out);
}

}  // namespace

void bind_join(py::module_& m) {
  m.def("join", &join, py::arg("tensors"), py::arg("stack"), py::arg("arrays") = false,
        "Copy a list of fastmlp Tensors (and, with arrays=True, NumPy arrays) holding C-contiguous "
        "arrays of one dtype into one new array: "
        "stacked along a new dim 0 (stack=True) or concatenated along dim 0. Raises for shapes that "
        "cannot be joined (naming the position and both shapes) and returns None where the caller's "
        "general path must do it (grad, mixed dtypes, strided or non-NumPy arrays).");
}

}  // namespace fastmlp::bind
