/* finercam._core: the Python bindings of the C kernels, and nothing else.
 *
 * Layout: shared argument converters first (arrays, sizes, eps, status -> exception), then one
 * wrapper per kernel, then the method table and the multi-phase module definition. A new kernel
 * family adds its #include, its wrappers above the method table and one line in the table.
 *
 * Every wrapper: all PyObject pointers start NULL; arguments are checked with the GIL held and
 * before anything is allocated (TypeError / ValueError naming the argument; a size whose byte
 * count overflows is a ValueError); the output comes next (numpy's MemoryError for a size that
 * fits the arithmetic but not the machine), then the coefficient tables, only when there is
 * something to compute; the loops run with the GIL released; one `exit:` label releases
 * everything once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <numpy/arrayobject.h>

#include <math.h>
#include <stdio.h>

#include "combine.h"
#include "measure.h"
#include "normalize.h"
#include "parallel.h"
#include "rank.h"
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

/* ---------------------------------------------------------------- threads */

/* How many threads the threaded kernels (rank.c) may use: set at import to the CPUs available,
 * changed by set_num_threads. Read once per call with the GIL held and passed to the kernel, so a
 * change never reaches a call already running. */
static int num_threads = 1;

#define MAX_THREADS 1024 /* a sanity bound, far above any useful count */

static int thread_setting(void)
{
#if defined(Py_GIL_DISABLED)
    return __atomic_load_n(&num_threads, __ATOMIC_RELAXED);
#else
    return num_threads;
#endif
}

static void set_thread_setting(int n)
{
#if defined(Py_GIL_DISABLED)
    __atomic_store_n(&num_threads, n, __ATOMIC_RELAXED);
#else
    num_threads = n;
#endif
}

PyDoc_STRVAR(set_num_threads_doc,
"set_num_threads(n)\n--\n\n"
"Threads the ranking and masking kernels may use: an int in [1, 1024]; 1 = single-threaded.");

static PyObject *py_set_num_threads(PyObject *Py_UNUSED(self), PyObject *arg)
{
    Py_ssize_t n;
    if (as_size(arg, "n", &n) < 0) {
        return NULL;
    }
    if (n > MAX_THREADS) {
        PyErr_Format(PyExc_ValueError, "n must be at most %d, got %zd", MAX_THREADS, n);
        return NULL;
    }
    set_thread_setting((int)n);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(get_num_threads_doc,
"get_num_threads()\n--\n\n"
"Threads the ranking and masking kernels may use (set_num_threads).");

static PyObject *py_get_num_threads(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(args))
{
    return PyLong_FromLong(thread_setting());
}

/* ---------------------------------------------------------------- combine.c */

PyDoc_STRVAR(combine_doc,
"combine(activations, weights, relu)\n--\n\n"
"out[n, g] = sum_k weights[n, g, k] * activations[n, k]; activations (N, K, h, w),\n"
"weights (N, G, K) -> (N, G, h, w) float32, ReLU'd when relu is true.");

/* The kernels behind combine and combine_pixelwise share their signature. */
typedef int (*combine_kernel)(const float *, const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                              ptrdiff_t, int, float *);

/* Whether weights (N, G, K) -- or (N, G, K, h, w) per pixel -- fit activations (N, K, h, w);
 * sets the ValueError and returns -1 when they do not. */
static int check_combine_weights(const npy_intp *ad, const npy_intp *wd, int pixelwise)
{
    if (!pixelwise && (wd[0] != ad[0] || wd[2] != ad[1])) {
        PyErr_Format(PyExc_ValueError,
                     "weights (N, G, K) = (%zd, %zd, %zd) does not match activations "
                     "(N, K, h, w) = (%zd, %zd, %zd, %zd)",
                     (Py_ssize_t)wd[0], (Py_ssize_t)wd[1], (Py_ssize_t)wd[2], (Py_ssize_t)ad[0],
                     (Py_ssize_t)ad[1], (Py_ssize_t)ad[2], (Py_ssize_t)ad[3]);
        return -1;
    }
    if (pixelwise && (wd[0] != ad[0] || wd[2] != ad[1] || wd[3] != ad[2] || wd[4] != ad[3])) {
        PyErr_Format(PyExc_ValueError,
                     "weights (N, G, K, h, w) = (%zd, %zd, %zd, %zd, %zd) does not match "
                     "activations (N, K, h, w) = (%zd, %zd, %zd, %zd)",
                     (Py_ssize_t)wd[0], (Py_ssize_t)wd[1], (Py_ssize_t)wd[2], (Py_ssize_t)wd[3],
                     (Py_ssize_t)wd[4], (Py_ssize_t)ad[0], (Py_ssize_t)ad[1], (Py_ssize_t)ad[2],
                     (Py_ssize_t)ad[3]);
        return -1;
    }
    return 0;
}

/* combine and combine_pixelwise: the same arguments but for the weights' shape. */
static PyObject *combine_any(PyObject *args, int pixelwise)
{
    PyObject *a_obj, *w_obj;
    int relu, status = FC_OK;
    PyArrayObject *A = NULL, *Wt = NULL, *out = NULL;
    const combine_kernel kernel = pixelwise ? fc_combine_pixelwise : fc_combine;
    if (!PyArg_ParseTuple(args, pixelwise ? "OOp:combine_pixelwise" : "OOp:combine", &a_obj,
                          &w_obj, &relu)) {
        goto exit;
    }
    if ((A = as_float32(a_obj, "activations", 4, "(N, K, h, w)")) == NULL ||
        (Wt = as_float32(w_obj, "weights", pixelwise ? 5 : 3,
                         pixelwise ? "(N, G, K, h, w)" : "(N, G, K)")) == NULL ||
        check_spatial(A, "activations") < 0) {
        goto exit;
    }
    const npy_intp *ad = PyArray_DIMS(A), *wd = PyArray_DIMS(Wt);
    if (check_combine_weights(ad, wd, pixelwise) < 0) {
        goto exit;
    }
    const npy_intp dims[4] = {ad[0], wd[1], ad[2], ad[3]};
    if (check_output(dims[0], dims[1], dims[2], dims[3], "weights") < 0 ||
        (out = new_output(4, dims)) == NULL) {
        goto exit;
    }
    Py_BEGIN_ALLOW_THREADS
    status = kernel(PyArray_DATA(A), PyArray_DATA(Wt), ad[0], ad[1], wd[1], ad[2] * ad[3], relu,
                    PyArray_DATA(out));
    Py_END_ALLOW_THREADS
    if (raise_status(status) < 0) {
        Py_CLEAR(out);
    }
exit:
    Py_XDECREF(A);
    Py_XDECREF(Wt);
    return (PyObject *)out;
}

static PyObject *py_combine(PyObject *Py_UNUSED(self), PyObject *args)
{
    return combine_any(args, 0);
}

PyDoc_STRVAR(combine_pixelwise_doc,
"combine_pixelwise(activations, weights, relu)\n--\n\n"
"out[n, g] = sum_k relu(weights[n, g, k]) * activations[n, k]; activations (N, K, h, w),\n"
"weights (N, G, K, h, w) -> (N, G, h, w) float32, the sum ReLU'd when relu is true.");

static PyObject *py_combine_pixelwise(PyObject *Py_UNUSED(self), PyObject *args)
{
    return combine_any(args, 1);
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
        (out = new_output(3, dims)) == NULL) {
        goto exit;
    }
    if (md[0] == 0) { /* nothing to compute: no tables for a possibly huge (H, W) */
        goto exit;
    }
    if ((plan = new_plan(md[1], md[2], H, W, align)) == NULL) {
        Py_CLEAR(out);
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
        (out = new_output(3, dims)) == NULL) {
        goto exit;
    }
    if (md[0] == 0) {
        goto exit;
    }
    if ((plan = new_plan(md[1], md[2], H, W, align)) == NULL) {
        Py_CLEAR(out);
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
    if (check_output(dims[0], H, W, 1, "size") < 0 || check_output(H, W, 2, 1, "size") < 0) {
        goto exit;
    }
    if ((out = new_output(3, dims)) == NULL || dims[0] == 0) {
        goto exit;
    }
    for (Py_ssize_t l = 0; l < L; l++) {
        if ((plans[l] = new_plan(PyArray_DIM(M[l], 1), PyArray_DIM(M[l], 2), H, W, align)) ==
            NULL) {
            Py_CLEAR(out);
            goto exit;
        }
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

/* ---------------------------------------------------------------- rank.c, measure.c */

/* A new reference to `obj` as an aligned, C-contiguous, native array of `type` (NPY_BOOL,
 * NPY_INT64 or NPY_FLOAT64) with `ndim` dimensions. Only the same kind is accepted: bool for
 * masks; any integer for counts; any float for float64; everything else is a TypeError. */
static PyArrayObject *as_kind(PyObject *obj, const char *name, int type, int ndim,
                              const char *dims)
{
    const char *want = type == NPY_BOOL ? "bool" : type == NPY_INT64 ? "integer" : "float";
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy array %s of %s, got %s", name, dims,
                     want, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *arr = (PyArrayObject *)obj;
    const int ok = type == NPY_BOOL    ? PyArray_TYPE(arr) == NPY_BOOL
                   : type == NPY_INT64 ? PyArray_ISINTEGER(arr)
                                       : PyArray_ISFLOAT(arr);
    if (!ok) {
        PyObject *descr = PyObject_Str((PyObject *)PyArray_DESCR(arr));
        if (descr != NULL) {
            PyErr_Format(PyExc_TypeError, "%s must hold %s, got dtype %U", name, want, descr);
            Py_DECREF(descr);
        }
        return NULL;
    }
    if (PyArray_NDIM(arr) != ndim) {
        PyErr_Format(PyExc_ValueError, "%s must be a %d-d array %s, got %d-d", name, ndim, dims,
                     PyArray_NDIM(arr));
        return NULL;
    }
    PyArray_Descr *descr = PyArray_DescrFromType(type);
    if (descr == NULL) {
        return NULL;
    }
    /* steals descr; an integer array outside int64 (uint64 above 2**63) fails the cast check */
    return (PyArrayObject *)PyArray_FromArray(arr, descr,
                                              NPY_ARRAY_IN_ARRAY | NPY_ARRAY_ENSUREARRAY |
                                                  (type == NPY_INT64 ? NPY_ARRAY_FORCECAST : 0));
}

/* Whether two arrays' memory ranges overlap (a bounds check, enough to refuse aliasing). */
static int may_share(PyArrayObject *a, PyArrayObject *b)
{
    const char *a0 = PyArray_BYTES(a), *b0 = PyArray_BYTES(b);
    const char *a1 = a0 + PyArray_NBYTES(a), *b1 = b0 + PyArray_NBYTES(b);
    return a0 < b1 && b0 < a1;
}

/* The ranks are 32-bit: a map must have fewer than 2**32 pixels. */
static int check_pixels(npy_intp h, npy_intp w, const char *name)
{
    ptrdiff_t n = h;
    if (!fc_mul_ok(&n, w) || (uint64_t)n > UINT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s has more than 2**32 - 1 pixels per map", name);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(argsort_desc_doc,
"argsort_desc(maps)\n--\n\n"
"Flat pixel indices of each (N, H, W) map by decreasing value, ties to the lower index,\n"
"-0.0 == +0.0, NaN last -> (N, H*W) int64.");

PyDoc_STRVAR(rank_desc_doc,
"rank_desc(maps)\n--\n\n"
"Position of each pixel in argsort_desc's order (0 = the largest) -> (N, H, W) int64.");

static PyObject *order_or_rank(PyObject *args, int inverse)
{
    PyObject *m_obj;
    int status = FC_OK;
    PyArrayObject *M = NULL, *out = NULL;
    if (!PyArg_ParseTuple(args, inverse ? "O:rank_desc" : "O:argsort_desc", &m_obj)) {
        goto exit;
    }
    if ((M = as_float32(m_obj, "maps", 3, "(N, H, W)")) == NULL ||
        check_pixels(PyArray_DIM(M, 1), PyArray_DIM(M, 2), "maps") < 0) {
        goto exit;
    }
    const npy_intp *md = PyArray_DIMS(M);
    const npy_intp dims[3] = {md[0], inverse ? md[1] : md[1] * md[2], md[2]};
    if ((out = (PyArrayObject *)PyArray_SimpleNew(inverse ? 3 : 2, (npy_intp *)dims,
                                                  NPY_INT64)) == NULL) {
        goto exit;
    }
    const int n_threads = thread_setting();
    Py_BEGIN_ALLOW_THREADS
    if (inverse) {
        status = fc_rank_desc(PyArray_DATA(M), md[0], md[1] * md[2], PyArray_DATA(out),
                              n_threads);
    } else {
        status = fc_argsort_desc(PyArray_DATA(M), md[0], md[1] * md[2], PyArray_DATA(out),
                                 n_threads);
    }
    Py_END_ALLOW_THREADS
    if (raise_status(status) < 0) {
        Py_CLEAR(out);
    }
exit:
    Py_XDECREF(M);
    return (PyObject *)out;
}

static PyObject *py_argsort_desc(PyObject *Py_UNUSED(self), PyObject *args)
{
    return order_or_rank(args, 0);
}

static PyObject *py_rank_desc(PyObject *Py_UNUSED(self), PyObject *args)
{
    return order_or_rank(args, 1);
}

PyDoc_STRVAR(mask_top_doc,
"mask_top(images, maps, baseline, counts, out)\n--\n\n"
"Row n*S + s of the (N*S, C, H, W) float32 result is images[n] with the counts[s] top-ranked\n"
"pixels of maps[n] replaced by baseline[n] in every channel; images, baseline (N, C, H, W),\n"
"maps (N, H, W), counts (S,) in [0, H*W]. out is None or a preallocated C-contiguous\n"
"writeable float32 array of the result's shape, filled and returned.");

static PyObject *py_mask_top(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *i_obj, *m_obj, *b_obj, *c_obj, *o_obj;
    int status = FC_OK;
    PyArrayObject *Im = NULL, *Mp = NULL, *Bl = NULL, *Kc = NULL, *out = NULL;
    if (!PyArg_ParseTuple(args, "OOOOO:mask_top", &i_obj, &m_obj, &b_obj, &c_obj, &o_obj)) {
        goto exit;
    }
    if ((Im = as_float32(i_obj, "images", 4, "(N, C, H, W)")) == NULL ||
        (Mp = as_float32(m_obj, "maps", 3, "(N, H, W)")) == NULL ||
        (Bl = as_float32(b_obj, "baseline", 4, "(N, C, H, W)")) == NULL ||
        (Kc = as_kind(c_obj, "counts", NPY_INT64, 1, "(S,)")) == NULL) {
        goto exit;
    }
    const npy_intp *id = PyArray_DIMS(Im), *md = PyArray_DIMS(Mp), *bd = PyArray_DIMS(Bl);
    if (md[0] != id[0] || md[1] != id[2] || md[2] != id[3]) {
        PyErr_Format(PyExc_ValueError,
                     "maps (N, H, W) = (%zd, %zd, %zd) does not match images (N, C, H, W) = "
                     "(%zd, %zd, %zd, %zd)",
                     (Py_ssize_t)md[0], (Py_ssize_t)md[1], (Py_ssize_t)md[2], (Py_ssize_t)id[0],
                     (Py_ssize_t)id[1], (Py_ssize_t)id[2], (Py_ssize_t)id[3]);
        goto exit;
    }
    if (!PyArray_CompareLists(bd, id, 4)) {
        PyErr_Format(PyExc_ValueError,
                     "baseline (%zd, %zd, %zd, %zd) must have the shape of images "
                     "(%zd, %zd, %zd, %zd)",
                     (Py_ssize_t)bd[0], (Py_ssize_t)bd[1], (Py_ssize_t)bd[2], (Py_ssize_t)bd[3],
                     (Py_ssize_t)id[0], (Py_ssize_t)id[1], (Py_ssize_t)id[2], (Py_ssize_t)id[3]);
        goto exit;
    }
    if (check_pixels(id[2], id[3], "images") < 0) {
        goto exit;
    }
    const npy_intp S = PyArray_DIM(Kc, 0), n_pix = id[2] * id[3];
    const npy_int64 *counts = PyArray_DATA(Kc);
    for (npy_intp s = 0; s < S; s++) {
        if (counts[s] < 0 || counts[s] > n_pix) {
            PyErr_Format(PyExc_ValueError, "counts must lie in [0, H*W = %zd], got %lld at %zd",
                         (Py_ssize_t)n_pix, (long long)counts[s], (Py_ssize_t)s);
            goto exit;
        }
    }
    ptrdiff_t rows = id[0];
    if (!fc_mul_ok(&rows, S)) {
        PyErr_SetString(PyExc_ValueError, "counts is too long: the output would not fit");
        goto exit;
    }
    const npy_intp dims[4] = {rows, id[1], id[2], id[3]};
    if (o_obj == Py_None) {
        if (check_output(dims[0], dims[1], dims[2], dims[3], "counts") < 0 ||
            (out = new_output(4, dims)) == NULL) {
            goto exit;
        }
    } else {
        if (!PyArray_Check(o_obj) || PyArray_TYPE((PyArrayObject *)o_obj) != NPY_FLOAT32 ||
            !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)o_obj) ||
            !PyArray_ISWRITEABLE((PyArrayObject *)o_obj) ||
            !PyArray_ISNOTSWAPPED((PyArrayObject *)o_obj)) {
            PyErr_Format(PyExc_TypeError,
                         "out must be None or a writeable C-contiguous native float32 array, "
                         "got %s", Py_TYPE(o_obj)->tp_name);
            goto exit;
        }
        out = (PyArrayObject *)o_obj;
        Py_INCREF(out);
        if (PyArray_NDIM(out) != 4 || !PyArray_CompareLists(PyArray_DIMS(out), dims, 4)) {
            PyErr_Format(PyExc_ValueError, "out must have shape (%zd, %zd, %zd, %zd)",
                         (Py_ssize_t)dims[0], (Py_ssize_t)dims[1], (Py_ssize_t)dims[2],
                         (Py_ssize_t)dims[3]);
            Py_CLEAR(out);
            goto exit;
        }
        /* the kernel reads images/baseline while writing out: they must not share memory */
        if (may_share(out, Im) || may_share(out, Bl) || may_share(out, Mp)) {
            PyErr_SetString(PyExc_ValueError, "out must not share memory with the inputs");
            Py_CLEAR(out);
            goto exit;
        }
    }
    const int n_threads = thread_setting();
    Py_BEGIN_ALLOW_THREADS
    status = fc_mask_top(PyArray_DATA(Im), PyArray_DATA(Mp), PyArray_DATA(Bl), id[0], id[1], n_pix,
                         counts, S, PyArray_DATA(out), n_threads);
    Py_END_ALLOW_THREADS
    if (raise_status(status) < 0) {
        Py_CLEAR(out);
    }
exit:
    Py_XDECREF(Im);
    Py_XDECREF(Mp);
    Py_XDECREF(Bl);
    Py_XDECREF(Kc);
    return (PyObject *)out;
}

PyDoc_STRVAR(energy_in_mask_doc,
"energy_in_mask(maps, masks)\n--\n\n"
"sum(map * mask) / sum(map) per (N, H, W) map, masks (N, H, W) bool -> (N,) float64;\n"
"NaN for a zero sum or a map holding NaN or inf.");

PyDoc_STRVAR(pointing_hit_doc,
"pointing_hit(maps, masks)\n--\n\n"
"Whether each (N, H, W) map's first maximum (NaN ignored) lies in its bool mask -> (N,) bool.");

static PyObject *measure_maps(PyObject *args, int pointing)
{
    PyObject *m_obj, *k_obj;
    PyArrayObject *M = NULL, *K = NULL, *out = NULL;
    if (!PyArg_ParseTuple(args, pointing ? "OO:pointing_hit" : "OO:energy_in_mask", &m_obj,
                          &k_obj)) {
        goto exit;
    }
    if ((M = as_float32(m_obj, "maps", 3, "(N, H, W)")) == NULL ||
        (K = as_kind(k_obj, "masks", NPY_BOOL, 3, "(N, H, W)")) == NULL) {
        goto exit;
    }
    const npy_intp *md = PyArray_DIMS(M), *kd = PyArray_DIMS(K);
    if (!PyArray_CompareLists(md, kd, 3)) {
        PyErr_Format(PyExc_ValueError, "masks (%zd, %zd, %zd) must have the shape of maps "
                     "(%zd, %zd, %zd)", (Py_ssize_t)kd[0], (Py_ssize_t)kd[1], (Py_ssize_t)kd[2],
                     (Py_ssize_t)md[0], (Py_ssize_t)md[1], (Py_ssize_t)md[2]);
        goto exit;
    }
    if ((out = (PyArrayObject *)PyArray_SimpleNew(1, (npy_intp *)md,
                                                  pointing ? NPY_BOOL : NPY_FLOAT64)) == NULL) {
        goto exit;
    }
    Py_BEGIN_ALLOW_THREADS
    if (pointing) {
        fc_pointing_hit(PyArray_DATA(M), PyArray_DATA(K), md[0], md[1] * md[2],
                        PyArray_DATA(out));
    } else {
        fc_energy_in_mask(PyArray_DATA(M), PyArray_DATA(K), md[0], md[1] * md[2],
                          PyArray_DATA(out));
    }
    Py_END_ALLOW_THREADS
exit:
    Py_XDECREF(M);
    Py_XDECREF(K);
    return (PyObject *)out;
}

static PyObject *py_energy_in_mask(PyObject *Py_UNUSED(self), PyObject *args)
{
    return measure_maps(args, 0);
}

static PyObject *py_pointing_hit(PyObject *Py_UNUSED(self), PyObject *args)
{
    return measure_maps(args, 1);
}

PyDoc_STRVAR(trapezoid_doc,
"trapezoid(y, x)\n--\n\n"
"Trapezoid rule of each row of y (N, P) over the points x (P,) -> (N,) float64 (0 for P < 2).");

static PyObject *py_trapezoid(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *y_obj, *x_obj;
    PyArrayObject *Y = NULL, *X = NULL, *out = NULL;
    if (!PyArg_ParseTuple(args, "OO:trapezoid", &y_obj, &x_obj)) {
        goto exit;
    }
    if ((Y = as_kind(y_obj, "y", NPY_FLOAT64, 2, "(N, P)")) == NULL ||
        (X = as_kind(x_obj, "x", NPY_FLOAT64, 1, "(P,)")) == NULL) {
        goto exit;
    }
    const npy_intp *yd = PyArray_DIMS(Y);
    if (PyArray_DIM(X, 0) != yd[1]) {
        PyErr_Format(PyExc_ValueError, "x has %zd points but y has %zd per row",
                     (Py_ssize_t)PyArray_DIM(X, 0), (Py_ssize_t)yd[1]);
        goto exit;
    }
    if ((out = (PyArrayObject *)PyArray_SimpleNew(1, (npy_intp *)yd, NPY_FLOAT64)) == NULL) {
        goto exit;
    }
    Py_BEGIN_ALLOW_THREADS
    fc_trapezoid(PyArray_DATA(Y), PyArray_DATA(X), yd[0], yd[1], PyArray_DATA(out));
    Py_END_ALLOW_THREADS
exit:
    Py_XDECREF(Y);
    Py_XDECREF(X);
    return (PyObject *)out;
}

PyDoc_STRVAR(cosine_matrix_doc,
"cosine_matrix(a, b)\n--\n\n"
"<a_i, b_j> / (|a_i| |b_j|) for rows a (M, D), b (K, D) -> (M, K) float32; 0 for a zero row.");

static PyObject *py_cosine_matrix(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *a_obj, *b_obj;
    int status = FC_OK;
    PyArrayObject *A = NULL, *Bm = NULL, *out = NULL;
    if (!PyArg_ParseTuple(args, "OO:cosine_matrix", &a_obj, &b_obj)) {
        goto exit;
    }
    if ((A = as_float32(a_obj, "a", 2, "(M, D)")) == NULL ||
        (Bm = as_float32(b_obj, "b", 2, "(K, D)")) == NULL) {
        goto exit;
    }
    const npy_intp *ad = PyArray_DIMS(A), *bd = PyArray_DIMS(Bm);
    if (ad[1] != bd[1]) {
        PyErr_Format(PyExc_ValueError, "b has %zd columns but a has %zd", (Py_ssize_t)bd[1],
                     (Py_ssize_t)ad[1]);
        goto exit;
    }
    const npy_intp dims[2] = {ad[0], bd[0]};
    if (check_output(dims[0], dims[1], 1, 1, "a, b") < 0 || (out = new_output(2, dims)) == NULL) {
        goto exit;
    }
    Py_BEGIN_ALLOW_THREADS
    status = fc_cosine_matrix(PyArray_DATA(A), ad[0], PyArray_DATA(Bm), bd[0], ad[1],
                              PyArray_DATA(out));
    Py_END_ALLOW_THREADS
    if (raise_status(status) < 0) {
        Py_CLEAR(out);
    }
exit:
    Py_XDECREF(A);
    Py_XDECREF(Bm);
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
    {"argsort_desc", py_argsort_desc, METH_VARARGS, argsort_desc_doc},
    {"rank_desc", py_rank_desc, METH_VARARGS, rank_desc_doc},
    {"mask_top", py_mask_top, METH_VARARGS, mask_top_doc},
    {"energy_in_mask", py_energy_in_mask, METH_VARARGS, energy_in_mask_doc},
    {"pointing_hit", py_pointing_hit, METH_VARARGS, pointing_hit_doc},
    {"trapezoid", py_trapezoid, METH_VARARGS, trapezoid_doc},
    {"cosine_matrix", py_cosine_matrix, METH_VARARGS, cosine_matrix_doc},
    {"set_num_threads", py_set_num_threads, METH_O, set_num_threads_doc},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, get_num_threads_doc},
    {NULL, NULL, 0, NULL},
};

static int core_exec(PyObject *Py_UNUSED(module))
{
    set_thread_setting(fc_default_threads());
    return PyArray_ImportNumPyAPI() < 0 ? -1 : 0;
}

static PyModuleDef_Slot core_slots[] = {
    {Py_mod_exec, core_exec},
#ifdef Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED
    /* NumPy itself supports a single interpreter only. */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
#ifdef Py_GIL_DISABLED
    /* No module state; one global, the thread setting, read and written atomically. The
     * kernels only read their own arrays. */
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
