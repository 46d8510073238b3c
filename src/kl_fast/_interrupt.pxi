# Ctrl-C during long kernels (included by each compiled module: every module
# has its own stop flag, see _src/kl_interrupt.h).
#
# A call whose work reaches LONG_WORK (about 0.1 s and more) watches SIGINT:
#     watched = _watch_interrupts(work)      (a cdef bint)
#     try:
#         with nogil: ... loops that test stop_requested(watched) ...
#     finally:
#         _end_watch(watched)      # raises KeyboardInterrupt after a Ctrl-C
# Only on the main thread, and only while SIGINT has Python's default handler
# (a program that ignores or handles SIGINT itself is left alone).
import signal as _signal
import threading as _threading

from cpython.exc cimport PyErr_CheckSignals

cdef extern from "kl_interrupt.h" nogil:
    ctypedef void (*kl_sighandler)(int)
    kl_sighandler kl_prev_sigint
    void kl_on_sigint(int)
    int kl_stop_requested()
    void kl_stop_reset()

cdef extern from "Python.h":
    kl_sighandler PyOS_setsig(int sig, kl_sighandler handler)

cdef extern from "<signal.h>":
    int SIGINT

# Work units (elements, or grid points times iterations) from which a call
# watches for Ctrl-C: 2**23 is a few ms to 0.1 s of kernel time.
cdef Py_ssize_t LONG_WORK = 1 << 23


cdef inline bint stop_requested(bint watched) noexcept nogil:
    """kl_stop_requested() in a call that watches SIGINT, never in one that does
    not: a Ctrl-C meant for a long call on the main thread must not cut short a
    call on another thread, which would return with rows not computed."""
    return watched and kl_stop_requested()


cdef inline int never_stop() noexcept nogil:
    """The stop function of a fit that does not watch SIGINT."""
    return 0


cdef bint _watch_interrupts(double work) except -1:
    """Route SIGINT to the stop flag for a long call; True when it did."""
    global kl_prev_sigint
    if work < LONG_WORK or kl_prev_sigint != NULL:
        return False
    if _threading.current_thread() is not _threading.main_thread() \
            or _signal.getsignal(_signal.SIGINT) is not _signal.default_int_handler:
        return False
    kl_stop_reset()
    kl_prev_sigint = PyOS_setsig(SIGINT, kl_on_sigint)
    # A Ctrl-C that came just before (Python's handler noted it, to act at its next
    # check, which a long kernel would put off to its end): it stops the call now.
    # One after the line above goes to kl_on_sigint: none falls between.
    if PyErr_CheckSignals() < 0:
        PyOS_setsig(SIGINT, kl_prev_sigint)
        kl_prev_sigint = NULL
        return -1
    return True


cdef int _end_watch(bint watched) except -1:
    """Restore Python's SIGINT handler; raise KeyboardInterrupt if a Ctrl-C
    stopped the kernel (its results are incomplete)."""
    global kl_prev_sigint
    if not watched:
        return 0
    PyOS_setsig(SIGINT, kl_prev_sigint)
    kl_prev_sigint = NULL
    if kl_stop_requested():
        kl_stop_reset()
        PyErr_CheckSignals()  # runs Python's handler: KeyboardInterrupt
        raise KeyboardInterrupt
    return 0
