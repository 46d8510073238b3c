/* Elementary functions for the kernels.  Included once per instruction-set
   target with KLM_FN(name) defined by the includer, hence no include guard
   around the definitions.  (Portable libm versions; vectorised ones replace
   these.) */
#ifndef KLMATH_CONSTS_H
#define KLMATH_CONSTS_H
#include <math.h>
#include <float.h>
#include <stdint.h>
#include <string.h>
#endif

static inline double KLM_FN(log_f64)(double x) { return log(x); }
static inline float KLM_FN(log_f32)(float x) { return logf(x); }
static inline double KLM_FN(exp_f64)(double x) { return exp(x); }
static inline float KLM_FN(exp_f32)(float x) { return expf(x); }
