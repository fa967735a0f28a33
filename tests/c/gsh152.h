/*
 * NFS-Ganesha 15.2's declarations where they differ from 4.3's (gsh43.h), transcribed from
 * shared/reference/ganesha-versions.md (measured from the disassembly of Debian sid's
 * libganesha_nfsd.so.15.2 and libganesha_rados_recov.so), independently of the project's
 * include/ganesha_abi.h. Included instead of gsh43.h when built with -DGSH15 (gsh.h).
 */
#ifndef GSH152_H
#define GSH152_H

#include <netinet/in.h>
#include <sys/socket.h>

#include "gsh43.h"

/* ---- log.h: 6.x numbering, and QOS, RECOVERY, RDMA, GRPC added -------------------- */

#undef COMPONENT_STATE
#undef COMPONENT_COUNT
#define COMPONENT_STATE 30
#define COMPONENT_RECOVERY 38
#define COMPONENT_COUNT 41

/* ---- config_parsing.h: the block carries the memory component it is counted under -- */

#define MEM_COMP_CONFIG 4

struct config_block_v15 {
	char *dbus_interface_name;
	struct config_item blk_desc;
	int mem_comp;
};

/* ---- sal_functions.h: 14 hooks, read_clids takes only the grace-start record --------- */

struct nfs4_recovery_backend_v15 {
	int (*recovery_init)(void);
	void (*recovery_shutdown)(void);
	void (*recovery_read_clids)(nfs_grace_start_t *gsp);
	void (*add_clid)(nfs_client_id_t *);
	void (*rm_clid)(nfs_client_id_t *);
	void (*reclaim_complete)(nfs_client_id_t *);
	void (*add_revoke_fh)(nfs_client_id_t *, nfs_fh4 *);
	void (*end_grace)(void);
	void (*maybe_start_grace)(void);
	bool (*try_lift_grace)(void);
	void (*set_enforcing)(void);
	bool (*grace_enforcing)(void);
	bool (*is_member)(void);
	int (*get_nodeid)(char **pnodeid);
};

/* Ganesha's exports a 15.x backend calls. */
clid_entry_t *nfs4_add_clid_entry(char *cl_name, bool reclaim_complete);
rdel_fh_t *nfs4_add_rfh_entry(clid_entry_t *clid_ent, char *rfh_name);
char *nfs4_create_clid_name(nfs_client_id_t *clientid, size_t *len);
void gsh_mem_stats_update_free(void *p, int component, const char *file, int line,
			       const char *function);
#define MEM_COMP_RECOVERY 19

/* ---- measured 15.2 layout ---------------------------------------------------------- */

#undef CID_RECOV_TAG_OFF
#undef CID_CLIENT_RECORD_OFF
#undef CID_MINORVERSION_OFF
#undef CID_GSH_CLIENT_OFF
#undef CID_SIZE
#undef CR_SIZE
#undef CR_SERVER_ADDR_OFF
#undef CR_CLIENT_VAL_LEN_OFF
#undef CR_CLIENT_VAL_OFF
#define CID_RECOV_TAG_OFF 88
#define CID_CLIENT_RECORD_OFF 96
#define CID_MINORVERSION_OFF 1216
#define CID_GSH_CLIENT_OFF 1232
#define CID_SIZE 1240
/* A sockaddr (IPv4 or IPv6, set for NFSv4.0 clients too) up to cr_pnfs_flags at 320. */
#define CR_SERVER_ADDR_OFF 64
#define CR_CLIENT_VAL_LEN_OFF 328
#define CR_CLIENT_VAL_OFF 332
#define CR_SIZE 336

_Static_assert(sizeof(struct config_block_v15) == 88, "config_block is 88 bytes in 15.2");
_Static_assert(offsetof(struct config_block_v15, mem_comp) == 80, "mem_comp at 80");
_Static_assert(sizeof(struct nfs4_recovery_backend_v15) == 112, "14 hooks");
_Static_assert(offsetof(struct nfs4_recovery_backend_v15, reclaim_complete) == 40,
	       "reclaim_complete between rm_clid and add_revoke_fh");
_Static_assert(offsetof(struct nfs4_recovery_backend_v15, get_nodeid) == 104,
	       "get_nodeid at 104");
_Static_assert(sizeof(struct sockaddr_storage) <= 320 - 64, "a sockaddr fits before 320");

#endif
