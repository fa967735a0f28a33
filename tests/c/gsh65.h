/*
 * NFS-Ganesha 6.5's (and 6.2's) declarations where they differ from 4.3's (gsh43.h): the
 * same 13-hook table, config block and client record, with nfs_client_id_t grown before
 * cid_minorversion and 6.x's log component numbering (shared/reference/ganesha-abi.md and
 * ganesha-versions.md; 6.5's sal_data.h). Included instead of gsh43.h with -DGSH65 (gsh.h).
 */
#ifndef GSH65_H
#define GSH65_H

#include "gsh43.h"

#undef COMPONENT_STATE
#define COMPONENT_STATE 30

#undef CID_MINORVERSION_OFF
#undef CID_GSH_CLIENT_OFF
#undef CID_SIZE
#define CID_MINORVERSION_OFF 1200
#define CID_GSH_CLIENT_OFF 1216
/* cid_open_state_counter (6.x) at 1224, then the expiry-parking fields. */
#define CID_SIZE 1264

#endif
