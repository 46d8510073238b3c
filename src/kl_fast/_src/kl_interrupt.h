/* Ctrl-C during long kernels.

   While a long kernel runs (without the GIL), the Cython layer routes SIGINT
   to kl_on_sigint: it raises kl_stop_flag, which the row, pair and fit loops
   of that call (stop_requested(watched) in _interrupt.pxi; no other call's
   loops read it) read between rows, pairs and iterations to return early, and then calls the
   handler it replaced (Python's), which records the signal; once the kernel
   is back, the Cython layer restores that handler and raises
   KeyboardInterrupt.  Each compiled module has its own flag and saved
   handler (they are set and restored with the GIL held, on the main thread). */
#ifndef KL_INTERRUPT_H
#define KL_INTERRUPT_H
#include <signal.h>

typedef void (*kl_sighandler)(int);
static volatile sig_atomic_t kl_stop_flag = 0;
static kl_sighandler kl_prev_sigint = 0;

static void kl_on_sigint(int sig)
{
    kl_stop_flag = 1;
    if (kl_prev_sigint != 0 && kl_prev_sigint != SIG_IGN && kl_prev_sigint != SIG_DFL)
        kl_prev_sigint(sig);
}

static inline int kl_stop_requested(void) { return kl_stop_flag != 0; }
static inline void kl_stop_reset(void) { kl_stop_flag = 0; }

#endif /* KL_INTERRUPT_H */
