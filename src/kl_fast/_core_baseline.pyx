# The compiled core for every CPU (see _core.pxi).
include "_core.pxi"
