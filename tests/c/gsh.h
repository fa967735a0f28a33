/* The Ganesha generation the harness is built for: 4.3's (gsh43.h) or, with -DGSH15,
 * 15.2's (gsh152.h, which redefines what moved). */
#ifndef GSH_H
#define GSH_H
#ifdef GSH15
#include "gsh152.h"
#else
#include "gsh43.h"
#endif
#endif
