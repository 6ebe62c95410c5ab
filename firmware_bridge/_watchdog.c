/* firmware_bridge._watchdog: a native watchdog thread that acts while Python is hung.
 *
 * Model: CPython's Modules/faulthandler.c (dump_traceback_later). Everything the thread needs
 * is prepared in C memory while the GIL is held (payload bytes and paths copied, file
 * descriptors dup()'d with FD_CLOEXEC, so Python closing its socket objects cannot pull them
 * away). The thread is created with every signal blocked, never touches a Python object or
 * the GIL, and uses one pthread condition variable on CLOCK_MONOTONIC as both its timer and
 * its wake-up: no polling loop.
 *
 * Locking. One mutex `mu` guards every field of `wd_core` marked (mu). The thread never holds
 * `mu` while doing I/O: it sets `busy`, unlocks, does the I/O on the plan's own fds, relocks,
 * clears `busy` and broadcasts `idle`. kick() only ever takes `mu` for a few stores, so it
 * never waits on I/O. arm/disarm/close/stats release the GIL, then wait for `!busy` before
 * they replace, free or read a plan. Lock order: never take the GIL while holding `mu`.
 *
 * Invariants (under mu):
 *   plan != NULL          <=> armed; the plan is owned by the core, freed only by the Python
 *                             side after it has been detached with busy == 0.
 *   busy                  =>  plan != NULL and the thread is using plan's fds without mu.
 *   fired                 =>  latched; cleared only by arm(). No action runs twice per arming.
 *   plan->has_results     =>  plan fired and its result arrays are final.
 *   forked                =>  a fork()ed child (set by the at-fork handler, which closed the
 *                             plan's dups): no thread; mu, wake and idle are never used again.
 *   joining (GIL)         =>  one close() has claimed the join; nobody joins again.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WD_MAX_FDS 16
#define WD_MAX_FILES 16
#define WD_MAX_PAYLOAD 65536
#define WD_MAX_SECONDS 86400.0
#define NS 1000000000LL

typedef struct {
    int fd;          /* our dup, FD_CLOEXEC; closed by plan_free */
    int is_sock;     /* send(MSG_DONTWAIT|MSG_NOSIGNAL) instead of write() */
    char *data;
    size_t len;
} wd_fd_action;

typedef struct {
    char *path;      /* file-system encoded, NUL terminated */
    char *data;
    size_t len;
} wd_file_action;

typedef struct {
    int64_t period_ns;
    int64_t reply_timeout_ns;
    int64_t feed_interval_ns;
    int hw_fd;       /* our dup or -1 */
    int exit_code;   /* -1: do not _exit */
    size_t n_fds, n_files;
    wd_fd_action fds[WD_MAX_FDS];
    wd_file_action files[WD_MAX_FILES];
    /* results: written by the thread while busy, final once has_results is set (mu) */
    int has_results;
    int64_t written[WD_MAX_FDS];
    int64_t replies[WD_MAX_FDS];
    int64_t file_results[WD_MAX_FILES];
} wd_plan;

typedef struct wd_core {
    pthread_mutex_t mu;
    pthread_cond_t wake;     /* Python side -> thread: state changed (CLOCK_MONOTONIC) */
    pthread_cond_t idle;     /* thread -> Python side: busy went back to 0 */
    pthread_t thread;
    int thread_started;      /* (mu) */
    int joining;             /* (GIL) set by the one close() that joins the thread */
    int forked;              /* set in a fork()ed child only: no thread, mu/cond never used */
    struct wd_core *next;    /* (registry_mu) the live cores, for the at-fork handler */
    int stop;                /* (mu) thread must exit */
    int closed;              /* (mu) no further arm/kick */
    wd_plan *plan;           /* (mu) */
    int busy;                /* (mu) */
    int fired;               /* (mu) */
    int64_t deadline_ns;     /* (mu) */
    int64_t next_feed_ns;    /* (mu) */
    int64_t wait_until_ns;   /* (mu) what the thread sleeps towards; INT64_MAX = no timeout */
    uint64_t kicks, fires, feeds, feed_errors; /* (mu) */
    int64_t worst_lateness_ns, last_lateness_ns; /* (mu) */
} wd_core;

typedef struct {
    PyObject_HEAD
    wd_core *core;           /* NULL only if __new__ failed half-way */
    PyObject *last_results;  /* dict of a plan that fired and was since replaced, or NULL */
} WatchdogObject;

typedef struct {
    PyTypeObject *watchdog_type;
} module_state;

/* Every live core, so that a fork()ed child can find the dups to close. registry_mu is held
 * across fork() (prepare .. parent/child), so the child sees a whole list. */
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static wd_core *registry;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int atfork_err;

/* ---------------------------------------------------------------- plain C, no Python -- */

static int64_t
mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static void
plan_free(wd_plan *p)
{
    if (p == NULL) {
        return;
    }
    for (size_t i = p->n_files; i-- > 0;) {
        free(p->files[i].data);
        free(p->files[i].path);
    }
    for (size_t i = p->n_fds; i-- > 0;) {
        free(p->fds[i].data);
        if (p->fds[i].fd >= 0) {
            close(p->fds[i].fd);
        }
    }
    if (p->hw_fd >= 0) {
        close(p->hw_fd);
    }
    free(p);
}

/* Close the plan's dups without freeing anything (async-signal-safe: for the fork child). */
static void
plan_close_fds(wd_plan *p)
{
    for (size_t i = 0; i < p->n_fds; i++) {
        if (p->fds[i].fd >= 0) {
            close(p->fds[i].fd);
            p->fds[i].fd = -1;
        }
    }
    if (p->hw_fd >= 0) {
        close(p->hw_fd);
        p->hw_fd = -1;
    }
}

/* fork(): the child has only the forking thread. Its cores become inert: marked forked, their
 * dups closed; their mutex and condition variables (possibly held or waited on by a thread
 * that does not exist here) are never touched again, not even destroyed. */
static void
atfork_prepare(void)
{
    pthread_mutex_lock(&registry_mu);
}

static void
atfork_parent(void)
{
    pthread_mutex_unlock(&registry_mu);
}

static void
atfork_child(void)
{
    for (wd_core *c = registry; c != NULL; c = c->next) {
        c->forked = 1;
        if (c->plan != NULL) {
            plan_close_fds(c->plan);
        }
    }
    pthread_mutex_unlock(&registry_mu);
}

static void
atfork_register(void)
{
    atfork_err = pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* Wait up to until_ns for fd to become ready for `events`; 1 ready, 0 timeout, -errno. */
static int
wait_fd(int fd, short events, int64_t until_ns)
{
    for (;;) {
        int64_t left = until_ns - mono_ns();
        int ms = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
        struct pollfd pfd = {.fd = fd, .events = events};
        int r = poll(&pfd, 1, ms);
        if (r > 0) {
            return (pfd.revents & POLLNVAL) ? -EBADF : 1;
        }
        if (r == 0) {
            return 0;
        }
        if (errno != EINTR) {
            return -errno;
        }
    }
}

/* Write all of data; partial writes and EINTR loop, EAGAIN waits until until_ns.
 * Returns bytes written (== len) or -errno (-ETIMEDOUT if the fd stayed full). */
static int64_t
write_all(int fd, int is_sock, const char *data, size_t len, int64_t until_ns)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = is_sock ? send(fd, data + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL)
                            : write(fd, data + off, len - off);
        if (n >= 0) {
            off += (size_t)n;
            continue;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            return -errno;
        }
        int w = wait_fd(fd, POLLOUT, until_ns);
        if (w == 0) {
            return -ETIMEDOUT;
        }
        if (w < 0) {
            return w;
        }
    }
    return (int64_t)len;
}

/* The fire: runs on the watchdog thread without mu, with busy set. */
static void
plan_fire(wd_plan *p)
{
    int64_t until = mono_ns() + p->reply_timeout_ns;
    struct pollfd pfds[WD_MAX_FDS];
    size_t waiting = 0;

    for (size_t i = 0; i < p->n_fds; i++) {
        p->written[i] = write_all(p->fds[i].fd, p->fds[i].is_sock, p->fds[i].data,
                                  p->fds[i].len, until);
        pfds[i].fd = p->written[i] >= 0 ? p->fds[i].fd : -1;
        pfds[i].events = POLLIN;
        pfds[i].revents = 0;
        p->replies[i] = p->written[i] >= 0 ? -ETIMEDOUT : -ECANCELED;
        waiting += p->written[i] >= 0;
    }
    while (waiting > 0) {
        int64_t left = until - mono_ns();
        int ms = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
        int r = poll(pfds, (nfds_t)p->n_fds, ms);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            if (r < 0) {
                for (size_t i = 0; i < p->n_fds; i++) {
                    if (pfds[i].fd >= 0) {
                        p->replies[i] = -errno;
                    }
                }
            }
            break; /* timeout: the remaining ones keep -ETIMEDOUT */
        }
        for (size_t i = 0; i < p->n_fds; i++) {
            if (pfds[i].fd < 0 || pfds[i].revents == 0) {
                continue;
            }
            if (pfds[i].revents & POLLNVAL) {
                p->replies[i] = -EBADF;
            }
            else {
                char buf[512];
                ssize_t n;
                do {
                    n = read(pfds[i].fd, buf, sizeof buf);
                } while (n < 0 && errno == EINTR);
                p->replies[i] = n >= 0 ? (int64_t)n : -errno;
            }
            pfds[i].fd = -1;
            waiting--;
        }
    }
    for (size_t i = 0; i < p->n_files; i++) {
        int fd;
        do {
            fd = open(p->files[i].path,
                      O_WRONLY | O_CLOEXEC | O_TRUNC | O_NOCTTY | O_NONBLOCK);
        } while (fd < 0 && errno == EINTR);
        if (fd < 0) {
            p->file_results[i] = -errno;
            continue;
        }
        int64_t w = write_all(fd, 0, p->files[i].data, p->files[i].len,
                              mono_ns() + p->reply_timeout_ns);
        int c = close(fd);
        p->file_results[i] = w < 0 ? w : (c < 0 && errno != EINTR ? -errno : 0);
    }
}

static void *
wd_main(void *arg)
{
    wd_core *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        wd_plan *p = c->plan;
        if (p == NULL || c->fired) {
            c->wait_until_ns = INT64_MAX;
            pthread_cond_wait(&c->wake, &c->mu);
            continue;
        }
        int64_t now = mono_ns();
        if (now >= c->deadline_ns) {
            c->last_lateness_ns = now - c->deadline_ns;
            if (c->last_lateness_ns > c->worst_lateness_ns) {
                c->worst_lateness_ns = c->last_lateness_ns;
            }
            c->fired = 1;
            c->fires++;
            c->busy = 1;
            pthread_mutex_unlock(&c->mu);
            plan_fire(p);
            if (p->exit_code >= 0) {
                _exit(p->exit_code);
            }
            pthread_mutex_lock(&c->mu);
            p->has_results = 1;
            c->busy = 0;
            pthread_cond_broadcast(&c->idle);
            continue; /* fired: stop feeding the hw watchdog, wait for re-arm */
        }
        int64_t wake = c->deadline_ns;
        if (p->hw_fd >= 0) {
            if (now >= c->next_feed_ns) {
                c->busy = 1;
                pthread_mutex_unlock(&c->mu);
                ssize_t n;
                do {
                    n = write(p->hw_fd, "", 1); /* one NUL byte: anything but 'V' feeds */
                } while (n < 0 && errno == EINTR);
                pthread_mutex_lock(&c->mu);
                if (n == 1) {
                    c->feeds++;
                }
                else {
                    c->feed_errors++;
                }
                c->next_feed_ns = now + p->feed_interval_ns;
                c->busy = 0;
                pthread_cond_broadcast(&c->idle);
                continue;
            }
            if (c->next_feed_ns < wake) {
                wake = c->next_feed_ns;
            }
        }
        c->wait_until_ns = wake;
        struct timespec ts = {.tv_sec = wake / NS, .tv_nsec = wake % NS};
        pthread_cond_timedwait(&c->wake, &c->mu, &ts);
        c->wait_until_ns = INT64_MAX;
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Create the thread with every signal blocked (it inherits the mask). Called under mu. */
static int
start_thread(wd_core *c)
{
    sigset_t all, old;
    sigfillset(&all);
    int err = pthread_sigmask(SIG_BLOCK, &all, &old);
    if (err != 0) {
        return err;
    }
    err = pthread_create(&c->thread, NULL, wd_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err == 0) {
        c->thread_started = 1;
        (void)pthread_setname_np(c->thread, "tg-watchdog"); /* visible in ps -L, top -H */
    }
    return err;
}

/* Wait until the thread is not using the plan. Called under mu, GIL released. */
static void
wait_idle(wd_core *c)
{
    while (c->busy) {
        pthread_cond_wait(&c->idle, &c->mu);
    }
}

/* --------------------------------------------------------- Python side (GIL held) -- */

static int64_t
seconds_to_ns(double s, const char *name, int allow_zero)
{
    if (!isfinite(s) || s < 0.0 || (!allow_zero && s == 0.0) || s > WD_MAX_SECONDS) {
        PyObject *v = PyFloat_FromDouble(s);
        if (v != NULL) {
            PyErr_Format(PyExc_ValueError, "%s must be %s and at most %d s, got %R", name,
                         allow_zero ? ">= 0" : "> 0", (int)WD_MAX_SECONDS, v);
            Py_DECREF(v);
        }
        return -1;
    }
    return (int64_t)(s * 1e9);
}

static char *
copy_payload(PyObject *obj, size_t *len)
{
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    char *out = NULL;
    if (view.len > WD_MAX_PAYLOAD) {
        PyErr_Format(PyExc_ValueError, "payload of %zd bytes exceeds %d", view.len,
                     WD_MAX_PAYLOAD);
    }
    else if ((out = malloc(view.len > 0 ? (size_t)view.len : 1)) == NULL) {
        PyErr_NoMemory();
    }
    else {
        memcpy(out, view.buf, (size_t)view.len);
        *len = (size_t)view.len;
    }
    PyBuffer_Release(&view);
    return out;
}

/* dup() fd (FD_CLOEXEC) for `role`; ValueError if a write to it could block the thread: a
 * socket is written with MSG_DONTWAIT and a regular file never waits for a reader, anything
 * else (pipe, FIFO, tty, character device) must be O_NONBLOCK. -1 with an exception set. */
static int
dup_fd(int fd, const char *role, int *is_sock)
{
    struct stat st;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fstat(fd, &st) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (!S_ISSOCK(st.st_mode) && !S_ISREG(st.st_mode) && !(flags & O_NONBLOCK)) {
        PyErr_Format(PyExc_ValueError, "%s: fd %d is blocking: the watchdog thread must never "
                     "block on a write, set O_NONBLOCK (os.set_blocking(fd, False))", role, fd);
        return -1;
    }
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (d < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
    }
    if (is_sock != NULL) {
        *is_sock = S_ISSOCK(st.st_mode);
    }
    return d;
}

/* Parse `seq` of pairs into p. On error: exception set, p holds only what it owns. */
static int
parse_fd_writes(PyObject *seq, wd_plan *p)
{
    PyObject *fast = PySequence_Fast(seq, "fd_writes must be a sequence of (fd, bytes)");
    if (fast == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > WD_MAX_FDS) {
        PyErr_Format(PyExc_ValueError, "at most %d fd_writes, got %zd", WD_MAX_FDS, n);
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int fd;
        PyObject *payload;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "iO;fd_writes item must be "
                              "(fd: int, payload: bytes)", &fd, &payload)) {
            goto fail;
        }
        wd_fd_action *a = &p->fds[p->n_fds];
        if ((a->data = copy_payload(payload, &a->len)) == NULL) {
            goto fail;
        }
        if ((a->fd = dup_fd(fd, "fd_writes", &a->is_sock)) < 0) {
            free(a->data);
            goto fail;
        }
        p->n_fds++;
    }
    Py_DECREF(fast);
    return 0;
fail:
    Py_DECREF(fast);
    return -1;
}

static int
parse_file_writes(PyObject *seq, wd_plan *p)
{
    PyObject *fast = PySequence_Fast(seq, "file_writes must be a sequence of (path, bytes)");
    if (fast == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > WD_MAX_FILES) {
        PyErr_Format(PyExc_ValueError, "at most %d file_writes, got %zd", WD_MAX_FILES, n);
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *path = NULL, *payload;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "O&O;file_writes item must "
                              "be (path: str, payload: bytes)", PyUnicode_FSConverter, &path,
                              &payload)) {
            goto fail;
        }
        wd_file_action *a = &p->files[p->n_files];
        a->path = strdup(PyBytes_AS_STRING(path));
        Py_DECREF(path);
        if (a->path == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        if ((a->data = copy_payload(payload, &a->len)) == NULL) {
            free(a->path);
            goto fail;
        }
        p->n_files++;
    }
    Py_DECREF(fast);
    return 0;
fail:
    Py_DECREF(fast);
    return -1;
}

static PyObject *
results_dict(const int64_t *written, const int64_t *replies, size_t n_fds,
             const int64_t *files, size_t n_files)
{
    PyObject *w = PyList_New((Py_ssize_t)n_fds);
    PyObject *r = PyList_New((Py_ssize_t)n_fds);
    PyObject *f = PyList_New((Py_ssize_t)n_files);
    PyObject *d = NULL;
    if (w == NULL || r == NULL || f == NULL) {
        goto done;
    }
    for (size_t i = 0; i < n_fds; i++) {
        PyObject *a = PyLong_FromLongLong(written[i]), *b = PyLong_FromLongLong(replies[i]);
        if (a == NULL || b == NULL) {
            Py_XDECREF(a);
            Py_XDECREF(b);
            goto done;
        }
        PyList_SET_ITEM(w, (Py_ssize_t)i, a);
        PyList_SET_ITEM(r, (Py_ssize_t)i, b);
    }
    for (size_t i = 0; i < n_files; i++) {
        PyObject *a = PyLong_FromLongLong(files[i]);
        if (a == NULL) {
            goto done;
        }
        PyList_SET_ITEM(f, (Py_ssize_t)i, a);
    }
    d = Py_BuildValue("{sOsOsO}", "fd_writes", w, "replies", r, "file_writes", f);
done:
    Py_XDECREF(w);
    Py_XDECREF(r);
    Py_XDECREF(f);
    return d;
}

/* Keep the results of a detached plan that fired (GIL held, plan private to us). */
static int
keep_results(WatchdogObject *self, wd_plan *old)
{
    if (old == NULL || !old->has_results) {
        return 0;
    }
    PyObject *d = results_dict(old->written, old->replies, old->n_fds, old->file_results,
                               old->n_files);
    if (d == NULL) {
        return -1;
    }
    Py_XSETREF(self->last_results, d);
    return 0;
}

static PyObject *
closed_error(void)
{
    PyErr_SetString(PyExc_ValueError, "watchdog is closed");
    return NULL;
}

static PyObject *
forked_error(void)
{
    PyErr_SetString(PyExc_ValueError, "watchdog inherited through fork() is inert: its thread "
                    "runs only in the parent; create a new Watchdog in this process");
    return NULL;
}

PyDoc_STRVAR(arm_doc,
"arm($self, /, deadline_s, *, fd_writes=(), reply_timeout_s=0.05, file_writes=(),\n"
"    hw_watchdog_fd=-1, hw_feed_interval_s=1.0, exit_code=None)\n--\n\n"
"Fire unless kick() comes within deadline_s. Replaces any previous actions atomically and\n"
"clears the fired latch. fds are dup()'d and payloads copied now; ValueError/TypeError on bad\n"
"arguments, OSError if an fd cannot be dup()'d; nothing changes on error.");

static PyObject *
wd_arm(WatchdogObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"deadline_s", "fd_writes", "reply_timeout_s", "file_writes",
                             "hw_watchdog_fd", "hw_feed_interval_s", "exit_code", NULL};
    double deadline_s, reply_s = 0.05, feed_s = 1.0;
    PyObject *fd_writes = NULL, *file_writes = NULL, *exit_obj = Py_None;
    int hw_fd = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "d|$OdOidO:arm", kwlist, &deadline_s,
                                     &fd_writes, &reply_s, &file_writes, &hw_fd, &feed_s,
                                     &exit_obj)) {
        return NULL;
    }
    if (self->core->forked) {
        return forked_error();
    }
    wd_plan *p = calloc(1, sizeof *p);
    if (p == NULL) {
        return PyErr_NoMemory();
    }
    p->hw_fd = -1;
    p->exit_code = -1;
    if ((p->period_ns = seconds_to_ns(deadline_s, "deadline_s", 0)) < 0
        || (p->reply_timeout_ns = seconds_to_ns(reply_s, "reply_timeout_s", 1)) < 0
        || (p->feed_interval_ns = seconds_to_ns(feed_s, "hw_feed_interval_s", 0)) < 0) {
        goto fail;
    }
    if (exit_obj != Py_None) {
        long code = PyLong_AsLong(exit_obj);
        if (code == -1 && PyErr_Occurred()) {
            goto fail;
        }
        if (code < 0 || code > 255) {
            PyErr_Format(PyExc_ValueError, "exit_code must be in 0..255, got %ld", code);
            goto fail;
        }
        p->exit_code = (int)code;
    }
    if ((fd_writes != NULL && parse_fd_writes(fd_writes, p) < 0)
        || (file_writes != NULL && parse_file_writes(file_writes, p) < 0)) {
        goto fail;
    }
    if (hw_fd != -1 && (p->hw_fd = dup_fd(hw_fd, "hw_watchdog_fd", NULL)) < 0) {
        goto fail;
    }

    wd_core *c = self->core;
    wd_plan *old = NULL;
    int closed = 0, err = 0;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&c->mu);
    wait_idle(c);
    if (c->closed) {
        closed = 1;
    }
    else if (!c->thread_started && (err = start_thread(c)) != 0) {
        /* nothing swapped */
    }
    else {
        old = c->plan;
        c->plan = p;
        c->fired = 0;
        int64_t now = mono_ns();
        c->deadline_ns = now + p->period_ns;
        c->next_feed_ns = now; /* feed at once */
        pthread_cond_signal(&c->wake);
    }
    pthread_mutex_unlock(&c->mu);
    Py_END_ALLOW_THREADS
    if (closed) {
        closed_error();
        goto fail;
    }
    if (err != 0) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto fail;
    }
    int kept = keep_results(self, old);
    plan_free(old);
    if (kept < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
fail:
    plan_free(p);
    return NULL;
}

PyDoc_STRVAR(kick_doc,
"kick($self, /)\n--\n\nPush the deadline to now + deadline_s. O(1), never waits on the thread. No\n"
"effect when disarmed; after a fire it is counted but does not un-fire (re-arm does).\n"
"ValueError after close().");

static PyObject *
wd_kick(WatchdogObject *self, PyObject *Py_UNUSED(ignored))
{
    wd_core *c = self->core;
    int closed;
    if (c->forked) {
        return forked_error();
    }
    pthread_mutex_lock(&c->mu);
    closed = c->closed;
    if (!closed && c->plan != NULL) {
        c->kicks++;
        int64_t next = mono_ns() + c->plan->period_ns;
        c->deadline_ns = next;
        if (next < c->wait_until_ns && c->wait_until_ns != INT64_MAX) {
            pthread_cond_signal(&c->wake);
        }
    }
    pthread_mutex_unlock(&c->mu);
    if (closed) {
        return closed_error();
    }
    Py_RETURN_NONE;
}

/* Detach the plan (and stop the thread if `stop`); write 'V' to the hw watchdog unless the
 * watchdog fired (then the board is left to reboot). Returns the detached plan. */
static wd_plan *
detach(wd_core *c, int stop)
{
    wd_plan *old;
    int fired;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&c->mu);
    wait_idle(c);
    old = c->plan;
    c->plan = NULL;
    fired = c->fired;
    if (stop) {
        c->stop = 1;
        c->closed = 1;
    }
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->mu);
    if (old != NULL && old->hw_fd >= 0 && !fired) {
        ssize_t n;
        do {
            n = write(old->hw_fd, "V", 1); /* magic close: a clean stop must not reboot */
        } while (n < 0 && errno == EINTR);
    }
    Py_END_ALLOW_THREADS
    return old;
}

PyDoc_STRVAR(disarm_doc,
"disarm($self, /)\n--\n\nStop watching and release the actions' fds. A held hw watchdog fd gets the\n"
"magic close 'V' first, unless the watchdog fired (the board is then left to reboot).");

static PyObject *
wd_disarm(WatchdogObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->core->forked) {
        Py_RETURN_NONE; /* the dups were closed at fork; nothing runs here */
    }
    wd_plan *old = detach(self->core, 0);
    int kept = keep_results(self, old);
    plan_free(old);
    if (kept < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static void
core_close(WatchdogObject *self)
{
    wd_core *c = self->core;
    if (c == NULL || c->forked) {
        return; /* forked: no thread to stop or join, mu/cond may be held by a ghost */
    }
    wd_plan *old = detach(c, 1);
    if (keep_results(self, old) < 0) {
        PyErr_Clear(); /* only reachable on MemoryError; the results are lost, not the fds */
    }
    plan_free(old);
    /* thread_started is final once closed is set (detach); `joining` is claimed with the GIL
     * held, so of two concurrent close() calls one joins and the other returns at once. */
    if (c->thread_started && !c->joining) {
        c->joining = 1;
        Py_BEGIN_ALLOW_THREADS
        pthread_join(c->thread, NULL);
        Py_END_ALLOW_THREADS
    }
}

PyDoc_STRVAR(close_doc,
"close($self, /)\n--\n\ndisarm(), then stop and join the thread. Idempotent; arm() and kick() raise\n"
"ValueError afterwards.");

static PyObject *
wd_close(WatchdogObject *self, PyObject *Py_UNUSED(ignored))
{
    core_close(self);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(stats_doc,
"stats($self, /)\n--\n\nCounters and the last fire's results, as a new dict (see the .pyi stub).");

static PyObject *
wd_stats(WatchdogObject *self, PyObject *Py_UNUSED(ignored))
{
    wd_core *c = self->core;
    wd_core snap;
    wd_plan res;
    int have = 0, forked = c->forked;
    Py_BEGIN_ALLOW_THREADS
    if (!forked) { /* forked: a single thread, and mu may be held by one that is gone */
        pthread_mutex_lock(&c->mu);
        wait_idle(c);
    }
    snap.plan = forked ? NULL : c->plan;
    snap.fired = c->fired;
    snap.kicks = c->kicks;
    snap.fires = c->fires;
    snap.feeds = c->feeds;
    snap.feed_errors = c->feed_errors;
    snap.worst_lateness_ns = c->worst_lateness_ns;
    snap.last_lateness_ns = c->last_lateness_ns;
    if (c->plan != NULL && c->plan->has_results) {
        memcpy(&res, c->plan, sizeof res); /* copy arrays; pointers inside are not used */
        have = 1;
    }
    if (!forked) {
        pthread_mutex_unlock(&c->mu);
    }
    Py_END_ALLOW_THREADS
    PyObject *results;
    if (have) {
        results = results_dict(res.written, res.replies, res.n_fds, res.file_results,
                               res.n_files);
        if (results == NULL) {
            return NULL;
        }
    }
    else {
        results = Py_NewRef(self->last_results != NULL ? self->last_results : Py_None);
    }
    PyObject *d = Py_BuildValue(
        "{sOsOsKsKsKsKsLsLsN}", "armed", snap.plan != NULL ? Py_True : Py_False, "fired",
        snap.fired ? Py_True : Py_False, "kicks", (unsigned long long)snap.kicks, "fires",
        (unsigned long long)snap.fires, "feeds", (unsigned long long)snap.feeds,
        "feed_errors", (unsigned long long)snap.feed_errors, "worst_lateness_ns",
        (long long)snap.worst_lateness_ns, "last_lateness_ns",
        (long long)snap.last_lateness_ns, "last_fire_results", results);
    return d;
}

static PyObject *
wd_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Watchdog() takes no arguments");
        return NULL;
    }
    WatchdogObject *self = (WatchdogObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    wd_core *c = calloc(1, sizeof *c);
    if (c == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    pthread_condattr_t attr;
    int err = pthread_condattr_init(&attr);
    if (err == 0) {
        err = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (err == 0 && (err = pthread_mutex_init(&c->mu, NULL)) == 0) {
            if ((err = pthread_cond_init(&c->wake, &attr)) == 0) {
                if ((err = pthread_cond_init(&c->idle, NULL)) != 0) {
                    pthread_cond_destroy(&c->wake);
                }
            }
            if (err != 0) {
                pthread_mutex_destroy(&c->mu);
            }
        }
        pthread_condattr_destroy(&attr);
    }
    if (err != 0) {
        free(c);
        Py_DECREF(self);
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    c->wait_until_ns = INT64_MAX;
    self->core = c;
    pthread_mutex_lock(&registry_mu);
    c->next = registry;
    registry = c;
    pthread_mutex_unlock(&registry_mu);
    return (PyObject *)self;
}

static void
wd_dealloc(WatchdogObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    wd_core *c = self->core;
    if (c != NULL) {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        core_close(self);
        PyErr_Restore(et, ev, tb);
        pthread_mutex_lock(&registry_mu);
        wd_core **link = &registry;
        while (*link != c) {
            link = &(*link)->next;
        }
        *link = c->next;
        pthread_mutex_unlock(&registry_mu);
        if (c->forked) {
            plan_free(c->plan); /* its fds are already closed */
        }
        else {
            pthread_cond_destroy(&c->idle);
            pthread_cond_destroy(&c->wake);
            pthread_mutex_destroy(&c->mu);
        }
        free(c);
        self->core = NULL;
    }
    Py_CLEAR(self->last_results);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMethodDef wd_methods[] = {
    {"arm", (PyCFunction)(void (*)(void))wd_arm, METH_VARARGS | METH_KEYWORDS, arm_doc},
    {"kick", (PyCFunction)wd_kick, METH_NOARGS, kick_doc},
    {"disarm", (PyCFunction)wd_disarm, METH_NOARGS, disarm_doc},
    {"close", (PyCFunction)wd_close, METH_NOARGS, close_doc},
    {"stats", (PyCFunction)wd_stats, METH_NOARGS, stats_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(wd_doc,
"Watchdog()\n--\n\nA native watchdog thread that writes prepared bytes to fds and files, stops\n"
"feeding a hw watchdog and optionally _exit()s when kick() is late, even while another\n"
"thread holds the GIL. See firmware_bridge/_watchdog.pyi for the full contract.");

static PyType_Slot wd_slots[] = {
    {Py_tp_new, wd_new},
    {Py_tp_dealloc, wd_dealloc},
    {Py_tp_methods, wd_methods},
    {Py_tp_doc, (void *)wd_doc},
    {0, NULL},
};

static PyType_Spec wd_spec = {
    .name = "firmware_bridge._watchdog.Watchdog",
    .basicsize = sizeof(WatchdogObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = wd_slots,
};

static int
module_exec(PyObject *m)
{
    pthread_once(&atfork_once, atfork_register);
    if (atfork_err != 0) {
        errno = atfork_err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    module_state *st = PyModule_GetState(m);
    st->watchdog_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &wd_spec, NULL);
    if (st->watchdog_type == NULL) {
        return -1;
    }
    return PyModule_AddType(m, st->watchdog_type);
}

static int
module_traverse(PyObject *m, visitproc visit, void *arg)
{
    module_state *st = PyModule_GetState(m);
    Py_VISIT(st->watchdog_type);
    return 0;
}

static int
module_clear(PyObject *m)
{
    module_state *st = PyModule_GetState(m);
    Py_CLEAR(st->watchdog_type);
    return 0;
}

static void
module_free(void *m)
{
    module_clear((PyObject *)m);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "firmware_bridge._watchdog",
    .m_doc = "Native watchdog thread (see Watchdog).",
    .m_size = sizeof(module_state),
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__watchdog(void)
{
    return PyModuleDef_Init(&module_def);
}
