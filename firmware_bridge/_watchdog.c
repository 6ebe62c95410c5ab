/* firmware_bridge._watchdog: the native watchdog's core, what must run without the GIL.
 *
 * Modelled on CPython's faulthandler (dump_traceback_later); the contract is in _watchdog.pyi.
 * Python (firmware_bridge.api) checks arguments, dup()s fds, opens the LED file and keeps the
 * reports; the core owns what it is given. The thread starts with every signal blocked, never
 * touches a Python object or the GIL, and waits on one condition variable (CLOCK_MONOTONIC),
 * its timer and its wake-up; the timer ends SPIN_NS before a deadline, the rest is spun (a
 * wake-up's scheduling latency, 0.07-0.3 ms in a VM, is not added to the fire). It never holds `mu` during I/O: it sets `busy`, unlocks, uses the
 * plan, relocks, clears `busy`, broadcasts `idle`. kick() takes `mu` for a few stores; the
 * other methods release the GIL and wait for !busy. Never take the GIL while holding `mu`.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WD_MAX 16 /* fd writes, and file writes, per plan */
#define NS 1000000000LL
#define VIEW_HEAD 6 /* armed, fired, kicks, fires, feeds, feed_errors */
#define SPIN_NS 1000000LL /* the thread wakes this early for a deadline, then spins to it */

typedef struct {
    int fd;           /* owned by the core from a successful _arm() until it is replaced */
    const char *data; /* into a bytes object of `payloads` */
    size_t len;
} wd_action;

typedef struct {
    int64_t period_ns, budget_ns, feed_ns;
    int exit_code, hw_fd;      /* -1: no _exit / no hw watchdog */
    size_t n_writes, n_files;  /* act[0..n_writes) fd writes, then n_files file writes */
    wd_action act[2 * WD_MAX]; /* a file's fd < 0 is the -errno its open() got: reported */
    PyObject *payloads;        /* (GIL) the (writes, files) tuple act[].data points into */
} wd_plan;

/* The one struct. Invariants (under mu):
 *   armed     <=> plan holds fds and payloads the core owns, and the thread watches it;
 *                 disarmed, plan is empty (no fds, no payloads).
 *   busy      =>  armed, and the thread uses plan and res without mu: nobody else may.
 *   fired     =>  latched until the next _arm(); no action runs twice; res final once !busy.
 *   stop      =>  closed: !armed for good, the thread exits; kick() and _arm() raise.
 *   forked    =>  no thread, and mu, wake, idle are never used (again): a fork()ed child
 *                 (the at-fork handler disarmed it and closed the fds), or a failed init.
 *   joining   (GIL) one _close() has claimed the join; nobody joins again.
 *   tid       the thread's kernel id, set by it first thing under mu (core_new waits for it).
 */
typedef struct wd {
    PyObject_HEAD
    pthread_mutex_t mu;
    pthread_cond_t wake; /* Python side -> thread: the state changed (CLOCK_MONOTONIC) */
    pthread_cond_t idle; /* thread -> Python side: busy went back to 0 */
    pthread_t thread;
    int stop, armed, busy, fired, joining, forked;
    pid_t tid;
    int64_t deadline_ns, next_feed_ns; /* kick() only ever moves deadline_ns later */
    int64_t kicks, fires, feeds, feed_errors;
    int64_t lateness_ns;   /* of the latest fire */
    int64_t res[3 * WD_MAX]; /* a fire: per fd bytes written, per fd reply bytes, per file 0 */
    wd_plan plan;
    struct wd *next, **prev; /* (registry_mu) */
} wd;

/* What the Python side reads (see _watchdog.pyi): the VIEW_HEAD counters, then for a fired
 * plan lateness_ns, n_writes and res[0 .. 2 * n_writes + n_files). */
typedef struct { size_t n; int64_t v[VIEW_HEAD + 2 + 3 * WD_MAX]; } wd_view;

/* Every live core, for the at-fork handler; registry_mu is held across fork(). */
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static wd *registry;

/* ---------------------------------------------------------------- plain C, no Python -- */

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static int ms_left(int64_t until_ns) {
    int64_t left = until_ns - mono_ns();
    return left <= 0 ? 0 : (int)((left + 999999) / 1000000);
}

/* Close a plan's fds; if magic, first 'V' to its hw watchdog fd (the magic close: a clean stop
 * must not reboot the board; not after a fire, then the board is left to reboot). */
static void plan_close(wd_plan *p, int magic) {
    if (magic && p->hw_fd >= 0) {
        while (write(p->hw_fd, "V", 1) < 0 && errno == EINTR) {}
    }
    for (size_t i = p->n_writes + p->n_files; i-- > 0;) {
        if (p->act[i].fd >= 0) close(p->act[i].fd);
    }
    if (p->hw_fd >= 0) close(p->hw_fd);
}

/* All of data to fd: send(MSG_DONTWAIT|MSG_NOSIGNAL), or write() if fd is not a socket (it is
 * O_NONBLOCK or a regular file: arm() refuses others). EAGAIN polls until until_ns. len, or
 * -errno (-ETIMEDOUT: the fd stayed full). */
static int64_t write_all(int fd, const char *data, size_t len, int64_t until_ns) {
    size_t off = 0;
    int sock = 1;
    while (off < len) {
        ssize_t n = sock ? send(fd, data + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL)
                         : write(fd, data + off, len - off);
        if (n >= 0) {
            off += (size_t)n;
        } else if (errno == ENOTSOCK && sock) {
            sock = 0;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int r = poll(&pfd, 1, ms_left(until_ns));
            if (r == 0 || (r > 0 && (pfd.revents & POLLNVAL)) || (r < 0 && errno != EINTR)) {
                return r == 0 ? -ETIMEDOUT : r > 0 ? -EBADF : -errno;
            }
        } else if (errno != EINTR) {
            return -errno;
        }
    }
    return (int64_t)len;
}

/* A file opened at arm time (a sysfs LED attribute): one write at offset 0, then truncated to
 * the payload (a regular file then holds exactly it; sysfs ignores both). 0 or -errno. */
static int64_t write_file(const wd_action *a) {
    ssize_t n;
    while ((n = pwrite(a->fd, a->data, a->len, 0)) < 0 && errno == EINTR) {}
    if (n < 0 || (size_t)n != a->len) return n < 0 ? -errno : -EIO;
    (void)ftruncate(a->fd, (off_t)a->len);
    return 0;
}

/* The reply to request q (qn bytes) just written on fd: read until it is whole (MBAP: 6 + its
 * length field; RTU, only ever a write's: an 8-byte echo, 5 for an exception), else until the
 * line is quiet for 5 ms, or until_ns. Bytes read, or -errno (-ETIMEDOUT). */
static int64_t read_reply(int fd, const unsigned char *q, size_t qn, int64_t until_ns) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    unsigned char b[512] = {0};
    int mbap = qn > 7 && !q[2] && !q[3] && (size_t)(q[4] << 8 | q[5]) + 6 == qn;
    int64_t total = 0, quiet;
    for (;;) {
        int64_t whole = mbap ? 6 + (b[4] << 8 | b[5]) : b[1] & 0x80 ? 5 : 8; /* once read */
        if (total >= (mbap ? 6 : 2) && total >= whole) return total;
        quiet = total ? mono_ns() + 5000000 : until_ns;
        int r = poll(&pfd, 1, ms_left(quiet < until_ns ? quiet : until_ns));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0 || (pfd.revents & POLLNVAL)) {
            return total ? total : r == 0 ? -ETIMEDOUT : r > 0 ? -EBADF : -errno;
        }
        size_t off = total < (int64_t)sizeof b ? (size_t)total : 0; /* past 512: garbage */
        ssize_t got;
        while ((got = read(fd, b + off, sizeof b - off)) < 0 && errno == EINTR) {}
        if (got <= 0) return total ? total : got == 0 ? 0 : -errno;
        total += got;
    }
}

/* The fire: on the watchdog thread, without mu, with busy set; the hw watchdog is fed no more.
 * The budget runs from its start and covers writes and replies. A request waits for its reply
 * before the next goes out (one in flight per link: RTU drops or garbles back-to-back frames). */
static void fire(wd *w) {
    const wd_plan *p = &w->plan;
    size_t n = p->n_writes;
    int64_t *written = w->res, *replies = w->res + n, *files = w->res + 2 * n;
    int64_t until = mono_ns() + p->budget_ns;
    for (size_t i = 0; i < n; i++) {
        written[i] = write_all(p->act[i].fd, p->act[i].data, p->act[i].len, until);
        replies[i] = written[i] < 0 ? -ECANCELED
            : read_reply(p->act[i].fd, (const unsigned char *)p->act[i].data, p->act[i].len, until);
    }
    for (size_t j = 0; j < p->n_files; j++) {
        files[j] = p->act[n + j].fd < 0 ? p->act[n + j].fd : write_file(&p->act[n + j]);
    }
}

static void *wd_main(void *arg) {
    wd *w = arg;
    pthread_mutex_lock(&w->mu);
    w->tid = gettid();
    pthread_cond_broadcast(&w->idle); /* to core_new, waiting for the tid */
    while (!w->stop) {
        int64_t now = mono_ns(), wake = w->deadline_ns;
        int firing = now >= w->deadline_ns;
        if (!w->armed || w->fired) {
            pthread_cond_wait(&w->wake, &w->mu);
            continue;
        }
        if (firing || (w->plan.hw_fd >= 0 && now >= w->next_feed_ns)) {
            ssize_t fed = 0;
            if (firing) {
                __atomic_store_n(&w->fired, 1, __ATOMIC_RELEASE);
                w->fires++;
                w->lateness_ns = now - w->deadline_ns;
            }
            w->busy = 1;
            pthread_mutex_unlock(&w->mu);
            if (firing) {
                fire(w); /* and the hw watchdog is fed no more */
                if (w->plan.exit_code >= 0) _exit(w->plan.exit_code);
            } else { /* one NUL byte: anything but 'V' feeds */
                while ((fed = write(w->plan.hw_fd, "", 1)) < 0 && errno == EINTR) {}
            }
            pthread_mutex_lock(&w->mu);
            if (!firing) {
                w->feeds += fed == 1;
                w->feed_errors += fed != 1;
                w->next_feed_ns = now + w->plan.feed_ns;
            }
            w->busy = 0;
            pthread_cond_broadcast(&w->idle);
            continue;
        }
        if (w->plan.hw_fd >= 0 && w->next_feed_ns < wake) wake = w->next_feed_ns;
        if (wake == w->deadline_ns && wake - now <= SPIN_NS) { /* near: no timer wake-up to */
            w->busy = 1; /* wait for (the scheduler's latency): spin until it, or a kick */
            pthread_mutex_unlock(&w->mu);
            for (int64_t d, t; (d = __atomic_load_n(&w->deadline_ns, __ATOMIC_RELAXED))
                 > (t = mono_ns()) && d - t <= SPIN_NS;) {}
            pthread_mutex_lock(&w->mu);
            w->busy = 0;
            pthread_cond_broadcast(&w->idle);
            continue;
        }
        if (wake == w->deadline_ns) wake -= SPIN_NS; /* (a kick moves it, wakes nothing) */
        struct timespec ts = {.tv_sec = wake / NS, .tv_nsec = wake % NS};
        pthread_cond_clockwait(&w->wake, &w->mu, CLOCK_MONOTONIC, &ts); /* wakes it early */
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Under mu, GIL released: wait for !busy, fill *view, then (if old) detach the plan into it. */
static void take(wd *w, wd_view *view, wd_plan *old) {
    while (w->busy && !w->forked) pthread_cond_wait(&w->idle, &w->mu);
    int64_t head[VIEW_HEAD] = {w->armed, w->fired, w->kicks, w->fires, w->feeds, w->feed_errors};
    size_t n = VIEW_HEAD;
    memcpy(view->v, head, sizeof head);
    if (w->armed && w->fired) {
        size_t n_res = 2 * w->plan.n_writes + w->plan.n_files;
        view->v[n++] = w->lateness_ns;
        view->v[n++] = (int64_t)w->plan.n_writes;
        memcpy(view->v + n, w->res, n_res * sizeof w->res[0]);
        n += n_res;
    }
    view->n = n;
    if (old != NULL) {
        *old = w->plan;
        w->plan = (wd_plan){.hw_fd = -1};
        w->armed = 0;
        if (!w->forked) pthread_cond_signal(&w->wake);
    }
}

/* fork(): the child has only the forking thread. Its cores become inert (see `forked`); their
 * mutex and condition variables, which a thread that does not exist here may have held or
 * waited on, are never touched again, not even destroyed, so the child can exit. */
static void atfork_prepare(void) { pthread_mutex_lock(&registry_mu); }
static void atfork_parent(void) { pthread_mutex_unlock(&registry_mu); }

static void atfork_child(void) {
    for (wd *w = registry; w != NULL; w = w->next) {
        PyObject *payloads = w->plan.payloads; /* released later, with the GIL */
        plan_close(&w->plan, 0);
        w->plan = (wd_plan){.hw_fd = -1, .payloads = payloads};
        w->armed = 0;
        w->forked = 1;
    }
    pthread_mutex_unlock(&registry_mu);
}

/* --------------------------------------------------------- Python side (GIL held) -- */

#define CLOSED "watchdog is closed"
#define FORKED "watchdog inherited through fork() is inert: its thread runs only in the " \
               "parent; create a new Watchdog in this process"

static PyObject *refuse(const char *why) { PyErr_SetString(PyExc_ValueError, why); return NULL; }

static PyObject *view_tuple(const wd_view *view) {
    PyObject *t = PyTuple_New((Py_ssize_t)view->n);
    for (size_t i = 0; t != NULL && i < view->n; i++) {
        PyObject *o = PyLong_FromLongLong(view->v[i]);
        if (o == NULL) Py_CLEAR(t); /* and the loop ends */
        if (o != NULL) PyTuple_SET_ITEM(t, (Py_ssize_t)i, o);
    }
    return t;
}

/* Append (fd, bytes) pairs to p->act and count them. -1 with an exception set. */
static int add_actions(wd_plan *p, PyObject *items, size_t *count) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(items); i++) {
        wd_action *a = &p->act[p->n_writes + p->n_files];
        PyObject *data;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(items, i), "iO!;_arm: (fd, bytes) expected",
                              &a->fd, &PyBytes_Type, &data)) {
            return -1;
        }
        a->data = PyBytes_AS_STRING(data);
        a->len = (size_t)PyBytes_GET_SIZE(data);
        *count += 1;
    }
    return 0;
}

static PyObject *core_arm(wd *w, PyObject *args) {
    wd_plan p = {.hw_fd = -1}, old = {.hw_fd = -1};
    wd_view view = {0};
    long long period, budget, feed;
    PyObject *writes, *files;
    int closed;
    if (!PyArg_ParseTuple(args, "LLLiiO!O!:_arm", &period, &budget, &feed, &p.exit_code,
                          &p.hw_fd, &PyTuple_Type, &writes, &PyTuple_Type, &files)) {
        return NULL;
    }
    if (period <= 0 || budget < 0 || feed <= 0 || p.exit_code < -1 || p.exit_code > 255
        || PyTuple_GET_SIZE(writes) > WD_MAX || PyTuple_GET_SIZE(files) > WD_MAX) {
        return refuse("_arm: plan out of range (arm() checks it)");
    }
    if (w->forked) return refuse(FORKED);
    p.period_ns = period, p.budget_ns = budget, p.feed_ns = feed;
    if ((p.payloads = PyTuple_Pack(2, writes, files)) == NULL
        || add_actions(&p, writes, &p.n_writes) < 0 || add_actions(&p, files, &p.n_files) < 0) {
        Py_XDECREF(p.payloads);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&w->mu);
    if (!(closed = w->stop)) {
        take(w, &view, &old);
        w->plan = p;
        w->armed = 1;
        __atomic_store_n(&w->fired, 0, __ATOMIC_RELEASE);
        w->deadline_ns = mono_ns() + p.period_ns;
        w->next_feed_ns = 0; /* feed at once */
    }
    pthread_mutex_unlock(&w->mu);
    plan_close(&old, 0);
    Py_END_ALLOW_THREADS
    if (closed) {
        Py_DECREF(p.payloads); /* and the caller still owns the fds */
        return refuse(CLOSED);
    }
    Py_XDECREF(old.payloads);
    return view_tuple(&view);
}

static PyObject *core_kick(wd *w, PyObject *Py_UNUSED(ignored)) {
    if (w->forked) return refuse(FORKED);
    pthread_mutex_lock(&w->mu);
    int closed = w->stop;
    if (w->armed) {
        w->kicks++; /* atomic: the thread reads it without mu while it spins */
        __atomic_store_n(&w->deadline_ns, mono_ns() + w->plan.period_ns, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&w->mu);
    return closed ? refuse(CLOSED) : Py_NewRef(Py_None);
}

/* _counters() (op 0), _disarm() (1), _close() (2): the view, then detach and retire the plan
 * (1, 2), then stop and join the thread (2: one caller joins, a concurrent one returns). */
static PyObject *core_op(wd *w, int op) {
    wd_view view;
    wd_plan old = {.hw_fd = -1};
    Py_BEGIN_ALLOW_THREADS
    if (!w->forked) pthread_mutex_lock(&w->mu); /* forked: it may be held by a gone thread */
    take(w, &view, op > 0 ? &old : NULL);
    w->stop |= op == 2;
    if (!w->forked) pthread_mutex_unlock(&w->mu);
    plan_close(&old, op > 0 && !view.v[1]); /* v[1]: fired */
    Py_END_ALLOW_THREADS
    Py_XDECREF(old.payloads);
    if (op == 2 && !w->joining && !w->forked) {
        w->joining = 1;
        Py_BEGIN_ALLOW_THREADS
        pthread_join(w->thread, NULL);
        Py_END_ALLOW_THREADS
    }
    return view_tuple(&view);
}

static PyObject *core_counters(wd *w, PyObject *Py_UNUSED(x)) { return core_op(w, 0); }
static PyObject *core_disarm(wd *w, PyObject *Py_UNUSED(x)) { return core_op(w, 1); }
static PyObject *core_close(wd *w, PyObject *Py_UNUSED(x)) { return core_op(w, 2); }

static PyObject *core_fired(wd *w, void *Py_UNUSED(closure)) {
    return PyBool_FromLong(__atomic_load_n(&w->fired, __ATOMIC_ACQUIRE)); /* no mu: cheap */
}

static PyObject *core_tid(wd *w, void *Py_UNUSED(closure)) {
    return PyLong_FromLong(w->joining || w->forked ? 0 : w->tid); /* 0: no thread (any more) */
}

/* No arguments (the public classes' __init__ takes none); returns once the thread has its tid. */
static PyObject *core_new(PyTypeObject *type, PyObject *Py_UNUSED(a), PyObject *Py_UNUSED(k)) {
    wd *w = (wd *)type->tp_alloc(type, 0); /* zeroed */
    if (w == NULL) return NULL;
    w->plan.hw_fd = -1;
    pthread_attr_t tattr; /* every signal blocked; a small stack: mlockall() locks all of it */
    sigset_t all;
    int err;
    sigfillset(&all);
    if ((err = pthread_cond_init(&w->wake, NULL)) != 0) goto fail;
    if ((err = pthread_cond_init(&w->idle, NULL)) != 0) goto fail_wake;
    if ((err = pthread_mutex_init(&w->mu, NULL)) != 0) goto fail_idle;
    if ((err = pthread_attr_init(&tattr)) != 0) goto fail_mu;
    err = pthread_attr_setstacksize(&tattr, 128 * 1024);
    if (err == 0) err = pthread_attr_setsigmask_np(&tattr, &all);
    if (err == 0) err = pthread_create(&w->thread, &tattr, wd_main, w);
    pthread_attr_destroy(&tattr);
    if (err != 0) goto fail_mu;
    (void)pthread_setname_np(w->thread, "tg-watchdog"); /* ps -L, top -H */
    pthread_mutex_lock(&w->mu);
    while (w->tid == 0) pthread_cond_wait(&w->idle, &w->mu);
    pthread_mutex_unlock(&w->mu);
    pthread_mutex_lock(&registry_mu);
    if ((w->next = registry) != NULL) registry->prev = &w->next;
    w->prev = &registry;
    registry = w;
    pthread_mutex_unlock(&registry_mu);
    return (PyObject *)w;
fail_mu: /* undo in reverse */
    pthread_mutex_destroy(&w->mu);
fail_idle:
    pthread_cond_destroy(&w->idle);
fail_wake:
    pthread_cond_destroy(&w->wake);
fail:
    w->forked = 1; /* no thread, no mu/cond: dealloc destroys nothing */
    Py_DECREF(w);
    errno = err;
    return PyErr_SetFromErrno(PyExc_OSError);
}

static void core_dealloc(wd *w) {
    PyTypeObject *tp = Py_TYPE(w);
    pthread_mutex_lock(&registry_mu);
    if (w->prev != NULL && (*w->prev = w->next) != NULL) w->next->prev = w->prev;
    pthread_mutex_unlock(&registry_mu);
    if (!w->forked) {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        Py_XDECREF(core_op(w, 2));
        PyErr_Restore(et, ev, tb);
        pthread_cond_destroy(&w->idle);
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->mu);
    }
    Py_CLEAR(w->plan.payloads); /* forked: what the at-fork handler could not release */
    tp->tp_free((PyObject *)w);
    Py_DECREF(tp);
}

static PyMethodDef core_methods[] = {
    {"kick", (PyCFunction)core_kick, METH_NOARGS, "kick($self, /)\n--\n\n"},
    {"_arm", (PyCFunction)core_arm, METH_VARARGS,
     "_arm($self, period_ns, budget_ns, feed_ns, exit_code, hw_fd, writes, files, /)\n--\n\n"},
    {"_disarm", (PyCFunction)core_disarm, METH_NOARGS, "_disarm($self, /)\n--\n\n"},
    {"_close", (PyCFunction)core_close, METH_NOARGS, "_close($self, /)\n--\n\n"},
    {"_counters", (PyCFunction)core_counters, METH_NOARGS, "_counters($self, /)\n--\n\n"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef core_getset[] = {
    {"fired", (getter)core_fired, NULL, "Fired since the last arm() (latched).", NULL},
    {"tid", (getter)core_tid, NULL, "The thread's kernel id (0: none).", NULL},
    {NULL},
};

static PyType_Slot core_slots[] = {
    {Py_tp_new, core_new},
    {Py_tp_dealloc, core_dealloc},
    {Py_tp_methods, core_methods},
    {Py_tp_getset, core_getset},
    {Py_tp_doc, (void *)"Core()\n--\n\nThe native watchdog's thread and plan (_watchdog.pyi)."},
    {0, NULL},
};

static PyType_Spec core_spec = {
    .name = "firmware_bridge._watchdog.Core",
    .basicsize = sizeof(wd),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = core_slots,
};

static int module_exec(PyObject *m) {
    static int atfork_done; /* (GIL, which every interpreter importing this module shares) */
    if (!atfork_done && (errno = pthread_atfork(atfork_prepare, atfork_parent, atfork_child))) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    atfork_done = 1;
    PyObject *type = PyType_FromModuleAndSpec(m, &core_spec, NULL);
    int r = type == NULL ? -1 : PyModule_AddType(m, (PyTypeObject *)type);
    Py_XDECREF(type);
    return r;
}

static PyModuleDef_Slot module_slots[] = {{Py_mod_exec, module_exec}, {0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "firmware_bridge._watchdog",
    .m_doc = "The native watchdog's core (Core); the public class is firmware_bridge.native.",
    .m_slots = module_slots,
};

PyMODINIT_FUNC PyInit__watchdog(void) { return PyModuleDef_Init(&module_def); }
