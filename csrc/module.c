/* TEMPORARY bindings for the metrics kernels only, until the core's module.c lands; then these
 * functions move into it, on its converters. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <numpy/arrayobject.h>

#include "measure.h"
#include "rank.h"

/* A new reference to a C-contiguous aligned array of `type`, or NULL with TypeError/ValueError
 * naming the argument.  Floating types are converted to float32/float64; anything else is a
 * TypeError.  ndim < 0 accepts any rank. */
static PyArrayObject *m_array(PyObject *obj, const char *name, int type, int ndim)
{
    PyArrayObject *arr = NULL, *tmp = NULL;
    int kind_ok;

    tmp = (PyArrayObject *)PyArray_FROM_OF(obj, 0);
    if (!tmp) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be an array, got %s", name, Py_TYPE(obj)->tp_name);
        goto exit;
    }
    if (type == NPY_BOOL)
        kind_ok = PyArray_TYPE(tmp) == NPY_BOOL;
    else
        kind_ok = PyArray_ISFLOAT(tmp);
    if (!kind_ok) {
        PyErr_Format(PyExc_TypeError, "%s must be a %s array, got dtype %R", name,
                     type == NPY_BOOL ? "bool" : "floating-point", PyArray_DESCR(tmp));
        goto exit;
    }
    if (ndim >= 0 && PyArray_NDIM(tmp) != ndim) {
        PyErr_Format(PyExc_ValueError, "%s must have %d dimensions, got %d", name, ndim,
                     PyArray_NDIM(tmp));
        goto exit;
    }
    arr = (PyArrayObject *)PyArray_FROM_OTF((PyObject *)tmp, type, NPY_ARRAY_IN_ARRAY);
exit:
    Py_XDECREF(tmp);
    return arr;
}

static int m_status(int status)
{
    if (status == FC_RANK_NOMEM || status == FC_MEASURE_NOMEM)
        PyErr_NoMemory();
    else if (status == FC_RANK_TOO_BIG)
        PyErr_SetString(PyExc_ValueError, "maps have more than 2**32 - 1 pixels");
    return status ? -1 : 0;
}

static PyObject *order_or_rank(PyObject *args, int inverse)
{
    PyObject *maps_obj, *result = NULL;
    PyArrayObject *maps = NULL, *out = NULL;
    npy_intp dims[3];
    int status = 0;

    if (!PyArg_ParseTuple(args, "O", &maps_obj))
        goto exit;
    maps = m_array(maps_obj, "maps", NPY_FLOAT32, 3);
    if (!maps)
        goto exit;
    dims[0] = PyArray_DIM(maps, 0);
    dims[1] = PyArray_DIM(maps, 1);
    dims[2] = PyArray_DIM(maps, 2);
    if (!inverse) {
        dims[1] *= dims[2];
    }
    out = (PyArrayObject *)PyArray_SimpleNew(inverse ? 3 : 2, dims, NPY_INT64);
    if (!out)
        goto exit;
    Py_BEGIN_ALLOW_THREADS
    if (inverse)
        status = fc_rank_desc(PyArray_DATA(maps), PyArray_DIM(maps, 0),
                              PyArray_DIM(maps, 1) * PyArray_DIM(maps, 2), PyArray_DATA(out));
    else
        status = fc_argsort_desc(PyArray_DATA(maps), PyArray_DIM(maps, 0),
                                 PyArray_DIM(maps, 1) * PyArray_DIM(maps, 2), PyArray_DATA(out));
    Py_END_ALLOW_THREADS
    if (m_status(status))
        goto exit;
    result = (PyObject *)out;
    out = NULL;
exit:
    Py_XDECREF(maps);
    Py_XDECREF(out);
    return result;
}

static PyObject *py_argsort_desc(PyObject *self, PyObject *args)
{
    (void)self;
    return order_or_rank(args, 0);
}

static PyObject *py_rank_desc(PyObject *self, PyObject *args)
{
    (void)self;
    return order_or_rank(args, 1);
}

static PyObject *py_mask_top(PyObject *self, PyObject *args)
{
    PyObject *img_obj, *maps_obj, *base_obj, *counts_obj, *out_obj = Py_None, *result = NULL;
    PyArrayObject *img = NULL, *maps = NULL, *base = NULL, *counts = NULL, *out = NULL;
    npy_intp n, c, h, w, s, i, dims[4];
    const npy_int64 *k;
    int status = 0;

    (void)self;
    if (!PyArg_ParseTuple(args, "OOOO|O", &img_obj, &maps_obj, &base_obj, &counts_obj, &out_obj))
        goto exit;
    if (!(img = m_array(img_obj, "images", NPY_FLOAT32, 4)) ||
        !(maps = m_array(maps_obj, "maps", NPY_FLOAT32, 3)) ||
        !(base = m_array(base_obj, "baseline", NPY_FLOAT32, 4)))
        goto exit;
    counts = (PyArrayObject *)PyArray_FROM_OTF(counts_obj, NPY_INT64,
                                               NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    if (!counts)
        goto exit;
    n = PyArray_DIM(img, 0); c = PyArray_DIM(img, 1);
    h = PyArray_DIM(img, 2); w = PyArray_DIM(img, 3);
    if (PyArray_DIM(maps, 0) != n || PyArray_DIM(maps, 1) != h || PyArray_DIM(maps, 2) != w) {
        PyErr_Format(PyExc_ValueError, "maps must have shape (%zd, %zd, %zd) to match images, "
                     "got (%zd, %zd, %zd)", n, h, w, PyArray_DIM(maps, 0), PyArray_DIM(maps, 1),
                     PyArray_DIM(maps, 2));
        goto exit;
    }
    if (!PyArray_SAMESHAPE(img, base)) {
        PyErr_SetString(PyExc_ValueError, "baseline must have the shape of images");
        goto exit;
    }
    if (PyArray_NDIM(counts) != 1) {
        PyErr_SetString(PyExc_ValueError, "counts must be one-dimensional");
        goto exit;
    }
    s = PyArray_DIM(counts, 0);
    k = PyArray_DATA(counts);
    for (i = 0; i < s; i++)
        if (k[i] < 0 || k[i] > h * w) {
            PyErr_Format(PyExc_ValueError, "counts must lie in [0, %zd], got %lld", h * w,
                         (long long)k[i]);
            goto exit;
        }
    dims[0] = n * s; dims[1] = c; dims[2] = h; dims[3] = w;
    if (out_obj == Py_None) {
        out = (PyArrayObject *)PyArray_SimpleNew(4, dims, NPY_FLOAT32);
        if (!out)
            goto exit;
    } else {
        if (!PyArray_Check(out_obj) || PyArray_TYPE((PyArrayObject *)out_obj) != NPY_FLOAT32 ||
            !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)out_obj) ||
            !PyArray_ISWRITEABLE((PyArrayObject *)out_obj)) {
            PyErr_SetString(PyExc_TypeError, "out must be a writeable C-contiguous float32 array");
            goto exit;
        }
        out = (PyArrayObject *)out_obj;
        Py_INCREF(out);
        if (PyArray_NDIM(out) != 4 || !PyArray_CompareLists(PyArray_DIMS(out), dims, 4)) {
            PyErr_Format(PyExc_ValueError, "out must have shape (%zd, %zd, %zd, %zd)", dims[0],
                         c, h, w);
            goto exit;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    status = fc_mask_top(PyArray_DATA(img), PyArray_DATA(maps), PyArray_DATA(base), n, c, h * w,
                         k, s, PyArray_DATA(out));
    Py_END_ALLOW_THREADS
    if (m_status(status))
        goto exit;
    result = (PyObject *)out;
    out = NULL;
exit:
    Py_XDECREF(img);
    Py_XDECREF(maps);
    Py_XDECREF(base);
    Py_XDECREF(counts);
    Py_XDECREF(out);
    return result;
}

/* maps (N, H, W) float32 and masks of the same shape, bool. */
static int maps_and_masks(PyObject *args, PyArrayObject **maps, PyArrayObject **masks)
{
    PyObject *maps_obj, *masks_obj;

    if (!PyArg_ParseTuple(args, "OO", &maps_obj, &masks_obj))
        return -1;
    if (!(*maps = m_array(maps_obj, "maps", NPY_FLOAT32, 3)) ||
        !(*masks = m_array(masks_obj, "masks", NPY_BOOL, 3)))
        return -1;
    if (!PyArray_SAMESHAPE(*maps, *masks)) {
        PyErr_Format(PyExc_ValueError, "masks must have the shape of maps (%zd, %zd, %zd)",
                     PyArray_DIM(*maps, 0), PyArray_DIM(*maps, 1), PyArray_DIM(*maps, 2));
        return -1;
    }
    return 0;
}

static PyObject *measure_maps(PyObject *args, int pointing)
{
    PyArrayObject *maps = NULL, *masks = NULL, *out = NULL;
    PyObject *result = NULL;
    npy_intp n;

    if (maps_and_masks(args, &maps, &masks))
        goto exit;
    n = PyArray_DIM(maps, 0);
    out = (PyArrayObject *)PyArray_SimpleNew(1, &n, pointing ? NPY_BOOL : NPY_FLOAT64);
    if (!out)
        goto exit;
    Py_BEGIN_ALLOW_THREADS
    if (pointing)
        fc_pointing_hit(PyArray_DATA(maps), PyArray_DATA(masks), n,
                        PyArray_DIM(maps, 1) * PyArray_DIM(maps, 2), PyArray_DATA(out));
    else
        fc_energy_in_mask(PyArray_DATA(maps), PyArray_DATA(masks), n,
                          PyArray_DIM(maps, 1) * PyArray_DIM(maps, 2), PyArray_DATA(out));
    Py_END_ALLOW_THREADS
    result = (PyObject *)out;
    out = NULL;
exit:
    Py_XDECREF(maps);
    Py_XDECREF(masks);
    Py_XDECREF(out);
    return result;
}

static PyObject *py_energy_in_mask(PyObject *self, PyObject *args)
{
    (void)self;
    return measure_maps(args, 0);
}

static PyObject *py_pointing_hit(PyObject *self, PyObject *args)
{
    (void)self;
    return measure_maps(args, 1);
}

static PyObject *py_trapezoid(PyObject *self, PyObject *args)
{
    PyObject *y_obj, *x_obj, *result = NULL;
    PyArrayObject *y = NULL, *x = NULL, *out = NULL;
    npy_intp n;

    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &y_obj, &x_obj))
        goto exit;
    if (!(y = m_array(y_obj, "y", NPY_FLOAT64, 2)) || !(x = m_array(x_obj, "x", NPY_FLOAT64, 1)))
        goto exit;
    if (PyArray_DIM(x, 0) != PyArray_DIM(y, 1)) {
        PyErr_Format(PyExc_ValueError, "x must have %zd points to match y, got %zd",
                     PyArray_DIM(y, 1), PyArray_DIM(x, 0));
        goto exit;
    }
    n = PyArray_DIM(y, 0);
    out = (PyArrayObject *)PyArray_SimpleNew(1, &n, NPY_FLOAT64);
    if (!out)
        goto exit;
    Py_BEGIN_ALLOW_THREADS
    fc_trapezoid(PyArray_DATA(y), PyArray_DATA(x), n, PyArray_DIM(y, 1), PyArray_DATA(out));
    Py_END_ALLOW_THREADS
    result = (PyObject *)out;
    out = NULL;
exit:
    Py_XDECREF(y);
    Py_XDECREF(x);
    Py_XDECREF(out);
    return result;
}

static PyObject *py_cosine_matrix(PyObject *self, PyObject *args)
{
    PyObject *a_obj, *b_obj, *result = NULL;
    PyArrayObject *a = NULL, *b = NULL, *out = NULL;
    npy_intp dims[2];
    int status = 0;

    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &a_obj, &b_obj))
        goto exit;
    if (!(a = m_array(a_obj, "a", NPY_FLOAT32, 2)) || !(b = m_array(b_obj, "b", NPY_FLOAT32, 2)))
        goto exit;
    if (PyArray_DIM(a, 1) != PyArray_DIM(b, 1)) {
        PyErr_Format(PyExc_ValueError, "b must have %zd columns to match a, got %zd",
                     PyArray_DIM(a, 1), PyArray_DIM(b, 1));
        goto exit;
    }
    dims[0] = PyArray_DIM(a, 0);
    dims[1] = PyArray_DIM(b, 0);
    out = (PyArrayObject *)PyArray_ZEROS(2, dims, NPY_FLOAT32, 0);
    if (!out)
        goto exit;
    Py_BEGIN_ALLOW_THREADS
    status = fc_cosine_matrix(PyArray_DATA(a), dims[0], PyArray_DATA(b), dims[1],
                              PyArray_DIM(a, 1), PyArray_DATA(out));
    Py_END_ALLOW_THREADS
    if (m_status(status))
        goto exit;
    result = (PyObject *)out;
    out = NULL;
exit:
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(out);
    return result;
}

static PyMethodDef methods[] = {
    {"argsort_desc", py_argsort_desc, METH_VARARGS, "argsort_desc(maps) -> (N, H*W) int64"},
    {"rank_desc", py_rank_desc, METH_VARARGS, "rank_desc(maps) -> (N, H, W) int64"},
    {"mask_top", py_mask_top, METH_VARARGS,
     "mask_top(images, maps, baseline, counts, out=None) -> (N*S, C, H, W) float32"},
    {"energy_in_mask", py_energy_in_mask, METH_VARARGS, "energy_in_mask(maps, masks) -> (N,)"},
    {"pointing_hit", py_pointing_hit, METH_VARARGS, "pointing_hit(maps, masks) -> (N,) bool"},
    {"trapezoid", py_trapezoid, METH_VARARGS, "trapezoid(y, x) -> (N,) float64"},
    {"cosine_matrix", py_cosine_matrix, METH_VARARGS, "cosine_matrix(a, b) -> (M, K) float32"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "_core", NULL, -1, methods,
                                       NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__core(void)
{
    import_array();
    return PyModule_Create(&moduledef);
}
