/*
 * The subset of NFS-Ganesha's recovery-backend ABI that ganesha-ctdb consumes.
 *
 * Written from the public Ganesha sources (tags V4.3, V5.9, V6.2) and checked against the
 * Debian 12 binaries; see shared/reference/ganesha-abi.md. Only types whose layout does not
 * move between the supported versions are declared as structs here. nfs_client_id_t and
 * struct gsh_client move (V6 shifts gsh_client), so they are reached through the per-version
 * offset tables below and never declared as structs: the Rust side picks the table after it
 * has identified the running Ganesha, and refuses to start on any other version.
 */
#ifndef GANESHA_CTDB_GANESHA_ABI_H
#define GANESHA_CTDB_GANESHA_ABI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nfs_client_id_t nfs_client_id_t; /* opaque: use the offsets */
typedef struct clid_entry clid_entry_t;         /* opaque: only handed back to Ganesha */
typedef struct rdel_fh rdel_fh_t;               /* opaque */
typedef void *config_file_t;                    /* opaque parse tree */

/* nfs_grace_start_t (sal_functions.h): event@0, nodeid@4, ipaddr@8; size 16 */
typedef struct nfs_grace_start {
	int event;
	int nodeid;
	char *ipaddr;
} nfs_grace_start_t;

/* enum grace_event */
enum ganesha_grace_event {
	EVENT_JUST_GRACE = 0,
	EVENT_CLEAR_BLOCKED = 1,
	EVENT_RELEASE_IP = 2,
	EVENT_UPDATE_CLIENTS = 3,
	EVENT_TAKE_NODEID = 4,
	EVENT_TAKE_IP = 5,
};

/* nfs_fh4 (nfsv41.h): u_int len@0, char *val@8; size 16 */
typedef struct nfs_fh4 {
	unsigned int nfs_fh4_len;
	char *nfs_fh4_val;
} nfs_fh4;

typedef clid_entry_t *(*add_clid_entry_hook)(char *);
typedef rdel_fh_t *(*add_rfh_entry_hook)(clid_entry_t *, char *);

/* struct nfs4_recovery_backend: 13 function pointers, size 104, same in 4.3/5.9/6.2 */
struct nfs4_recovery_backend {
	int (*recovery_init)(void);
	void (*recovery_shutdown)(void);
	void (*recovery_read_clids)(nfs_grace_start_t *gsp, add_clid_entry_hook add_clid,
				    add_rfh_entry_hook add_rfh);
	void (*add_clid)(nfs_client_id_t *);
	void (*rm_clid)(nfs_client_id_t *);
	void (*add_revoke_fh)(nfs_client_id_t *, nfs_fh4 *);
	void (*end_grace)(void);
	void (*maybe_start_grace)(void);
	bool (*try_lift_grace)(void);
	void (*set_enforcing)(void);
	bool (*grace_enforcing)(void);
	bool (*is_member)(void);
	int (*get_nodeid)(char **pnodeid);
};

/* The 15.x generation (Debian sid's 15.2; measured from the disassembly of its
 * libganesha_nfsd.so.15.2 and libganesha_rados_recov.so, see docs/architecture.md):
 * 14 slots, a reclaim_complete hook at slot 5, and recovery_read_clids takes only the
 * grace-start record; backends hand clients back through Ganesha's exported
 * nfs4_add_clid_entry(name, reclaim_complete) and nfs4_add_rfh_entry(entry, handle). */
typedef clid_entry_t *(*add_clid_entry_v15_fn)(char *name, bool reclaim_complete);
typedef rdel_fh_t *(*add_rfh_entry_v15_fn)(clid_entry_t *entry, char *handle);
/* char *nfs4_create_clid_name(nfs_client_id_t *, size_t *len): the recovery tag as
 * Ganesha's own backends store it (honours NFSV4 { RecoverySkipIp }); allocated by Ganesha
 * (malloc, counted under memory component 19). */
typedef char *(*create_clid_name_fn)(nfs_client_id_t *cid, size_t *len);
/* void gsh_mem_stats_update_free(void *, int component, file, line, function): what
 * Ganesha's backends call before free() on a tag from nfs4_create_clid_name. */
typedef void (*mem_stats_update_free_fn)(void *p, int component, const char *file, int line,
					 const char *function);
#define GSH15_MEM_COMP_RECOVERY 19

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

/* 15.x nfs_client_id_t and nfs_client_record_t (cr_server_addr is a sockaddr_t, IPv4 or
 * IPv6, set for NFSv4.0 clients too). */
#define GSH152_CID_RECOV_TAG_OFF 88
#define GSH152_CID_CLIENT_RECORD_OFF 96
#define GSH152_CID_MINORVERSION_OFF 1216
#define GSH152_CID_GSH_CLIENT_OFF 1232
#define GSH152_CR_SERVER_ADDR_OFF 64
#define GSH152_CR_CLIENT_VAL_LEN_OFF 328
#define GSH152_CR_CLIENT_VAL_OFF 332
#define GSH_COMPONENT_RECOVERY_V15 38

/* log_levels_t (log.h), same in 4.3/5.9/6.2 */
enum ganesha_log_level {
	NIV_NULL = 0,
	NIV_FATAL = 1,
	NIV_MAJ = 2,
	NIV_CRIT = 3,
	NIV_WARN = 4,
	NIV_EVENT = 5,
	NIV_INFO = 6,
	NIV_DEBUG = 7,
	NIV_MID_DEBUG = 8,
	NIV_FULL_DEBUG = 9,
};

/* log_components_t values we log under. STATE moves to 30 in V6 (COMPONENT_RPC removed). */
#define GSH_COMPONENT_CLIENTID 21
#define GSH_COMPONENT_STATE_V4 31
#define GSH_COMPONENT_STATE_V6 30

/* DisplayLogComponentLevel(component, file, line, function, level, format, ...) */
typedef void (*display_log_component_level_fn)(int component, const char *file, int line,
					       const char *function, int level,
					       const char *format, ...);

/* Offsets that move between Ganesha versions (Debian build options: _HAVE_GSSAPI on,
 * DEBUG_SAL off). nfs_client_id_t: */
#define GSH_CID_CLIENTID_OFF 0        /* uint64_t, all versions */
#define GSH_CID_CONFIRMED_OFF 32      /* int, all versions */
#define GSH_CID_RECOV_TAG_OFF 80      /* char *, malloc'd, freed by Ganesha */
#define GSH_CID_CLIENT_RECORD_OFF 88  /* nfs_client_record_t * */
#define GSH43_CID_MINORVERSION_OFF 1192
#define GSH43_CID_GSH_CLIENT_OFF 1208
#define GSH43_CID_SIZE 1216
#define GSH62_CID_MINORVERSION_OFF 1200
#define GSH62_CID_GSH_CLIENT_OFF 1216
#define GSH62_CID_SIZE 1256
/* Releasing a client the way Ganesha's reaper does (its lease is over): nfs_client_id_t's
 * cid_last_renew (time_t) and cid_mutex (pthread_mutex_t, held by Ganesha around every
 * lease update), the same in 4.3, 5.9 and 6.2 (sal_data.h). */
#define GSH_CID_LAST_RENEW_OFF 24
#define GSH_CID_MUTEX_OFF 128
#define GSH_CONFIRMED_CLIENT_ID 1     /* nfs_clientid_confirm_state_t */
/* hashtable_for_each(ht, cb, arg) hands cb each struct rbt_node; its rbt_opaq is the
 * struct hash_data whose val.addr is the nfs_client_id_t (hashtable.h, all versions). */
#define GSH_RBT_OPAQ_OFF 48
#define GSH_HASH_DATA_VAL_ADDR_OFF 16
/* The request an NFSv4.0 SETCLIENTID_CONFIRM (add_clid) runs in, 4.3 only: the TLS op_ctx
 * points to a struct req_op_context (fsal_api.h) whose caller_addr is
 * svc_getrpccaller(xprt) == &xprt->xp_remote.ss (nfs_worker_thread.c). In libntirpc 4.3's
 * SVCXPRT (rpc/svc.h) xp_local immediately precedes xp_remote, each a struct rpc_address:
 * a struct netbuf { u_int maxlen, len; void *buf; } (16 bytes) then a sockaddr_storage
 * (128 bytes), and for a TCP connection nb.buf points at its own ss (__rpc_address_setup).
 */
#define GSH43_OPCTX_CALLER_ADDR_OFF 88  /* sockaddr_t * */
#define GSH43_OPCTX_NFS_VERS_OFF 104    /* uint32_t */
#define GSH43_OPCTX_NFS_MINORVERS_OFF 108 /* uint32_t */
#define GSH43_OPCTX_CLIENT_OFF 120      /* struct gsh_client * */
#define GSH_NTIRPC_RPC_ADDRESS_SIZE 144 /* struct rpc_address, also libntirpc 6.3 (Debian 13) */
/* 6.x (6.2 and Debian 13's 6.5: sal_data.h and fsal_api.h identical for these) keeps the
 * 4.3 request-context prefix (caller_addr 88, nfs_vers 104, nfs_minorvers 108, client 120)
 * and adds, after gsh_client, the count of the client's open files. An expired client with
 * fewer open files than Max_Open_Files_For_Expired_Client (default 4000) is "parked" with
 * its state (Expired_Client_Threshold, default 16; nfs4_clientid.c nfs_client_id_expire)
 * instead of being expired: its locks would stay held. */
#define GSH62_CID_OPEN_STATE_COUNTER_OFF 1224 /* uint32_t, updated atomically */
/* 6.5's NFSV4 { Sticky_Grace } (bool, default false), the first member of
 * nfs_param.nfsv4_param (gsh_config.h:611). Off, a refused try_lift_grace sets no
 * GRACE_STATUS_CHANGE_REQ and reclaims stay allowed (nfs4_recovery.c:161,569). Offset read
 * from Debian 13's libganesha_nfsd.so.6.5: nfs_init.c loads the NFSV4 block into nfs_param
 * + 0x1a0 (after the 416-byte core block), and nfs_get_grace_status and
 * nfs_put_grace_status test the byte at nfs_param + 0x1a0 before touching grace_status. */
#define GSH65_NFS_PARAM_STICKY_GRACE_OFF 0x1a0
/* 4.3's NFSV4 { Grace_Period } (uint32_t seconds) in nfs_param. Read from Debian 12's
 * libganesha_nfsd.so.4.3: nfs_try_lift_grace (the function that logs "check grace:reclaim
 * complete") loads nfs_param through the GOT, tests enable_NLM at +0x10d and adds the
 * 32-bit value at +0x178 to current_grace.tv_sec for its timeout. */
#define GSH43_NFS_PARAM_GRACE_PERIOD_OFF 0x178
#define GSH_NTIRPC_NETBUF_LEN_OFF 4     /* within struct netbuf, which precedes ss by 16 */
#define GSH_NTIRPC_NETBUF_BUF_OFF 8

/* nfs_client_record_t, all versions */
#define GSH_CR_SERVER_ADDR_OFF 64     /* uint32_t, host byte order, 0 for NFSv4.0 */
#define GSH_CR_CLIENT_VAL_LEN_OFF 72  /* int */
#define GSH_CR_CLIENT_VAL_OFF 76      /* char[] flexible, not NUL-terminated */
#define GSH_NFS4_OPAQUE_LIMIT 1024
/* struct gsh_client, all versions */
#define GSH_CLIENT_HOSTADDR_STR_OFF 104
#define GSH_SOCK_NAME_MAX 128

/* Config parsing (config_parsing.h), same in 4.3/5.9/6.2. */
enum ganesha_config_type {
	GSH_CONFIG_STRING = 9,
	GSH_CONFIG_PATH = 10,
	GSH_CONFIG_BLOCK = 17,
};
#define GSH_CONFIG_UNIQUE 0x001

/* struct config_error_type: 16 one-bit flags in the first uint16_t, then the error count. */
struct config_error_type {
	uint16_t flags;
	uint32_t errors;
	char *diag_buf;
	size_t diag_buf_size;
	void *fp;
};
#define GSH_CONFIG_ERR_INVALID (1u << 8)
#define GSH_CONFIG_ERR_VALIDATE (1u << 10)
#define GSH_CONFIG_ERR_BOGUS (1u << 13)
/* config_error_is_harmless() == ((flags & 0x9BEF) == 0) */
#define GSH_CONFIG_ERR_NOT_HARMLESS 0x9BEF

struct config_item {
	char *name;
	char *altname;
	int type;
	int flags;
	union {
		struct {
			int minsize;
			int maxsize;
			const char *def;
		} str;
		struct {
			void *(*init)(void *link_mem, void *self_struct);
			struct config_item *params;
			int (*commit)(void *node, void *link_mem, void *self_struct,
				      struct config_error_type *err_type);
			void (*display)(const char *step, void *node, void *link_mem,
					void *self_struct);
			bool (*check)(void *self_struct, struct config_error_type *err_type);
		} blk;
	} u;
	size_t off;
};

struct config_block {
	char *dbus_interface_name;
	struct config_item blk_desc;
};

/* load_config_from_parse(config, block, param, unique, err_type) */
typedef int (*load_config_from_parse_fn)(config_file_t config, struct config_block *conf_blk,
					 void *param, bool unique,
					 struct config_error_type *err_type);

#endif
