/* finercam._core: the Python bindings of the C kernels, and nothing else.
 *
 * Layout: shared argument converters first (arrays, sizes, eps, status -> exception), then one
 * wrapper per kernel, then the method table and the multi-phase module definition. A new kernel
 * family adds its #include, its wrappers above the method table and one line in the table.
 *
 * Every wrapper: all PyObject pointers start NULL; arguments are checked with the GIL held and
 * before any output is allocated (TypeError / ValueError naming the argument); the loops run with
 * the GIL released; one `exit:` label releases everything once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <numpy/arrayobject.h>

#include <math.h>
#include <stdio.h>

#include "combine.h"
#include "normalize.h"
#include "resize.h"
#include "status.h"

/* ---------------------------------------------------------------- shared converters */

/* A new reference to `obj` as an aligned, C-contiguous, native float32 base-class ndarray of
 * `ndim` dimensions (`dims` names them in the message, e.g. "(N, h, w)"). float16 and float64 are
 * converted; anything that is not a float16/32/64 ndarray is a TypeError. Inputs are never
 * written: a conversion copies, a conforming array is returned as is. */
static PyArrayObject *as_float32(PyObject *obj, const char *name, int ndim, const char *dims)
{
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy array %s of float32, got %s", name,
                     dims, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *arr = (PyArrayObject *)obj;
    const int type = PyArray_TYPE(arr);
    if (type != NPY_FLOAT32 && type != NPY_FLOAT64 && type != NPY_FLOAT16) {
        PyObject *descr = PyObject_Str((PyObject *)PyArray_DESCR(arr));
        if (descr != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%s must hold float32 (float16 and float64 are converted), got dtype %U",
                         name, descr);
            Py_DECREF(descr);
        }
        return NULL;
    }
    if (PyArray_NDIM(arr) != ndim) {
        PyErr_Format(PyExc_ValueError, "%s must be a %d-d array %s, got %d-d", name, ndim, dims,
                     PyArray_NDIM(arr));
        return NULL;
    }
    PyArray_Descr *f32 = PyArray_DescrFromType(NPY_FLOAT32);
    if (f32 == NULL) {
        return NULL;
    }
    /* steals f32 */
    return (PyArrayObject *)PyArray_FromArray(
        arr, f32, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_ENSUREARRAY | NPY_ARRAY_FORCECAST);
}

/* Spatial dimensions of a map argument must be >= 1. */
static int check_spatial(PyArrayObject *arr, const char *name)
{
    const int nd = PyArray_NDIM(arr);
    const npy_intp h = PyArray_DIM(arr, nd - 2), w = PyArray_DIM(arr, nd - 1);
    if (h < 1 || w < 1) {
        PyErr_Format(PyExc_ValueError, "%s must have h, w >= 1, got h=%zd, w=%zd", name,
                     (Py_ssize_t)h, (Py_ssize_t)w);
        return -1;
    }
    return 0;
}

/* A positive integer (Python int or NumPy integer, not bool) that fits in Py_ssize_t. */
static int as_size(PyObject *obj, const char *name, Py_ssize_t *out)
{
    int status = -1, overflow = 0;
    PyObject *index = NULL;
    if (PyBool_Check(obj) || !PyIndex_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, got %s", name, Py_TYPE(obj)->tp_name);
        goto exit;
    }
    if ((index = PyNumber_Index(obj)) == NULL) {
        goto exit;
    }
    const long long v = PyLong_AsLongLongAndOverflow(index, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        goto exit;
    }
    if (overflow > 0 || v > PY_SSIZE_T_MAX) {
        PyErr_Format(PyExc_ValueError, "%s is too large: %R", name, obj);
        goto exit;
    }
    if (overflow < 0 || v < 1) {
        PyErr_Format(PyExc_ValueError, "%s must be positive, got %R", name, obj);
        goto exit;
    }
    *out = (Py_ssize_t)v;
    status = 0;
exit:
    Py_XDECREF(index);
    return status;
}

static int check_eps(double eps)
{
    if (!(eps >= 0.0) || !isfinite(eps)) {
        PyObject *v = PyFloat_FromDouble(eps);
        if (v != NULL) {
            PyErr_Format(PyExc_ValueError, "eps must be finite and >= 0, got %R", v);
            Py_DECREF(v);
        }
        return -1;
    }
    return 0;
}

/* The output byte count n * h * w * 4 (and each factor product) must fit before allocating. */
static int check_output(npy_intp a, npy_intp b, npy_intp c, npy_intp d, const char *what)
{
    ptrdiff_t bytes = (ptrdiff_t)sizeof(float);
    if (!fc_mul_ok(&bytes, a) || !fc_mul_ok(&bytes, b) || !fc_mul_ok(&bytes, c) ||
        !fc_mul_ok(&bytes, d) || !fc_mul_ok(&bytes, 2) /* room for the double scratch */) {
        PyErr_Format(PyExc_ValueError, "%s is too large: the output would not fit in memory",
                     what);
        return -1;
    }
    return 0;
}

static PyArrayObject *new_output(int ndim, const npy_intp *dims)
{
    return (PyArrayObject *)PyArray_SimpleNew(ndim, (npy_intp *)dims, NPY_FLOAT32);
}

/* Turns a kernel status into an exception; returns -1 when it set one. */
static int raise_status(int status)
{
    switch (status) {
    case FC_OK:
        return 0;
    case FC_EOVERFLOW:
        PyErr_SetString(PyExc_ValueError, "array sizes overflow the address space");
        return -1;
    default:
        PyErr_NoMemory();
        return -1;
    }
}

static fc_resize_plan *new_plan(npy_intp h, npy_intp w, Py_ssize_t H, Py_ssize_t W,
                                int align_corners)
{
    int status = FC_OK;
    fc_resize_plan *plan = fc_resize_plan_new(h, w, H, W, align_corners, &status);
    if (plan == NULL) {
        raise_status(status == FC_OK ? FC_ENOMEM : status);
    }
    return plan;
}

/* ---------------------------------------------------------------- combine.c */

PyDoc_STRVAR(combine_doc,
"combine(activations, weights, relu)\n--\n\n"
"out[n, g] = sum_k weights[n, g, k] * activations[n, k]; activations (N, K, h, w),\n"
"weights (N, G, K) -> (N, G, h, w) float32, ReLU'd when relu is true.");

static PyObject *py_combine(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *a_obj, *w_obj;
    int relu, status = FC_OK;
    PyArrayObject *A = NULL, *Wt = NULL, *out = NULL;
    if (!PyArg_ParseTuple(args, "OOp:combine", &a_obj, &w_obj, &relu)) {
        goto exit;
    }
    if ((A = as_float32(a_obj, "activations", 4, "(N, K, h, w)")) == NULL ||
        (Wt = as_float32(w_obj, "weights", 3, "(N, G, K)")) == NULL ||
        check_spatial(A, "activations") < 0) {
        goto exit;
    }
    const npy_intp *ad = PyArray_DIMS(A), *wd = PyArray_DIMS(Wt);
    if (wd[0] != ad[0] || wd[2] != ad[1]) {
        PyErr_Format(PyExc_ValueError,
                     "weights (N, G, K) = (%zd, %zd, %zd) does not match activations "
                     "(N, K, h, w) = (%zd, %zd, %zd, %zd)",
                     (Py_ssize_t)wd[0], (Py_ssize_t)wd[1], (Py_ssize_t)wd[2], (Py_ssize_t)ad[0],
                     (Py_ssize_t)ad[1], (Py_ssize_t)ad[2], (Py_ssize_t)ad[3]);
        goto exit;
    }
    const npy_intp dims[4] = {ad[0], wd[1], ad[2], ad[3]};
    if (check_output(dims[0], dims[1], dims[2], dims[3], "weights") < 0 ||
        (out = new_output(4, dims)) == NULL) {
        goto exit;
    }
    Py_BEGIN_ALLOW_THREADS
    status = fc_combine(PyArray_DATA(A), PyArray_DATA(Wt), ad[0], ad[1], wd[1], ad[2] * ad[3],
                        relu, PyArray_DATA(out));
    Py_END_ALLOW_THREADS
    if (raise_status(status) < 0) {
        Py_CLEAR(out);
    }
exit:
    Py_XDECREF(A);
    Py_XDECREF(Wt);
    return (PyObject *)out;
}

PyDoc_STRVAR(combine_pixelwise_doc,
"combine_pixelwise(activations, weights, relu)\n--\n\n"
"out[n, g] = sum_k relu(weights[n, g, k]) * activations[n, k]; activations (N, K, h, w),\n"
"weights (N, G, K, h, w) -> (N, G, h, w) float32, the sum ReLU'd when relu is true.");

static PyObject *py_combine_pixelwise(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *a_obj, *w_obj;
    int relu, status = FC_OK;
    PyArrayObject *A = NULL, *Pw = NULL, *out = NULL;
    if (!PyArg_ParseTuple(args, "OOp:combine_pixelwise", &a_obj, &w_obj, &relu)) {
        goto exit;
    }
    if ((A = as_float32(a_obj, "activations", 4, "(N, K, h, w)")) == NULL ||
        (Pw = as_float32(w_obj, "weights", 5, "(N, G, K, h, w)")) == NULL ||
        check_spatial(A, "activations") < 0) {
        goto exit;
    }
    const npy_intp *ad = PyArray_DIMS(A), *pd = PyArray_DIMS(Pw);
    if (pd[0] != ad[0] || pd[2] != ad[1] || pd[3] != ad[2] || pd[4] != ad[3]) {
        PyErr_Format(PyExc_ValueError,
                     "weights (N, G, K, h, w) = (%zd, %zd, %zd, %zd, %zd) does not match "
                     "activations (N, K, h, w) = (%zd, %zd, %zd, %zd)",
                     (Py_ssize_t)pd[0], (Py_ssize_t)pd[1], (Py_ssize_t)pd[2], (Py_ssize_t)pd[3],
                     (Py_ssize_t)pd[4], (Py_ssize_t)ad[0], (Py_ssize_t)ad[1], (Py_ssize_t)ad[2],
                     (Py_ssize_t)ad[3]);
        goto exit;
    }
    const npy_intp dims[4] = {ad[0], pd[1], ad[2], ad[3]};
    if (check_output(dims[0], dims[1], dims[2], dims[3], "weights") < 0 ||
        (out = new_output(4, dims)) == NULL) {
        goto exit;
    }
    Py_BEGIN_ALLOW_THREADS
    status = fc_combine_pixelwise(PyArray_DATA(A), PyArray_DATA(Pw), ad[0], ad[1], pd[1],
                                  ad[2] * ad[3], relu, PyArray_DATA(out));
    Py_END_ALLOW_THREADS
    if (raise_status(status) < 0) {
        Py_CLEAR(out);
    }
exit:
    Py_XDECREF(A);
    Py_XDECREF(Pw);
    return (PyObject *)out;
}

/* ---------------------------------------------------------------- resize.c, normalize.c */

PyDoc_STRVAR(resize_doc,
"resize(maps, H, W, align_corners)\n--\n\n"
"Bilinear resize of (N, h, w) maps to (N, H, W) float32 (half-pixel centres unless\n"
"align_corners).");

static PyObject *py_resize(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *m_obj, *h_obj, *w_obj;
    int align, status = FC_OK;
    Py_ssize_t H, W;
    PyArrayObject *M = NULL, *out = NULL;
    fc_resize_plan *plan = NULL;
    if (!PyArg_ParseTuple(args, "OOOp:resize", &m_obj, &h_obj, &w_obj, &align)) {
        goto exit;
    }
    if ((M = as_float32(m_obj, "maps", 3, "(N, h, w)")) == NULL ||
        check_spatial(M, "maps") < 0 || as_size(h_obj, "size H", &H) < 0 ||
        as_size(w_obj, "size W", &W) < 0) {
        goto exit;
    }
    const npy_intp *md = PyArray_DIMS(M);
    const npy_intp dims[3] = {md[0], H, W};
    if (check_output(md[0], H, W, 1, "size") < 0 ||
        check_output(md[1], W, 1, 1, "size") < 0 ||
        (plan = new_plan(md[1], md[2], H, W, align)) == NULL ||
        (out = new_output(3, dims)) == NULL) {
        goto exit;
    }
    Py_BEGIN_ALLOW_THREADS
    status = fc_resize(plan, PyArray_DATA(M), md[0], PyArray_DATA(out));
    Py_END_ALLOW_THREADS
    if (raise_status(status) < 0) {
        Py_CLEAR(out);
    }
exit:
    fc_resize_plan_free(plan);
    Py_XDECREF(M);
    return (PyObject *)out;
}

PyDoc_STRVAR(minmax_doc,
"minmax(maps, eps)\n--\n\n"
"Per-map (x - min) / (max - min + eps) of (N, h, w) maps; all-equal maps -> 0,\n"
"maps holding NaN or inf -> all NaN.");

static PyObject *py_minmax(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *m_obj;
    double eps;
    PyArrayObject *M = NULL, *out = NULL;
    if (!PyArg_ParseTuple(args, "Od:minmax", &m_obj, &eps)) {
        goto exit;
    }
    if ((M = as_float32(m_obj, "maps", 3, "(N, h, w)")) == NULL ||
        check_spatial(M, "maps") < 0 || check_eps(eps) < 0 ||
        (out = new_output(3, PyArray_DIMS(M))) == NULL) {
        goto exit;
    }
    const npy_intp *md = PyArray_DIMS(M);
    Py_BEGIN_ALLOW_THREADS
    fc_minmax(PyArray_DATA(M), md[0], md[1] * md[2], eps, PyArray_DATA(out));
    Py_END_ALLOW_THREADS
exit:
    Py_XDECREF(M);
    return (PyObject *)out;
}

PyDoc_STRVAR(postprocess_doc,
"postprocess(maps, H, W, relu, eps, align_corners)\n--\n\n"
"minmax(resize(relu(maps), (H, W))) for (N, h, w) maps, fused.");

static PyObject *py_postprocess(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *m_obj, *h_obj, *w_obj;
    int relu, align, status = FC_OK;
    double eps;
    Py_ssize_t H, W;
    PyArrayObject *M = NULL, *out = NULL;
    fc_resize_plan *plan = NULL;
    if (!PyArg_ParseTuple(args, "OOOpdp:postprocess", &m_obj, &h_obj, &w_obj, &relu, &eps,
                          &align)) {
        goto exit;
    }
    if ((M = as_float32(m_obj, "maps", 3, "(N, h, w)")) == NULL ||
        check_spatial(M, "maps") < 0 || as_size(h_obj, "size H", &H) < 0 ||
        as_size(w_obj, "size W", &W) < 0 || check_eps(eps) < 0) {
        goto exit;
    }
    const npy_intp *md = PyArray_DIMS(M);
    const npy_intp dims[3] = {md[0], H, W};
    if (check_output(md[0], H, W, 1, "size") < 0 ||
        check_output(H, W, 2, 1, "size") < 0 ||
        check_output(md[1], W, 2, 1, "size") < 0 ||
        (plan = new_plan(md[1], md[2], H, W, align)) == NULL ||
        (out = new_output(3, dims)) == NULL) {
        goto exit;
    }
    Py_BEGIN_ALLOW_THREADS
    status = fc_postprocess(plan, PyArray_DATA(M), md[0], relu, eps, PyArray_DATA(out));
    Py_END_ALLOW_THREADS
    if (raise_status(status) < 0) {
        Py_CLEAR(out);
    }
exit:
    fc_resize_plan_free(plan);
    Py_XDECREF(M);
    return (PyObject *)out;
}

PyDoc_STRVAR(fuse_layers_doc,
"fuse_layers(maps_list, H, W, relu, eps, align_corners)\n--\n\n"
"minmax(mean_l postprocess(maps_list[l])) for a list of (N, h_l, w_l) maps -> (N, H, W).");

static PyObject *py_fuse_layers(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *list_obj, *h_obj, *w_obj, *seq = NULL;
    int relu, align, status = FC_OK;
    double eps;
    Py_ssize_t H, W, L = 0;
    PyArrayObject **M = NULL, *out = NULL;
    fc_resize_plan **plans = NULL;
    const float **data = NULL;
    if (!PyArg_ParseTuple(args, "OOOpdp:fuse_layers", &list_obj, &h_obj, &w_obj, &relu, &eps,
                          &align)) {
        goto exit;
    }
    if (!PyList_Check(list_obj) && !PyTuple_Check(list_obj)) {
        PyErr_Format(PyExc_TypeError, "maps_list must be a list or tuple of arrays, got %s",
                     Py_TYPE(list_obj)->tp_name);
        goto exit;
    }
    if ((seq = PySequence_Fast(list_obj, "maps_list must be a sequence")) == NULL) {
        goto exit;
    }
    L = PySequence_Fast_GET_SIZE(seq);
    if (L < 1) {
        PyErr_SetString(PyExc_ValueError, "maps_list must hold at least one array");
        goto exit;
    }
    if (as_size(h_obj, "size H", &H) < 0 || as_size(w_obj, "size W", &W) < 0 ||
        check_eps(eps) < 0) {
        goto exit;
    }
    M = PyMem_Calloc((size_t)L, sizeof(*M));
    plans = PyMem_Calloc((size_t)L, sizeof(*plans));
    data = PyMem_Calloc((size_t)L, sizeof(*data));
    if (M == NULL || plans == NULL || data == NULL) {
        PyErr_NoMemory();
        goto exit;
    }
    for (Py_ssize_t l = 0; l < L; l++) {
        char name[48];
        snprintf(name, sizeof(name), "maps_list[%zd]", l);
        if ((M[l] = as_float32(PySequence_Fast_GET_ITEM(seq, l), name, 3, "(N, h, w)")) == NULL ||
            check_spatial(M[l], name) < 0) {
            goto exit;
        }
        const npy_intp *md = PyArray_DIMS(M[l]);
        if (md[0] != PyArray_DIM(M[0], 0)) {
            PyErr_Format(PyExc_ValueError, "%s has N=%zd maps but maps_list[0] has N=%zd", name,
                         (Py_ssize_t)md[0], (Py_ssize_t)PyArray_DIM(M[0], 0));
            goto exit;
        }
        if (check_output(md[1], W, 2, 1, "size") < 0) {
            goto exit;
        }
        data[l] = PyArray_DATA(M[l]);
    }
    const npy_intp dims[3] = {PyArray_DIM(M[0], 0), H, W};
    if (check_output(dims[0], H, W, 1, "size") < 0 || check_output(H, W, 4, 1, "size") < 0) {
        goto exit;
    }
    for (Py_ssize_t l = 0; l < L; l++) {
        if ((plans[l] = new_plan(PyArray_DIM(M[l], 1), PyArray_DIM(M[l], 2), H, W, align)) ==
            NULL) {
            goto exit;
        }
    }
    if ((out = new_output(3, dims)) == NULL) {
        goto exit;
    }
    Py_BEGIN_ALLOW_THREADS
    status = fc_fuse_layers(plans, data, L, dims[0], relu, eps, PyArray_DATA(out));
    Py_END_ALLOW_THREADS
    if (raise_status(status) < 0) {
        Py_CLEAR(out);
    }
exit:
    for (Py_ssize_t l = 0; l < L; l++) {
        if (plans != NULL) {
            fc_resize_plan_free(plans[l]);
        }
        if (M != NULL) {
            Py_XDECREF(M[l]);
        }
    }
    PyMem_Free(plans);
    PyMem_Free(M);
    PyMem_Free((void *)data);
    Py_XDECREF(seq);
    return (PyObject *)out;
}

/* ---------------------------------------------------------------- module */

static PyMethodDef core_methods[] = {
    {"combine", py_combine, METH_VARARGS, combine_doc},
    {"combine_pixelwise", py_combine_pixelwise, METH_VARARGS, combine_pixelwise_doc},
    {"resize", py_resize, METH_VARARGS, resize_doc},
    {"minmax", py_minmax, METH_VARARGS, minmax_doc},
    {"postprocess", py_postprocess, METH_VARARGS, postprocess_doc},
    {"fuse_layers", py_fuse_layers, METH_VARARGS, fuse_layers_doc},
    {NULL, NULL, 0, NULL},
};

static int core_exec(PyObject *Py_UNUSED(module))
{
    return PyArray_ImportNumPyAPI() < 0 ? -1 : 0;
}

static PyModuleDef_Slot core_slots[] = {
    {Py_mod_exec, core_exec},
#ifdef Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED
    /* NumPy itself supports a single interpreter only. */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
#ifdef Py_GIL_DISABLED
    /* No module state and no globals: the kernels only read their own arrays. */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "finercam._core",
    .m_doc = "The C kernels of finercam; use them through finercam.kernels.",
    .m_size = 0,
    .m_methods = core_methods,
    .m_slots = core_slots,
};

PyMODINIT_FUNC PyInit__core(void)
{
    return PyModuleDef_Init(&core_module);
}
