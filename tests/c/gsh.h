/* The Ganesha the harness is built for: 4.3's declarations (gsh43.h), 6.5's with -DGSH65
 * (gsh65.h) or 15.2's with -DGSH15 (gsh152.h); the latter two redefine what moved. */
#ifndef GSH_H
#define GSH_H
#if defined(GSH15)
#include "gsh152.h"
#elif defined(GSH65)
#include "gsh65.h"
#else
#include "gsh43.h"
#endif
#endif
