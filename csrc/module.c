/* finercam._core: the Python bindings of the C kernels, and nothing else.
 *
 * Layout: the argument converters first (shapes in messages, arrays, the `out` array, sizes,
 * eps, status -> exception), then one wrapper per kernel, then the docstrings, the method table
 * and the multi-phase module definition. A new kernel family adds its #include, its wrappers
 * above the docstrings, its docstring and one line in the table.
 *
 * Every wrapper parses its arguments with PyArg_ParseTuple and the `O&` converters below: an
 * array argument is an `array_arg` that names it, says what it must be and receives the
 * converted array (a new reference, released by PyArg_ParseTuple itself when a later argument
 * fails: Py_CLEANUP_SUPPORTED). Arguments are checked with the GIL held and before anything is
 * allocated (TypeError / ValueError naming the argument; a size whose byte count overflows is a
 * ValueError); the output comes next (numpy's MemoryError for a size that fits the arithmetic
 * but not the machine), then the coefficient tables, only when there is something to compute;
 * the kernels run with the GIL released; one `exit:` label releases everything once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <numpy/arrayobject.h>

#include <math.h>
#include <stdio.h>

#include "combine.h"
#include "impute.h"
#include "measure.h"
#include "normalize.h"
#include "parallel.h"
#include "rank.h"
#include "resize.h"
#include "ssim.h"
#include "status.h"

/* ---------------------------------------------------------------- shapes in messages */

#define SHAPE_LEN 160 /* "(d0, d1, ...)": NPY_MAXDIMS is 64, but no argument here has over 5 */

/* The shape "(2, 3, 4)" of `ndim` dimensions, written into buf and returned. */
static const char *shape_text(char buf[SHAPE_LEN], const npy_intp *dims, int ndim)
{
    int at = snprintf(buf, SHAPE_LEN, "(");
    for (int i = 0; i < ndim && at < SHAPE_LEN; i++) {
        at +=
            snprintf(buf + at, (size_t)(SHAPE_LEN - at), i ? ", %zd" : "%zd", (Py_ssize_t)dims[i]);
    }
    if (at < SHAPE_LEN) {
        snprintf(buf + at, (size_t)(SHAPE_LEN - at), ")");
    }
    return buf;
}

/* ---------------------------------------------------------------- array arguments */

/* An array argument: what it must be, filled in by the wrapper, and what it became. */
typedef struct {
    const char *name; /* in every message about it */
    int type;         /* NPY_FLOAT32: float16/32/64 converted to float32; NPY_FLOAT64 (any
                       * float), NPY_INT64 (any integer), NPY_BOOL (bool only): the same kind */
    int ndim;
    const char *dims;   /* the dimensions' names, e.g. "(N, h, w)" */
    int spatial;        /* the last two dimensions must be >= 1 */
    PyArrayObject *arr; /* the converted array, a new reference (NULL until converted) */
} array_arg;

static array_arg array_of(const char *name, int type, int ndim, const char *dims, int spatial)
{
    array_arg a = {name, type, ndim, dims, spatial, NULL};
    return a;
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

/* Whether arr's dtype is one that `type` accepts. */
static int dtype_ok(PyArrayObject *arr, int type)
{
    const int t = PyArray_TYPE(arr);
    switch (type) {
    case NPY_FLOAT32:
        return t == NPY_FLOAT32 || t == NPY_FLOAT64 || t == NPY_FLOAT16;
    case NPY_FLOAT64:
        return PyArray_ISFLOAT(arr);
    case NPY_INT64:
        return PyArray_ISINTEGER(arr);
    default:
        return t == type;
    }
}

static const char *dtype_word(int type)
{
    return type == NPY_FLOAT32 ? "float32"
           : type == NPY_BOOL  ? "bool"
           : type == NPY_INT64 ? "integer"
                               : "float";
}

/* A new reference to obj as an aligned, C-contiguous, native base-class ndarray of a->type with
 * a->ndim dimensions; anything else is a TypeError (not an array, wrong kind) or a ValueError
 * (wrong ndim). Inputs are never written: a conversion copies, a conforming array is returned
 * as is. */
static PyArrayObject *to_array(PyObject *obj, const array_arg *a)
{
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy array %s of %s, got %s", a->name, a->dims,
                     dtype_word(a->type), Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *arr = (PyArrayObject *)obj;
    if (!dtype_ok(arr, a->type)) {
        PyObject *descr = PyObject_Str((PyObject *)PyArray_DESCR(arr));
        if (descr != NULL) {
            PyErr_Format(
                PyExc_TypeError, "%s must hold %s%s, got dtype %U", a->name, dtype_word(a->type),
                a->type == NPY_FLOAT32 ? " (float16 and float64 are converted)" : "", descr);
            Py_DECREF(descr);
        }
        return NULL;
    }
    if (PyArray_NDIM(arr) != a->ndim) {
        PyErr_Format(PyExc_ValueError, "%s must be a %d-d array %s, got %d-d", a->name, a->ndim,
                     a->dims, PyArray_NDIM(arr));
        return NULL;
    }
    PyArray_Descr *descr = PyArray_DescrFromType(a->type);
    if (descr == NULL) {
        return NULL;
    }
    /* float32 and int64 force the cast: float64 -> float32 rounds, and a uint64 above 2**63 - 1
     * wraps to a negative value (mask_top's range check refuses it); float64 and bool take safe
     * casts only (longdouble -> float64 is a TypeError from numpy) */
    const int force = a->type == NPY_FLOAT32 || a->type == NPY_INT64;
    /* steals descr */
    return (PyArrayObject *)PyArray_FromArray(
        arr, descr, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_ENSUREARRAY | (force ? NPY_ARRAY_FORCECAST : 0));
}

/* The O& converter of an array_arg (addr): fills a->arr. Called again with obj NULL when a later
 * argument fails, it releases the array. */
static int array_converter(PyObject *obj, void *addr)
{
    array_arg *a = addr;
    if (obj == NULL) {
        Py_CLEAR(a->arr);
        return 0;
    }
    if ((a->arr = to_array(obj, a)) == NULL) {
        return 0;
    }
    if (a->spatial && check_spatial(a->arr, a->name) < 0) {
        Py_CLEAR(a->arr);
        return 0;
    }
    return Py_CLEANUP_SUPPORTED;
}

/* ValueError "<a> <dims> = <shape> does not match <b> <dims> = <shape>". */
static void raise_mismatch(const array_arg *a, const array_arg *b)
{
    char sa[SHAPE_LEN], sb[SHAPE_LEN];
    PyErr_Format(PyExc_ValueError, "%s %s = %s does not match %s %s = %s", a->name, a->dims,
                 shape_text(sa, PyArray_DIMS(a->arr), a->ndim), b->name, b->dims,
                 shape_text(sb, PyArray_DIMS(b->arr), b->ndim));
}

/* 0 when a has the shape of b, else ValueError "<a> <shape> must have the shape of <b> <shape>". */
static int check_same_shape(const array_arg *a, const array_arg *b)
{
    if (PyArray_CompareLists(PyArray_DIMS(a->arr), PyArray_DIMS(b->arr), a->ndim)) {
        return 0;
    }
    char sa[SHAPE_LEN], sb[SHAPE_LEN];
    PyErr_Format(PyExc_ValueError, "%s %s must have the shape of %s %s", a->name,
                 shape_text(sa, PyArray_DIMS(a->arr), a->ndim), b->name,
                 shape_text(sb, PyArray_DIMS(b->arr), b->ndim));
    return -1;
}

/* The O& converter of an optional output array (addr: PyArrayObject **): NULL for None, else a
 * new reference to a writeable, C-contiguous, native float32 ndarray (its shape is the
 * wrapper's to check); anything else is a TypeError. */
static int out_converter(PyObject *obj, void *addr)
{
    PyArrayObject **out = addr;
    if (obj == NULL) {
        Py_CLEAR(*out);
        return 0;
    }
    if (obj == Py_None) {
        *out = NULL;
        return 1;
    }
    PyArrayObject *arr = (PyArrayObject *)obj;
    if (!PyArray_Check(obj) || PyArray_TYPE(arr) != NPY_FLOAT32 || !PyArray_IS_C_CONTIGUOUS(arr) ||
        !PyArray_ISWRITEABLE(arr) || !PyArray_ISNOTSWAPPED(arr)) {
        PyErr_Format(PyExc_TypeError,
                     "out must be None or a writeable C-contiguous native float32 array, got %s",
                     Py_TYPE(obj)->tp_name);
        return 0;
    }
    Py_INCREF(obj);
    *out = arr;
    return Py_CLEANUP_SUPPORTED;
}

/* ---------------------------------------------------------------- other arguments, outputs */

/* A size argument: its name and its value once converted. */
typedef struct {
    const char *name;
    Py_ssize_t value;
} size_arg;

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

/* The O& converter of a size_arg (addr); it owns nothing. */
static int size_converter(PyObject *obj, void *addr)
{
    size_arg *s = addr;
    return as_size(obj, s->name, &s->value) == 0;
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
        PyErr_Format(PyExc_ValueError, "%s is too large: the output would not fit in memory", what);
        return -1;
    }
    return 0;
}

static PyArrayObject *new_array(int ndim, const npy_intp *dims, int type)
{
    return (PyArrayObject *)PyArray_SimpleNew(ndim, (npy_intp *)dims, type);
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

/* The output of a kernel that returned `status`: out itself, or NULL with the exception (out
 * released) when the kernel failed. */
static PyArrayObject *finish(PyArrayObject *out, int status)
{
    if (raise_status(status) < 0) {
        Py_CLEAR(out);
    }
    return out;
}

/* The exit of a binding with two array arguments: both converted references released (either may
 * be NULL), its output (or NULL) returned. */
static PyObject *release_pair(PyArrayObject *out, array_arg *first, array_arg *second)
{
    Py_XDECREF(first->arr);
    Py_XDECREF(second->arr);
    return (PyObject *)out;
}

/* A METH_VARARGS function calling impl(args, flag): the flavours of one wrapper. */
#define FLAVOUR(name, impl, flag)                                                                  \
    static PyObject *name(PyObject *Py_UNUSED(self), PyObject *args)                               \
    {                                                                                              \
        return impl(args, flag);                                                                   \
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

static PyObject *py_set_num_threads(PyObject *Py_UNUSED(self), PyObject *arg)
{
    size_arg n = {"n", 0};
    if (!size_converter(arg, &n)) {
        return NULL;
    }
    if (n.value > MAX_THREADS) {
        PyErr_Format(PyExc_ValueError, "n must be at most %d, got %zd", MAX_THREADS, n.value);
        return NULL;
    }
    set_thread_setting((int)n.value);
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(args))
{
    return PyLong_FromLong(thread_setting());
}

/* ---------------------------------------------------------------- combine.c */

/* Whether weights (N, G, K) -- or (N, G, K, h, w) per pixel -- fit activations (N, K, h, w);
 * sets the ValueError and returns -1 when they do not. */
static int check_combine_weights(const array_arg *acts, const array_arg *weights, int pixelwise)
{
    const npy_intp *ad = PyArray_DIMS(acts->arr), *wd = PyArray_DIMS(weights->arr);
    if (wd[0] != ad[0] || wd[2] != ad[1] || (pixelwise && (wd[3] != ad[2] || wd[4] != ad[3]))) {
        raise_mismatch(weights, acts);
        return -1;
    }
    return 0;
}

/* combine and combine_pixelwise: the same arguments but for the weights' shape. */
static PyObject *combine_any(PyObject *args, int pixelwise)
{
    array_arg acts = array_of("activations", NPY_FLOAT32, 4, "(N, K, h, w)", 1);
    array_arg weights = array_of("weights", NPY_FLOAT32, pixelwise ? 5 : 3,
                                 pixelwise ? "(N, G, K, h, w)" : "(N, G, K)", 0);
    int relu, status = FC_OK;
    PyArrayObject *out = NULL;
    if (!PyArg_ParseTuple(args, pixelwise ? "O&O&p:combine_pixelwise" : "O&O&p:combine",
                          array_converter, &acts, array_converter, &weights, &relu) ||
        check_combine_weights(&acts, &weights, pixelwise) < 0) {
        goto exit;
    }
    const npy_intp *ad = PyArray_DIMS(acts.arr), G = PyArray_DIM(weights.arr, 1);
    const npy_intp dims[4] = {ad[0], G, ad[2], ad[3]};
    if (check_output(dims[0], dims[1], dims[2], dims[3], "weights") < 0 ||
        (out = new_array(4, dims, NPY_FLOAT32)) == NULL) {
        goto exit;
    }
    const float *a = PyArray_DATA(acts.arr), *w = PyArray_DATA(weights.arr);
    float *o = PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS
        status = pixelwise ? fc_combine_pixelwise(a, w, ad[0], ad[1], G, ad[2] * ad[3], relu, o)
                           : fc_combine(a, w, ad[0], ad[1], G, ad[2] * ad[3], relu, o);
    Py_END_ALLOW_THREADS
    out = finish(out, status);
exit:
    return release_pair(out, &acts, &weights);
}

/* ---------------------------------------------------------------- resize.c, normalize.c */

/* The (N, H, W) output of resize (fused = 0) or postprocess (1) for maps (N, h, w), and the plan
 * that resizes them (left NULL when N = 0: no tables for a possibly huge (H, W)). Returns -1
 * with the exception set and nothing allocated on failure. */
static int resize_setup(PyArrayObject *maps, Py_ssize_t H, Py_ssize_t W, int align, int fused,
                        PyArrayObject **out, fc_resize_plan **plan)
{
    const npy_intp *md = PyArray_DIMS(maps);
    const npy_intp dims[3] = {md[0], H, W};
    if (check_output(md[0], H, W, 1, "size") < 0 ||
        (fused && check_output(H, W, 2, 1, "size") < 0) ||
        check_output(md[1], W, fused ? 2 : 1, 1, "size") < 0 ||
        (*out = new_array(3, dims, NPY_FLOAT32)) == NULL) {
        return -1;
    }
    if (md[0] > 0 && (*plan = new_plan(md[1], md[2], H, W, align)) == NULL) {
        Py_CLEAR(*out);
        return -1;
    }
    return 0;
}

/* resize and postprocess: postprocess adds relu and eps. */
static PyObject *resize_any(PyObject *args, int fused)
{
    array_arg maps = array_of("maps", NPY_FLOAT32, 3, "(N, h, w)", 1);
    size_arg H = {"size H", 0}, W = {"size W", 0};
    int relu = 0, align, status = FC_OK;
    double eps = 0.0;
    PyArrayObject *out = NULL;
    fc_resize_plan *plan = NULL;
    const int parsed =
        fused ? PyArg_ParseTuple(args, "O&O&O&pdp:postprocess", array_converter, &maps,
                                 size_converter, &H, size_converter, &W, &relu, &eps, &align)
              : PyArg_ParseTuple(args, "O&O&O&p:resize", array_converter, &maps, size_converter, &H,
                                 size_converter, &W, &align);
    if (!parsed || check_eps(eps) < 0 ||
        resize_setup(maps.arr, H.value, W.value, align, fused, &out, &plan) < 0 || plan == NULL) {
        goto exit;
    }
    const float *m = PyArray_DATA(maps.arr);
    const npy_intp N = PyArray_DIM(maps.arr, 0);
    float *o = PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS
        status = fused ? fc_postprocess(plan, m, N, relu, eps, o) : fc_resize(plan, m, N, o);
    Py_END_ALLOW_THREADS
    out = finish(out, status);
exit:
    fc_resize_plan_free(plan);
    Py_XDECREF(maps.arr);
    return (PyObject *)out;
}

static PyObject *py_minmax(PyObject *Py_UNUSED(self), PyObject *args)
{
    array_arg maps = array_of("maps", NPY_FLOAT32, 3, "(N, h, w)", 1);
    double eps;
    PyArrayObject *out = NULL;
    if (!PyArg_ParseTuple(args, "O&d:minmax", array_converter, &maps, &eps) || check_eps(eps) < 0 ||
        (out = new_array(3, PyArray_DIMS(maps.arr), NPY_FLOAT32)) == NULL) {
        goto exit;
    }
    const npy_intp *md = PyArray_DIMS(maps.arr);
    const float *m = PyArray_DATA(maps.arr);
    float *o = PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS
        fc_minmax(m, md[0], md[1] * md[2], eps, o);
    Py_END_ALLOW_THREADS
exit:
    Py_XDECREF(maps.arr);
    return (PyObject *)out;
}

/* The maps_list argument of fuse_layers: L >= 1 float32 arrays (N, h_l, w_l) of the same N, and
 * the plans that resize them (make_plans). */
typedef struct {
    Py_ssize_t L;
    PyArrayObject **maps;   /* L new references */
    const float **data;     /* their data */
    fc_resize_plan **plans; /* L plans, NULL until made */
} layer_list;

static void layers_clear(layer_list *layers)
{
    for (Py_ssize_t l = 0; l < layers->L; l++) {
        Py_XDECREF(layers->maps[l]);
        fc_resize_plan_free(layers->plans[l]);
    }
    PyMem_Free(layers->maps);
    PyMem_Free((void *)layers->data);
    PyMem_Free(layers->plans);
    *layers = (layer_list){0, NULL, NULL, NULL};
}

/* Converts item l of the tuple `items` into layers->maps[l]: a map of the first layer's N. */
static int convert_layer(layer_list *layers, PyObject *items, Py_ssize_t l)
{
    char name[48];
    snprintf(name, sizeof(name), "maps_list[%zd]", l);
    array_arg map = array_of(name, NPY_FLOAT32, 3, "(N, h, w)", 1);
    if (!array_converter(PyTuple_GET_ITEM(items, l), &map)) {
        return -1;
    }
    layers->maps[l] = map.arr;
    layers->data[l] = PyArray_DATA(map.arr);
    const npy_intp n = PyArray_DIM(map.arr, 0), n0 = PyArray_DIM(layers->maps[0], 0);
    if (n != n0) {
        PyErr_Format(PyExc_ValueError, "%s has N=%zd maps but maps_list[0] has N=%zd", name,
                     (Py_ssize_t)n, (Py_ssize_t)n0);
        return -1;
    }
    return 0;
}

/* The O& converter of a layer_list (addr): a list or tuple of at least one array. */
static int layers_converter(PyObject *obj, void *addr)
{
    layer_list *layers = addr;
    PyObject *items = NULL; /* a tuple: a list could change while its items are converted */
    if (obj == NULL) {
        goto fail;
    }
    if (!PyList_Check(obj) && !PyTuple_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "maps_list must be a list or tuple of arrays, got %s",
                     Py_TYPE(obj)->tp_name);
        goto fail;
    }
    if ((items = PySequence_Tuple(obj)) == NULL) {
        goto fail;
    }
    const Py_ssize_t L = PyTuple_GET_SIZE(items);
    if (L < 1) {
        PyErr_SetString(PyExc_ValueError, "maps_list must hold at least one array");
        goto fail;
    }
    layers->maps = PyMem_Calloc((size_t)L, sizeof(*layers->maps));
    layers->data = PyMem_Calloc((size_t)L, sizeof(*layers->data));
    layers->plans = PyMem_Calloc((size_t)L, sizeof(*layers->plans));
    if (layers->maps == NULL || layers->data == NULL || layers->plans == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    layers->L = L; /* layers_clear releases L of each from here on */
    for (Py_ssize_t l = 0; l < L; l++) {
        if (convert_layer(layers, items, l) < 0) {
            goto fail;
        }
    }
    Py_DECREF(items);
    return Py_CLEANUP_SUPPORTED;
fail:
    Py_XDECREF(items);
    layers_clear(layers);
    return 0;
}

/* Byte counts of the fused output and of every layer's scratch rows must fit. */
static int check_fuse_sizes(const layer_list *layers, Py_ssize_t H, Py_ssize_t W)
{
    for (Py_ssize_t l = 0; l < layers->L; l++) {
        if (check_output(PyArray_DIM(layers->maps[l], 1), W, 2, 1, "size") < 0) {
            return -1;
        }
    }
    const npy_intp N = PyArray_DIM(layers->maps[0], 0);
    return check_output(N, H, W, 1, "size") < 0 || check_output(H, W, 2, 1, "size") < 0 ? -1 : 0;
}

/* The plan of every layer, resizing it to (H, W); -1 with the exception set on failure. */
static int make_plans(layer_list *layers, Py_ssize_t H, Py_ssize_t W, int align)
{
    for (Py_ssize_t l = 0; l < layers->L; l++) {
        PyArrayObject *m = layers->maps[l];
        layers->plans[l] = new_plan(PyArray_DIM(m, 1), PyArray_DIM(m, 2), H, W, align);
        if (layers->plans[l] == NULL) {
            return -1;
        }
    }
    return 0;
}

static PyObject *py_fuse_layers(PyObject *Py_UNUSED(self), PyObject *args)
{
    layer_list layers = {0, NULL, NULL, NULL};
    size_arg H = {"size H", 0}, W = {"size W", 0};
    int relu, align, status = FC_OK;
    double eps;
    PyArrayObject *out = NULL;
    if (!PyArg_ParseTuple(args, "O&O&O&pdp:fuse_layers", layers_converter, &layers, size_converter,
                          &H, size_converter, &W, &relu, &eps, &align) ||
        check_eps(eps) < 0 || check_fuse_sizes(&layers, H.value, W.value) < 0) {
        goto exit;
    }
    const npy_intp dims[3] = {PyArray_DIM(layers.maps[0], 0), H.value, W.value};
    if ((out = new_array(3, dims, NPY_FLOAT32)) == NULL || dims[0] == 0) {
        goto exit;
    }
    if (make_plans(&layers, H.value, W.value, align) < 0) {
        Py_CLEAR(out);
        goto exit;
    }
    float *o = PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS
        status = fc_fuse_layers(layers.plans, layers.data, layers.L, dims[0], relu, eps, o);
    Py_END_ALLOW_THREADS
    out = finish(out, status);
exit:
    layers_clear(&layers);
    return (PyObject *)out;
}

/* ---------------------------------------------------------------- rank.c, measure.c */

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

static PyObject *order_or_rank(PyObject *args, int inverse)
{
    array_arg maps = array_of("maps", NPY_FLOAT32, 3, "(N, H, W)", 0);
    int status = FC_OK;
    PyArrayObject *out = NULL;
    if (!PyArg_ParseTuple(args, inverse ? "O&:rank_desc" : "O&:argsort_desc", array_converter,
                          &maps) ||
        check_pixels(PyArray_DIM(maps.arr, 1), PyArray_DIM(maps.arr, 2), "maps") < 0) {
        goto exit;
    }
    const npy_intp *md = PyArray_DIMS(maps.arr);
    const npy_intp dims[3] = {md[0], inverse ? md[1] : md[1] * md[2], md[2]};
    if ((out = new_array(inverse ? 3 : 2, dims, NPY_INT64)) == NULL) {
        goto exit;
    }
    const float *m = PyArray_DATA(maps.arr);
    int64_t *o = PyArray_DATA(out);
    const int n_threads = thread_setting();
    Py_BEGIN_ALLOW_THREADS
        status = inverse ? fc_rank_desc(m, md[0], md[1] * md[2], o, n_threads)
                         : fc_argsort_desc(m, md[0], md[1] * md[2], o, n_threads);
    Py_END_ALLOW_THREADS
    out = finish(out, status);
exit:
    Py_XDECREF(maps.arr);
    return (PyObject *)out;
}

/* The arguments of mask_top: images, maps, baseline, counts. */
enum { IMAGES, MAPS, BASELINE, COUNTS, MASK_ARGS };

/* The shapes agree, the maps are small enough to rank and the counts lie in [0, H*W]. */
static int check_mask_args(const array_arg *a)
{
    const npy_intp *id = PyArray_DIMS(a[IMAGES].arr), *md = PyArray_DIMS(a[MAPS].arr);
    if (md[0] != id[0] || md[1] != id[2] || md[2] != id[3]) {
        raise_mismatch(&a[MAPS], &a[IMAGES]);
        return -1;
    }
    if (check_same_shape(&a[BASELINE], &a[IMAGES]) < 0 ||
        check_pixels(id[2], id[3], "images") < 0) {
        return -1;
    }
    const npy_intp S = PyArray_DIM(a[COUNTS].arr, 0), n_pix = id[2] * id[3];
    const npy_int64 *counts = PyArray_DATA(a[COUNTS].arr);
    for (npy_intp s = 0; s < S; s++) {
        if (counts[s] < 0 || counts[s] > n_pix) {
            PyErr_Format(PyExc_ValueError, "counts must lie in [0, H*W = %zd], got %lld at %zd",
                         (Py_ssize_t)n_pix, (long long)counts[s], (Py_ssize_t)s);
            return -1;
        }
    }
    return 0;
}

/* The caller's out array (given) when it has the result's shape `dims` and shares no memory
 * with the inputs; a new reference, or NULL with the ValueError. */
static PyArrayObject *given_output(PyArrayObject *given, const npy_intp *dims, const array_arg *a)
{
    if (PyArray_NDIM(given) != 4 || !PyArray_CompareLists(PyArray_DIMS(given), dims, 4)) {
        char shape[SHAPE_LEN];
        PyErr_Format(PyExc_ValueError, "out must have shape %s", shape_text(shape, dims, 4));
        return NULL;
    }
    /* the kernel reads images/baseline while writing out: they must not share memory */
    if (may_share(given, a[IMAGES].arr) || may_share(given, a[BASELINE].arr) ||
        may_share(given, a[MAPS].arr)) {
        PyErr_SetString(PyExc_ValueError, "out must not share memory with the inputs");
        return NULL;
    }
    Py_INCREF(given);
    return given;
}

/* The (N*S, C, H, W) output of mask_top: the caller's out array (given), or a new one. */
static PyArrayObject *mask_output(const array_arg *a, PyArrayObject *given)
{
    const npy_intp *id = PyArray_DIMS(a[IMAGES].arr);
    ptrdiff_t rows = id[0];
    if (!fc_mul_ok(&rows, PyArray_DIM(a[COUNTS].arr, 0))) {
        PyErr_SetString(PyExc_ValueError, "counts is too long: the output would not fit");
        return NULL;
    }
    const npy_intp dims[4] = {rows, id[1], id[2], id[3]};
    if (given != NULL) {
        return given_output(given, dims, a);
    }
    if (check_output(dims[0], dims[1], dims[2], dims[3], "counts") < 0) {
        return NULL;
    }
    return new_array(4, dims, NPY_FLOAT32);
}

static PyObject *py_mask_top(PyObject *Py_UNUSED(self), PyObject *args)
{
    array_arg a[MASK_ARGS] = {
        [IMAGES] = array_of("images", NPY_FLOAT32, 4, "(N, C, H, W)", 0),
        [MAPS] = array_of("maps", NPY_FLOAT32, 3, "(N, H, W)", 0),
        [BASELINE] = array_of("baseline", NPY_FLOAT32, 4, "(N, C, H, W)", 0),
        [COUNTS] = array_of("counts", NPY_INT64, 1, "(S,)", 0),
    };
    int status = FC_OK;
    PyArrayObject *given = NULL, *out = NULL;
    if (!PyArg_ParseTuple(args, "O&O&O&O&O&:mask_top", array_converter, &a[IMAGES], array_converter,
                          &a[MAPS], array_converter, &a[BASELINE], array_converter, &a[COUNTS],
                          out_converter, &given) ||
        check_mask_args(a) < 0 || (out = mask_output(a, given)) == NULL) {
        goto exit;
    }
    const npy_intp *id = PyArray_DIMS(a[IMAGES].arr), S = PyArray_DIM(a[COUNTS].arr, 0);
    const float *im = PyArray_DATA(a[IMAGES].arr), *m = PyArray_DATA(a[MAPS].arr);
    const float *base = PyArray_DATA(a[BASELINE].arr);
    const int64_t *counts = PyArray_DATA(a[COUNTS].arr);
    float *o = PyArray_DATA(out);
    const int n_threads = thread_setting();
    Py_BEGIN_ALLOW_THREADS
        status = fc_mask_top(im, m, base, id[0], id[1], id[2] * id[3], counts, S, o, n_threads);
    Py_END_ALLOW_THREADS
    out = finish(out, status);
exit:
    for (int i = 0; i < MASK_ARGS; i++) {
        Py_XDECREF(a[i].arr);
    }
    Py_XDECREF(given);
    return (PyObject *)out;
}

static PyObject *py_trapezoid(PyObject *Py_UNUSED(self), PyObject *args)
{
    array_arg y = array_of("y", NPY_FLOAT64, 2, "(N, P)", 0);
    array_arg x = array_of("x", NPY_FLOAT64, 1, "(P,)", 0);
    PyArrayObject *out = NULL;
    if (!PyArg_ParseTuple(args, "O&O&:trapezoid", array_converter, &y, array_converter, &x)) {
        goto exit;
    }
    const npy_intp *yd = PyArray_DIMS(y.arr), P = PyArray_DIM(x.arr, 0);
    if (P != yd[1]) {
        PyErr_Format(PyExc_ValueError, "x has %zd points but y has %zd per row", (Py_ssize_t)P,
                     (Py_ssize_t)yd[1]);
        goto exit;
    }
    if ((out = new_array(1, yd, NPY_FLOAT64)) == NULL) {
        goto exit;
    }
    const double *yv = PyArray_DATA(y.arr), *xv = PyArray_DATA(x.arr);
    double *o = PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS
        fc_trapezoid(yv, xv, yd[0], yd[1], o);
    Py_END_ALLOW_THREADS
exit:
    return release_pair(out, &y, &x);
}

static PyObject *measure_maps(PyObject *args, int pointing)
{
    array_arg maps = array_of("maps", NPY_FLOAT32, 3, "(N, H, W)", 0);
    array_arg masks = array_of("masks", NPY_BOOL, 3, "(N, H, W)", 0);
    PyArrayObject *out = NULL;
    if (!PyArg_ParseTuple(args, pointing ? "O&O&:pointing_hit" : "O&O&:energy_in_mask",
                          array_converter, &maps, array_converter, &masks) ||
        check_same_shape(&masks, &maps) < 0) {
        goto exit;
    }
    const npy_intp *md = PyArray_DIMS(maps.arr);
    if ((out = new_array(1, md, pointing ? NPY_BOOL : NPY_FLOAT64)) == NULL) {
        goto exit;
    }
    const float *m = PyArray_DATA(maps.arr);
    const uint8_t *k = PyArray_DATA(masks.arr);
    void *o = PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS
        if (pointing) {
            fc_pointing_hit(m, k, md[0], md[1] * md[2], o);
        } else {
            fc_energy_in_mask(m, k, md[0], md[1] * md[2], o);
        }
    Py_END_ALLOW_THREADS
exit:
    return release_pair(out, &maps, &masks);
}

static PyObject *py_cosine_matrix(PyObject *Py_UNUSED(self), PyObject *args)
{
    array_arg a = array_of("a", NPY_FLOAT32, 2, "(M, D)", 0);
    array_arg b = array_of("b", NPY_FLOAT32, 2, "(K, D)", 0);
    int status = FC_OK;
    PyArrayObject *out = NULL;
    if (!PyArg_ParseTuple(args, "O&O&:cosine_matrix", array_converter, &a, array_converter, &b)) {
        goto exit;
    }
    const npy_intp *ad = PyArray_DIMS(a.arr), *bd = PyArray_DIMS(b.arr);
    if (ad[1] != bd[1]) {
        PyErr_Format(PyExc_ValueError, "b has %zd columns but a has %zd", (Py_ssize_t)bd[1],
                     (Py_ssize_t)ad[1]);
        goto exit;
    }
    const npy_intp dims[2] = {ad[0], bd[0]};
    if (check_output(dims[0], dims[1], 1, 1, "a, b") < 0 ||
        (out = new_array(2, dims, NPY_FLOAT32)) == NULL) {
        goto exit;
    }
    const float *av = PyArray_DATA(a.arr), *bv = PyArray_DATA(b.arr);
    float *o = PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS
        status = fc_cosine_matrix(av, ad[0], bv, bd[0], ad[1], o);
    Py_END_ALLOW_THREADS
    out = finish(out, status);
exit:
    return release_pair(out, &a, &b);
}

/* ---------------------------------------------------------------- impute.c, ssim.c */

/* The settings of road_impute: finite noise >= 0, finite tol > 0, max_iter >= 1. */
static int check_impute_opts(const fc_impute_opts *o)
{
    if (!(o->noise >= 0.0) || !isfinite(o->noise)) {
        PyErr_SetString(PyExc_ValueError, "noise must be finite and >= 0");
        return -1;
    }
    if (!(o->tol > 0.0) || !isfinite(o->tol)) {
        PyErr_SetString(PyExc_ValueError, "tol must be finite and > 0");
        return -1;
    }
    if (o->max_iter < 1) {
        PyErr_Format(PyExc_ValueError, "max_iter must be >= 1, got %d", o->max_iter);
        return -1;
    }
    return 0;
}

/* removed (N, S, H, W) fits images (N, C, H, W); at most 64 channels (the solver's stack). */
static int check_impute_args(const array_arg *images, const array_arg *removed)
{
    const npy_intp *id = PyArray_DIMS(images->arr), *rd = PyArray_DIMS(removed->arr);
    if (rd[0] != id[0] || rd[2] != id[2] || rd[3] != id[3]) {
        raise_mismatch(removed, images);
        return -1;
    }
    if (id[1] > 64) {
        PyErr_Format(PyExc_ValueError, "images must have at most 64 channels, got %zd",
                     (Py_ssize_t)id[1]);
        return -1;
    }
    return 0;
}

static PyObject *py_road_impute(PyObject *Py_UNUSED(self), PyObject *args)
{
    array_arg images = array_of("images", NPY_FLOAT32, 4, "(N, C, H, W)", 1);
    array_arg removed = array_of("removed", NPY_BOOL, 4, "(N, S, H, W)", 0);
    fc_impute_opts opts = {0.0, 0, 0, 1e-6, 1000, 1};
    unsigned long long seed = 0, first = 0;
    int status = FC_OK;
    PyArrayObject *out = NULL;
    if (!PyArg_ParseTuple(args, "O&O&dKKdi:road_impute", array_converter, &images, array_converter,
                          &removed, &opts.noise, &seed, &first, &opts.tol, &opts.max_iter) ||
        check_impute_opts(&opts) < 0 || check_impute_args(&images, &removed) < 0) {
        goto exit;
    }
    const npy_intp *id = PyArray_DIMS(images.arr), S = PyArray_DIM(removed.arr, 1);
    ptrdiff_t rows = id[0];
    if (!fc_mul_ok(&rows, S) || check_output(rows, id[1], id[2], id[3], "removed") < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "removed is too large: the output would not fit");
        }
        goto exit;
    }
    const npy_intp dims[4] = {rows, id[1], id[2], id[3]};
    if ((out = new_array(4, dims, NPY_FLOAT32)) == NULL) {
        goto exit;
    }
    opts.seed = (uint64_t)seed;
    opts.first = (uint64_t)first;
    opts.n_threads = thread_setting();
    const float *im = PyArray_DATA(images.arr);
    const uint8_t *rm = PyArray_DATA(removed.arr);
    float *o = PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS
        status = fc_road_impute(im, rm, id[0], S, id[1], id[2], id[3], &opts, o);
    Py_END_ALLOW_THREADS
    out = finish(out, status);
exit:
    return release_pair(out, &images, &removed);
}

static PyObject *py_ssim(PyObject *Py_UNUSED(self), PyObject *args)
{
    array_arg a = array_of("a", NPY_FLOAT32, 3, "(N, H, W)", 1);
    array_arg b = array_of("b", NPY_FLOAT32, 3, "(N, H, W)", 1);
    int win = 7, status = FC_OK;
    double data_range = 1.0;
    PyArrayObject *out = NULL;
    if (!PyArg_ParseTuple(args, "O&O&id:ssim", array_converter, &a, array_converter, &b, &win,
                          &data_range) ||
        check_same_shape(&b, &a) < 0) {
        goto exit;
    }
    const npy_intp *ad = PyArray_DIMS(a.arr);
    if (win < 3 || win % 2 == 0 || win > ad[1] || win > ad[2]) {
        PyErr_Format(PyExc_ValueError,
                     "win must be odd, >= 3 and at most the maps' sides (%zd, %zd), got %d",
                     (Py_ssize_t)ad[1], (Py_ssize_t)ad[2], win);
        goto exit;
    }
    if (!(data_range > 0.0) || !isfinite(data_range)) {
        PyErr_SetString(PyExc_ValueError, "data_range must be finite and > 0");
        goto exit;
    }
    if ((out = new_array(1, ad, NPY_FLOAT64)) == NULL) {
        goto exit;
    }
    const float *av = PyArray_DATA(a.arr), *bv = PyArray_DATA(b.arr);
    double *o = PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS
        status = fc_ssim(av, bv, ad[0], ad[1], ad[2], win, data_range, o);
    Py_END_ALLOW_THREADS
    out = finish(out, status);
exit:
    return release_pair(out, &a, &b);
}

/* ---------------------------------------------------------------- docstrings, method table */

/* The functions of the table that are flavours of one wrapper. */
FLAVOUR(py_combine, combine_any, 0)
FLAVOUR(py_combine_pixelwise, combine_any, 1)
FLAVOUR(py_resize, resize_any, 0)
FLAVOUR(py_postprocess, resize_any, 1)
FLAVOUR(py_argsort_desc, order_or_rank, 0)
FLAVOUR(py_rank_desc, order_or_rank, 1)
FLAVOUR(py_energy_in_mask, measure_maps, 0)
FLAVOUR(py_pointing_hit, measure_maps, 1)

/* The Python-visible contract, one docstring per function in the order of the table below
 * (finercam/_core.pyi gives the types); laid out by hand. */
/* clang-format off */
PyDoc_STRVAR(combine_doc,
"combine(activations, weights, relu)\n--\n\n"
"out[n, g] = sum_k weights[n, g, k] * activations[n, k]; activations (N, K, h, w),\n"
"weights (N, G, K) -> (N, G, h, w) float32, ReLU'd when relu is true.");

PyDoc_STRVAR(combine_pixelwise_doc,
"combine_pixelwise(activations, weights, relu)\n--\n\n"
"out[n, g] = sum_k relu(weights[n, g, k]) * activations[n, k]; activations (N, K, h, w),\n"
"weights (N, G, K, h, w) -> (N, G, h, w) float32, the sum ReLU'd when relu is true.");

PyDoc_STRVAR(resize_doc,
"resize(maps, H, W, align_corners)\n--\n\n"
"Bilinear resize of (N, h, w) maps to (N, H, W) float32 (half-pixel centres unless\n"
"align_corners).");

PyDoc_STRVAR(minmax_doc,
"minmax(maps, eps)\n--\n\n"
"Per-map (x - min) / (max - min + eps) of (N, h, w) maps; all-equal maps -> 0,\n"
"maps holding NaN or inf -> all NaN.");

PyDoc_STRVAR(postprocess_doc,
"postprocess(maps, H, W, relu, eps, align_corners)\n--\n\n"
"minmax(resize(relu(maps), (H, W))) for (N, h, w) maps, fused.");

PyDoc_STRVAR(fuse_layers_doc,
"fuse_layers(maps_list, H, W, relu, eps, align_corners)\n--\n\n"
"minmax(mean_l postprocess(maps_list[l])) for a list of (N, h_l, w_l) maps -> (N, H, W).");

PyDoc_STRVAR(argsort_desc_doc,
"argsort_desc(maps)\n--\n\n"
"Flat pixel indices of each (N, H, W) map by decreasing value, ties to the lower index,\n"
"-0.0 == +0.0, NaN last -> (N, H*W) int64.");

PyDoc_STRVAR(rank_desc_doc,
"rank_desc(maps)\n--\n\n"
"Position of each pixel in argsort_desc's order (0 = the largest) -> (N, H, W) int64.");

PyDoc_STRVAR(mask_top_doc,
"mask_top(images, maps, baseline, counts, out)\n--\n\n"
"Row n*S + s of the (N*S, C, H, W) float32 result is images[n] with the counts[s] top-ranked\n"
"pixels of maps[n] replaced by baseline[n] in every channel; images, baseline (N, C, H, W),\n"
"maps (N, H, W), counts (S,) in [0, H*W]. out is None or a preallocated C-contiguous\n"
"writeable float32 array of the result's shape, filled and returned.");

PyDoc_STRVAR(energy_in_mask_doc,
"energy_in_mask(maps, masks)\n--\n\n"
"sum(map * mask) / sum(map) per (N, H, W) map, masks (N, H, W) bool -> (N,) float64;\n"
"NaN for a zero sum or a map holding NaN or inf.");

PyDoc_STRVAR(pointing_hit_doc,
"pointing_hit(maps, masks)\n--\n\n"
"Whether each (N, H, W) map's first maximum (NaN ignored) lies in its bool mask -> (N,) bool.");

PyDoc_STRVAR(trapezoid_doc,
"trapezoid(y, x)\n--\n\n"
"Trapezoid rule of each row of y (N, P) over the points x (P,) -> (N,) float64 (0 for P < 2).");

PyDoc_STRVAR(cosine_matrix_doc,
"cosine_matrix(a, b)\n--\n\n"
"<a_i, b_j> / (|a_i| |b_j|) for rows a (M, D), b (K, D) -> (M, K) float32; 0 for a zero row.");

PyDoc_STRVAR(road_impute_doc,
"road_impute(images, removed, noise, seed, first, tol, max_iter)\n--\n\n"
"ROAD's noisy linear imputation: row n*S + s of the (N*S, C, H, W) float32 result is images[n]\n"
"(N, C, H, W) with the pixels of removed[n, s] (N, S, H, W) bool imputed from their eight\n"
"neighbours (conjugate gradients to relative residual tol, at most max_iter per level), plus\n"
"noise times a standard normal keyed by (seed, first + row, pixel, channel).");

PyDoc_STRVAR(ssim_doc,
"ssim(a, b, win, data_range)\n--\n\n"
"Mean SSIM of each pair of (N, H, W) maps (scikit-image's defaults: uniform win x win window,\n"
"sample covariance, K1 = 0.01, K2 = 0.03, border cropped) -> (N,) float64.");

PyDoc_STRVAR(set_num_threads_doc,
"set_num_threads(n)\n--\n\n"
"Threads the ranking and masking kernels may use: an int in [1, 1024]; 1 = single-threaded.");

PyDoc_STRVAR(get_num_threads_doc,
"get_num_threads()\n--\n\n"
"Threads the ranking and masking kernels may use (set_num_threads).");
/* clang-format on */

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
    {"road_impute", py_road_impute, METH_VARARGS, road_impute_doc},
    {"ssim", py_ssim, METH_VARARGS, ssim_doc},
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
