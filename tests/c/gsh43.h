/*
 * NFS-Ganesha 4.3's own declarations that the harness and the fake libganesha_nfsd need,
 * transcribed from the V4.3 sources (src/include/config_parsing.h, sal_functions.h,
 * sal_data.h, log.h) and the measured offsets in shared/reference/ganesha-abi.md.
 *
 * Deliberately independent of the project's include/ganesha_abi.h: if that header got an
 * offset or a bit wrong, the harness built from this one would notice.
 */
#ifndef GSH43_H
#define GSH43_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- log.h ------------------------------------------------------------------------- */

enum gsh_log_level {
	NIV_NULL, NIV_FATAL, NIV_MAJ, NIV_CRIT, NIV_WARN, NIV_EVENT,
	NIV_INFO, NIV_DEBUG, NIV_MID_DEBUG, NIV_FULL_DEBUG, NB_LOG_LEVEL
};

#define COMPONENT_CONFIG 20
#define COMPONENT_CLIENTID 21
#define COMPONENT_STATE 31
#define COMPONENT_COUNT 37

/* ---- config_parsing.h -------------------------------------------------------------- */

typedef struct config_root *config_file_t;

enum config_type {
	CONFIG_NULL = 0, CONFIG_INT16, CONFIG_UINT16, CONFIG_INT32, CONFIG_UINT32,
	CONFIG_INT64, CONFIG_UINT64, CONFIG_ANON_ID, CONFIG_FSID, CONFIG_STRING,
	CONFIG_PATH, CONFIG_LIST, CONFIG_ENUM, CONFIG_TOKEN, CONFIG_BOOL,
	CONFIG_BOOLBIT, CONFIG_IP_ADDR, CONFIG_BLOCK, CONFIG_PROC, CONFIG_DEPRECATED,
};

#define CONFIG_UNIQUE 0x001
#define CONFIG_MANDATORY 0x002
#define CONFIG_RELAX 0x008

/* Exactly Ganesha's: sixteen one-bit bools, then the count. */
struct config_error_type {
	bool scan:1;
	bool parse:1;
	bool init:1;
	bool fsal:1;
	bool cur_exp_create_err:1;
	bool all_exp_create_err:1;
	bool resource:1;
	bool unique:1;
	bool invalid:1;
	bool missing:1;
	bool validate:1;
	bool exists:1;
	bool internal:1;
	bool bogus:1;
	bool deprecated:1;
	bool dispose:1;
	uint32_t errors;
	char *diag_buf;
	size_t diag_buf_size;
	FILE *fp;
};

/* config_item with the two union members a string-only block uses; the union's size is
 * that of its largest member in Ganesha (blk: five pointers), asserted below. */
struct config_item {
	char *name;
	char *altname;
	enum config_type type;
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

/* ---- sal_data.h / sal_functions.h -------------------------------------------------- */

#define PATH_MAX_GSH 4096

struct glist_head {
	struct glist_head *next;
	struct glist_head *prev;
};

typedef struct rdel_fh {
	struct glist_head rdfh_list;
	char *rdfh_handle_str;
} rdel_fh_t;

typedef struct clid_entry {
	struct glist_head cl_list;
	struct glist_head cl_rfh_list;
	char cl_name[PATH_MAX_GSH];
} clid_entry_t;

typedef struct nfs_grace_start {
	int event;
	int nodeid;
	char *ipaddr;
} nfs_grace_start_t;

enum grace_event {
	EVENT_JUST_GRACE, EVENT_CLEAR_BLOCKED, EVENT_RELEASE_IP,
	EVENT_UPDATE_CLIENTS, EVENT_TAKE_NODEID, EVENT_TAKE_IP,
};

typedef struct {
	unsigned int nfs_fh4_len;
	char *nfs_fh4_val;
} nfs_fh4;

typedef struct nfs_client_id_t nfs_client_id_t; /* raw buffers at the offsets below */

typedef clid_entry_t *(*add_clid_entry_hook)(char *);
typedef rdel_fh_t *(*add_rfh_entry_hook)(clid_entry_t *, char *);

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

/* ---- measured 4.3 layout (Debian build: _HAVE_GSSAPI on, DEBUG_SAL off) ------------ */

#define CID_CLIENTID_OFF 0
#define CID_RECOV_TAG_OFF 80
#define CID_CLIENT_RECORD_OFF 88
#define CID_MINORVERSION_OFF 1192
#define CID_GSH_CLIENT_OFF 1208
#define CID_SIZE 1216

#define CR_SERVER_ADDR_OFF 64
#define CR_CLIENT_VAL_LEN_OFF 72
#define CR_CLIENT_VAL_OFF 76
#define CR_SIZE 80

#define GSH_CLIENT_HOSTADDR_STR_OFF 104
#define SOCK_NAME_MAX 128
#define GSH_CLIENT_SIZE 360

/* The sizes ganesha-abi.md measured in Debian's binaries. */
_Static_assert(sizeof(struct config_item) == 72, "config_item is 72 bytes in 4.3");
_Static_assert(offsetof(struct config_item, off) == 64, "config_item.off at 64");
_Static_assert(offsetof(struct config_item, u.str.def) == 32, "u.str.def at 32");
_Static_assert(sizeof(struct config_block) == 80, "config_block is 80 bytes in 4.3");
_Static_assert(sizeof(struct config_error_type) == 32, "config_error_type is 32 bytes");
_Static_assert(offsetof(struct config_error_type, errors) == 4, "errors at 4");
_Static_assert(sizeof(clid_entry_t) == 4128, "clid_entry_t is 4128 bytes");
_Static_assert(sizeof(rdel_fh_t) == 24, "rdel_fh_t is 24 bytes");
_Static_assert(sizeof(nfs_grace_start_t) == 16, "nfs_grace_start_t is 16 bytes");
_Static_assert(sizeof(nfs_fh4) == 16, "nfs_fh4 is 16 bytes");
_Static_assert(sizeof(struct nfs4_recovery_backend) == 104, "13 hooks");

#endif
